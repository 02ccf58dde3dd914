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
    writer: EventFile,
    pub bar: ProgressBar,
    interactive: bool,
}

impl Logger {
    /// Opens (creates) `logdir`; a resumed run adds a new event file beside the old ones.
    pub fn new(logdir: &Path, total: u64, start: u64) -> Result<Self> {
        fsutil::create_dir_all(logdir)?;
        let bar = faststyle::progress::bar(total, "it");
        bar.set_position(start);
        bar.reset_eta();
        Ok(Self {
            writer: EventFile::create(logdir)?,
            bar,
            interactive: faststyle::progress::interactive(),
        })
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
        for (tag, v) in [
            ("loss/content", m.content),
            ("loss/style", m.style),
            ("loss/tv", m.tv),
            ("loss/total", m.total),
            ("loss/stability", m.stability),
            ("train/images_per_sec", images_per_sec),
            ("train/lr", lr),
        ] {
            self.writer
                .add_summary(summary::scalar(tag, v as f32), step)?;
        }
        self.writer.flush()?;
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
                "step {step} epoch {} content {} style {} tv {} total {} stability {} images/s {:.2}",
                epoch + 1,
                m.content,
                m.style,
                m.tv,
                m.total,
                m.stability,
                images_per_sec
            );
        }
        Ok(())
    }

    /// Logs one scalar under `tag` at `step`.
    pub fn scalar(&mut self, tag: &str, value: f64, step: u64) -> Result<()> {
        self.writer
            .add_summary(summary::scalar(tag, value as f32), step)?;
        self.writer.flush()
    }

    /// Logs a square RGB image (HWC bytes) under `tag`.
    pub fn image(&mut self, tag: &str, hwc: &[u8], side: usize, step: u64) -> Result<()> {
        let image = summary::image(tag, hwc, &[3, side, side]);
        self.writer.add_summary(image, step)?;
        self.writer.flush()
    }

    /// Prints a line without breaking the bar.
    pub fn say(&self, line: &str) {
        if self.interactive {
            self.bar.println(line);
        } else {
            eprintln!("{line}");
        }
    }
}
