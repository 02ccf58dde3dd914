//! Where a run reports: TensorBoard event files, and the terminal (a bar, or plain lines).
//! A failed write of the event file is an error naming it (a full disk stops the run, which
//! then saves and says how to resume).
use crate::events::EventFile;
use crate::meter::LossMeans;
use anyhow::Result;
use faststyle::fsutil;
use indicatif::ProgressBar;
use std::path::Path;
use tensorboard_rs::summary;

/// The run's TensorBoard writer and terminal output.
pub struct Logger {
    /// None on the quiet ranks of a data-parallel run.
    writer: Option<EventFile>,
    pub bar: ProgressBar,
    interactive: bool,
    /// `rank N: ` before a quiet rank's warnings.
    prefix: String,
}

impl Logger {
    /// Opens (creates) `logdir`; a resumed run adds a new event file beside the old ones.
    pub fn new(logdir: &Path, total: u64, start: u64) -> Result<Self> {
        fsutil::create_dir_all(logdir)?;
        let bar = faststyle::progress::bar(total, "it");
        bar.set_position(start);
        bar.reset_eta();
        Ok(Self {
            writer: Some(EventFile::create(logdir)?),
            bar,
            interactive: faststyle::progress::interactive(),
            prefix: String::new(),
        })
    }

    /// The logger of a data-parallel rank other than 0: no files, no bar, no lines but its
    /// warnings (prefixed with its rank).
    pub fn quiet(rank: usize) -> Self {
        Self {
            writer: None,
            bar: ProgressBar::hidden(),
            interactive: false,
            prefix: format!("rank {rank}: "),
        }
    }

    /// Whether this logger writes anything but warnings.
    fn is_quiet(&self) -> bool {
        self.writer.is_none()
    }

    /// Logs the losses and throughput of step `step`.
    pub fn losses(
        &mut self,
        step: u64,
        epoch: u64,
        m: LossMeans,
        images_per_sec: f64,
        lr: f64,
    ) -> Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        for (tag, v) in [
            ("loss/content", m.content),
            ("loss/style", m.style),
            ("loss/tv", m.tv),
            ("loss/total", m.total),
            ("loss/stability", m.stability),
            ("loss/temporal", m.temporal),
            ("train/images_per_sec", images_per_sec),
            ("train/lr", lr),
        ] {
            writer.add_summary(summary::scalar(tag, v as f32), step)?;
        }
        writer.flush()?;
        let text = format!(
            "epoch {} content {:.4e} style {:.4e} tv {:.3e} total {:.4e} {:.1} img/s",
            epoch + 1,
            m.content,
            m.style,
            m.tv,
            m.total,
            images_per_sec
        );
        if self.interactive {
            self.bar.set_message(text);
        } else {
            // Full precision, so that runs can be compared exactly from their logs.
            println!(
                "step {step} epoch {} content {} style {} tv {} total {} stability {} temporal {} images/s {:.2}",
                epoch + 1,
                m.content,
                m.style,
                m.tv,
                m.total,
                m.stability,
                m.temporal,
                images_per_sec
            );
        }
        Ok(())
    }

    /// Names the phase that starts at 0-based `step` (`128 px warm-up`): on the bar, or as
    /// a line when there is none.
    pub fn set_phase(&mut self, phase: &str, step: u64) {
        if self.interactive {
            self.bar.set_prefix(format!("{phase} "));
        } else {
            eprintln!("phase: {phase} from iteration {}", step + 1);
        }
    }

    /// Reports the held-out losses of `step` (TensorBoard gets them as scalars).
    pub fn val(&mut self, step: u64, content: f64, style: f64, total: f64) -> Result<()> {
        if let Some(writer) = self.writer.as_mut() {
            writer.flush()?;
        }
        let text = format!("val step {step} content {content} style {style} total {total}");
        if self.interactive {
            self.bar.println(text);
        } else {
            println!("{text}");
        }
        Ok(())
    }

    /// Logs one scalar under `tag` at `step`.
    pub fn scalar(&mut self, tag: &str, value: f64, step: u64) -> Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        writer.add_summary(summary::scalar(tag, value as f32), step)?;
        writer.flush()
    }

    /// Logs a square RGB image (HWC bytes) under `tag`.
    pub fn image(&mut self, tag: &str, hwc: &[u8], side: usize, step: u64) -> Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let image = summary::image(tag, hwc, &[3, side, side]);
        writer.add_summary(image, step)?;
        writer.flush()
    }

    /// Prints a line without breaking the bar (not on a quiet rank).
    pub fn say(&self, line: &str) {
        if self.is_quiet() {
            return;
        }
        self.print(line);
    }

    /// Prints a warning, on every rank (a quiet one names itself).
    pub fn warn(&self, line: &str) {
        self.print(&format!("{}warning: {line}", self.prefix));
    }

    /// Prints a line on every rank (a quiet one names itself).
    pub fn note(&self, line: &str) {
        self.print(&format!("{}{line}", self.prefix));
    }

    fn print(&self, line: &str) {
        if self.interactive {
            self.bar.println(line);
        } else {
            eprintln!("{line}");
        }
    }
}
