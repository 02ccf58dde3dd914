//! The training run: its parts set up, then the loop of steps, with logs, sample images
//! and checkpoints at their intervals, until the schedule ends or a signal stops it.
use crate::args::{Args, Config};
use crate::checkpointer::Checkpointer;
use crate::logger::Logger;
use crate::meter::Meter;
use crate::samples;
use crate::schedule::Schedule;
use crate::session::Session;
use crate::signals::Stop;
use crate::styles::{self, Styles};
use anyhow::{Context, Result};
use faststyle::checkpoint::ModelInfo;
use faststyle::conditional::StyleMix;
use faststyle::data::{self, Batch, Dataset, Loader, LoaderConfig, Position};
use faststyle::device::{self, Precision};
use faststyle::fsutil;
use faststyle::loss::{self, LossWeights};
use faststyle::optim::Adam;
use faststyle::training::{LossScaler, Step};
use faststyle::transformer::TransformerNet;
use faststyle::vgg::Vgg16;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// Runs `train`; the exit code is the stop signal's when interrupted (the run can be resumed).
pub fn run(args: Args) -> Result<ExitCode> {
    let device = args.device.resolve()?;
    let session = Session::open(&args)?;
    let precision: Precision = session
        .config
        .precision
        .parse()
        .map_err(anyhow::Error::msg)?;
    precision.check_device(device)?;
    let stop = Stop::install()?;
    let mut trainer = Trainer::new(session, device, precision)?;
    if let Err(err) = trainer.train(&stop) {
        return Err(trainer.failed(err));
    }
    trainer.finish(&stop)
}

/// Everything a run holds while it trains.
struct Trainer {
    config: Config,
    device: Device,
    precision: Precision,
    vs: VarStore,
    net: TransformerNet,
    vgg: Vgg16,
    styles: Styles,
    /// Gram targets of each trained style, in `styles.trained` order.
    style_grams: Vec<[Tensor; 4]>,
    weights: LossWeights,
    adam: Adam,
    scaler: LossScaler,
    schedule: Schedule,
    meter: Meter,
    logger: Logger,
    checkpointer: Checkpointer,
    loader: Option<Loader>,
    /// The photos shown as stylized samples.
    samples: Tensor,
    step: u64,
    start_step: u64,
    pos: Position,
    /// Unreadable photos, each reported once though every epoch meets it again.
    skipped: HashSet<PathBuf>,
    started: Instant,
}

