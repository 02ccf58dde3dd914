//! Speed measurements of faststyle (not tests): one JSON object per line on stdout.
//!
//! Built by `cargo bench --bench speed --no-run` (scripts/bench/build.sh copies the binary to
//! `target/release/speed-bench`); driven by scripts/bench/cpu.sh and scripts/bench/gpu.sh,
//! which run the PyTorch baselines in the same run and print one table with ratios.
//!
//! ```text
//! speed-bench forward    --sizes 256,512,3840x2160 --device cpu|cuda --precisions fp32,fp16,bf16
//!                        --repeat N --warmup K [--checkpoint F]
//! speed-bench loader     --dataset DIR --image-size 256 --batch-size 4 --batches N [--warmup K]
//! speed-bench train-step --dataset DIR --vgg F --style IMG --image-size S --batch-size B
//!                        --iterations N --warmup K --device D --precision P [--seed N]
//! speed-bench make-dataset --out DIR --count N [--from DIR] [--width 640 --height 480]
//! speed-bench save-model --out F [--seed N]
//! ```
//! With no subcommand (as `cargo bench` runs it) it times one forward pass at 256 and 512.
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use faststyle::checkpoint::{self, ModelInfo};
use faststyle::data::{self, Dataset, Loader, LoaderConfig, Position};
use faststyle::device::{self, DeviceChoice, Precision};
use faststyle::loss::{self, LossWeights};
use faststyle::optim::Adam;
use faststyle::training::{LossScaler, Step};
use faststyle::transformer::TransformerNet;
use faststyle::vgg::Vgg16;
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::{json, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tch::nn::{Module, VarStore};
use tch::{Device, Kind, Tensor};

/// Speed measurements of faststyle; one JSON object per line on stdout.
#[derive(Parser, Debug)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Median milliseconds of one TransformerNet forward pass (batch 1) per size and precision.
    Forward(ForwardArgs),
    /// Images/s of the training data loader alone (decode, resize, crop, batch).
    Loader(LoaderArgs),
    /// Images/s of whole training steps, as `train` runs them, and the losses at the end.
    TrainStep(TrainStepArgs),
    /// Writes a COCO-like folder of JPEGs (variations of the photos in --from, or synthetic).
    MakeDataset(MakeDatasetArgs),
    /// Writes a style model with random weights (for timing `infer` against PyTorch).
    SaveModel(SaveModelArgs),
}

#[derive(clap::Args, Debug)]
struct ForwardArgs {
    /// Sizes: S for S×S, or WxH (e.g. 3840x2160), comma-separated.
    #[arg(long, default_value = "256,512,1024,2048")]
    sizes: String,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Comma-separated from fp32, fp16, bf16 (half precision: CUDA only, as in `infer`).
    #[arg(long, default_value = "fp32")]
    precisions: String,
    /// Timed passes per case (the median is reported).
    #[arg(long, default_value_t = 10)]
    repeat: usize,
    /// Untimed passes first (cuDNN autotuning happens here).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Style model to load (default: random weights; the speed is the same).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Seed of the random weights and input.
    #[arg(long, default_value_t = 0)]
    seed: i64,
}

#[derive(clap::Args, Debug)]
struct LoaderArgs {
    /// Folder of photos, walked recursively.
    #[arg(long)]
    dataset: PathBuf,
    #[arg(long, default_value_t = 256)]
    image_size: u32,
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Timed batches.
    #[arg(long, default_value_t = 100)]
    batches: usize,
    /// Untimed batches first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Batches decoded ahead (as `train`: 4).
    #[arg(long, default_value_t = 4)]
    prefetch: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Decoding threads (0: one per core, as `train`).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(clap::Args, Debug)]
