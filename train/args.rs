//! The command line of `train`, parsed in one place, and the run's configuration.
use crate::styles;
use anyhow::{bail, Result};
use clap::Parser;
use faststyle::device::{DeviceChoice, Precision};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Fit a fast style transfer network to one style image (Johnson et al. 2016), or to several
/// in one network (conditional instance norm, Dumoulin et al. 2017).
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Folder of training photos, walked recursively (e.g. COCO train2014).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// The style image; repeat it, or name a folder (its images sorted by name), to train
    /// several styles in one network.
    #[arg(long, value_name = "IMAGE|DIR")]
    pub style: Vec<PathBuf>,
    /// With --init: a style to add to that model (repeatable), training only the new styles'
    /// scales and shifts over its frozen network.
    #[arg(
        long,
        value_name = "IMAGE",
        requires = "init",
        conflicts_with = "style"
    )]
    pub add_style: Vec<PathBuf>,
    /// VGG16 weights (safetensors, torchvision names).
    #[arg(long, default_value = "checkpoints/vgg16.safetensors")]
    pub vgg: PathBuf,
    /// Folder for this run's style model and training state [default: checkpoints/NAME].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Folder for TensorBoard event files [default: runs/NAME].
    #[arg(long)]
    pub logdir: Option<PathBuf>,
    /// Name of the run and of its style model [default: the style image's file name; for
    /// several, the folder's name or the names joined by `+`].
    #[arg(long)]
    pub name: Option<String>,
    /// Passes over the dataset [default: 2].
    #[arg(long, conflicts_with = "iterations")]
    pub epochs: Option<u64>,
    /// Total iterations (batches), instead of --epochs.
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Photos per batch [default: 4].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Side of the square training crops [default: 256].
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Shorter side the style image is resized to [default: its own size].
    #[arg(long)]
    pub style_size: Option<u32>,
    /// Content loss weight [default: 1e5].
    #[arg(long)]
    pub content_weight: Option<f64>,
    /// Style loss weight [default: 1e10].
    #[arg(long)]
    pub style_weight: Option<f64>,
    /// Total-variation loss weight [default: 0].
    #[arg(long)]
    pub tv_weight: Option<f64>,
    /// Stability weight: output for a photo vs the same photo with noise (Gupta et al. 2017),
    /// against flicker in video [default: 0].
    #[arg(long)]
    pub stability_weight: Option<f64>,
    /// Adam learning rate [default: 1e-3; with --add-style, 1e-1].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of the initial weights and of the data order [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Save the style model and training state every N iterations (and at the end).
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_every: u64,
    /// Log losses every N iterations (each logged value is the mean since the last log).
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
    /// Log stylized sample images every N iterations.
    #[arg(long, default_value_t = 500)]
    pub image_every: u64,
    /// Start from an existing style model's weights (fine-tuning).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Continue an interrupted run: its output folder or its style model file.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// fp32, or bf16 / fp16 mixed precision (CUDA only).
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
}

impl Args {
    /// Parses the process's arguments (clap exits with a usage message on error).
    pub fn parse_args() -> Self {
        Self::parse()
    }
}

/// The configuration that defines a run; saved with its state so that a resume repeats it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    pub dataset: PathBuf,
    /// The style images, folders expanded (runs recorded before several styles: one path).
    #[serde(deserialize_with = "styles::one_or_many")]
    pub style: Vec<PathBuf>,
    /// Styles added to the `init` model (empty unless --add-style).
    #[serde(default)]
    pub add_style: Vec<PathBuf>,
    pub vgg: PathBuf,
    pub out: PathBuf,
    pub logdir: PathBuf,
    pub name: String,
    pub epochs: Option<u64>,
    pub iterations: Option<u64>,
    pub batch_size: usize,
    pub image_size: u32,
    pub style_size: Option<u32>,
    pub content_weight: f64,
    pub style_weight: f64,
    pub tv_weight: f64,
    // Absent from the configurations of runs recorded before the option existed.
    #[serde(default)]
    pub stability_weight: f64,
    pub lr: f64,
    pub seed: u64,
    pub init: Option<PathBuf>,
    pub checkpoint_every: u64,
    pub log_every: u64,
    pub image_every: u64,
    pub precision: String,
}

