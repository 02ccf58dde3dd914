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

/// An ffmpeg program, and its version (read once, when found).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ffmpeg {
    /// The program.
    pub path: PathBuf,
    /// What `ffmpeg -version` says it is.
    pub version: Version,
}

/// An ffmpeg release, major and minor; development builds (`N-…-g…`) count as the newest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    /// The oldest release whose command lines are built here (Ubuntu 22.04 has 4.4).
    pub const OLDEST: Self = Self::new(4, 2);
    /// A development build, newer than any release.
    const DEVELOPMENT: Self = Self::new(u32::MAX, 0);

    /// Release `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// The version in the first line of `ffmpeg -version`: `ffmpeg version 5.1.9-0+deb12u1`,
    /// `n9.0.2-17-g2a571b6068`, `4.2.2-static`, `7.1`, or `N-113001-g…` (a development build).
    pub fn parse(banner: &str) -> Option<Self> {
        let word = banner
            .strip_prefix("ffmpeg version ")?
            .split_whitespace()
            .next()?;
        if word.starts_with("N-") || word.starts_with("git-") {
            return Some(Self::DEVELOPMENT);
        }
        let word = word.strip_prefix('n').unwrap_or(word);
        let mut parts = word
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        Some(Self::new(major, minor))
    }

    /// Whether `-fps_mode` exists (5.1 on; `-vsync` before it, removed in 8.0).
    pub fn has_fps_mode(self) -> bool {
        self >= Self::new(5, 1)
    }

    /// How `-enc_time_base` names the demuxer's time base: `demux` from 6.1, `-1` before.
    pub fn demux_time_base(self) -> &'static str {
        if self >= Self::new(6, 1) {
            "demux"
        } else {
            "-1"
        }
    }

    /// Whether the scale filter has `force_divisible_by` (4.3 on).
    pub fn has_divisible_scale(self) -> bool {
        self >= Self::new(4, 3)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Self::DEVELOPMENT {
            write!(f, "(development build)")
        } else {
            write!(f, "{}.{}", self.major, self.minor)
        }
    }
}

impl Ffmpeg {
    /// Runs `path -version` and reads the version; an error names the program and the reason.
    pub fn probe(path: &Path) -> Result<Self> {
        let out = Command::new(path)
            .arg("-version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", path.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next().unwrap_or("").trim();
        match Version::parse(first) {
            Some(version) => Ok(Self {
                path: path.to_path_buf(),
                version,
            }),
            None => bail!(
                "{} does not say which ffmpeg it is (`-version` printed {:?})",
                path.display(),
                first
            ),
        }
    }

    /// The program, if its version is one whose command lines are built here.
    fn usable(path: &Path) -> Result<Self> {
        let found = Self::probe(path)?;
        if found.version < Version::OLDEST {
            bail!(
                "{} is ffmpeg {}, older than {} that video needs",
                path.display(),
                found.version,
                Version::OLDEST
            );
        }
        Ok(found)
    }
}

/// Finds ffmpeg: `$FASTSTYLE_FFMPEG`, then `ffmpeg` on `PATH`, then the project's `.venv`
/// (the link `.venv/bin/ffmpeg` that the set-up makes, or imageio-ffmpeg's binary itself).
/// An ffmpeg on PATH that is too old (or not an ffmpeg) gives way to the `.venv` one, with a
/// note; a `FASTSTYLE_FFMPEG` that is too old is an error, as it was chosen.
pub fn locate() -> Result<Ffmpeg> {
    if let Some(named) = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(&named);
        if !is_executable(&path) {
            bail!("{ENV_VAR}={} is not an executable file", path.display());
        }
        return Ffmpeg::usable(&path).map_err(|e| {
            anyhow::anyhow!(
                "{ENV_VAR}: {e:#}; point it at ffmpeg {} or newer, or unset it to use the one on PATH or in .venv (scripts/setup.sh)",
                Version::OLDEST
            )
        });
    }
    let mut passed_over = None;
    if let Some(paths) = std::env::var_os("PATH") {
        if let Some(found) = std::env::split_paths(&paths)
            .map(|dir| dir.join("ffmpeg"))
            .find(|p| is_executable(p))
        {
            match Ffmpeg::usable(&found) {
                Ok(ffmpeg) => return Ok(ffmpeg),
                Err(e) => passed_over = Some(e),
            }
        }
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv");
    let link = venv.join("bin").join("ffmpeg");
    let bundled = if is_executable(&link) {
        Some(link)
    } else {
        imageio_ffmpeg_binary(&venv)
    };
    match (bundled, passed_over) {
        (Some(path), passed_over) => {
            let ffmpeg = Ffmpeg::usable(&path)?;
            if let Some(e) = passed_over {
                eprintln!("note: {e:#}; using {} instead", path.display());
            }
            Ok(ffmpeg)
        }
        (None, Some(e)) => bail!(
            "{e:#}: install ffmpeg {} or newer, set FASTSTYLE_FFMPEG=/path/to/ffmpeg, or run scripts/setup.sh (it installs PyPI's imageio-ffmpeg into .venv)",
            Version::OLDEST
        ),
        (None, None) => bail!("{HOW_TO_GET}"),
    }
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
    /// The first video stream's colour tags (set once its line was read).
    pub colour: Option<Colour>,
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
        } else if t.starts_with("Stream #") && t.contains(": Video: ") {
            if self.fps.is_none() {
                self.fps = t.split(", ").find_map(|part| {
                    let v = part.trim().strip_suffix(" fps")?;
                    v.parse::<f64>().ok().filter(|f| *f > 0.0)
                });
            }
            if self.colour.is_none() && !t.contains("(attached pic)") {
                self.colour = Some(Colour::parse(t));
            }
        }
    }
}