struct TrainStepArgs {
    /// Folder of training photos, walked recursively.
    #[arg(long)]
    dataset: PathBuf,
    /// VGG16 weights.
    #[arg(long, default_value = "checkpoints/vgg16.safetensors")]
    vgg: PathBuf,
    /// The style image.
    #[arg(long)]
    style: PathBuf,
    /// Shorter side the style image is resized to (default: its own size, as `train`).
    #[arg(long)]
    style_size: Option<u32>,
    #[arg(long, default_value_t = 256)]
    image_size: u32,
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// fp32, or bf16 / fp16 mixed precision (CUDA only, as `train`).
    #[arg(long, default_value = "fp32")]
    precision: Precision,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1e5)]
    content_weight: f64,
    #[arg(long, default_value_t = 1e10)]
    style_weight: f64,
    #[arg(long, default_value_t = 0.0)]
    tv_weight: f64,
    /// Adam's implementation: fused (libtorch's multi-tensor kernel, as `train`) or loop
    /// (one small operation at a time, the update of torch.optim.Adam's for-loop).
    #[arg(long, default_value = "fused", value_parser = ["fused", "loop"])]
    adam: String,
    /// Copy batches to CUDA from pageable memory, waiting (as before pinned copies).
    #[arg(long)]
    no_pin: bool,
}

#[derive(clap::Args, Debug)]
struct MakeDatasetArgs {
    /// Output folder (reused as is when it already holds the same set).
    #[arg(long)]
    out: PathBuf,
    /// Number of JPEGs.
    #[arg(long, default_value_t = 256)]
    count: usize,
    /// Photos to vary (crops, flips); synthetic pictures when absent or empty.
    #[arg(long)]
    from: Option<PathBuf>,
    /// Landscape width (every third picture is portrait, as in COCO).
    #[arg(long, default_value_t = 640)]
    width: u32,
    #[arg(long, default_value_t = 480)]
    height: u32,
    #[arg(long, default_value_t = 90)]
    quality: u8,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(clap::Args, Debug)]
struct SaveModelArgs {
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: i64,
}

fn main() {
    // `cargo bench` passes `--bench` to a harness-less benchmark; it means nothing here.
    let args = std::env::args().filter(|a| a != "--bench");
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Some(Command::Forward(a)) => forward(&a),
        Some(Command::Loader(a)) => loader(&a),
        Some(Command::TrainStep(a)) => train_step(&a),
        Some(Command::MakeDataset(a)) => make_dataset(&a),
        Some(Command::SaveModel(a)) => save_model(&a),
        None => forward(&ForwardArgs {
            sizes: "256,512".into(),
            device: DeviceChoice::Auto,
            precisions: "fp32".into(),
            repeat: 3,
            warmup: 1,
            checkpoint: None,
            seed: 0,
        }),
    };
    if let Err(e) = result {
        eprintln!("speed-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn emit(v: Value) {
    println!("{v}");
}

fn sync(device: Device) {
    if let Device::Cuda(n) = device {
        tch::Cuda::synchronize(n as i64);
    }
}

fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}"),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Parses `256` as 256×256 and `3840x2160` as width 3840, height 2160.
fn parse_size(s: &str) -> Result<(i64, i64)> {
    let s = s.trim();
    let parse = |t: &str| {
        t.trim()
            .parse::<i64>()
            .with_context(|| format!("bad size `{s}`"))
    };
    match s.split_once(['x', 'X']) {
        Some((w, h)) => Ok((parse(w)?, parse(h)?)),
        None => {
            let n = parse(s)?;
            Ok((n, n))
        }
    }
}

/// The message of a panic raised by a libtorch error (e.g. out of memory).
fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    let msg = p
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into());
    msg.lines().next().unwrap_or("").to_string()
}

