//! Quality measurements of style models (not tests): one JSON object per line on stdout.
//!
//! Built by `cargo bench --bench quality --no-run` (scripts/bench/quality_cpu.sh copies the binary
//! to `target/release/quality-bench`); driven by scripts/bench/quality_cpu.sh.
//!
//! ```text
//! quality-bench evaluate  --model M.safetensors --photos DIR --style NAME=IMAGE [--style …]
//!                         --vgg F --image-size S [--style-size N] [--content-weight F] [--style-weight F]
//! quality-bench step-time --photos DIR --style IMAGE --vgg F --image-size S --batch-size B
//!                         --iterations N --warmup K
//! ```
//! `evaluate` gives each named style's perceptual losses on held-out photos (centre crops
//! of S², as training sees them), exactly as `train` weighs them. `step-time` times whole
//! training steps of a fresh network against steps that train only an added style's scales
//! and shifts (as `train --add-style`), interleaved in the same process.
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use faststyle::checkpoint::{self, ModelFile};
use faststyle::data::{self, Dataset};
use faststyle::device::{DeviceChoice, Precision};
use faststyle::loss::{self, LossWeights};
use faststyle::optim::Adam;
use faststyle::styles::StyleChoice;
use faststyle::training::{LossScaler, Step};
use faststyle::transformer::TransformerNet;
use faststyle::vgg::Vgg16;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Quality measurements of style models; one JSON object per line on stdout.
#[derive(Parser, Debug)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Content and style losses of a model's styles on held-out photos.
    Evaluate(EvaluateArgs),
    /// Milliseconds of a full training step against a step that trains only added styles.
    StepTime(StepTimeArgs),
}

