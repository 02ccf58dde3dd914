//! The loader's threads. Workers take photo numbers from a shared cursor and decode each into
//! a crop buffer from a bounded pool, with no libtorch call; a reassembler puts the crops
//! back in order into batches filled in place, and reports the photos that failed.
//!
//! One process takes every photo, and a batch is the next `batch_size` readable ones. A
//! data-parallel rank takes only its part of every global batch (the next `batch_size` photos
//! of the epoch's order): rank r's photos `r·B/world .. (r+1)·B/world` of it. There an
//! unreadable photo leaves a gap rather than pulling the next photo in, since no process knows
//! what the others could read, and a rank whose part is empty still gets its (empty) batch.
use super::photo::{Crop, PhotoBuffers};
use super::{Batch, Dataset, LoaderConfig, Position, Slice};
use std::collections::BTreeMap;
use std::ops::Range;
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
    plan: Plan,
    /// Where the loader starts.
    start_at: Position,
    /// Where it starts, counted in this process's photos (epoch × its photos per epoch + its
    /// photos before the start in that epoch).
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

/// Which photos of every epoch's order this process takes.
struct Plan {
    /// Sliced: each global batch of an epoch, its stretch of the order and this rank's part of
    /// it. Empty in one process, whose batches are filled from the photos that could be read.
    parts: Vec<Part>,
    /// The positions in an epoch's order that this process takes, in order.
    mine: Vec<usize>,
}

/// A global batch: its stretch of the epoch's order, and this rank's part of it.
struct Part {
    stretch: Range<usize>,
    mine: Range<usize>,
}

impl Plan {
    fn new(photos: usize, batch_size: usize, slice: Slice) -> Self {
        if slice.world <= 1 {
            return Self {
                parts: Vec::new(),
                mine: (0..photos).collect(),
            };
        }
        let share = (batch_size / slice.world).max(1);
        let parts: Vec<Part> = (0..photos)
            .step_by(batch_size)
            .map(|at| {
                let end = (at + batch_size).min(photos);
                let first = (at + slice.rank * share).min(end);
                Part {
                    stretch: at..end,
                    mine: first..(first + share).min(end),
                }
            })
            .collect();
        let mine = parts.iter().flat_map(|p| p.mine.clone()).collect();
        Self { parts, mine }
    }

    /// Photos of each epoch that this process takes.
    fn per_epoch(&self) -> u64 {
        self.mine.len() as u64
    }

    /// The crops one of this process's batches holds at most.
    fn batch_capacity(&self, batch_size: usize) -> usize {
        self.parts
            .iter()
            .map(|p| p.mine.len())
            .max()
            .unwrap_or(batch_size)
    }
}

impl Shared {
    /// The threads' state for `slice`'s photos from `start` on.
    pub fn new(dataset: Arc<Dataset>, config: LoaderConfig, start: Position, slice: Slice) -> Self {
        let plan = Plan::new(dataset.len(), config.batch_size, slice);
        let crop_len = 3 * (config.image_size as usize).pow(2);
        let buffers = (2 * config.threads()).max(config.batch_size).max(4);
        let before = plan.mine.partition_point(|&i| i < start.index) as u64;
        Self {
            start: start.epoch * plan.per_epoch() + before,
            start_at: start,
            plan,
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

    /// The epoch and index in that epoch's order of this process's photo `k` from the start.
    fn position(&self, k: u64) -> Position {
        let n = self.plan.per_epoch();
        let g = self.start + k;
        Position {
            epoch: g / n,
            index: self.plan.mine[(g % n) as usize],
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
        let photos = InOrder {
            done: done_rx,
            waiting: BTreeMap::new(),
            next: 0,
        };
        match shared.plan.parts.is_empty() {
            true => reassemble(&shared, photos, &tx),
            false => reassemble_parts(&shared, photos, &tx),
        }
        // Whatever ended the batches ends the workers too.
        shared.request_stop();
    }));
    threads
}

/// A worker: photo after photo from the cursor, into crop buffers from the pool.
fn work(shared: &Shared, done: &Sender<Done>) {
    let mut buffers = PhotoBuffers::default();
    let config = shared.config;
    if shared.plan.per_epoch() == 0 {
        return; // a rank whose every part is empty
    }
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
    fn new(config: &LoaderConfig, capacity: usize) -> Self {
        let s = config.image_size as i64;
        let shape = [capacity as i64, 3, s, s];
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

/// Where a run stands once it has consumed the first `end` photos of `epoch`'s order (of
/// `photos`): the next epoch's start when that was all of them.
fn position_after(epoch: u64, end: usize, photos: usize) -> Position {
    match end == photos {
        true => Position {
            epoch: epoch + 1,
            index: 0,
        },
        false => Position { epoch, index: end },
    }
}

/// The workers' photos, put back in order.
struct InOrder {
    done: Receiver<Done>,
    waiting: BTreeMap<u64, Done>,
    next: u64,
}

impl InOrder {
    /// The next photo and its number, or `None` once the workers are gone.
    fn next(&mut self) -> Option<(u64, Done)> {
        loop {
            if let Some(photo) = self.waiting.remove(&self.next) {
                self.next += 1;
                return Some((self.next - 1, photo));
            }
            let d = self.done.recv().ok()?;
            self.waiting.insert(d.k, d);
        }
    }
}

/// One process: the readable photos in order, `batch_size` to a batch (fewer at an epoch's
/// end); ends when the consumer goes, or when a whole epoch gave not one photo.
fn reassemble(shared: &Shared, mut photos_in_order: InOrder, tx: &SyncSender<Batch>) {
    let config = &shared.config;
    let photos = shared.dataset.len();
    let mut batch: Option<Filling> = None;
    let mut skipped: Vec<(PathBuf, String)> = Vec::new();
    // Whether the current epoch was read from its start, and whether it gave any photo.
    let mut whole_epoch = shared.start_at.index == 0;
    let mut delivered = false;
    while let Some((k, photo)) = photos_in_order.next() {
        let pos = shared.position(k);
        match &photo.error {
            None => {
                batch
                    .get_or_insert_with(|| Filling::new(config, config.batch_size))
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
            let next_pos = position_after(pos.epoch, pos.index + 1, photos);
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

/// A data-parallel rank: its part of every global batch, a gap for each photo that failed.
/// An empty part is an empty batch, so that the rank still takes part in the step.
fn reassemble_parts(shared: &Shared, mut photos_in_order: InOrder, tx: &SyncSender<Batch>) {
    let config = &shared.config;
    let photos = shared.dataset.len();
    let capacity = shared.plan.batch_capacity(config.batch_size);
    let mut epoch = shared.start_at.epoch;
    let mut first = shared
        .plan
        .parts
        .partition_point(|p| p.stretch.start < shared.start_at.index);
    loop {
        for part in &shared.plan.parts[first..] {
            let mut filling = Filling::new(config, capacity);
            let mut skipped = Vec::new();
            for _ in part.mine.clone() {
                let Some((k, photo)) = photos_in_order.next() else {
                    return;
                };
                match &photo.error {
                    None => filling.push(&photo.crop),
                    Some(reason) => {
                        skipped.push((shared.file(shared.position(k)).clone(), reason.clone()))
                    }
                }
                shared.pool.give(photo.crop);
            }
            let next = position_after(epoch, part.stretch.end, photos);
            let batch = Batch {
                images: filling.finish(),
                next,
                skipped,
                offset: part.mine.start - part.stretch.start,
                global: part.stretch.len(),
            };
            if tx.send(batch).is_err() {
                return;
            }
        }
        first = 0;
        epoch += 1;
    }
}
