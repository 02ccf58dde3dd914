//! The training photos: discovery, decoding, resizing and centre-cropping, shuffling per
//! epoch, and batching in parallel ahead of the network (a bounded prefetch queue).
use crate::imageio;
use anyhow::{bail, Context, Result};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use tch::{Kind, Tensor};
use walkdir::WalkDir;

/// The image files of a folder, walked recursively, in a fixed (sorted) order.
pub fn find_images(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in WalkDir::new(root).follow_links(true) {
        let entry = entry.with_context(|| format!("{}: cannot walk", root.display()))?;
        if entry.file_type().is_file() && imageio::has_image_extension(entry.path()) {
            files.push(entry.into_path());
        }
    }
    files.sort();
    Ok(files)
}

/// A folder of training photos.
pub struct Dataset {
    /// The image files, sorted.
    pub files: Vec<PathBuf>,
}

impl Dataset {
    /// Finds the images under `root`; a folder without any is an error.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            bail!("{}: dataset folder not found", root.display());
        }
        let files = find_images(root)?;
        if files.is_empty() {
            bail!("{}: no images found", root.display());
        }
        Ok(Self { files })
    }

    /// The number of photos.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are no photos (never true for an opened dataset).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The order of the photos in `epoch`: a shuffle that depends only on the seed and epoch.
    pub fn epoch_order(&self, seed: u64, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.files.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(epoch);
        order.shuffle(&mut rng);
        order
    }
}

/// Decodes an image file into 8-bit RGB, upright.
pub fn decode_rgb(path: &Path) -> Result<image::RgbImage> {
    Ok(imageio::read(path)?.rgb)
}

/// Resizes so that the shorter side is `size` and crops the centre square, with a
/// bilinear filter (as torchvision's Resize does on PIL images). Returns HWC bytes.
pub fn square_crop(img: &image::RgbImage, size: u32, resizer: &mut Resizer) -> Result<Vec<u8>> {
    let (w, h) = img.dimensions();
    if w == size && h == size {
        return Ok(img.as_raw().clone());
    }
    let src = ImageRef::new(w, h, img.as_raw(), PixelType::U8x3)?;
    let mut dst = Image::new(size, size, PixelType::U8x3);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
        .fit_into_destination(Some((0.5, 0.5)));
    resizer.resize(&src, &mut dst, &options)?;
    Ok(dst.into_vec())
}

/// Loads one training photo: decoded, resized, centre-cropped, as HWC bytes.
pub fn load_photo(path: &Path, size: u32) -> Result<Vec<u8>> {
    let img = decode_rgb(path)?;
    square_crop(&img, size, &mut Resizer::new())
}

/// Where in the data a run stands: the epoch and the position in that epoch's order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Epoch, from 0.
    pub epoch: u64,
    /// Photos of this epoch's order already consumed.
    pub index: usize,
}

/// A batch of photos ready for the network.
pub struct Batch {
    /// N×3×S×S, uint8, on the CPU.
    pub images: Tensor,
    /// The position just after this batch (where a resumed run continues).
    pub next: Position,
    /// Photos that failed to load while this batch was assembled, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Where these photos start in the global batch they belong to (0 unless sliced).
    pub offset: usize,
    /// Photos of that global batch's stretch of the order (N, unless sliced).
    pub global: usize,
}

/// The part of every global batch that one of `world` data-parallel processes trains on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// This process's rank, from 0.
    pub rank: usize,
    /// Processes in all; the batch size divides by it.
    pub world: usize,
}

/// Settings of the loader.
#[derive(Clone, Copy, Debug)]
pub struct LoaderConfig {
    /// Photos per batch.
    pub batch_size: usize,
    /// Side of the square crops.
    pub image_size: u32,
    /// Shuffle seed.
    pub seed: u64,
    /// Batches decoded ahead of the network.
    pub prefetch: usize,
}