fn forward(a: &ForwardArgs) -> Result<()> {
    let device = a.device.resolve()?;
    device::tune_for(device);
    let sizes = a
        .sizes
        .split(',')
        .map(parse_size)
        .collect::<Result<Vec<_>>>()?;
    let precisions = a
        .precisions
        .split(',')
        .map(|p| p.trim().parse::<Precision>().map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    if a.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    for precision in precisions {
        let base = json!({
            "bench": "forward", "impl": "faststyle", "device": device_name(device),
            "precision": precision.to_string(), "threads": tch::get_num_threads(),
            "repeat": a.repeat, "warmup": a.warmup,
        });
        let with = |extra: Value| {
            let mut v = base.clone();
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        if let Err(e) = precision.check_device(device) {
            for &(w, h) in &sizes {
                emit(with(
                    json!({"width": w, "height": h, "error": format!("{e:#}")}),
                ));
            }
            continue;
        }
        // As `infer` loads a model: float32 weights, converted to the precision.
        tch::manual_seed(a.seed);
        let mut vs = VarStore::new(device);
        let net = TransformerNet::new(&vs.root());
        if let Some(path) = &a.checkpoint {
            checkpoint::load_model(path, &vs)?;
        }
        if precision != Precision::Fp32 {
            vs.set_kind(precision.kind());
        }
        for &(w, h) in &sizes {
            let run = catch_unwind(AssertUnwindSafe(|| {
                let x = (Tensor::rand([1, 3, h, w], (Kind::Float, device)) * 255.0)
                    .to_kind(precision.kind());
                let mut times = Vec::with_capacity(a.repeat);
                tch::no_grad(|| {
                    for _ in 0..a.warmup {
                        let _ = net.forward(&x);
                    }
                    sync(device);
                    for _ in 0..a.repeat {
                        let t0 = Instant::now();
                        let y = net.forward(&x);
                        sync(device);
                        times.push(t0.elapsed().as_secs_f64() * 1e3);
                        drop(y);
                    }
                });
                times
            }));
            match run {
                Ok(mut times) => {
                    let min = times.iter().cloned().fold(f64::INFINITY, f64::min);
                    let rounded: Vec<f64> = times.iter().map(|t| (t * 1e3).round() / 1e3).collect();
                    let med = median(&mut times);
                    emit(with(
                        json!({"width": w, "height": h, "median_ms": med, "min_ms": min,
                                     "times_ms": rounded}),
                    ));
                }
                Err(p) => emit(with(
                    json!({"width": w, "height": h, "error": panic_message(p)}),
                )),
            }
        }
    }
    Ok(())
}

fn loader(a: &LoaderArgs) -> Result<()> {
    let dataset = Arc::new(Dataset::open(&a.dataset)?);
    let files = dataset.len();
    let config = LoaderConfig {
        batch_size: a.batch_size,
        image_size: a.image_size,
        seed: a.seed,
        prefetch: a.prefetch,
        threads: a.threads,
        ..Default::default()
    };
    let threads = config.threads();
    let mut loader = Loader::start(dataset, config, Position::default());
    let mut images = 0usize;
    let mut skipped = 0usize;
    let mut t0 = Instant::now();
    for i in 0..a.warmup + a.batches {
        if i == a.warmup {
            t0 = Instant::now();
            images = 0;
        }
        let batch = loader.next_batch()?;
        images += batch.images.size()[0] as usize;
        skipped += batch.skipped.len();
    }
    let elapsed = t0.elapsed().as_secs_f64();
    emit(json!({
        "bench": "loader", "impl": "faststyle", "image_size": a.image_size,
        "batch_size": a.batch_size, "batches": a.batches, "warmup": a.warmup,
        "prefetch": a.prefetch, "files": files, "threads": threads,
        "images": images, "seconds": elapsed, "images_per_s": images as f64 / elapsed,
        "skipped": skipped,
    }));
    Ok(())
}

fn losses_json(v: &[f64]) -> Value {
    json!({"content": v[0], "style": v[1], "tv": v[2], "total": v[3]})
}

fn train_step(a: &TrainStepArgs) -> Result<()> {
    let device = a.device.resolve()?;
    let precision = a.precision;
    precision.check_device(device)?;
    if a.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    // The set-up of train/trainer.rs, in the same order (the seed fixes the initial weights).
    device::tune_for(device);
    tch::manual_seed(a.seed as i64);
    let vs = VarStore::new(device);
    let net = TransformerNet::new(&vs.root());
    device::vars_channels_last(&vs);
    let vgg = Vgg16::load(&a.vgg, device)?;
    let dataset = Arc::new(Dataset::open(&a.dataset)?);
    let files = dataset.len();
    let style = data::load_style(&a.style, a.style_size)?.to_device(device);
    let style_grams = loss::style_targets(&vgg, &style);
    let mut adam = Adam::new(checkpoint::variables(&vs), a.lr);
    adam.fused = a.adam == "fused";
    let config = LoaderConfig {
        batch_size: a.batch_size,
        image_size: a.image_size,
        seed: a.seed,
        prefetch: 4,
        ..Default::default()
    };
    let mut loader = Loader::start(dataset, config, Position::default());
    let weights = LossWeights {
        content: a.content_weight,
        style: a.style_weight,
        tv: a.tv_weight,
        stability: 0.0,
        temporal: 0.0,
    };
    let mut scaler = LossScaler::new(precision);
    let stepper = Step {
        net: &net,
        vgg: &vgg,
        style_grams: &style_grams,
        style: 0,
        weights,
        precision,
        device,
        pinned_copies: !a.no_pin,
        draws: Default::default(),
        shard: None,
        balance: false,
    };
    // Losses stay on the device: no host synchronisation inside the timed steps.
    let mut sums = Tensor::zeros([4], (Kind::Float, device));
    let mut last = Tensor::zeros([4], (Kind::Float, device));
    let mut images = 0usize;
    let mut t0 = Instant::now();
    // On the CPU every operation finishes before the next starts, so each step can be timed
    // alone: the median resists a shared machine's bursts better than the mean.
    let mut step_ms = Vec::new();
    for i in 0..a.warmup + a.iterations {
        if i == a.warmup {
            sync(device);
            t0 = Instant::now();
            images = 0;
            let _ = sums.zero_();
        }
        let batch = loader.next_batch().context("no photo could be read")?;
        let step_start = Instant::now();
        let losses = stepper.run(&batch.images, &mut adam, &mut scaler)?;
        if device == Device::Cpu && i >= a.warmup {
            step_ms.push(step_start.elapsed().as_secs_f64() * 1e3);
        }
        last = Tensor::stack(
            &[&losses.content, &losses.style, &losses.tv, &losses.total],
            0,
        )
        .detach()
        .to_kind(Kind::Float);
        let _ = sums.g_add_(&last);
        images += batch.images.size()[0] as usize;
    }
    sync(device);
    let elapsed = t0.elapsed().as_secs_f64();
    let read = |t: &Tensor| -> Result<Vec<f64>> {
        Vec::<f64>::try_from(&t.to_kind(Kind::Double).to_device(Device::Cpu))
            .context("cannot read losses")
    };
    let mean = read(&(&sums / a.iterations as f64))?;
    let last = read(&last)?;
    let step_median = (!step_ms.is_empty()).then(|| median(&mut step_ms));
    let step_min = step_ms.first().copied();
    emit(json!({
        "bench": "train-step", "impl": "faststyle", "device": device_name(device),
        "precision": precision.to_string(), "adam": a.adam, "pinned": !a.no_pin, "image_size": a.image_size,
        "batch_size": a.batch_size, "iterations": a.iterations, "warmup": a.warmup,
        "steps": a.warmup + a.iterations, "seed": a.seed, "files": files,
        "threads": tch::get_num_threads(), "loader_threads": rayon::current_num_threads(),
        "images": images, "seconds": elapsed, "images_per_s": images as f64 / elapsed,
        "ms_per_step": elapsed * 1e3 / a.iterations as f64,
        "ms_per_step_median": step_median, "ms_per_step_min": step_min,
        "losses_last": losses_json(&last), "losses_mean_timed": losses_json(&mean),
        "skipped_updates": scaler.skipped, "retried_batches": scaler.retried,
    }));
    Ok(())
}

/// A crop of `src` with the aspect ratio w:h, at least 60% of the largest such crop.
fn random_crop(src: &RgbImage, w: u32, h: u32, rng: &mut ChaCha8Rng) -> RgbImage {
    let (sw, sh) = src.dimensions();
    let fit = (sw as f64 / w as f64).min(sh as f64 / h as f64);
    let scale = fit * rng.random_range(0.6..=1.0);
    let (cw, ch) = (
        ((w as f64 * scale) as u32).clamp(1, sw),
        ((h as f64 * scale) as u32).clamp(1, sh),
    );
    let x = rng.random_range(0..=sw - cw);
    let y = rng.random_range(0..=sh - ch);
    image::imageops::crop_imm(src, x, y, cw, ch).to_image()
}

/// A synthetic picture with some structure: gradients, waves, discs and grain.
fn synthetic(w: u32, h: u32, rng: &mut ChaCha8Rng) -> RgbImage {
    let c: [f32; 9] = std::array::from_fn(|_| rng.random_range(0.0..1.0));
    let discs: Vec<(f32, f32, f32, [u8; 3])> = (0..12)
        .map(|_| {
            (
                rng.random_range(0.0..w as f32),
                rng.random_range(0.0..h as f32),
                rng.random_range(10.0..(w.min(h) as f32 / 3.0)),
                [rng.random(), rng.random(), rng.random()],
            )
        })
        .collect();
    let mut noise = ChaCha8Rng::seed_from_u64(rng.random());
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        for &(cx, cy, r, col) in &discs {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            if dx * dx + dy * dy < r * r {
                let g: i16 = noise.random_range(-12..=12);
                return Rgb(col.map(|v| (v as i16 + g).clamp(0, 255) as u8));
            }
        }
        let px: [u8; 3] = std::array::from_fn(|k| {
            let v = 0.5
                + 0.3 * (fx * (2.0 + 8.0 * c[k])).sin() * (fy * (3.0 + 6.0 * c[k + 3])).cos()
                + 0.2 * (c[k + 6] - fy);
            let g: f32 = noise.random_range(-10.0..10.0);
            (v * 255.0 + g).clamp(0.0, 255.0) as u8
        });
        Rgb(px)
    })
}

