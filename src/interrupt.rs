//! Ctrl-C (SIGINT) and SIGTERM, which cluster schedulers send before SIGKILL: the first asks
//! the work to stop at its next safe point (which saves what it has), a second one ends the
//! process at once.
use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

/// The stop request of a run, set by the first SIGINT or SIGTERM (or by the run itself).
#[derive(Clone)]
pub struct Interrupt {
    stop: Arc<AtomicBool>,
    signal: Arc<AtomicI32>,
}

impl Interrupt {
    /// Catches SIGINT and SIGTERM from now on. The first prints `what` (what happens now,
    /// e.g. "finishing the images in progress") and sets the stop flag; a second one exits
    /// at once with 128 + its number.
    pub fn install(what: &'static str) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicI32::new(0));
        let mut signals =
            Signals::new([SIGINT, SIGTERM]).context("cannot install the signal handlers")?;
        let (s, flag) = (Arc::clone(&signal), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if s.swap(sig, Ordering::SeqCst) != 0 {
                        eprintln!("\n{}: stopping at once", name(sig));
                        std::process::exit(128 + sig);
                    }
                    flag.store(true, Ordering::SeqCst);
                    // On a terminal a progress bar holds the current line.
                    let newline = if crate::progress::interactive() {
                        "\n"
                    } else {
                        ""
                    };
                    eprintln!("{newline}{}: {what} (again to stop at once)", name(sig));
                }
            })
            .context("cannot start the signal thread")?;
        Ok(Self { stop, signal })
    }

    /// Whether a stop was asked for (by a signal, or by [`Interrupt::stop`]).
    pub fn requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The flag that [`Interrupt::requested`] reads, for work that polls a flag.
    pub fn flag(&self) -> &AtomicBool {
        &self.stop
    }

    /// Asks the work to stop without a signal (a full disk, say).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether a signal (not the run itself) asked for the stop.
    pub fn signalled(&self) -> bool {
        self.signal.load(Ordering::SeqCst) != 0
    }

    /// The exit code after a signal's stop: 128 + the signal (130 for SIGINT, 143 for
    /// SIGTERM), as shells report a process that the signal ended.
    pub fn exit_code(&self) -> u8 {
        match self.signal.load(Ordering::SeqCst) {
            0 => 1,
            sig => (128 + sig) as u8,
        }
    }
}

fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "interrupted (Ctrl-C)",
        SIGTERM => "terminated (SIGTERM)",
        _ => "signal",
    }
}
