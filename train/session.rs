//! Which run a command starts or continues: its configuration, its files and, when
//! resuming, the saved training state.
use crate::args::{Args, Config};
use crate::checkpointer::RunFiles;
use anyhow::{bail, Context, Result};
use faststyle::checkpoint::TrainState;

/// A run about to start: a new one, or a saved one to continue.
pub struct Session {
    /// The run's configuration (a resumed run's recorded one, updated by the arguments).
    pub config: Config,
    /// Its style model and state files.
    pub files: RunFiles,
    /// The saved state, when resuming.
    pub resumed: Option<TrainState>,
}

impl Session {
    /// The run that `args` name; a new run whose state already exists is refused.
    /// `--resume auto` resumes the run that the other arguments name when its state exists,
    /// and starts it otherwise.
    pub fn open(args: &Args) -> Result<Self> {
        if args.resume_auto() {
            let config = Config::from_args(args)?;
            let files = RunFiles::new(&config.out, &config.name);
            if files.state.exists() {
                return Self::resume(files, args);
            }
            return Ok(Self {
                config,
                files,
                resumed: None,
            });
        }
        match args.resume_path() {
            Some(path) => Self::resume(RunFiles::find(&path?)?, args),
            None => {
                let config = Config::from_args(args)?;
                let files = RunFiles::new(&config.out, &config.name);
                if files.state.exists() {
                    bail!(
                        "{} already holds run `{}`: add --resume to continue it, or choose another --name or --out",
                        config.out.display(),
                        config.name,
                    );
                }
                Ok(Self {
                    config,
                    files,
                    resumed: None,
                })
            }
        }
    }

    /// Continues the run of `files`.
    fn resume(files: RunFiles, args: &Args) -> Result<Self> {
        let state = TrainState::load(&files.state)?;
        let recorded: Config = serde_json::from_value(state.config.clone())
            .with_context(|| format!("{}: unreadable configuration", files.state.display()))?;
        let mut config = Config::for_resume(recorded, args)?;
        // Wherever the run folder is now (it may have moved since).
        if let Some(folder) = files.model.parent().filter(|p| p.is_dir()) {
            config.out = std::path::absolute(folder).unwrap_or(config.out);
        }
        Ok(Self {
            config,
            files,
            resumed: Some(state),
        })
    }

    /// Iterations already done.
    pub fn start_step(&self) -> u64 {
        self.resumed.as_ref().map_or(0, |s| s.step)
    }
}
