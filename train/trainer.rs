//! The training run: set-up, the loop, checkpoints, logging, interruption and resume.
use crate::args::{Args, Config};
use crate::logger::{Logger, LossMeans};
use crate::styles;
use anyhow::{bail, Context, Result};
use faststyle::checkpoint::{self, ModelInfo, TrainState};
use faststyle::conditional::StyleMix;
use faststyle::data::{self, Dataset, Loader, LoaderConfig, Position};
use faststyle::device::{self, Precision};
use faststyle::fsutil;
use faststyle::imageio;
use faststyle::loss::{self, LossWeights};
use faststyle::optim::Adam;
use faststyle::training::{LossScaler, Step};
use faststyle::vgg::Vgg16;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Photos shown as stylized samples in TensorBoard.
const SAMPLES: usize = 4;

/// The files of a run: its style model and, beside it, its training state.
struct RunFiles {
    model: PathBuf,
    state: PathBuf,
}

impl RunFiles {
    fn new(out: &Path, name: &str) -> Self {
        let model = out.join(format!("{name}.safetensors"));
        Self {
            state: checkpoint::state_path(&model),
            model,
        }
    }

    /// Finds the run that `--resume PATH` names: a run folder or a style model file.
    fn find(path: &Path) -> Result<Self> {
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .with_context(|| format!("{}: cannot read folder", path.display()))?;
            let mut states = Vec::new();
            for entry in entries {
                let p = entry
                    .with_context(|| format!("{}: cannot read folder", path.display()))?
                    .path();
                if p.to_string_lossy().ends_with(".state.safetensors") {
                    states.push(p);
                }
            }
            match states.as_slice() {
                [state] => {
                    let name = state.file_name().unwrap_or_default().to_string_lossy();
                    let stem = name.trim_end_matches(".state.safetensors");
                    Ok(Self::new(path, stem))
                }
                [] => bail!(
                    "{}: no training state (*.state.safetensors) to resume from",
                    path.display()
                ),
                _ => bail!(
                    "{}: several training states; pass the style model file to resume",
                    path.display()
                ),
            }
        } else {
            let model = path.to_path_buf();
            let state = checkpoint::state_path(&model);
            if !state.exists() {
                bail!(
                    "{}: no training state beside it ({} is missing)",
                    path.display(),
                    state.display()
                );
            }
            Ok(Self { model, state })
        }
    }
}