impl Trainer {
    /// Sets up the network, the loss network, the style targets, the optimizer, the logs and
    /// the data loader of a new or resumed run.
    fn new(session: Session, device: Device, precision: Precision) -> Result<Self> {
        let start_step = session.start_step();
        let Session {
            config,
            files,
            resumed,
            run,
        } = session;
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
        let schedule = Schedule::new(&config, dataset.len());

        let mut logger = Logger::new(&config.logdir, schedule.total, start_step)?;
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
            schedule.total,
            if start_step > 0 {
                format!(", resuming at {start_step}")
            } else {
                String::new()
            }
        ));
        logger.say(&format!("VGG16 weights: {}", config.vgg.display()));

        let samples = samples::sample_batch(&dataset, &config)?.to_device(device);
        if start_step == 0 {
            samples::log_batch(&mut logger, &samples, "samples/input", 0)?;
            for (k, style) in style_images.iter().enumerate() {
                let tag = sample_tag(&styles, "style", k);
                samples::log_style(&mut logger, style, &tag, config.image_size)?;
            }
        }

        let loader_config = LoaderConfig {
            batch_size: config.batch_size,
            image_size: config.image_size,
            seed: config.seed,
            prefetch: 4,
        };
        let loader = Loader::start(dataset, loader_config, pos);
        let weights = LossWeights {
            content: config.content_weight,
            style: config.style_weight,
            tv: config.tv_weight,
            stability: config.stability_weight,
        };
        let several = styles.names.len() > 1;
        let info = ModelInfo {
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
            iterations: start_step,
            content_weight: config.content_weight,
            style_weight: config.style_weight,
            image_size: config.image_size,
            run,
        };
        let checkpointer = Checkpointer::new(files, info, &config, start_step)?;
        Ok(Self {
            meter: Meter::new(styles.trained.len(), device),
            scaler: LossScaler::new(precision),
            device,
            precision,
            vs,
            net,
            vgg,
            styles,
            style_grams,
            weights,
            adam,
            schedule,
            logger,
            checkpointer,
            loader: Some(loader),
            samples,
            step: start_step,
            start_step,
            pos,
            skipped: HashSet::new(),
            started: Instant::now(),
            config,
        })
    }

    /// Trains until the schedule ends or `stop` is requested, logging and saving on the way.
    fn train(&mut self, stop: &Stop) -> Result<()> {
        while !self.schedule.done(self.step, self.pos) && !stop.requested() {
            let batch = self.next_batch()?;
            self.train_step(&batch)?;
            let last = self.schedule.done(self.step, self.pos) || stop.requested();
            self.after_step(last)?;
        }
        self.loader.take();
        self.logger.bar.finish_and_clear();
        Ok(())
    }

    /// The loader's next batch, its unreadable photos reported (each once).
    fn next_batch(&mut self) -> Result<Batch> {
        let loader = self.loader.as_mut().context("the data loader is stopped")?;
        let batch = loader.next_batch().with_context(|| {
            format!("{}: no photo could be read", self.config.dataset.display())
        })?;
        for (path, reason) in &batch.skipped {
            if self.skipped.insert(path.clone()) {
                self.logger
                    .say(&format!("warning: {}: skipped: {reason}", path.display()));
            }
        }
        Ok(batch)
    }

    /// One update on `batch`, in the style whose turn it is.
    fn train_step(&mut self, batch: &Batch) -> Result<()> {
        let k = self.styles.turn(self.config.seed, self.step);
        self.adam.lr = self.schedule.lr(self.step);
        let stepper = Step {
            net: &self.net,
            vgg: &self.vgg,
            style_grams: &self.style_grams[k],
            style: self.styles.trained[k].0,
            weights: self.weights,
            precision: self.precision,
            device: self.device,
            pinned_copies: true,
        };
        let losses = stepper.run(&batch.images, &mut self.adam, &mut self.scaler)?;
        self.meter.add(&losses, k, batch.images.size()[0] as u64);
        self.step += 1;
        self.pos = batch.next;
        self.logger.bar.set_position(self.step);
        Ok(())
    }

    /// The logs, sample images and checkpoint due after a step (all of them after the last).
    fn after_step(&mut self, last: bool) -> Result<()> {
        let step = self.step;
        let log_due = step.is_multiple_of(self.config.log_every) || last;
        let checkpoint_due = step.is_multiple_of(self.config.checkpoint_every) || last;
        if log_due || checkpoint_due {
            // Read before any save, so that a NaN never overwrites the last good checkpoint.
            let means = self.meter.means(step, &self.checkpointer.files.model)?;
            if log_due {
                // The epoch of the batch just trained (the position may already be the next).
                let epoch = match self.pos {
                    Position { epoch, index: 0 } => epoch.saturating_sub(1),
                    Position { epoch, .. } => epoch,
                };
                let lr = self.adam.lr;
                self.logger
                    .losses(step, epoch, means, self.meter.rate(), lr)?;
                if self.styles.names.len() > 1 {
                    for (k, mean) in self.meter.per_style()? {
                        let tag = format!("loss/style/{}", self.trained_name(k));
                        self.logger.scalar(&tag, mean, step)?;
                    }
                }
                self.meter.reset();
            }
        }
        if step.is_multiple_of(self.config.image_every) || last {
            for (k, (row, _)) in self.styles.trained.iter().enumerate() {
                let style = StyleMix::One(*row);
                let stylized = tch::no_grad(|| self.net.forward_style(&self.samples, &style));
                let tag = sample_tag(&self.styles, "samples/stylized", k);
                samples::log_batch(&mut self.logger, &stylized, &tag, step)?;
            }
        }
        if checkpoint_due {
            self.checkpointer
                .save(&self.vs, &self.adam, step, self.pos)?;
        }
        Ok(())
    }

    /// The error that ended the run; after a full or read-only disk, with how to resume
    /// once space is freed (the steps since the last checkpoint saved first, if the
    /// checkpoint's disk still takes them: the logs may be elsewhere).
    fn failed(mut self, err: anyhow::Error) -> anyhow::Error {
        self.loader.take();
        self.logger.bar.finish_and_clear();
        if !fsutil::is_disk_unusable(&err) {
            return err;
        }
        let files = &self.checkpointer.files;
        let in_checkpoint = err.chain().any(|e| {
            e.downcast_ref::<fsutil::WriteError>()
                .is_some_and(|w| w.path == files.model || w.path == files.state)
        });
        if !in_checkpoint && self.step > self.checkpointer.saved_at {
            let _ = self
                .checkpointer
                .save(&self.vs, &self.adam, self.step, self.pos);
        }
        let how = match self.checkpointer.saved_at {
            0 => "nothing is saved yet; free space, then start the run again".to_string(),
            saved => format!(
                "the run is saved at iteration {saved}; free space, then resume with: train \
                 --resume {}",
                self.config.out.display()
            ),
        };
        anyhow::anyhow!("{err:#}\n{how}")
    }

    /// The name of trained style `k`.
    fn trained_name(&self, k: usize) -> &str {
        &self.styles.names[self.styles.trained[k].0]
    }

    /// Reports how the run ended; an interrupted run is saved and says how to resume.
    fn finish(mut self, stop: &Stop) -> Result<ExitCode> {
        if !self.skipped.is_empty() {
            eprintln!("skipped {} unreadable photo(s)", self.skipped.len());
        }
        if self.scaler.retried > 0 || self.scaler.skipped > 0 {
            eprintln!(
                "fp16 loss scaling: {} batch(es) tried again at a lower scale, {} update(s) skipped",
                self.scaler.retried, self.scaler.skipped
            );
        }
        let files = &self.checkpointer.files;
        if stop.requested() {
            if self.step > self.checkpointer.saved_at {
                self.checkpointer
                    .save(&self.vs, &self.adam, self.step, self.pos)?;
            }
            let files = &self.checkpointer.files;
            if self.step == self.start_step {
                eprintln!("interrupted before the first iteration; nothing new to save");
            } else {
                eprintln!(
                    "interrupted at iteration {}; saved {}",
                    self.step,
                    files.model.display()
                );
            }
            if files.state.exists() {
                eprintln!("resume with: train --resume {}", self.config.out.display());
            }
            return Ok(ExitCode::from(stop.exit_code()));
        }
        eprintln!(
            "saved style model {} ({} iterations, {:.1} s)",
            files.model.display(),
            self.step,
            self.started.elapsed().as_secs_f64()
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// The TensorBoard tag of trained style `k`'s images: `{base}` for a one-style network,
/// `samples/NAME` (or `style/NAME`) for several.
fn sample_tag(styles: &Styles, base: &str, k: usize) -> String {
    if styles.names.len() > 1 {
        let prefix = base.split('/').next().unwrap_or(base);
        format!("{prefix}/{}", styles.names[styles.trained[k].0])
    } else {
        base.to_string()
    }
}
