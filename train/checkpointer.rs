//! A run's files on disk: where its style model and training state live, how `--resume`
//! finds them, and saving the two at a step.
use crate::args::Config;
use anyhow::{bail, Context, Result};
use faststyle::checkpoint::{self, ModelInfo, TrainState};
use faststyle::data::Position;
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
}

impl RunFiles {
    /// The files of run `name` in folder `out`.
    pub fn new(out: &Path, name: &str) -> Self {
        let model = out.join(format!("{name}.safetensors"));
        Self {
            state: checkpoint::state_path(&model),
            model,
        }
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
            Ok(Self { model, state })
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
    /// A checkpointer for a run of `config` whose last save (or start) was at `saved_at`.
    pub fn new(files: RunFiles, info: ModelInfo, config: &Config, saved_at: u64) -> Result<Self> {
        Ok(Self {
            files,
            info,
            config: serde_json::to_value(config).context("cannot serialise configuration")?,
            saved_at,
        })
    }

    /// Saves the style model and the state of the run after `step` iterations, at `pos`.
    pub fn save(&mut self, vs: &VarStore, adam: &Adam, step: u64, pos: Position) -> Result<()> {
        let info = ModelInfo {
            iterations: step,
            ..self.info.clone()
        };
        checkpoint::save_model(&self.files.model, vs, &info, Kind::Float)?;
        let state = TrainState {
            tensors: Default::default(),
            step,
            epoch: pos.epoch,
            index: pos.index,
            config: self.config.clone(),
        };
        state.save(&self.files.state, &adam.state_tensors())?;
        self.saved_at = step;
        Ok(())
    }
}
