//! A run's files on disk: where its style model and training state live, how `--resume`
//! finds them and checks that they belong together, and saving the two at a step.
//!
//! A save writes the style model, then the training state, each to a temporary name renamed
//! into place. The state's rename is the commit: the state holds the weights and the model's
//! checksum, so a kill between the two renames (a model one step ahead) is found on resume
//! and the model written again from the state.
use crate::args::Config;
use anyhow::{bail, Context, Result};
use faststyle::checkpoint::{self, ModelInfo, TrainState, CHECKSUM_KEY};
use faststyle::data::Position;
use faststyle::fsutil::{self, Lock};
use faststyle::optim::Adam;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::Kind;

/// The files of a run: its style model and, beside it, its training state.
pub struct RunFiles {
    /// The style model, `NAME.safetensors`.
    pub model: PathBuf,
    /// The training state beside it, `NAME.state.safetensors`.
    pub state: PathBuf,
    /// The run's lock, once taken (see [`RunFiles::claim`]).
    lock: Option<Lock>,
}

impl RunFiles {
    /// The files of run `name` in folder `out`.
    pub fn new(out: &Path, name: &str) -> Self {
        let model = out.join(format!("{name}.safetensors"));
        Self::of_model(model)
    }

    fn of_model(model: PathBuf) -> Self {
        Self {
            state: checkpoint::state_path(&model),
            model,
            lock: None,
        }
    }

    /// Takes the run's lock (`.NAME.lock` beside the model; one process trains a run at a
    /// time) and removes the temporary files that a killed save left.
    pub fn claim(&mut self) -> Result<()> {
        if self.lock.is_some() {
            return Ok(());
        }
        let stem = self
            .model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = self.model.with_file_name(format!(".{stem}.lock"));
        let Some(lock) = Lock::take(&path)? else {
            bail!(
                "{}: run `{stem}` is being trained by another process (it holds {})",
                self.model.display(),
                path.display()
            );
        };
        // Only the lock's holder writes these files: any temporary file of theirs is a
        // killed save's.
        fsutil::remove_stale_temps(&self.model);
        fsutil::remove_stale_temps(&self.state);
        self.lock = Some(lock);
        Ok(())
    }

    /// Checks that the style model beside `state` is the one saved with it. A model that a
    /// save cut short left ahead of the state, or a damaged one, is written again from the
    /// state's weights; a model of another run, or none, is refused.
    pub fn verify(&self, state: &TrainState) -> Result<()> {
        if state.weights.is_empty() {
            return Ok(()); // a state of an earlier version: the model holds the weights
        }
        let (model, state_path) = (&self.model, &self.state);
        if !model.exists() {
            bail!(
                "{}: its style model {} is missing (moved or deleted?); put it back beside the \
                 state to resume",
                state_path.display(),
                model.display()
            );
        }
        let why = match checkpoint::read(model) {
            Ok(file) => {
                let meta = &file.metadata;
                if meta.get("run") != Some(&state.run) {
                    bail!(
                        "{}: a training state of another run than {} (run {}, the model's {}); \
                         resume with the state saved beside that model",
                        state_path.display(),
                        model.display(),
                        state.run,
                        meta.get("run").map_or("not recorded", String::as_str)
                    );
                }
                if meta.get(CHECKSUM_KEY) == Some(&state.model_sha256) {
                    return Ok(());
                }
                match meta.get("iterations") {
                    Some(it) if *it != state.step.to_string() => {
                        format!("is from iteration {it}, a save cut short after it")
                    }
                    _ => "differs from the one saved with the state".to_string(),
                }
            }
            Err(err) => format!("is damaged ({err:#})"),
        };
        eprintln!(
            "note: {} {why}; written again from the training state (iteration {})",
            model.display(),
            state.step
        );
        state.write_model(model)
    }

    /// Finds the run that `--resume PATH` names: a run folder or a style model file.
    pub fn find(path: &Path) -> Result<Self> {
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
            Ok(Self::of_model(model))
        }
    }
}

/// Saves a run's style model and training state.
pub struct Checkpointer {
    /// Where they go.
    pub files: RunFiles,
    /// What the model records about its making; `iterations` is set at each save.
    info: ModelInfo,
    /// The run's configuration, recorded in the state.
    config: serde_json::Value,
    /// The last step saved.
    pub saved_at: u64,
}

impl Checkpointer {
    /// A checkpointer for a run of `config` whose last save (or start) was at `saved_at`;
    /// `claim`: take the run's lock (the process that saves: rank 0 of a data-parallel run).
    pub fn new(
        mut files: RunFiles,
        info: ModelInfo,
        config: &Config,
        saved_at: u64,
        claim: bool,
    ) -> Result<Self> {
        if claim {
            files.claim()?;
        }
        Ok(Self {
            files,
            info,
            config: serde_json::to_value(config).context("cannot serialise configuration")?,
            saved_at,
        })
    }

    /// Saves the style model and the state of the run after `step` iterations, at `pos`:
    /// the model first, then the state that commits the pair.
    pub fn save(&mut self, vs: &VarStore, adam: &Adam, step: u64, pos: Position) -> Result<()> {
        let info = ModelInfo {
            iterations: step,
            ..self.info.clone()
        };
        let weights = checkpoint::variables(vs);
        let model_metadata = info.metadata();
        let model_sha256 =
            checkpoint::write_summed(&self.files.model, &weights, &model_metadata, Kind::Float)?;
        let state = TrainState {
            tensors: Default::default(),
            weights: Default::default(),
            step,
            epoch: pos.epoch,
            index: pos.index,
            config: self.config.clone(),
            run: info.run.clone(),
            model_sha256,
            model_metadata,
        };
        state.save(&self.files.state, &adam.state_tensors(), &weights)?;
        self.saved_at = step;
        Ok(())
    }
}
