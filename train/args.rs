//! The command line of `train`, parsed in one place, and the run's configuration.
use crate::recipe::{self, Decay, Given, Recipe, RecipeName};
use crate::{resume, styles};
use anyhow::{anyhow, bail, Result};
use clap::Parser;
use faststyle::device::{DeviceChoice, Precision};
use faststyle::loss::LossWeights;
use faststyle::vgg;
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
    /// VGG16 weights (safetensors, torchvision names) [default: $FASTSTYLE_VGG16, else
    /// checkpoints/vgg16.safetensors in the current folder, in this repository, or in
    /// $XDG_DATA_HOME/faststyle (~/.local/share/faststyle)].
    #[arg(long)]
    pub vgg: Option<PathBuf>,
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
    /// Shorter side the style image is resized to [default: its own size]; with --preview,
    /// a list (256,512) previews each.
    #[arg(long, value_delimiter = ',', value_name = "N")]
    pub style_size: Vec<u32>,
    /// Content loss weight [default: 1e5]; with --preview, a list previews each.
    #[arg(long, value_delimiter = ',', value_name = "F")]
    pub content_weight: Vec<f64>,
    /// Style loss weight [default: 1e10]; with --preview, a list (3e9,1e10,3e10) previews each.
    #[arg(long, value_delimiter = ',', value_name = "F")]
    pub style_weight: Vec<f64>,
    /// Total-variation loss weight [default: 0].
    #[arg(long)]
    pub tv_weight: Option<f64>,
    /// Stability weight: output for a photo vs the same photo with noise (Gupta et al. 2017),
    /// against flicker in video [default: 0].
    #[arg(long)]
    pub stability_weight: Option<f64>,
    /// Temporal weight: output for a photo moved by a small random motion vs the output
    /// moved the same way (Wang et al. 2020), against texture that swims in video; with no
    /// number, the recommended weight (3e3) [default: 0].
    #[arg(long, value_name = "W", num_args = 0..=1, allow_negative_numbers = true)]
    pub temporal_weight: Option<Option<f64>>,
    /// Adam learning rate [default: 1e-3; with --add-style, 1e-1].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of the initial weights and of the data order [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Save the style model and training state every N iterations (and at the end)
    /// [default: 1000, or the resumed run's].
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Log losses every N iterations (each logged value is the mean since the last log)
    /// [default: 10, or the resumed run's].
    #[arg(long)]
    pub log_every: Option<u64>,
    /// Log stylized sample images every N iterations [default: 500, or the resumed run's].
    #[arg(long)]
    pub image_every: Option<u64>,
    /// Start from an existing style model's weights (fine-tuning).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Continue an interrupted run: its output folder or its style model file; with no
    /// value, the run that the other options name (--out, or --name / --style). `auto`:
    /// that run if its checkpoint exists, else start it, so that one command line serves the
    /// first start and every restart (a rerun job, torchrun --max-restarts).
    #[arg(long, value_name = "PATH|auto", num_args = 0..=1)]
    pub resume: Option<Option<PathBuf>>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Instead of training, optimise these photos' pixels against the same losses (Gatys et
    /// al.) at the training scale, to judge --style-weight and the sizes in minutes. Takes
    /// --style, the weights and --style-size (each a value or a list: every combination is
    /// previewed, in one labelled sheet), --image-size, --iterations (steps, default 300),
    /// --vgg, --device and --precision.
    #[arg(long, value_name = "PHOTO", num_args = 1.., conflicts_with_all = [
        "dataset", "resume", "init", "out", "logdir", "name", "epochs", "batch_size", "lr",
        "seed", "checkpoint_every", "image_every", "add_style", "stability_weight",
        "temporal_weight",
    ])]
    pub preview: Vec<PathBuf>,
    /// Where --preview writes its picture [default: PHOTO-preview.jpg beside the (first) photo].
    #[arg(short, long, value_name = "FILE", requires = "preview")]
    pub output: Option<PathBuf>,
    /// Data-parallel training (under torchrun or srun): seconds that meeting the other ranks,
    /// and then each collective, may take before the run stops with an error [default: 600].
    #[arg(long, value_name = "SECONDS")]
    pub dist_timeout: Option<u64>,
    /// fp32, or mixed precision: bf16 (CUDA, or a CPU with AVX-512 BF16 or AMX), fp16 (CUDA)
    /// [default: fp32, or the resumed run's].
    #[arg(long)]
    pub precision: Option<Precision>,
    /// The training recipe: `fast` (faststyle's: a higher peak lr after a warm-up, from
    /// checkpoints/base.safetensors where installed, several styles balanced) or `example`
    /// (the PyTorch example's, exactly) [default: fast, or the resumed run's].
    #[arg(long)]
    pub recipe: Option<RecipeName>,
    /// Fraction of the run over which the learning rate rises from 0 to --lr [default: the
    /// recipe's: example 0, fast 0.05].
    #[arg(long, value_name = "FRACTION")]
    pub warmup: Option<f64>,
    /// How the learning rate falls after the warm-up, to 0 at the run's end [default: the
    /// recipe's: none].
    #[arg(long)]
    pub decay: Option<Decay>,
    /// Progressive resizing: the first FRACTION of the run trains on crops of half
    /// --image-size [default: 0].
    #[arg(long, value_name = "FRACTION")]
    pub progressive: Option<f64>,
    /// Adam's β₁,β₂ [default: 0.9,0.999].
    #[arg(long, value_name = "B1,B2", value_parser = recipe::parse_betas)]
    pub betas: Option<[f64; 2]>,
    /// The network a new run starts from when --init is not given, or `none` for fresh
    /// weights [default: example none; fast checkpoints/base.safetensors, found as VGG16 is,
    /// else fresh weights].
    #[arg(long, value_name = "FILE|none")]
    pub base: Option<PathBuf>,
    /// Several styles: each batch trains on its loss divided by its own value (the gradient
    /// of its log), so that a style with larger losses does not set Adam's step sizes for
    /// the others; `--balance-styles false` turns it off [default: the recipe's: example off,
    /// fast on].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub balance_styles: Option<bool>,
    /// Random resized crops (25–100% of the centred square's area, aspect 3:4 to 4:3) and
    /// horizontal flips instead of centre crops, against overfitting small photo folders.
    #[arg(long)]
    pub augment: bool,
    /// Held-out photos for the `val/*` curves: a folder (photos of it inside --dataset are
    /// not trained on), or `none` [default: example none; fast 4 photos held out of datasets
    /// of 40 or more].
    #[arg(long, value_name = "DIR|none")]
    pub val: Option<PathBuf>,
    /// Log the held-out losses every N iterations (and at the end) [default: 500, or the
    /// resumed run's].
    #[arg(long)]
    pub val_every: Option<u64>,
}