/// A video stream's colour tags as ffmpeg names them (`None`: unspecified).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Colour {
    /// The Y'CbCr matrix (`colorspace`: bt709, smpte170m, bt2020nc, …).
    pub matrix: Option<String>,
    /// The primaries (bt709, bt470bg, bt2020, …).
    pub primaries: Option<String>,
    /// The transfer characteristics (bt709, smpte2084, arib-std-b67, …).
    pub transfer: Option<String>,
}

/// Matrix names that ffmpeg prints alone when primaries and transfer have the same name.
const MATRICES: [&str; 5] = ["bt709", "smpte170m", "smpte240m", "fcc", "bt470bg"];

impl Colour {
    /// The tags in a stream line's pixel format, `yuv420p(tv, bt470bg/bt470bg/smpte170m,
    /// progressive)` (matrix/primaries/transfer) or `yuv420p(tv, bt709)` (all three alike).
    pub fn parse(line: &str) -> Self {
        let Some(video) = line.split_once(": Video: ").map(|(_, v)| v) else {
            return Self::default();
        };
        // The pixel format is the second top-level part, its details in parentheses.
        let Some(format) = top_level_parts(video).into_iter().nth(1) else {
            return Self::default();
        };
        let Some(inner) = format
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map(|(inner, _)| inner)
        else {
            return Self::default();
        };
        let name = |s: &str| {
            let s = s.trim();
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            (plain && s != "unknown" && s != "reserved").then(|| s.to_string())
        };
        for token in inner.split(", ") {
            let names: Vec<&str> = token.split('/').collect();
            match names.as_slice() {
                [m, p, t] => {
                    return Self {
                        matrix: name(m),
                        primaries: name(p),
                        transfer: name(t),
                    }
                }
                [one] if MATRICES.contains(&one.trim()) => {
                    return Self {
                        matrix: name(one),
                        primaries: name(one),
                        transfer: name(one),
                    }
                }
                _ => {}
            }
        }
        Self::default()
    }
}

/// The comma-separated parts of a stream description, commas inside parentheses kept.
fn top_level_parts(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(s[start..].trim());
    parts
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
    fn colour_tags_are_read_from_the_stream_line() {
        let tags = |line: &str| {
            let c = Colour::parse(line);
            (c.matrix, c.primaries, c.transfer)
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            tags("Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt470bg/bt470bg/smpte170m, progressive), 64x48 [SAR 1:1 DAR 4:3], 29.97 fps"),
            (s("bt470bg"), s("bt470bg"), s("smpte170m"))
        );
        assert_eq!(
            tags("Stream #0:0(und): Video: h264 (High), yuv420p(tv, smpte170m), 64x48, 30 fps"),
            (s("smpte170m"), s("smpte170m"), s("smpte170m"))
        );
        assert_eq!(
            tags("Stream #0:0: Video: hevc (Main 10), yuv420p10le(tv, bt2020nc/bt2020/smpte2084), 3840x2160"),
            (s("bt2020nc"), s("bt2020"), s("smpte2084"))
        );
        assert_eq!(
            tags("Stream #0:0: Video: h264, yuv420p(tv, bt709/unknown/unknown, progressive), 8x8"),
            (s("bt709"), None, None)
        );
        // Untagged, range only, field order only.
        assert_eq!(
            tags("Stream #0:0: Video: vp9, yuv420p(tv, progressive), 8x8"),
            (None, None, None)
        );
        assert_eq!(
            tags("Stream #0:0: Video: gif, bgra, 8x8, 10 fps"),
            (None, None, None)
        );
        let mut m = Messages::default();
        m.take("[info]   Stream #0:0: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 600x600 (attached pic)");
        assert_eq!(m.colour, None);
        m.take("[info]   Stream #0:1: Video: h264 (High), yuv420p(tv, bt709, progressive), 8x8, 25 fps");
        m.take("[info]   Stream #0:0: Video: rawvideo (RGB[24] / 0x18424752), rgb24(pc, gbr/bt709/bt709), 8x8");
        assert_eq!(m.colour.and_then(|c| c.matrix).as_deref(), Some("bt709"));
    }

    #[test]
    fn versions_are_read_from_every_kind_of_build() {
        let v = |s: &str| Version::parse(s);
        assert_eq!(
            v("ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026"),
            Some(Version::new(5, 1))
        );
        assert_eq!(
            v("ffmpeg version n9.0.2-17-g2a571b6068-20260930 Copyright"),
            Some(Version::new(9, 0))
        );
        assert_eq!(
            v("ffmpeg version 4.2.2-static https://johnvansickle.com/ffmpeg/"),
            Some(Version::new(4, 2))
        );
        assert_eq!(
            v("ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright"),
            Some(Version::new(4, 4))
        );
        assert_eq!(v("ffmpeg version 7.1 Copyright"), Some(Version::new(7, 1)));
        assert!(v("ffmpeg version N-113001-gabcdef Copyright").unwrap() > Version::new(99, 0));
        assert_eq!(v("avconv version 12"), None);
        let (old, deb, new) = (Version::new(4, 4), Version::new(5, 1), Version::new(6, 1));
        assert!(!old.has_fps_mode() && deb.has_fps_mode());
        assert_eq!(deb.demux_time_base(), "-1");
        assert_eq!(new.demux_time_base(), "demux");
        assert!(old.has_divisible_scale() && !Version::new(4, 2).has_divisible_scale());
    }

    #[test]
    fn lines_without_levels_are_kept_whole() {
        let (level, text) = split_level("[gif @ 0x1] no level here");
        assert_eq!((level, text), (None, "[gif @ 0x1] no level here"));
        assert_eq!(parse_clock("N/A"), None);
    }
}