fn make_dataset(a: &MakeDatasetArgs) -> Result<()> {
    let sources: Vec<RgbImage> = match &a.from {
        Some(dir) if dir.is_dir() => data::find_images(dir)?
            .iter()
            .filter_map(|p| data::decode_rgb(p).ok())
            .filter(|img| img.width() >= 64 && img.height() >= 64)
            .collect(),
        _ => Vec::new(),
    };
    let stamp = format!(
        "count={} size={}x{} quality={} seed={} sources={}\n",
        a.count,
        a.width,
        a.height,
        a.quality,
        a.seed,
        sources.len()
    );
    let stamp_path = a.out.join(".speed-bench-dataset");
    if std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str()) {
        emit(
            json!({"bench": "make-dataset", "out": a.out, "count": a.count, "reused": true,
                    "sources": sources.len()}),
        );
        return Ok(());
    }
    if a.out.exists() {
        std::fs::remove_dir_all(&a.out)
            .with_context(|| format!("{}: cannot clear", a.out.display()))?;
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("{}: cannot create", a.out.display()))?;
    let t0 = Instant::now();
    let bytes: Vec<u64> = (0..a.count)
        .into_par_iter()
        .map(|i| -> Result<u64> {
            let mut rng = ChaCha8Rng::seed_from_u64(a.seed.wrapping_mul(1_000_003) + i as u64);
            // COCO: mostly landscape 640×480, some portrait.
            let (w, h) = if i % 3 == 2 {
                (a.height, a.width)
            } else {
                (a.width, a.height)
            };
            let img = if sources.is_empty() {
                synthetic(w, h, &mut rng)
            } else {
                let crop = random_crop(&sources[i % sources.len()], w, h, &mut rng);
                let mut img =
                    image::imageops::resize(&crop, w, h, image::imageops::FilterType::Triangle);
                if rng.random_bool(0.5) {
                    image::imageops::flip_horizontal_in_place(&mut img);
                }
                img
            };
            let path = a.out.join(format!("{:012}.jpg", i));
            let mut buf = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, a.quality)
                .encode_image(&img)
                .context("cannot encode JPEG")?;
            std::fs::write(&path, &buf)
                .with_context(|| format!("{}: cannot write", path.display()))?;
            Ok(buf.len() as u64)
        })
        .collect::<Result<_>>()?;
    std::fs::write(&stamp_path, &stamp)?;
    let total: u64 = bytes.iter().sum();
    emit(json!({
        "bench": "make-dataset", "out": a.out, "count": a.count, "reused": false,
        "sources": sources.len(), "width": a.width, "height": a.height,
        "mean_kb": total as f64 / 1024.0 / a.count.max(1) as f64,
        "seconds": t0.elapsed().as_secs_f64(),
    }));
    Ok(())
}

fn save_model(a: &SaveModelArgs) -> Result<()> {
    tch::manual_seed(a.seed);
    let vs = VarStore::new(Device::Cpu);
    let _net = TransformerNet::new(&vs.root());
    let info = ModelInfo {
        style: "random".into(),
        styles: Vec::new(),
        iterations: 0,
        content_weight: 1e5,
        style_weight: 1e10,
        image_size: 256,
        ..Default::default()
    };
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    checkpoint::save_model(&a.out, &vs, &info, Kind::Float)?;
    emit(json!({"bench": "save-model", "out": a.out, "seed": a.seed}));
    Ok(())
}