impl Args {
    /// Parses the process's arguments (clap exits with a usage message on error).
    pub fn parse_args() -> Self {
        Self::parse()
    }

    /// The loss weights given, or the defaults (content 1e5, style 1e10, tv, stability and
    /// temporal 0).
    pub fn loss_weights(&self) -> Result<LossWeights> {
        let w = LossWeights {
            content: self.content_weight()?.unwrap_or(1e5),
            style: self.style_weight()?.unwrap_or(1e10),
            tv: self.tv_weight.unwrap_or(0.0),
            stability: self.stability_weight.unwrap_or(0.0),
            temporal: self.temporal_weight().unwrap_or(0.0),
        };
        for (flag, v) in [
            ("--content-weight", w.content),
            ("--style-weight", w.style),
            ("--tv-weight", w.tv),
            ("--stability-weight", w.stability),
            ("--temporal-weight", w.temporal),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                bail!("{flag} must be a finite number ≥ 0");
            }
        }
        Ok(w)
    }

    /// The --temporal-weight given (with no number: the recommended weight).
    fn temporal_weight(&self) -> Option<f64> {
        self.temporal_weight
            .map(|w| w.unwrap_or(faststyle::temporal::RECOMMENDED_WEIGHT))
    }

    /// The recipe settings given on the command line.
    pub fn recipe_given(&self) -> Given {
        Given {
            name: self.recipe,
            warmup: self.warmup,
            decay: self.decay,
            progressive: self.progressive,
            betas: self.betas,
            base: self.base.as_deref().map(recipe::file_or_none),
            balance_styles: self.balance_styles,
        }
    }

    /// `--val`: `Some(None)` for `--val none`.
    pub fn val_given(&self) -> Option<Option<PathBuf>> {
        self.val.as_deref().map(recipe::file_or_none)
    }

    /// `--content-weight` when training: one value at most.
    pub fn content_weight(&self) -> Result<Option<f64>> {
        one("--content-weight", &self.content_weight)
    }

    /// `--style-weight` when training: one value at most.
    pub fn style_weight(&self) -> Result<Option<f64>> {
        one("--style-weight", &self.style_weight)
    }

    /// `--style-size` when training: one value at most.
    pub fn style_size(&self) -> Result<Option<u32>> {
        one("--style-size", &self.style_size)
    }

    /// The run's name: --name, else one made from the style images (see `styles`).
    fn run_name(&self) -> Result<String> {
        let name = match &self.name {
            Some(n) => n.clone(),
            None if self.style.is_empty() && self.add_style.is_empty() => {
                bail!("--name or --style is needed to name the run")
            }
            None => styles::default_run_name(&self.style, self.init.as_deref(), &self.add_style),
        };
        if name.is_empty() || name.contains(['/', '\\']) {
            bail!("--name `{name}` must be a plain file name");
        }
        Ok(name)
    }

    /// The run's output folder: --out, else checkpoints/NAME.
    pub fn run_folder(&self) -> Result<PathBuf> {
        match &self.out {
            Some(out) => Ok(out.clone()),
            None => Ok(PathBuf::from("checkpoints").join(self.run_name()?)),
        }
    }

    /// Whether `--resume auto` was given: resume the named run if it exists, else start it.
    pub fn resume_auto(&self) -> bool {
        matches!(&self.resume, Some(Some(p)) if p.as_os_str() == "auto")
    }

    /// The bound on meeting the other ranks and on each collective of data-parallel training.
    pub fn dist_timeout(&self) -> std::time::Duration {
        match self.dist_timeout {
            Some(s) => std::time::Duration::from_secs(s.max(1)),
            None => crate::ranks::DEFAULT_TIMEOUT,
        }
    }

    /// What `--resume` names: its value, else the run that the other options name.
    pub fn resume_path(&self) -> Option<Result<PathBuf>> {
        let given = self.resume.as_ref()?;
        Some(match given {
            Some(path) => Ok(path.clone()),
            None => self.run_folder().map_err(|_| {
                anyhow!("--resume needs the run's folder (--resume checkpoints/NAME), or the options that named it (--out, --name or --style)")
            }),
        })
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
    #[serde(default)]
    pub temporal_weight: f64,
    pub lr: f64,
    pub seed: u64,
    pub init: Option<PathBuf>,
    pub checkpoint_every: u64,
    pub log_every: u64,
    pub image_every: u64,
    pub precision: String,
    /// The recipe and its settings (runs recorded before recipes existed: `example`).
    #[serde(default = "Recipe::example")]
    pub recipe: Recipe,
    /// Random resized crops and flips.
    #[serde(default)]
    pub augment: bool,
    /// The held-out photos of the `val/*` curves, and where they came from (`--val DIR`, or
    /// none: held out of the dataset).
    #[serde(default)]
    pub val: Option<PathBuf>,
    #[serde(default)]
    pub val_photos: Vec<PathBuf>,
    #[serde(default = "default_val_every")]
    pub val_every: u64,
}

