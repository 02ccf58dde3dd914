//! The training run: its parts set up, then the loop of steps, with logs, sample images
//! and checkpoints at their intervals, until the schedule ends or a signal stops it.
use crate::args::{Args, Config};
use crate::checkpointer::Checkpointer;
use crate::feed::Feed;
use crate::launch::Launch;
use crate::logger::Logger;
use crate::meter::Meter;
use crate::ranks::{Ranks, Round};
use crate::samples;
use crate::schedule::Schedule;
use crate::session::Session;
use crate::signals::Stop;
use crate::styles::{self, Styles};
use crate::validate::{self, Validation};
use anyhow::{Context, Result};
use faststyle::checkpoint::{self, ModelInfo};
use faststyle::conditional::StyleMix;
use faststyle::data::{self, Batch, Dataset, LoaderConfig, Position};
use faststyle::device::{self, Precision};
use faststyle::fsutil;
use faststyle::loss::{self, LossWeights};
use faststyle::optim::Adam;
use faststyle::temporal::Draws;
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
/// Started by a launcher, this process first meets the others (data-parallel training).
pub fn run(args: Args) -> Result<ExitCode> {
    let launch = Launch::from_env()?;
    let device = Ranks::device(args.device, launch.as_ref())?;
    let ranks = Ranks::join(launch, device, args.dist_timeout())?;
    run_rank(&args, device, &ranks).map_err(|e| ranks.explain(e))
}

/// This rank's run, once the ranks have met.
fn run_rank(args: &Args, device: Device, ranks: &Ranks) -> Result<ExitCode> {
    let session = Session::open(args, ranks.writes())?;
    ranks.check_batch(session.config.batch_size)?;
    ranks.check_same_run(session.start_step(), fingerprint(&session.config)?)?;
    let precision: Precision = session
        .config
        .precision
        .parse()
        .map_err(anyhow::Error::msg)?;
    precision.check_device(device)?;
    let stop = Stop::install()?;
    let mut trainer = Trainer::new(session, device, precision, ranks)?;
    if let Err(err) = trainer.train(&stop) {
        return Err(trainer.failed(err));
    }
    trainer.finish(&stop)
}

/// A hash of the run's configuration, the same on every rank given the same run.
fn fingerprint(config: &Config) -> Result<u64> {
    let json = serde_json::to_string(config).context("cannot serialise configuration")?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&json, &mut hasher);
    Ok(std::hash::Hasher::finish(&hasher))
}

/// Everything a run holds while it trains.
struct Trainer<'r> {
    /// The processes of a data-parallel run (or this one alone).
    ranks: &'r Ranks,
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
    feed: Feed,
    /// The held-out photos of the `val/*` curves, when the run has some.
    validation: Option<Validation>,
    /// The phase the progress bar names (`128 px warm-up`).
    phase: String,
    /// The photos shown as stylized samples (none on ranks that do not write).
    samples: Option<Tensor>,
    step: u64,
    start_step: u64,
    pos: Position,
    /// Unreadable photos, each reported once though every epoch meets it again.
    skipped: HashSet<PathBuf>,
    started: Instant,
    /// Set when the ranks agreed to stop (a signal) after the step just done: the exit code
    /// they agreed on (one process: its own signal's).
    stopped: Option<u8>,
}

