//! The ffmpeg program: finding it, and running it with its messages kept for the user.
use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Environment variable naming the ffmpeg program to use.
pub const ENV_VAR: &str = "FASTSTYLE_FFMPEG";

/// How to get an ffmpeg, for the error when there is none.
const HOW_TO_GET: &str = "no ffmpeg found for video: set FASTSTYLE_FFMPEG=/path/to/ffmpeg, \
     put ffmpeg on PATH, or run scripts/setup.sh (it installs PyPI's imageio-ffmpeg into .venv)";

/// Finds ffmpeg: `$FASTSTYLE_FFMPEG`, then `ffmpeg` on `PATH`, then the project's `.venv`
/// (the link `.venv/bin/ffmpeg` that the set-up makes, or imageio-ffmpeg's binary itself).
pub fn locate() -> Result<PathBuf> {
    if let Some(named) = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(&named);
        if !is_executable(&path) {
            bail!("{ENV_VAR}={} is not an executable file", path.display());
        }
        return Ok(path);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        if let Some(found) = std::env::split_paths(&paths)
            .map(|dir| dir.join("ffmpeg"))
            .find(|p| is_executable(p))
        {
            return Ok(found);
        }
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv");
    let link = venv.join("bin").join("ffmpeg");
    if is_executable(&link) {
        return Ok(link);
    }
    if let Some(found) = imageio_ffmpeg_binary(&venv) {
        return Ok(found);
    }
    bail!("{HOW_TO_GET}")
}

/// imageio-ffmpeg's bundled binary: `lib/python*/site-packages/imageio_ffmpeg/binaries/ffmpeg-*`.
fn imageio_ffmpeg_binary(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    for python in lib.flatten() {
        let bins = python
            .path()
            .join("site-packages")
            .join("imageio_ffmpeg")
            .join("binaries");
        let Ok(entries) = std::fs::read_dir(&bins) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("ffmpeg-"))
                    && is_executable(p)
            })
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return Some(p);
        }
    }
    None
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A path as an ffmpeg URL that no file name can turn into another protocol or an option.
pub fn file_url(path: &Path) -> std::ffi::OsString {
    let mut url = std::ffi::OsString::from("file:");
    url.push(path.as_os_str());
    url
}

/// What an ffmpeg process said on stderr: the facts its banner gives, and its errors.
#[derive(Debug, Default)]
pub struct Messages {
    /// The input's duration in seconds (`Duration: 00:01:02.50`).
    pub duration: Option<f64>,
    /// The first video stream's frame rate (`29.97 fps`).
    pub fps: Option<f64>,
    /// Lines logged at the error or fatal level, in order (the first few).
    pub errors: Vec<String>,
    /// The last lines, whatever their level.
    pub tail: VecDeque<String>,
}

impl Messages {
    /// The message worth showing for a failure: the first error that names a cause (not
    /// one of ffmpeg's generic follow-ups), else the last error, else the last line.
    pub fn reason(&self) -> Option<String> {
        const GENERIC: [&str; 4] = [
            "Error opening input",
            "Error opening output",
            "Truncating packet",
            "Conversion failed",
        ];
        self.errors
            .iter()
            .find(|l| !GENERIC.iter().any(|g| l.trim_start().starts_with(g)))
            .or_else(|| self.errors.last())
            .or_else(|| self.tail.back())
            .map(|l| l.trim().to_string())
    }

    /// Whether any error line contains `text`.
    pub fn said(&self, text: &str) -> bool {
        self.errors.iter().any(|l| l.contains(text))
    }

    /// Estimated number of frames, from the duration and the frame rate.
    pub fn frames_estimate(&self) -> Option<u64> {
        let frames = (self.duration? * self.fps?).round();
        (1.0..1e9).contains(&frames).then_some(frames as u64)
    }

    fn take(&mut self, line: &str) {
        // `-loglevel level+…` prefixes each line with its level, after any `[context @ 0x…]`.
        let (level, text) = split_level(line);
        if matches!(level, Some("error" | "fatal" | "panic")) && self.errors.len() < 8 {
            self.errors.push(text.to_string());
        }
        if self.tail.len() == 8 {
            self.tail.pop_front();
        }
        self.tail.push_back(text.to_string());
        let t = text.trim_start();
        if let Some(rest) = t.strip_prefix("Duration: ") {
            if self.duration.is_none() {
                self.duration = parse_clock(rest.split(',').next().unwrap_or(""));
            }
        } else if t.starts_with("Stream #") && t.contains(": Video: ") && self.fps.is_none() {
            self.fps = t.split(", ").find_map(|part| {
                let v = part.trim().strip_suffix(" fps")?;
                v.parse::<f64>().ok().filter(|f| *f > 0.0)
            });
        }
    }
}