/// Batches produced by a background thread that decodes photos in parallel (rayon).
pub struct Loader {
    rx: Option<Receiver<Batch>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Loader {
    /// Starts producing batches from `start` onwards, epoch after epoch, endlessly.
    /// The last batch of an epoch may be smaller than the batch size.
    pub fn start(dataset: Arc<Dataset>, config: LoaderConfig, start: Position) -> Self {
        let (tx, rx) = sync_channel(config.prefetch.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // Enough photos in flight to keep every core busy, in whole batches.
            let threads = rayon::current_num_threads().max(1);
            let window = config.batch_size * threads.div_ceil(config.batch_size).max(2);
            let mut pos = start;
            let mut pending: Vec<Vec<u8>> = Vec::new();
            let mut skipped = Vec::new();
            loop {
                let mut sent = false;
                let whole_epoch = pos.index == 0;
                let order = dataset.epoch_order(config.seed, pos.epoch);
                while pos.index < order.len() {
                    if stop_flag.load(Ordering::Relaxed) {
                        return;
                    }
                    let end = (pos.index + window).min(order.len());
                    let decoded: Vec<_> = order[pos.index..end]
                        .par_iter()
                        .map_init(Resizer::new, |resizer, &i| {
                            let path = &dataset.files[i];
                            decode_rgb(path)
                                .and_then(|img| square_crop(&img, config.image_size, resizer))
                        })
                        .collect();
                    for (k, result) in decoded.into_iter().enumerate() {
                        let file_index = order[pos.index + k];
                        match result {
                            Ok(pixels) => pending.push(pixels),
                            Err(e) => {
                                skipped.push((dataset.files[file_index].clone(), format!("{e:#}")))
                            }
                        }
                        let last_of_epoch = pos.index + k + 1 == order.len();
                        if pending.len() == config.batch_size
                            || (last_of_epoch && !pending.is_empty())
                        {
                            let next = if last_of_epoch {
                                Position {
                                    epoch: pos.epoch + 1,
                                    index: 0,
                                }
                            } else {
                                Position {
                                    epoch: pos.epoch,
                                    index: pos.index + k + 1,
                                }
                            };
                            let batch = Batch {
                                images: to_batch(&pending, config.image_size),
                                next,
                                skipped: std::mem::take(&mut skipped),
                                offset: 0,
                                global: pending.len(),
                            };
                            pending.clear();
                            if tx.send(batch).is_err() {
                                return;
                            }
                            sent = true;
                        }
                    }
                    pos.index = end;
                }
                // Undelivered photos belong to the epoch's last batch, sent above; a fully
                // unreadable tail leaves only skips, which the next batch reports.
                pos = Position {
                    epoch: pos.epoch + 1,
                    index: 0,
                };
                if !sent && whole_epoch {
                    // Not one photo could be read: stop, so that the trainer reports it.
                    for (path, reason) in skipped {
                        eprintln!("warning: {}: skipped: {reason}", path.display());
                    }
                    return;
                }
            }
        });
        Self {
            rx: Some(rx),
            stop,
            thread: Some(thread),
        }
    }