impl Config {
    /// A new run's configuration from the arguments and the defaults.
    pub fn from_args(args: &Args) -> Result<Self> {
        let Some(dataset) = args.dataset.clone() else {
            bail!("--dataset is required (or --resume PATH to continue a run)");
        };
        if args.style.is_empty() && args.add_style.is_empty() {
            bail!("--style is required (or --init MODEL --add-style IMAGE, or --resume PATH)");
        }
        let style = styles::expand(&args.style)?;
        let name = match &args.name {
            Some(n) => n.clone(),
            None => styles::default_run_name(&args.style, args.init.as_deref(), &args.add_style),
        };
        if name.is_empty() || name.contains(['/', '\\']) {
            bail!("--name `{name}` must be a plain file name");
        }
        let config = Self {
            out: args
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("checkpoints").join(&name)),
            logdir: args
                .logdir
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs").join(&name)),
            dataset,
            style,
            add_style: args.add_style.clone(),
            vgg: args.vgg.clone(),
            name,
            epochs: match args.iterations {
                Some(_) => None,
                None => Some(args.epochs.unwrap_or(2)),
            },
            iterations: args.iterations,
            batch_size: args.batch_size.unwrap_or(4),
            image_size: args.image_size.unwrap_or(256),
            style_size: args.style_size,
            content_weight: args.content_weight.unwrap_or(1e5),
            style_weight: args.style_weight.unwrap_or(1e10),
            tv_weight: args.tv_weight.unwrap_or(0.0),
            stability_weight: args.stability_weight.unwrap_or(0.0),
            lr: args.lr.unwrap_or(if args.add_style.is_empty() {
                1e-3
            } else {
                styles::ADD_STYLE_LR
            }),
            seed: args.seed.unwrap_or(42),
            init: args.init.clone(),
            checkpoint_every: args.checkpoint_every,
            log_every: args.log_every,
            image_every: args.image_every,
            precision: args.precision.to_string(),
        };
        config.validate()?;
        Ok(config)
    }

    /// A resumed run's configuration: the recorded one, with the run's length, intervals and
    /// precision taken from the arguments. Flags that would change the recipe are refused.
    pub fn for_resume(mut recorded: Self, args: &Args) -> Result<Self> {
        let fixed = [
            ("--dataset", args.dataset.is_some()),
            ("--style", !args.style.is_empty()),
            ("--add-style", !args.add_style.is_empty()),
            ("--name", args.name.is_some()),
            ("--out", args.out.is_some()),
            ("--batch-size", args.batch_size.is_some()),
            ("--image-size", args.image_size.is_some()),
            ("--style-size", args.style_size.is_some()),
            ("--content-weight", args.content_weight.is_some()),
            ("--style-weight", args.style_weight.is_some()),
            ("--tv-weight", args.tv_weight.is_some()),
            ("--stability-weight", args.stability_weight.is_some()),
            ("--lr", args.lr.is_some()),
            ("--seed", args.seed.is_some()),
            ("--init", args.init.is_some()),
        ];
        if let Some((flag, _)) = fixed.iter().find(|(_, given)| *given) {
            bail!("{flag} cannot be changed when resuming: the run keeps its recorded recipe");
        }
        if let Some(n) = args.iterations {
            recorded.iterations = Some(n);
            recorded.epochs = None;
        }
        if let Some(n) = args.epochs {
            recorded.epochs = Some(n);
            recorded.iterations = None;
        }
        if let Some(dir) = &args.logdir {
            recorded.logdir = dir.clone();
        }
        recorded.checkpoint_every = args.checkpoint_every;
        recorded.log_every = args.log_every;
        recorded.image_every = args.image_every;
        recorded.precision = args.precision.to_string();
        recorded.validate()?;
        Ok(recorded)
    }

    fn validate(&self) -> Result<()> {
        let positive = [
            ("--batch-size", self.batch_size as u64),
            ("--image-size", self.image_size as u64),
            ("--checkpoint-every", self.checkpoint_every),
            ("--log-every", self.log_every),
            ("--image-every", self.image_every),
            ("--epochs", self.epochs.unwrap_or(1)),
            ("--iterations", self.iterations.unwrap_or(1)),
            ("--style-size", self.style_size.unwrap_or(1) as u64),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
            bail!("{flag} must be at least 1");
        }
        for (flag, w) in [
            ("--content-weight", self.content_weight),
            ("--style-weight", self.style_weight),
            ("--tv-weight", self.tv_weight),
            ("--stability-weight", self.stability_weight),
        ] {
            if !(w >= 0.0 && w.is_finite()) {
                bail!("{flag} must be a finite number ≥ 0");
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("--lr must be a positive number");
        }
        Ok(())
    }
}
