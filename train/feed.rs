//! The batches of a run: the data loader at the crop size of the step, started again at the
//! run's position when progressive resizing moves to the next size.
use anyhow::{Context, Result};
use faststyle::data::{Batch, Dataset, Loader, LoaderConfig, Position, Slice};
use std::sync::Arc;

/// The loader of the current crop size.
pub struct Feed {
    dataset: Arc<Dataset>,
    config: LoaderConfig,
    /// This process's part of every batch (all of it in one process).
    slice: Slice,
    loader: Option<Loader>,
}

impl Feed {
    /// A feed of `slice` of `dataset` with `config` (its image size is set at each batch).
    pub fn new(dataset: Arc<Dataset>, config: LoaderConfig, slice: Slice) -> Self {
        Self {
            dataset,
            config,
            slice,
            loader: None,
        }
    }

    /// The batch at `pos` in crops of `size`: from the running loader when it has that size,
    /// else from a new one started at `pos` (batches it decoded ahead are dropped).
    pub fn next(&mut self, pos: Position, size: u32) -> Result<Batch> {
        if self.loader.is_none() || self.config.image_size != size {
            self.loader = None;
            self.config.image_size = size;
            let loader = Loader::start_slice(self.dataset.clone(), self.config, pos, self.slice);
            self.loader = Some(loader);
        }
        let loader = self.loader.as_mut().context("the data loader is stopped")?;
        loader.next_batch()
    }

    /// Stops the loader's threads.
    pub fn stop(&mut self) {
        self.loader = None;
    }
}