impl<'r> Trainer<'r> {
    /// Sets up the network, the loss network, the style targets, the optimizer, the logs and
    /// the data loader of a new or resumed run; only rank 0 writes anything.
    fn new(
        session: Session,
        device: Device,
        precision: Precision,
        ranks: &'r Ranks,
    ) -> Result<Self> {
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
        let dataset = Dataset::open(&config.dataset)?;
        let dataset = Arc::new(validate::training_set(
            dataset,
            &config.val_photos,
            &config.dataset,
        )?);
        let mut style_images = Vec::new();
        let mut style_grams = Vec::new();
        for (_, path) in &styles.trained {
            let style = data::load_style(path, config.style_size)?.to_device(device);
            style_grams.push(loss::style_targets(&vgg, &style));
            style_images.push(style);
        }

        let writes = ranks.writes();
        if writes {
            std::fs::create_dir_all(&config.out).with_context(|| {
                format!("{}: cannot create output folder", config.out.display())
            })?;
        }
        let trainable = styles::trainable(&vs);
        // Every rank starts from rank 0's weights, and averages its gradients with the others'.
        ranks.share_weights(&checkpoint::variables(&vs))?;
        ranks.reduce_gradients(&trainable)?;
        let mut adam = Adam::new(trainable, config.lr);
        adam.set_betas(config.recipe.betas);
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

        let mut logger = if writes {
            let logger = Logger::new(&config.logdir, schedule.total, start_step)?;
            let config_json =
                serde_json::to_string_pretty(&config).context("cannot serialise configuration")?;
            fsutil::write_atomic(&config.logdir.join("config.json"), config_json.as_bytes())?;
            logger
        } else {
            Logger::quiet(ranks.rank())
        };
        logger.say(&format!(
            "training `{}` ({}) on {} photos from {} on {} ({precision}){}, {} iterations{}",
            config.name,
            styles.describe(),
            dataset.len(),
            config.dataset.display(),
            device::describe(device),
            match ranks.world() {
                _ if !ranks.distributed() => String::new(),
                1 => " in a data-parallel group of 1 process".to_string(),
                n => format!(" × {n} data-parallel processes"),
            },
            schedule.total,
            if start_step > 0 {
                format!(", resuming at {start_step}")
            } else {
                String::new()
            }
        ));
        logger.say(&format!("VGG16 weights: {}", config.vgg.display()));
        logger.say(&format!(
            "recipe: {}{}",
            config.recipe.describe(config.lr),
            if config.augment {
                ", augmented crops"
            } else {
                ""
            }
        ));
        let validation = Validation::load(&config, device)?;
        validate::announce(validation.as_ref(), &config, &logger);

        let samples = if writes {
            Some(first_samples(
                &mut logger,
                &dataset,
                &config,
                &styles,
                &style_images,
                device,
                start_step,
            )?)
        } else {
            None
        };

        let loader_config = LoaderConfig {
            batch_size: config.batch_size,
            image_size: config.image_size,
            seed: config.seed,
            prefetch: 4,
            augment: config.augment,
            pin_memory: device.is_cuda().then_some(device),
            ..Default::default()
        };
        let feed = Feed::new(dataset, loader_config, ranks.slice());
        let weights = LossWeights {
            content: config.content_weight,
            style: config.style_weight,
            tv: config.tv_weight,
            stability: config.stability_weight,
            temporal: config.temporal_weight,
        };
        let info = model_info(&config, &styles, start_step, run);
        let checkpointer = Checkpointer::new(files, info, &config, start_step, writes)?;
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
            feed,
            validation,
            phase: String::new(),
            samples,
            step: start_step,
            start_step,
            pos,
            skipped: HashSet::new(),
            started: Instant::now(),
            stopped: None,
            ranks,
            config,
        })
    }

    /// Trains until the schedule ends or `stop` is requested, logging and saving on the way.
    /// The ranks of a data-parallel run agree before each step on its photos and on stopping.
    fn train(&mut self, stop: &Stop) -> Result<()> {
        let alone = !self.ranks.distributed();
        while !self.schedule.done(self.step, self.pos) && self.stopped.is_none() {
            if alone && stop.requested() {
                break;
            }
            let phase = self.schedule.phase(self.step);
            if phase != self.phase {
                self.logger.set_phase(&phase, self.step);
                self.phase = phase;
            }
            let batch = self.next_batch()?;
            let round = self.ranks.round(batch.images.size()[0] as usize, stop)?;
            if round.photos == 0 {
                // Not one photo of this global batch could be read, on any rank.
                self.pos = batch.next;
                self.stopped = round.stop;
                continue;
            }
            self.train_step(&batch, &round)?;
            self.stopped = self.ranks.stopping(&round, stop);
            let last = self.schedule.done(self.step, self.pos) || self.stopped.is_some();
            self.after_step(last)?;
        }
        self.feed.stop();
        self.logger.bar.finish_and_clear();
        Ok(())
    }

    /// The loader's next batch, its unreadable photos reported (each once).
    fn next_batch(&mut self) -> Result<Batch> {
        let size = self.schedule.crop_size(self.step);
        let batch = self.feed.next(self.pos, size).with_context(|| {
            format!("{}: no photo could be read", self.config.dataset.display())
        })?;
        for (path, reason) in &batch.skipped {
            if self.skipped.insert(path.clone()) {
                self.logger
                    .warn(&format!("{}: skipped: {reason}", path.display()));
            }
        }
        Ok(batch)
    }

    /// One update on `batch` (this rank's part of the global batch of `round`), in the style
    /// whose turn it is.
    fn train_step(&mut self, batch: &Batch, round: &Round) -> Result<()> {
        let k = self.styles.turn(self.config.seed, self.step);
        let photos = batch.images.size()[0];
        // A rank left without photos (the end of an epoch) still takes part, at weight 0.
        let images = if photos == 0 {
            let s = self.schedule.crop_size(self.step) as i64;
            Tensor::zeros([1, 3, s, s], (tch::Kind::Uint8, Device::Cpu))
        } else {
            batch.images.shallow_clone()
        };
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
            draws: Draws {
                seed: self.config.seed,
                step: self.step,
                first_photo: batch.offset as u64,
            },
            shard: self.ranks.shard(batch, round),
            balance: self.config.recipe.balance_styles && self.styles.trained.len() > 1,
        };
        let losses = stepper.run(&images, &mut self.adam, &mut self.scaler)?;
        self.meter.add(&losses, k, photos as u64);
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
            let totals = self
                .meter
                .totals(step, &self.checkpointer.files.model, self.ranks)?;
            if log_due {
                // The epoch of the batch just trained (the position may already be the next).
                let epoch = match self.pos {
                    Position { epoch, index: 0 } => epoch.saturating_sub(1),
                    Position { epoch, .. } => epoch,
                };
                let lr = self.adam.lr;
                self.logger
                    .losses(step, epoch, totals.means, totals.images_per_sec, lr)?;
                if self.styles.names.len() > 1 {
                    for (k, mean) in totals.per_style {
                        let tag = format!("loss/style/{}", self.trained_name(k));
                        self.logger.scalar(&tag, mean, step)?;
                    }
                }
                self.meter.reset();
            }
        }
        if let Some(samples) = self.samples.as_ref() {
            if step.is_multiple_of(self.config.image_every) || last {
                for (k, (row, _)) in self.styles.trained.iter().enumerate() {
                    let style = StyleMix::One(*row);
                    let stylized = tch::no_grad(|| self.net.forward_style(samples, &style));
                    let tag = sample_tag(&self.styles, "samples/stylized", k);
                    samples::log_batch(&mut self.logger, &stylized, &tag, step)?;
                }
            }
        }
        if self.ranks.writes() && (step.is_multiple_of(self.config.val_every) || last) {
            self.validate(step)?;
        }
        if checkpoint_due {
            self.save()?;
        }
        Ok(())
    }

    /// Saves the style model and training state at the current step (rank 0 alone).
    fn save(&mut self) -> Result<()> {
        if self.ranks.writes() {
            self.checkpointer
                .save(&self.vs, &self.adam, self.step, self.pos)?;
        }
        Ok(())
    }

    /// Logs the held-out losses, when the run has held-out photos.
    fn validate(&mut self, step: u64) -> Result<()> {
        let Some(val) = &self.validation else {
            return Ok(());
        };
        let scored = validate::Scored {
            net: &self.net,
            vgg: &self.vgg,
            styles: &self.styles,
            style_grams: &self.style_grams,
            weights: self.weights,
        };
        val.log(&scored, step, &mut self.logger)
    }

    /// The error that ended the run; after a full or read-only disk, with how to resume
    /// once space is freed (the steps since the last checkpoint saved first, if the
    /// checkpoint's disk still takes them: the logs may be elsewhere).
    fn failed(mut self, err: anyhow::Error) -> anyhow::Error {
        self.feed.stop();
        self.logger.bar.finish_and_clear();
        // A data-parallel rank other than 0 writes nothing: its error is never the disk's.
        if !self.ranks.writes() || !fsutil::is_disk_unusable(&err) {
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
        let writes = self.ranks.writes();
        if !self.skipped.is_empty() {
            self.logger.note(&format!(
                "skipped {} unreadable photo(s)",
                self.skipped.len()
            ));
        }
        if writes && (self.scaler.retried > 0 || self.scaler.skipped > 0) {
            eprintln!(
                "fp16 loss scaling: {} batch(es) tried again at a lower scale, {} update(s) skipped",
                self.scaler.retried, self.scaler.skipped
            );
        }
        // One process alone may also have broken out of the loop on its own signal.
        let alone = !self.ranks.distributed() && stop.requested();
        let stopped = self.stopped.or(alone.then(|| stop.exit_code()));
        if let Some(code) = stopped {
            if self.step > self.checkpointer.saved_at {
                self.save()?;
            }
            // Every rank leaves once rank 0 has saved.
            self.ranks.barrier()?;
            let files = &self.checkpointer.files;
            if !writes {
            } else if self.step == self.start_step {
                eprintln!("interrupted before the first iteration; nothing new to save");
            } else {
                eprintln!(
                    "interrupted at iteration {}; saved {}",
                    self.step,
                    files.model.display()
                );
            }
            if writes && files.state.exists() {
                eprintln!("resume with: train --resume {}", self.config.out.display());
            }
            return Ok(ExitCode::from(code));
        }
        self.ranks.barrier()?;
        if writes {
            eprintln!(
                "saved style model {} ({} iterations, {:.1} s)",
                self.checkpointer.files.model.display(),
                self.step,
                self.started.elapsed().as_secs_f64()
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The photos shown as stylized samples, logged with the style images when the run is new.
fn first_samples(
    logger: &mut Logger,
    dataset: &Dataset,
    config: &Config,
    styles: &Styles,
    style_images: &[Tensor],
    device: Device,
    start_step: u64,
) -> Result<Tensor> {
    let samples = samples::sample_batch(dataset, config)?.to_device(device);
    if start_step == 0 {
        samples::log_batch(logger, &samples, "samples/input", 0)?;
        for (k, style) in style_images.iter().enumerate() {
            let tag = sample_tag(styles, "style", k);
            samples::log_style(logger, style, &tag, config.image_size)?;
        }
    }
    Ok(samples)
}

/// The style model's metadata, as of iteration `start_step`.
fn model_info(config: &Config, styles: &Styles, start_step: u64, run: String) -> ModelInfo {
    let several = styles.names.len() > 1;
    ModelInfo {
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
        recipe: Some(crate::recipe::metadata(config)),
        run,
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
