//! The training photos: discovery, decoding, cropping (centre, or random with `--augment`),
//! shuffling per epoch, and batching ahead of the network on worker threads (`loader`).
mod loader;
mod photo;

pub use photo::{Crop, MAX_CROP_ASPECT, MIN_CROP_AREA};

use crate::imageio;
use anyhow::{bail, Context, Result};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use tch::{Device, Tensor};
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
    /// N×3×S×S, uint8, on the CPU (pinned when the loader was asked to pin).
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

/// Settings of the loader; `LoaderConfig { batch_size: 8, ..Default::default() }` names only
/// what differs from the defaults.
#[derive(Clone, Copy, Debug)]
pub struct LoaderConfig {
    /// Photos per batch.
    pub batch_size: usize,
    /// Side of the square crops.
    pub image_size: u32,
    /// Shuffle seed (and of the random crops).
    pub seed: u64,
    /// Batches decoded ahead of the network.
    pub prefetch: usize,
    /// Decoding threads; 0: one per core.
    pub threads: usize,
    /// Random resized crops and flips (`train --augment`) instead of centre crops.
    pub augment: bool,
    /// Batches in pinned (page-locked) memory for this CUDA device, so that they cross
    /// without a staging copy; ignored for the CPU.
    pub pin_memory: Option<Device>,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 4,
            image_size: 256,
            seed: 42,
            prefetch: 4,
            threads: 0,
            augment: false,
            pin_memory: None,
        }
    }
}