/// Runs `train`; the exit code is 130 when interrupted (the run can be resumed).
pub fn run(args: Args) -> Result<ExitCode> {
    let device = args.device.resolve()?;
    let (config, files, resumed) = match args.resume_path() {
        Some(path) => {
            let files = RunFiles::find(&path?)?;
            let state = TrainState::load(&files.state)?;
            let recorded: Config = serde_json::from_value(state.config.clone())
                .with_context(|| format!("{}: unreadable configuration", files.state.display()))?;
            let mut config = Config::for_resume(recorded, &args)?;
            // Wherever the run folder is now (it may have moved since).
            if let Some(folder) = files.model.parent().filter(|p| p.is_dir()) {
                config.out = std::path::absolute(folder).unwrap_or(config.out);
            }
            (config, files, Some(state))
        }
        None => {
            let config = Config::from_args(&args)?;
            let files = RunFiles::new(&config.out, &config.name);
            if files.state.exists() {
                bail!(
                    "{} already holds run `{}`: add --resume to continue it, or choose another --name or --out",
                    config.out.display(),
                    config.name,
                );
            }
            (config, files, None)
        }
    };
    let precision: Precision = config.precision.parse().map_err(anyhow::Error::msg)?;
    precision.check_device(device)?;

    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("cannot install the Ctrl-C handler")?;

    device::tune_for(device);
    tch::manual_seed(config.seed as i64);
    let resume_from = resumed.as_ref().map(|_| files.model.as_path());
    let (vs, net, styles) = styles::network(&config, resume_from, device)?;
    device::vars_channels_last(&vs);
    let vgg = Vgg16::load(&config.vgg, device)?;
    let dataset = Arc::new(Dataset::open(&config.dataset)?);
    let mut style_images = Vec::new();
    let mut style_grams = Vec::new();
    for (_, path) in &styles.trained {
        let style = data::load_style(path, config.style_size)?.to_device(device);
        style_grams.push(loss::style_targets(&vgg, &style));
        style_images.push(style);
    }
    // With several styles, TensorBoard shows each under its name.
    let several = styles.names.len() > 1;
    let trained_name = |k: usize| styles.names[styles.trained[k].0].clone();

    std::fs::create_dir_all(&config.out)
        .with_context(|| format!("{}: cannot create output folder", config.out.display()))?;
    let mut adam = Adam::new(styles::trainable(&vs), config.lr);
    let mut pos = Position::default();
    if let Some(state) = &resumed {
        adam.load_state(&state.tensors)
            .with_context(|| format!("{}: bad training state", files.state.display()))?;
        pos = Position {
            epoch: state.epoch,
            index: state.index,
        };
    }
    let start_step = resumed.as_ref().map_or(0, |s| s.step);
    let mut step = start_step;
    let batches_per_epoch = dataset.len().div_ceil(config.batch_size) as u64;
    let total = config
        .iterations
        .unwrap_or_else(|| config.epochs.unwrap_or(1) * batches_per_epoch);

    let mut logger = Logger::new(&config.logdir, total, start_step)?;
    let config_json =
        serde_json::to_string_pretty(&config).context("cannot serialise configuration")?;
    fsutil::write_atomic(&config.logdir.join("config.json"), config_json.as_bytes())?;
    logger.say(&format!(
        "training `{}` ({}) on {} photos from {} on {} ({precision}), {} iterations{}",
        config.name,
        styles.describe(),
        dataset.len(),
        config.dataset.display(),
        device::describe(device),
        total,
        if start_step > 0 {
            format!(", resuming at {start_step}")
        } else {
            String::new()
        }
    ));
    logger.say(&format!("VGG16 weights: {}", config.vgg.display()));

    let samples = sample_batch(&dataset, &config)?.to_device(device);
    if start_step == 0 {
        log_samples(&mut logger, &samples, "samples/input", 0);
        let s = config.image_size;
        for (k, style) in style_images.iter().enumerate() {
            let img = imageio::from_tensor(style)?;
            let bytes = data::square_crop(&img, s, &mut fast_image_resize::Resizer::new())?;
            let tag = if several {
                format!("style/{}", trained_name(k))
            } else {
                "style".to_string()
            };
            logger.image(&tag, &bytes, s as usize, 0);
        }
    }

    let loader_config = LoaderConfig {
        batch_size: config.batch_size,
        image_size: config.image_size,
        seed: config.seed,
        prefetch: 4,
    };
    let mut loader = Loader::start(dataset.clone(), loader_config, pos);
    let weights = LossWeights {
        content: config.content_weight,
        style: config.style_weight,
        tv: config.tv_weight,
        stability: config.stability_weight,
    };
    let info = |step| ModelInfo {
        style: styles.trained[0]
            .1
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        styles: if several {
            styles.names.clone()
        } else {
            Vec::new()
        },
        iterations: step,
        content_weight: config.content_weight,
        style_weight: config.style_weight,
        image_size: config.image_size,
    };
    let save = |adam: &Adam, step: u64, pos: Position| -> Result<()> {
        checkpoint::save_model(&files.model, &vs, &info(step), Kind::Float)?;
        let state = TrainState {
            tensors: Default::default(),
            step,
            epoch: pos.epoch,
            index: pos.index,
            config: serde_json::to_value(&config).context("cannot serialise configuration")?,
        };
        state.save(&files.state, &adam.state_tensors())
    };

    let mut scaler = LossScaler::new(precision);
    let mut sums = Tensor::zeros([5], (Kind::Float, device));
    // Style loss sums and batch counts of each trained style since the last log.
    let mut style_sums = Tensor::zeros([styles.trained.len() as i64], (Kind::Float, device));
    let mut style_counts = vec![0u64; styles.trained.len()];
    let mut since_log = 0u64;
    let mut images_since_log = 0u64;
    let mut log_clock = Instant::now();
    // Each unreadable photo is reported once, though every epoch meets it again.
    let mut skipped = std::collections::HashSet::new();
    let started = Instant::now();
    let mut saved_at = start_step;
    let done = |step: u64, pos: Position| match config.iterations {
        Some(n) => step >= n,
        None => pos.epoch >= config.epochs.unwrap_or(1),
    };
    while !done(step, pos) {
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
        let batch = loader
            .next_batch()
            .with_context(|| format!("{}: no photo could be read", config.dataset.display()))?;
        for (path, reason) in batch.skipped {
            if !skipped.contains(&path) {
                logger.say(&format!("warning: {}: skipped: {reason}", path.display()));
                skipped.insert(path);
            }
        }
        let k = styles.turn(config.seed, step);
        let stepper = Step {
            net: &net,
            vgg: &vgg,
            style_grams: &style_grams[k],
            style: styles.trained[k].0,
            weights,
            precision,
            device,
            pinned_copies: true,
        };
        let losses = stepper.run(&batch.images, &mut adam, &mut scaler)?;
        let _ = style_sums
            .get(k as i64)
            .g_add_(&losses.style.detach().to_kind(Kind::Float));
        style_counts[k] += 1;
        step += 1;
        let epoch = if batch.next.index == 0 {
            batch.next.epoch - 1
        } else {
            batch.next.epoch
        };
        pos = batch.next;
        let _ = sums.g_add_(
            &Tensor::stack(
                &[
                    &losses.content,
                    &losses.style,
                    &losses.tv,
                    &losses.total,
                    &losses.stability,
                ],
                0,
            )
            .detach()
            .to_kind(Kind::Float),
        );
        since_log += 1;
        images_since_log += batch.images.size()[0] as u64;
        logger.bar.set_position(step);

        let last = done(step, pos) || interrupted.load(Ordering::SeqCst);
        let checkpoint_due = step % config.checkpoint_every == 0 || last;
        if step % config.log_every == 0 || last || checkpoint_due {
            let v = Vec::<f64>::try_from(
                &(&sums / since_log as f64)
                    .to_kind(Kind::Double)
                    .to_device(Device::Cpu),
            )
            .context("cannot read losses")?;
            if v.iter().any(|l| !l.is_finite()) {
                bail!(
                    "the loss became {} by step {step}; stopped without saving (the last good checkpoint, if any, is {}). Try a lower --lr or other loss weights",
                    if v.iter().any(|l| l.is_nan()) { "NaN" } else { "infinite" },
                    files.model.display()
                );
            }
            if step % config.log_every == 0 || last {
                let rate = images_since_log as f64 / log_clock.elapsed().as_secs_f64().max(1e-9);
                let means = LossMeans {
                    content: v[0],
                    style: v[1],
                    tv: v[2],
                    total: v[3],
                    stability: v[4],
                };
                logger.losses(step, epoch, means, rate, config.lr);
                if several {
                    let per_style = Vec::<f64>::try_from(
                        &style_sums.to_kind(Kind::Double).to_device(Device::Cpu),
                    )
                    .context("cannot read losses")?;
                    for (k, count) in style_counts.iter_mut().enumerate() {
                        if *count > 0 {
                            let tag = format!("loss/style/{}", trained_name(k));
                            logger.scalar(&tag, per_style[k] / *count as f64, step);
                        }
                        *count = 0;
                    }
                }
                let _ = style_sums.zero_();
                let _ = sums.zero_();
                since_log = 0;
                images_since_log = 0;
                log_clock = Instant::now();
            }
        }
        if step % config.image_every == 0 || last {
            for (k, (row, _)) in styles.trained.iter().enumerate() {
                let style = StyleMix::One(*row);
                let stylized = tch::no_grad(|| net.forward_style(&samples, &style));
                let tag = if several {
                    format!("samples/{}", trained_name(k))
                } else {
                    "samples/stylized".to_string()
                };
                log_samples(&mut logger, &stylized, &tag, step);
            }
        }
        if checkpoint_due {
            save(&adam, step, pos)?;
            saved_at = step;
        }
    }
    drop(loader);
    logger.bar.finish_and_clear();
    if !skipped.is_empty() {
        eprintln!("skipped {} unreadable photo(s)", skipped.len());
    }
    if scaler.retried > 0 || scaler.skipped > 0 {
        eprintln!(
            "fp16 loss scaling: {} batch(es) tried again at a lower scale, {} update(s) skipped",
            scaler.retried, scaler.skipped
        );
    }
    if interrupted.load(Ordering::SeqCst) {
        if step > saved_at {
            save(&adam, step, pos)?;
        }
        if step == start_step {
            eprintln!("interrupted before the first iteration; nothing new to save");
        } else {
            eprintln!(
                "interrupted at iteration {step}; saved {}",
                files.model.display()
            );
        }
        if files.state.exists() {
            eprintln!("resume with: train --resume {}", config.out.display());
        }
        return Ok(ExitCode::from(130));
    }
    eprintln!(
        "saved style model {} ({} iterations, {:.1} s)",
        files.model.display(),
        step,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// The first few readable photos of the dataset, as training crops, for sample images.
fn sample_batch(dataset: &Dataset, config: &Config) -> Result<Tensor> {
    let mut crops = Vec::new();
    for path in &dataset.files {
        if crops.len() == SAMPLES {
            break;
        }
        match data::load_photo(path, config.image_size) {
            Ok(pixels) => crops.push(pixels),
            // The loader meets it too, and reports it once.
            Err(_) => continue,
        }
    }
    if crops.is_empty() {
        bail!("{}: no photo could be read", config.dataset.display());
    }
    let s = config.image_size as i64;
    Ok(Tensor::from_slice(&crops.concat())
        .view([crops.len() as i64, s, s, 3])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float))
}

/// Logs each image of a batch (N×3×S×S, 0…255) as `{tag}/{i}`.
fn log_samples(logger: &mut Logger, batch: &Tensor, tag: &str, step: u64) {
    let side = batch.size()[2] as usize;
    let hwc = batch
        .detach()
        .clamp(0.0, 255.0)
        .round()
        .to_kind(Kind::Uint8)
        .permute([0, 2, 3, 1])
        .contiguous()
        .to_device(Device::Cpu);
    for i in 0..hwc.size()[0] {
        let img = hwc.get(i);
        let n = img.numel();
        let mut bytes = vec![0u8; n];
        img.copy_data_u8(&mut bytes, n);
        logger.image(&format!("{tag}/{i}"), &bytes, side, step);
    }
}