    /// Like [`Loader::start`], but yielding only `slice`'s part of each global batch (its
    /// photos `rank·B/world .. (rank+1)·B/world` of the batch's stretch of the order), and
    /// decoding only those. Every global batch is the next `batch_size` photos of the order
    /// (fewer at the end of an epoch); an unreadable photo leaves a gap rather than pulling the
    /// next photo in, since no process knows what the others could read.
    pub fn start_slice(
        dataset: Arc<Dataset>,
        config: LoaderConfig,
        start: Position,
        slice: Slice,
    ) -> Self {
        if slice.world <= 1 {
            return Self::start(dataset, config, start);
        }
        let (tx, rx) = sync_channel(config.prefetch.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let share = (config.batch_size / slice.world).max(1);
            // Enough global batches at once to keep every core busy.
            let at_once = rayon::current_num_threads().div_ceil(share).max(2);
            let mut pos = start;
            loop {
                let order = dataset.epoch_order(config.seed, pos.epoch);
                while pos.index < order.len() {
                    if stop_flag.load(Ordering::Relaxed) {
                        return;
                    }
                    let mut stretches = Vec::new();
                    let mut at = pos.index;
                    while stretches.len() < at_once && at < order.len() {
                        let end = (at + config.batch_size).min(order.len());
                        let first = (at + slice.rank * share).min(end);
                        stretches.push((at, end, first..(first + share).min(end)));
                        at = end;
                    }
                    let wanted: Vec<usize> = stretches
                        .iter()
                        .flat_map(|(_, _, part)| part.clone())
                        .collect();
                    let mut decoded = wanted
                        .par_iter()
                        .map_init(Resizer::new, |resizer, &k| {
                            decode_rgb(&dataset.files[order[k]])
                                .and_then(|img| square_crop(&img, config.image_size, resizer))
                        })
                        .collect::<Vec<_>>()
                        .into_iter();
                    for (start, end, part) in stretches {
                        let mut pixels = Vec::new();
                        let mut skipped = Vec::new();
                        for k in part.clone() {
                            match decoded.next() {
                                Some(Ok(p)) => pixels.push(p),
                                Some(Err(e)) => skipped
                                    .push((dataset.files[order[k]].clone(), format!("{e:#}"))),
                                None => return,
                            }
                        }
                        let next = if end == order.len() {
                            Position {
                                epoch: pos.epoch + 1,
                                index: 0,
                            }
                        } else {
                            Position {
                                epoch: pos.epoch,
                                index: end,
                            }
                        };
                        let batch = Batch {
                            images: to_batch(&pixels, config.image_size),
                            next,
                            skipped,
                            offset: part.start - start,
                            global: end - start,
                        };
                        if tx.send(batch).is_err() {
                            return;
                        }
                    }
                    pos.index = at;
                }
                pos = Position {
                    epoch: pos.epoch + 1,
                    index: 0,
                };
            }
        });
        Self {
            rx: Some(rx),
            stop,
            thread: Some(thread),
        }
    }

    /// The next batch, or an error when the producer stopped (e.g. every photo is unreadable).
    pub fn next_batch(&mut self) -> Result<Batch> {
        let rx = self.rx.as_ref().context("loader is stopped")?;
        rx.recv().context("the data loader stopped unexpectedly")
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver unblocks a producer waiting to send.
        self.rx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Stacks HWC byte images into an N×3×S×S uint8 tensor.
fn to_batch(images: &[Vec<u8>], size: u32) -> Tensor {
    let s = size as i64;
    let flat: Vec<u8> = images.concat();
    Tensor::from_slice(&flat)
        .view([images.len() as i64, s, s, 3])
        .permute([0, 3, 1, 2])
        .contiguous()
        .to_kind(Kind::Uint8)
}

/// The style image as a 1×3×H×W float tensor in 0…255, its shorter side resized to
/// `shorter_side` when given (keeping the aspect ratio, unlike the example's square resize).
pub fn load_style(path: &Path, shorter_side: Option<u32>) -> Result<Tensor> {
    let img =
        decode_rgb(path).with_context(|| format!("{}: cannot read style image", path.display()))?;
    let img = match shorter_side {
        Some(size) => resize_shorter(&img, size),
        None => img,
    };
    Ok(imageio::to_tensor(&img))
}

/// Scales an image (bilinear) so that its shorter side is `size`, keeping its aspect ratio.
pub fn resize_shorter(img: &image::RgbImage, size: u32) -> image::RgbImage {
    let (w, h) = img.dimensions();
    let scale = f64::from(size) / f64::from(w.min(h));
    let side = |s: u32| ((f64::from(s) * scale).round() as u32).max(1);
    image::imageops::resize(img, side(w), side(h), image::imageops::FilterType::Triangle)
}
