//! The run's length, and what the recipe does over it: the learning rate at each step
//! (warm-up, then a decay that follows the run's length) and the crop size (progressive
//! resizing: half-size crops first, full size at the end).
use crate::args::Config;
use crate::recipe::{Decay, Recipe};
use faststyle::data::Position;

/// When a run ends, and the learning rate and crop size at each step.
pub struct Schedule {
    /// Iterations the run trains, in all.
    pub total: u64,
    /// `--iterations`, when the run's length is counted in iterations rather than epochs.
    iterations: Option<u64>,
    /// Epochs, when the run's length is counted in passes over the data.
    epochs: u64,
    /// The peak (for `example`, the constant) learning rate.
    lr: f64,
    /// Steps of linear warm-up.
    warmup: u64,
    decay: Decay,
    /// Steps on half-size crops, at the start.
    small: u64,
    image_size: u32,
}

impl Schedule {
    /// The schedule of a run of `config` over `photos` photos.
    pub fn new(config: &Config, photos: usize) -> Self {
        let batches_per_epoch = photos.div_ceil(config.batch_size) as u64;
        let epochs = config.epochs.unwrap_or(1);
        let total = config.iterations.unwrap_or(epochs * batches_per_epoch);
        let part = |f: f64| (f * total as f64).round() as u64;
        let recipe: &Recipe = &config.recipe;
        Self {
            total,
            iterations: config.iterations,
            epochs,
            lr: config.lr,
            warmup: match recipe.warmup {
                w if w > 0.0 => part(w).max(1),
                _ => 0,
            },
            decay: recipe.decay,
            small: part(recipe.progressive),
            image_size: config.image_size,
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
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        // Progress through the decay: 0 at its first step, approaching 1 at the last.
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let p = ((step - self.warmup) as f64 / span).min(1.0);
        match self.decay {
            Decay::None => self.lr,
            Decay::Cosine => self.lr * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()),
            Decay::Linear => self.lr * (1.0 - p),
        }
    }

    /// The side of the crops of 0-based step `step`.
    pub fn crop_size(&self, step: u64) -> u32 {
        if step < self.small {
            half_size(self.image_size)
        } else {
            self.image_size
        }
    }

    /// The phase of step `step`, as the progress bar names it: `128 px warm-up`, `64 px`,
    /// `128 px decay`, `256 px`.
    pub fn phase(&self, step: u64) -> String {
        let size = self.crop_size(step);
        let part = if step < self.warmup {
            " warm-up"
        } else if self.decay != Decay::None {
            " decay"
        } else {
            ""
        };
        format!("{size} px{part}")
    }
}

/// Half of an image size, on a multiple of 4 (the network's own multiple), at least 16.
pub fn half_size(size: u32) -> u32 {
    (size / 2 / 4 * 4).max(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(total: u64, warmup: u64, decay: Decay, small: u64) -> Schedule {
        Schedule {
            total,
            iterations: Some(total),
            epochs: 1,
            lr: 1e-2,
            warmup,
            decay,
            small,
            image_size: 128,
        }
    }

    #[test]
    fn example_schedule_is_constant() {
        let s = schedule(100, 0, Decay::None, 0);
        assert!((0..100).all(|t| s.lr(t) == 1e-2 && s.crop_size(t) == 128));
        assert_eq!(s.phase(0), "128 px");
    }

    #[test]
    fn warm_up_rises_then_cosine_falls_to_near_zero() {
        let s = schedule(100, 10, Decay::Cosine, 50);
        assert!((s.lr(0) - 1e-3).abs() < 1e-12);
        assert!((s.lr(9) - 1e-2).abs() < 1e-12);
        assert!((s.lr(10) - 1e-2).abs() < 1e-12);
        let lrs: Vec<f64> = (10..100).map(|t| s.lr(t)).collect();
        assert!(lrs.windows(2).all(|w| w[1] < w[0]), "not falling");
        assert!(s.lr(99) < 1e-4 && s.lr(99) > 0.0);
        assert!((s.lr(55) - 5e-3).abs() < 1e-12, "half way: {}", s.lr(55));
        assert_eq!((s.crop_size(49), s.crop_size(50)), (64, 128));
        assert_eq!(s.phase(3), "64 px warm-up");
        assert_eq!(s.phase(60), "128 px decay");
        let linear = schedule(100, 0, Decay::Linear, 0);
        assert!((linear.lr(50) - 5e-3).abs() < 1e-12);
    }

    #[test]
    fn half_sizes_stay_multiples_of_four() {
        assert_eq!(half_size(256), 128);
        assert_eq!(half_size(100), 48);
        assert_eq!(half_size(20), 16);
    }
}
