//! The signals that stop a run at the end of its current step: Ctrl-C (SIGINT), and SIGTERM,
//! which Slurm and Kubernetes send before they kill a job. The step in progress finishes,
//! the run is saved and the exit code says which signal it was (130, 143).
use anyhow::Result;
use faststyle::interrupt::Interrupt;

/// Set once a signal asked the run to stop.
#[derive(Clone)]
pub struct Stop(Interrupt);

impl Stop {
    /// Installs the handlers of SIGINT and SIGTERM.
    pub fn install() -> Result<Self> {
        Interrupt::install("stopping after this step, then saving").map(Self)
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.0.requested()
    }

    /// The exit code of a run stopped this way: 130 after Ctrl-C, 143 after SIGTERM.
    pub fn exit_code(&self) -> u8 {
        self.0.exit_code()
    }
}
