//! The loader's threads. Workers take photo numbers from a shared cursor and decode each into
//! a crop buffer from a bounded pool, with no libtorch call; a reassembler puts the crops
//! back in order into batches filled in place, and reports the photos that failed.
use super::photo::{Crop, PhotoBuffers};
use super::{Batch, Dataset, LoaderConfig, Position};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use tch::{Device, Kind, Tensor};

/// What the threads share.
pub struct Shared {
    pub dataset: Arc<Dataset>,
    pub config: LoaderConfig,
    /// The photo number (epoch × photos + index) the loader starts at.
    start: u64,
    /// The next photo to take, counted from `start`.
    cursor: AtomicU64,
    pub stop: AtomicBool,
    pool: Pool,
    /// The last epochs' orders, computed once each.
    orders: Mutex<Vec<(u64, Arc<Vec<usize>>)>>,
}

/// A decoded photo (its crop buffer) or why it failed, for photo `k` from the start.
struct Done {
    k: u64,
    crop: Vec<u8>,
    error: Option<String>,
}

/// Crop buffers: a worker takes one before it takes a photo, so the photos in flight (and
/// the memory they hold) are bounded however far the workers run ahead.
struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    ready: Condvar,
}

impl Pool {
    fn take(&self, stop: &AtomicBool) -> Option<Vec<u8>> {
        let mut free = self.free.lock().ok()?;
        loop {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(buf) = free.pop() {
                return Some(buf);
            }
            free = self.ready.wait(free).ok()?;
        }
    }

    fn give(&self, buf: Vec<u8>) {
        if let Ok(mut free) = self.free.lock() {
            free.push(buf);
        }
        self.ready.notify_one();
    }
}

impl Shared {
    pub fn new(dataset: Arc<Dataset>, config: LoaderConfig, start: Position) -> Self {
        let n = dataset.len() as u64;
        let crop_len = 3 * (config.image_size as usize).pow(2);
        let buffers = (2 * config.threads()).max(config.batch_size).max(4);
        Self {
            start: start.epoch * n + start.index as u64,
            cursor: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            pool: Pool {
                free: Mutex::new(vec![vec![0u8; crop_len]; buffers]),
                ready: Condvar::new(),
            },
            orders: Mutex::new(Vec::new()),
            dataset,
            config,
        }
    }

    /// Asks every thread to stop, waking workers that wait for a buffer.
    pub fn request_stop(&self) {
        let _guard = self.pool.free.lock();
        self.stop.store(true, Ordering::SeqCst);
        self.pool.ready.notify_all();
    }

    /// The epoch and index in that epoch's order of photo `k` from the start.
    fn position(&self, k: u64) -> Position {
        let n = self.dataset.len() as u64;
        let g = self.start + k;
        Position {
            epoch: g / n,
            index: (g % n) as usize,
        }
    }

    fn order(&self, epoch: u64) -> Arc<Vec<usize>> {
        let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, order)) = orders.iter().find(|(e, _)| *e == epoch) {
            return order.clone();
        }
        let order = Arc::new(self.dataset.epoch_order(self.config.seed, epoch));
        orders.push((epoch, order.clone()));
        if orders.len() > 3 {
            orders.remove(0);
        }
        order
    }

    fn file(&self, pos: Position) -> &PathBuf {
        &self.dataset.files[self.order(pos.epoch)[pos.index]]
    }
}

/// Starts the workers and the reassembler; returns their handles.
pub fn spawn(shared: Arc<Shared>, tx: SyncSender<Batch>) -> Vec<JoinHandle<()>> {
    let (done_tx, done_rx) = channel();
    let mut threads: Vec<JoinHandle<()>> = (0..shared.config.threads())
        .map(|_| {
            let shared = shared.clone();
            let done_tx = done_tx.clone();
            std::thread::spawn(move || work(&shared, &done_tx))
        })
        .collect();
    drop(done_tx);
    threads.push(std::thread::spawn(move || {
        reassemble(&shared, &done_rx, &tx);
        // Whatever ended the batches ends the workers too.
        shared.request_stop();
    }));
    threads
}

