//! The run's length and its learning rate over time.
use crate::args::Config;
use faststyle::data::Position;

/// When a run ends, and the learning rate at each step.
pub struct Schedule {
    /// Iterations the run trains, in all.
    pub total: u64,
    /// `--iterations`, when the run's length is counted in iterations rather than epochs.
    iterations: Option<u64>,
    /// Epochs, when the run's length is counted in passes over the data.
    epochs: u64,
    /// The learning rate.
    lr: f64,
}

impl Schedule {
    /// The schedule of a run of `config` over `photos` photos.
    pub fn new(config: &Config, photos: usize) -> Self {
        let batches_per_epoch = photos.div_ceil(config.batch_size) as u64;
        let epochs = config.epochs.unwrap_or(1);
        Self {
            total: config.iterations.unwrap_or(epochs * batches_per_epoch),
            iterations: config.iterations,
            epochs,
            lr: config.lr,
        }
    }

    /// Whether the run is over after `step` iterations, standing at `pos` in the data.
    pub fn done(&self, step: u64, pos: Position) -> bool {
        match self.iterations {
            Some(n) => step >= n,
            None => pos.epoch >= self.epochs,
        }
    }

    /// The learning rate of the update made at 0-based step `step`.
    pub fn lr(&self, _step: u64) -> f64 {
        self.lr
    }
}