impl LoaderConfig {
    /// The number of decoding threads.
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// Batches of photos in the epochs' orders, decoded on worker threads ahead of the network.
pub struct Loader {
    rx: Option<Receiver<Batch>>,
    shared: Arc<loader::Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Loader {
    /// Starts producing batches from `start` onwards, epoch after epoch, endlessly.
    /// The last batch of an epoch may be smaller than the batch size; an unreadable photo is
    /// skipped, reported with the next batch.
    pub fn start(dataset: Arc<Dataset>, config: LoaderConfig, start: Position) -> Self {
        Self::start_slice(dataset, config, start, Slice { rank: 0, world: 1 })
    }

    /// Like [`Loader::start`], but yielding only `slice`'s part of each global batch, where an
    /// unreadable photo leaves a gap (see `loader`); one process (`world` 1) is
    /// [`Loader::start`].
    pub fn start_slice(
        dataset: Arc<Dataset>,
        config: LoaderConfig,
        start: Position,
        slice: Slice,
    ) -> Self {
        let config = LoaderConfig {
            batch_size: config.batch_size.max(1),
            ..config
        };
        let (tx, rx) = sync_channel(config.prefetch.max(1));
        let shared = Arc::new(loader::Shared::new(dataset, config, start, slice));
        let threads = loader::spawn(shared.clone(), tx);
        Self {
            rx: Some(rx),
            shared,
            threads,
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
        self.shared.request_stop();
        // Dropping the receiver unblocks a reassembler waiting to send.
        self.rx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` photos of different sizes, photo i filled with red level 10·i, and one broken file.
    fn folder(n: usize) -> (tempfile::TempDir, Arc<Dataset>) {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..n {
            let img = image::RgbImage::from_pixel(
                40 + 7 * i as u32,
                33,
                image::Rgb([10 * i as u8, 1, 2]),
            );
            img.save(dir.path().join(format!("p{i}.png"))).unwrap();
        }
        std::fs::write(dir.path().join("p_broken.jpg"), b"not a jpeg").unwrap();
        let dataset = Arc::new(Dataset::open(dir.path()).unwrap());
        (dir, dataset)
    }

    /// The red level that [`folder`] gave file `i` of `dataset` (`None`: the broken one).
    fn red_of(dataset: &Dataset, i: usize) -> Option<u8> {
        let name = dataset.files[i].file_stem().unwrap().to_string_lossy();
        name[1..].parse::<u8>().ok().map(|n| n * 10)
    }

    /// (red levels of each photo, next position, skipped names) of `count` batches.
    fn batches(
        dataset: &Arc<Dataset>,
        config: LoaderConfig,
        start: Position,
        count: usize,
    ) -> Vec<(Vec<u8>, Position, Vec<String>)> {
        let mut loader = Loader::start(dataset.clone(), config, start);
        (0..count)
            .map(|_| {
                let b = loader.next_batch().unwrap();
                let n = b.images.size()[0];
                let reds = (0..n)
                    .map(|i| b.images.int64_value(&[i, 0, 5, 5]) as u8)
                    .collect();
                let skipped = b
                    .skipped
                    .iter()
                    .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
                    .collect();
                (reds, b.next, skipped)
            })
            .collect()
    }

    #[test]
    fn batches_keep_the_epoch_order_and_skips_whatever_the_threads() {
        let (_dir, dataset) = folder(6);
        let config = |threads| LoaderConfig {
            batch_size: 4,
            image_size: 16,
            seed: 7,
            threads,
            ..Default::default()
        };
        let one = batches(&dataset, config(1), Position::default(), 6);
        assert_eq!(one, batches(&dataset, config(3), Position::default(), 6));
        // Epoch by epoch: the readable photos in the epoch's order, 4 then the rest.
        for epoch in 0..3u64 {
            let order = dataset.epoch_order(7, epoch);
            let reds: Vec<u8> = order.iter().filter_map(|&i| red_of(&dataset, i)).collect();
            let (a, b) = (&one[2 * epoch as usize], &one[2 * epoch as usize + 1]);
            assert_eq!([a.0.clone(), b.0.clone()].concat(), reds, "epoch {epoch}");
            assert_eq!(
                b.1,
                Position {
                    epoch: epoch + 1,
                    index: 0
                }
            );
            // The broken photo is reported once per epoch, with the batch after it.
            let skips = [a.2.clone(), b.2.clone()].concat();
            assert_eq!(skips, ["p_broken.jpg"], "epoch {epoch}");
        }
    }

    #[test]
    fn a_loader_started_at_a_position_continues_the_same_batches() {
        let (_dir, dataset) = folder(5);
        let config = LoaderConfig {
            batch_size: 2,
            image_size: 16,
            threads: 2,
            ..Default::default()
        };
        let all = batches(&dataset, config, Position::default(), 8);
        // Resume inside the second epoch.
        let k = (3..6).find(|&k| all[k].1.index != 0).unwrap();
        assert_eq!(all[k].1.epoch, 1);
        assert_eq!(batches(&dataset, config, all[k].1, 8 - k - 1), all[k + 1..]);
    }

    #[test]
    fn the_slices_of_two_ranks_make_each_global_batch_with_gaps_for_unreadable_photos() {
        // 7 files (one broken) in global batches of 4: each epoch is a batch of 4 and one of
        // 3, rank 0 takes positions 0-1 and 4-5 of the order, rank 1 positions 2-3 and 6.
        let (_dir, dataset) = folder(6);
        let config = LoaderConfig {
            batch_size: 4,
            image_size: 16,
            seed: 3,
            threads: 2,
            ..Default::default()
        };
        let red = |i: usize| red_of(&dataset, i);
        let sliced = |rank, start, count| {
            let slice = Slice { rank, world: 2 };
            let mut loader = Loader::start_slice(dataset.clone(), config, start, slice);
            (0..count)
                .map(|_| loader.next_batch().unwrap())
                .collect::<Vec<_>>()
        };
        let (r0, r1) = (
            sliced(0, Position::default(), 6),
            sliced(1, Position::default(), 6),
        );
        for (b, (x, y)) in r0.iter().zip(&r1).enumerate() {
            let epoch = b as u64 / 2;
            let order = dataset.epoch_order(3, epoch);
            let at = 4 * (b % 2);
            let global = (order.len() - at).min(4);
            assert_eq!(
                (x.offset, y.offset, x.global, y.global),
                (0, 2, global, global)
            );
            assert_eq!(x.next, y.next);
            for (batch, part) in [(x, at..at + 2), (y, at + 2..(at + 4).min(order.len()))] {
                let want: Vec<u8> = part.clone().filter_map(|p| red(order[p])).collect();
                let n = batch.images.size()[0];
                let got: Vec<u8> = (0..n)
                    .map(|i| batch.images.int64_value(&[i, 0, 5, 5]) as u8)
                    .collect();
                assert_eq!(got, want, "batch {b}, positions {part:?}");
                let broken = part.clone().any(|p| red(order[p]).is_none());
                assert_eq!(batch.skipped.len(), broken as usize, "batch {b}");
            }
        }
        // Started at a batch's position, a rank continues with the same batches.
        let again = sliced(1, r1[2].next, 3);
        for (a, b) in again.iter().zip(&r1[3..]) {
            assert!(a.images.equal(&b.images) && a.next == b.next);
        }
        // A rank whose part of the only, short batch is empty still gets its empty batches.
        let (_one, single) = folder(0);
        let mut loader = Loader::start_slice(
            single,
            LoaderConfig {
                batch_size: 2,
                ..config
            },
            Position::default(),
            Slice { rank: 1, world: 2 },
        );
        let empty = loader.next_batch().unwrap();
        assert_eq!(
            (empty.images.size()[0], empty.offset, empty.global),
            (0, 1, 1)
        );
    }

    #[test]
    fn augmented_batches_repeat_from_the_seed_and_differ_from_centre_crops() {
        let dir = tempfile::tempdir().unwrap();
        let img =
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(4 * x) as u8, (5 * y) as u8, 9]));
        img.save(dir.path().join("a.png")).unwrap();
        let dataset = Arc::new(Dataset::open(dir.path()).unwrap());
        let config = LoaderConfig {
            batch_size: 1,
            image_size: 16,
            augment: true,
            ..Default::default()
        };
        let take = |config: LoaderConfig| {
            let mut loader = Loader::start(dataset.clone(), config, Position::default());
            (0..6)
                .map(|_| loader.next_batch().unwrap().images)
                .collect::<Vec<_>>()
        };
        let (a, b) = (take(config), take(config));
        let centre = take(LoaderConfig {
            augment: false,
            ..config
        });
        for i in 0..6 {
            assert!(a[i].equal(&b[i]), "batch {i} differs between two runs");
            assert!(!a[i].equal(&centre[i]), "batch {i} is the centre crop");
            assert!(centre[i].equal(&centre[0]));
        }
        assert!(!a[0].equal(&a[1]), "every epoch should crop anew");
    }
}