/// A worker: photo after photo from the cursor, into crop buffers from the pool.
fn work(shared: &Shared, done: &Sender<Done>) {
    let mut buffers = PhotoBuffers::default();
    let config = shared.config;
    while let Some(mut crop) = shared.pool.take(&shared.stop) {
        let k = shared.cursor.fetch_add(1, Ordering::SeqCst);
        let pos = shared.position(k);
        let crop_of = |w: u32, h: u32| match config.augment {
            true => Crop::random(config.seed, pos.epoch, pos.index, w, h),
            false => Crop::Centre,
        };
        // A decoder that panics on a strange file costs that photo, not the run (a lost
        // photo would leave the reassembler waiting for it).
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            buffers.load(shared.file(pos), config.image_size, &crop_of, &mut crop)
        }));
        let error = match loaded {
            Ok(result) => result.err().map(|e| format!("{e:#}")),
            Err(_) => {
                buffers = PhotoBuffers::default();
                Some("the decoder failed on this file".to_string())
            }
        };
        if done.send(Done { k, crop, error }).is_err() {
            return;
        }
    }
}

/// A batch being filled: N×3×S×S uint8, in pinned memory for CUDA.
struct Filling {
    images: Tensor,
    filled: usize,
}

impl Filling {
    fn new(config: &LoaderConfig) -> Self {
        let s = config.image_size as i64;
        let shape = [config.batch_size as i64, 3, s, s];
        let images = Tensor::empty(shape, (Kind::Uint8, Device::Cpu));
        let images = match config.pin_memory {
            Some(device) if device.is_cuda() => images.pin_memory(device),
            _ => images,
        };
        Self { images, filled: 0 }
    }

    fn push(&mut self, crop: &[u8]) {
        let len = crop.len();
        assert!(self.filled < self.images.size()[0] as usize && self.images.is_contiguous());
        // SAFETY: the tensor is contiguous uint8 with room for `filled + 1` crops of `len`
        // bytes, and only this thread holds it until the batch is sent.
        unsafe {
            let dst = (self.images.data_ptr() as *mut u8).add(self.filled * len);
            std::ptr::copy_nonoverlapping(crop.as_ptr(), dst, len);
        }
        self.filled += 1;
    }

    fn finish(self) -> Tensor {
        match self.filled as i64 {
            n if n == self.images.size()[0] => self.images,
            n => self.images.narrow(0, 0, n),
        }
    }
}

/// Puts the workers' photos back in order into batches; ends when the consumer goes, or
/// when a whole epoch gave not one photo.
fn reassemble(shared: &Shared, done: &Receiver<Done>, tx: &SyncSender<Batch>) {
    let config = &shared.config;
    let photos = shared.dataset.len();
    let mut waiting: BTreeMap<u64, Done> = BTreeMap::new();
    let mut next = 0u64;
    let mut batch: Option<Filling> = None;
    let mut skipped: Vec<(PathBuf, String)> = Vec::new();
    // Whether the current epoch was read from its start, and whether it gave any photo.
    let mut whole_epoch = shared.position(0).index == 0;
    let mut delivered = false;
    loop {
        let Some(photo) = waiting.remove(&next) else {
            match done.recv() {
                Ok(d) => {
                    waiting.insert(d.k, d);
                    continue;
                }
                Err(_) => return,
            }
        };
        let pos = shared.position(next);
        next += 1;
        match &photo.error {
            None => {
                batch
                    .get_or_insert_with(|| Filling::new(config))
                    .push(&photo.crop);
                delivered = true;
            }
            Some(reason) => skipped.push((shared.file(pos).clone(), reason.clone())),
        }
        shared.pool.give(photo.crop);
        let last_of_epoch = pos.index + 1 == photos;
        let full = batch
            .as_ref()
            .is_some_and(|b| b.filled == config.batch_size);
        if let Some(filling) = batch.take_if(|_| full || last_of_epoch) {
            let next_pos = match last_of_epoch {
                true => Position {
                    epoch: pos.epoch + 1,
                    index: 0,
                },
                false => Position {
                    epoch: pos.epoch,
                    index: pos.index + 1,
                },
            };
            let images = filling.finish();
            let n = images.size()[0] as usize;
            let sent = tx.send(Batch {
                images,
                next: next_pos,
                skipped: std::mem::take(&mut skipped),
                offset: 0,
                global: n,
            });
            if sent.is_err() {
                return;
            }
        }
        if last_of_epoch {
            if whole_epoch && !delivered {
                // Not one photo could be read: stop, so that the trainer reports it.
                for (path, reason) in skipped {
                    eprintln!("warning: {}: skipped: {reason}", path.display());
                }
                return;
            }
            whole_epoch = true;
            delivered = false;
        }
    }
}