/// A line's level (`[error]`) and its text with the level and context prefixes removed.
fn split_level(line: &str) -> (Option<&str>, &str) {
    let mut rest = line;
    let mut level = None;
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(end) = inner.find(']') else { break };
        let tag = &inner[..end];
        if matches!(
            tag,
            "quiet" | "panic" | "fatal" | "error" | "warning" | "info" | "verbose" | "debug"
        ) {
            level = Some(tag);
        }
        rest = inner[end + 1..].trim_start();
    }
    let text = if level.is_some() { rest } else { line };
    (level, text)
}

/// `HH:MM:SS.ss` in seconds.
fn parse_clock(s: &str) -> Option<f64> {
    let mut secs = 0.0;
    for part in s.trim().split(':') {
        secs = secs * 60.0 + part.parse::<f64>().ok()?;
    }
    Some(secs)
}

/// A running ffmpeg whose stderr is being collected.
pub struct Process {
    /// The child process (its stdin and stdout are the caller's to take).
    pub child: Child,
    messages: Arc<Mutex<Messages>>,
    reader: Option<JoinHandle<()>>,
}

impl Process {
    /// Starts `ffmpeg ARGS` with piped stdin and stdout, in its own process group so that the
    /// terminal's Ctrl-C reaches this program only (which then stops ffmpeg itself).
    pub fn spawn(ffmpeg: &Path, args: &[std::ffi::OsString], stdin: bool) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(ffmpeg)
            .args(args)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot run {}", ffmpeg.display()))?;
        let messages = Arc::new(Mutex::new(Messages::default()));
        let reader = child.stderr.take().map(|stderr| {
            let messages = Arc::clone(&messages);
            std::thread::spawn(move || collect(stderr, &messages))
        });
        Ok(Self {
            child,
            messages,
            reader,
        })
    }

    /// Runs `f` on what ffmpeg said so far.
    pub fn with_messages<T>(&self, f: impl FnOnce(&Messages) -> T) -> T {
        f(&self.messages.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits for the exit; returns whether ffmpeg succeeded, and all it said.
    pub fn finish(mut self) -> Result<(bool, Messages)> {
        let status = self.child.wait().context("cannot wait for ffmpeg")?;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let mut messages =
            std::mem::take(&mut *self.messages.lock().unwrap_or_else(|e| e.into_inner()));
        if !status.success() && messages.reason().is_none() {
            messages.errors.push(format!("ffmpeg ended with {status}"));
        }
        Ok((status.success(), messages))
    }

    /// Stops ffmpeg if it still runs, reaps it and waits until all it said is read (for
    /// [`Process::with_messages`]).
    pub fn end(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// Stops ffmpeg at once (Ctrl-C, or an error elsewhere) and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn collect(stderr: ChildStderr, messages: &Mutex<Messages>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.by_ref().take(64 * 1024).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                if !text.is_empty() {
                    messages
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take(text);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_facts_and_errors_are_read() {
        let mut m = Messages::default();
        for line in [
            "[info] Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'a.mp4':",
            "[info]   Duration: 00:01:02.50, start: 0.000000, bitrate: 98 kb/s",
            "[info]   Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 64x48 [SAR 1:1 DAR 4:3], 13 kb/s, 29.97 fps, 29.97 tbr, 15360 tbn (default)",
            "[in#0/mov,mp4,m4a,3gp,3g2,mj2 @ 0x55b9] [error] stream 0, offset 0x30d2: partial file",
        ] {
            m.take(line);
        }
        assert_eq!(m.duration, Some(62.5));
        assert_eq!(m.fps, Some(29.97));
        assert_eq!(m.frames_estimate(), Some(1873));
        assert_eq!(m.errors, ["stream 0, offset 0x30d2: partial file"]);
        assert_eq!(
            m.reason().as_deref(),
            Some("stream 0, offset 0x30d2: partial file")
        );
        // ffmpeg's follow-up lines do not hide the cause.
        let mut m = Messages::default();
        for line in [
            "[error] Truncating packet of size 10611 to 22",
            "[in#0 @ 0x55] [error] EBML header parsing failed",
            "[fatal] Error opening input files: Invalid data found when processing input",
        ] {
            m.take(line);
        }
        assert_eq!(m.reason().as_deref(), Some("EBML header parsing failed"));
        assert!(m.said("Invalid data found"));
    }

    #[test]
    fn lines_without_levels_are_kept_whole() {
        let (level, text) = split_level("[gif @ 0x1] no level here");
        assert_eq!((level, text), (None, "[gif @ 0x1] no level here"));
        assert_eq!(parse_clock("N/A"), None);
    }
}