fn default_val_every() -> u64 {
    500
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
        let name = args.run_name()?;
        let weights = args.loss_weights()?;
        let recipe = match &args.init {
            // --init (and --add-style, which needs it) gives the weights: no base to find.
            Some(_) => Recipe::new(&Given {
                base: Some(None),
                ..args.recipe_given()
            })?,
            None => Recipe::new(&args.recipe_given())?,
        };
        let dataset = absolute(dataset);
        let (val, val_photos) = crate::validate::choose(&dataset, args.val_given(), recipe.name)?;
        // Recorded absolute, so that the run resumes from any folder.
        let config = Self {
            out: absolute(args.run_folder()?),
            logdir: absolute(
                args.logdir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("runs").join(&name)),
            ),
            dataset,
            style: style.into_iter().map(absolute).collect(),
            add_style: args.add_style.iter().cloned().map(absolute).collect(),
            vgg: absolute(vgg::locate(args.vgg.as_deref())?),
            name,
            epochs: match args.iterations {
                Some(_) => None,
                None => Some(args.epochs.unwrap_or(2)),
            },
            iterations: args.iterations,
            batch_size: args
                .batch_size
                .unwrap_or(Recipe::default_batch_size(recipe.name)),
            image_size: args.image_size.unwrap_or(256),
            style_size: args.style_size()?,
            content_weight: weights.content,
            style_weight: weights.style,
            tv_weight: weights.tv,
            stability_weight: weights.stability,
            temporal_weight: weights.temporal,
            lr: args.lr.unwrap_or(if args.add_style.is_empty() {
                Recipe::default_lr(recipe.name)
            } else {
                styles::ADD_STYLE_LR
            }),
            seed: args.seed.unwrap_or(42),
            init: args.init.clone().map(absolute),
            checkpoint_every: args.checkpoint_every.unwrap_or(1000),
            log_every: args.log_every.unwrap_or(10),
            image_every: args.image_every.unwrap_or(500),
            precision: args.precision.unwrap_or_default().to_string(),
            recipe,
            augment: args.augment,
            val: val.map(absolute),
            val_photos,
            val_every: args.val_every.unwrap_or_else(default_val_every),
        };
        config.validate()?;
        Ok(config)
    }

    /// A resumed run's configuration: the recorded one, with the run's length, intervals,
    /// precision and file locations taken from the arguments where given. A recipe flag
    /// given again with its recorded value is accepted (so that the original command with
    /// `--resume` added works); a changed one is refused, naming both values.
    pub fn for_resume(mut recorded: Self, args: &Args) -> Result<Self> {
        let r = &recorded;
        resume::same_path("--dataset", &r.dataset, args.dataset.as_deref())?;
        if !args.style.is_empty() {
            resume::same_paths("--style", &r.style, &styles::expand(&args.style)?)?;
        }
        resume::same_paths("--add-style", &r.add_style, &args.add_style)?;
        resume::same_path("--out", &r.out, args.out.as_deref())?;
        resume::same_path_opt("--init", r.init.as_deref(), args.init.as_deref())?;
        resume::same("--name", &r.name, args.name.as_ref())?;
        resume::same("--batch-size", &r.batch_size, args.batch_size.as_ref())?;
        resume::same("--image-size", &r.image_size, args.image_size.as_ref())?;
        resume::same_opt("--style-size", r.style_size, args.style_size()?)?;
        resume::same(
            "--content-weight",
            &r.content_weight,
            args.content_weight()?.as_ref(),
        )?;
        resume::same(
            "--style-weight",
            &r.style_weight,
            args.style_weight()?.as_ref(),
        )?;
        resume::same("--tv-weight", &r.tv_weight, args.tv_weight.as_ref())?;
        resume::same(
            "--stability-weight",
            &r.stability_weight,
            args.stability_weight.as_ref(),
        )?;
        resume::same(
            "--temporal-weight",
            &r.temporal_weight,
            args.temporal_weight().as_ref(),
        )?;
        resume::same("--lr", &r.lr, args.lr.as_ref())?;
        resume::same("--seed", &r.seed, args.seed.as_ref())?;
        let rr = &r.recipe;
        resume::same("--recipe", &rr.name, args.recipe.as_ref())?;
        resume::same("--warmup", &rr.warmup, args.warmup.as_ref())?;
        resume::same("--decay", &rr.decay, args.decay.as_ref())?;
        resume::same("--progressive", &rr.progressive, args.progressive.as_ref())?;
        let betas = |b: &[f64; 2]| format!("{},{}", b[0], b[1]);
        resume::same(
            "--betas",
            &betas(&rr.betas),
            args.betas.as_ref().map(betas).as_ref(),
        )?;
        resume::same(
            "--balance-styles",
            &rr.balance_styles,
            args.balance_styles.as_ref(),
        )?;
        if let Some(base) = args.recipe_given().base {
            resume::same_or_none("--base", rr.base.as_deref(), base.as_deref())?;
        }
        if args.augment && !r.augment {
            resume::same("--augment", &false, Some(&true))?;
        }
        if let Some(val) = args.val_given() {
            resume::same_or_none("--val", r.val.as_deref(), val.as_deref())?;
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
            recorded.logdir = absolute(dir.clone());
        }
        // The weights may have moved since the run started: --vgg, else the recorded file,
        // else the usual search.
        recorded.vgg = match &args.vgg {
            Some(path) => absolute(vgg::locate(Some(path))?),
            None if recorded.vgg.is_file() => recorded.vgg,
            None => vgg::locate(None)?,
        };
        let keep = |given: Option<u64>, recorded: u64| given.unwrap_or(recorded);
        recorded.checkpoint_every = keep(args.checkpoint_every, recorded.checkpoint_every);
        recorded.log_every = keep(args.log_every, recorded.log_every);
        recorded.image_every = keep(args.image_every, recorded.image_every);
        recorded.val_every = keep(args.val_every, recorded.val_every);
        if let Some(p) = args.precision {
            recorded.precision = p.to_string();
        }
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
            ("--val-every", self.val_every),
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
            ("--temporal-weight", self.temporal_weight),
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

/// The one value a training flag may take (lists are for --preview).
fn one<T: Copy>(flag: &str, values: &[T]) -> Result<Option<T>> {
    match values {
        [] => Ok(None),
        [v] => Ok(Some(*v)),
        _ => bail!("{flag} takes one value when training (a list is for --preview)"),
    }
}

/// The path made absolute against the current folder (unchanged if that fails).
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}
