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
    /// The run's id, recorded in its style model and state so that a state is never paired
    /// with another run's model.
    pub run: String,
}

impl Session {
    /// The run that `args` name; a new run whose state already exists is refused.
    /// `--resume auto` resumes the run that the other arguments name when its state exists,
    /// and starts it otherwise. Only the process that `writes` (rank 0 of a data-parallel
    /// run) takes the run's lock and repairs its files; the others only read them.
    pub fn open(args: &Args, writes: bool) -> Result<Self> {
        if args.resume_auto() {
            let config = Config::from_args(args)?;
            let files = RunFiles::new(&config.out, &config.name);
            if files.state.exists() {
                return Self::resume(files, args, writes);
            }
            return Ok(Self {
                config,
                files,
                resumed: None,
                run: new_run_id(),
            });
        }
        match args.resume_path() {
            Some(path) => Self::resume(RunFiles::find(&path?)?, args, writes),
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
                    run: new_run_id(),
                })
            }
        }
    }

    /// Continues the run of `files`.
    fn resume(mut files: RunFiles, args: &Args, writes: bool) -> Result<Self> {
        if writes {
            files.claim()?;
        }
        let state = TrainState::load(&files.state)?;
        if writes {
            files.verify(&state)?;
        }
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
            // A state of an earlier version recorded none: the run gets one now.
            run: Some(state.run.clone())
                .filter(|r| !r.is_empty())
                .unwrap_or_else(new_run_id),
            resumed: Some(state),
        })
    }

    /// Iterations already done.
    pub fn start_step(&self) -> u64 {
        self.resumed.as_ref().map_or(0, |s| s.step)
    }
}

/// A new run's id: 64 random bits in hex.
fn new_run_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