#[derive(clap::Args, Debug)]
struct EvaluateArgs {
    /// The style model.
    #[arg(long)]
    model: PathBuf,
    /// Folder of held-out photos, walked recursively.
    #[arg(long)]
    photos: PathBuf,
    /// A style of the model (name or index) and its style image, as NAME=IMAGE; repeatable.
    #[arg(long, required = true)]
    style: Vec<String>,
    #[arg(long, default_value = "checkpoints/vgg16.safetensors")]
    vgg: PathBuf,
    #[arg(long, default_value_t = 256)]
    image_size: u32,
    /// Shorter side the style images are resized to (as `train --style-size`).
    #[arg(long)]
    style_size: Option<u32>,
    #[arg(long, default_value_t = 1e5)]
    content_weight: f64,
    #[arg(long, default_value_t = 1e10)]
    style_weight: f64,
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

#[derive(clap::Args, Debug)]
struct StepTimeArgs {
    /// Folder of training photos (the first batch is reused).
    #[arg(long)]
    photos: PathBuf,
    #[arg(long)]
    style: PathBuf,
    #[arg(long)]
    style_size: Option<u32>,
    #[arg(long, default_value = "checkpoints/vgg16.safetensors")]
    vgg: PathBuf,
    #[arg(long, default_value_t = 256)]
    image_size: u32,
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Timed steps of each kind.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Untimed steps of each kind first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

fn main() {
    // `cargo bench` passes `--bench` to a harness-less benchmark; it means nothing here.
    let args = std::env::args().filter(|a| a != "--bench");
    let result = match Cli::parse_from(args).command {
        Some(Command::Evaluate(a)) => evaluate(&a),
        Some(Command::StepTime(a)) => step_time(&a),
        None => {
            eprintln!("quality-bench: give a subcommand (evaluate, step-time); see --help");
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The photos of a folder as one batch of centre crops (N×3×S×S, float, 0…255).
fn photo_batch(dir: &std::path::Path, size: u32, limit: usize) -> Result<Tensor> {
    let dataset = Dataset::open(dir)?;
    let mut crops = Vec::new();
    for path in dataset.files.iter().take(limit) {
        crops.push(data::load_photo(path, size).with_context(|| path.display().to_string())?);
    }
    let s = size as i64;
    Ok(Tensor::from_slice(&crops.concat())
        .view([crops.len() as i64, s, s, 3])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float))
}

fn evaluate(a: &EvaluateArgs) -> Result<()> {
    let device = a.device.resolve()?;
    let model = ModelFile::read(&a.model)?;
    let (_vs, net) = model.network(&a.model, device)?;
    let vgg = Vgg16::load(&a.vgg, device)?;
    let photos = photo_batch(&a.photos, a.image_size, usize::MAX)?.to_device(device);
    let weights = LossWeights {
        content: a.content_weight,
        style: a.style_weight,
        tv: 0.0,
        stability: 0.0,
        temporal: 0.0,
    };
    for spec in &a.style {
        let Some((key, image)) = spec.split_once('=') else {
            bail!("--style {spec}: expected NAME=IMAGE");
        };
        let choice: StyleChoice = key.parse().map_err(anyhow::Error::msg)?;
        let mix = choice
            .resolve(&model.styles)
            .with_context(|| a.model.display().to_string())?;
        let style = data::load_style(std::path::Path::new(image), a.style_size)?.to_device(device);
        let grams = loss::style_targets(&vgg, &style);
        let losses = tch::no_grad(|| {
            let y = net.forward_style(&photos, &mix);
            loss::perceptual_losses(&vgg, &photos, &y, &grams, weights)
        });
        println!(
            "{}",
            json!({
                "bench": "evaluate",
                "model": a.model,
                "style": key,
                "photos": photos.size()[0],
                "content": losses.content.double_value(&[]),
                "style_loss": losses.style.double_value(&[]),
                "total": losses.total.double_value(&[]),
            })
        );
    }
    Ok(())
}

/// A network of `styles` styles whose trainable variables are all of them, or (adding)
/// only the scales and shifts, with an Adam over them.
fn trainer(styles: usize, adding: bool, device: Device) -> (VarStore, TransformerNet, Adam) {
    let vs = VarStore::new(device);
    let net = TransformerNet::with_styles(&vs.root(), styles);
    faststyle::device::vars_channels_last(&vs);
    if adding {
        for (_, var) in vs.variables() {
            if var.dim() != 2 {
                let _ = var.set_requires_grad(false);
            }
        }
    }
    let params = checkpoint::variables(&vs)
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    (vs, net, Adam::new(params, 1e-3))
}

fn step_time(a: &StepTimeArgs) -> Result<()> {
    let device = a.device.resolve()?;
    faststyle::device::tune_for(device);
    tch::manual_seed(42);
    let vgg = Vgg16::load(&a.vgg, device)?;
    let style = data::load_style(&a.style, a.style_size)?.to_device(device);
    let grams = loss::style_targets(&vgg, &style);
    let batch = photo_batch(&a.photos, a.image_size, a.batch_size)?.to_kind(Kind::Uint8);
    let weights = LossWeights {
        content: 1e5,
        style: 1e10,
        tv: 0.0,
        stability: 0.0,
        temporal: 0.0,
    };
    // Full training of a one-style network; adding style 1 to a two-style one.
    let mut kinds = [
        ("full", trainer(1, false, device), 0usize, 0.0f64),
        ("add-style", trainer(2, true, device), 1usize, 0.0f64),
    ];
    let mut scaler = LossScaler::new(Precision::Fp32);
    for i in 0..a.warmup + a.iterations {
        for (_, (_, net, adam), row, seconds) in kinds.iter_mut() {
            let step = Step {
                net,
                vgg: &vgg,
                style_grams: &grams,
                style: *row,
                weights,
                precision: Precision::Fp32,
                device,
                pinned_copies: false,
                draws: Default::default(),
                shard: None,
                balance: false,
            };
            let t0 = Instant::now();
            let losses = step.run(&batch, adam, &mut scaler)?;
            let _ = losses.total.double_value(&[]);
            if i >= a.warmup {
                *seconds += t0.elapsed().as_secs_f64();
            }
        }
    }
    let ms = |s: f64| 1e3 * s / a.iterations as f64;
    for (name, _, _, seconds) in &kinds {
        println!(
            "{}",
            json!({"bench": "step-time", "kind": name, "ms_per_step": ms(*seconds),
                   "image_size": a.image_size, "batch_size": a.batch_size})
        );
    }
    println!(
        "{}",
        json!({"bench": "step-time", "add_over_full": kinds[1].3 / kinds[0].3})
    );
    Ok(())
}
