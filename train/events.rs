//! A TensorBoard event file written on this thread, whose failed writes are errors.
//!
//! tensorboard-rs's own writer panics in a thread of its own when a write fails (a full
//! disk), and the run then dies at its next log call. This one builds the same records with
//! tensorboard-rs's summaries and record format, and on a failed write cuts the file back to
//! its last whole record, so that TensorBoard still reads everything before it.
use anyhow::{Context, Result};
use faststyle::fsutil::WriteError;
use protobuf::Message;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tensorboard_proto::event::Event;
use tensorboard_proto::summary::Summary;
use tensorboard_rs::record_writer::RecordWriter;

/// One event file of a run's log folder.
pub struct EventFile {
    path: PathBuf,
    file: File,
    /// Bytes of whole records in the file.
    len: u64,
    /// Records not yet written (until [`EventFile::flush`]).
    pending: Vec<u8>,
}

impl EventFile {
    /// Creates a new event file in `logdir` (named as TensorBoard's writers name theirs).
    pub fn create(logdir: &Path) -> Result<Self> {
        let now = wall_time();
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let name = format!(
            "events.out.tfevents.{:010}.{host}.{}.0",
            now as u64,
            std::process::id()
        );
        let path = logdir.join(name);
        let file = File::create(&path).map_err(|e| WriteError::new(&path, "create", &e))?;
        let mut events = Self {
            path,
            file,
            len: 0,
            pending: Vec::new(),
        };
        let mut first = Event::new();
        first.set_wall_time(now);
        first.set_file_version("brain.Event:2".to_string());
        events.add(first)?;
        events.flush()?;
        Ok(events)
    }

    /// Adds a summary at `step` (written at the next flush).
    pub fn add_summary(&mut self, summary: Summary, step: u64) -> Result<()> {
        let mut event = Event::new();
        event.set_wall_time(wall_time());
        event.set_step(step as i64);
        event.set_summary(summary);
        self.add(event)
    }

    fn add(&mut self, event: Event) -> Result<()> {
        let data = event
            .write_to_bytes()
            .context("cannot encode a TensorBoard event")?;
        RecordWriter::new(&mut self.pending)
            .write(&data)
            .context("cannot encode a TensorBoard event")
    }

    /// Writes the pending records; on failure the file is cut back to its whole records.
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.pending) {
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            self.pending.clear();
            return Err(WriteError::new(&self.path, "write", &e).into());
        }
        self.len += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
