//! Videos as inputs of `infer`: every frame through the network, the timing, the displayed
//! orientation and the other streams kept, through the ffmpeg program.
//!
//! An ffmpeg decodes the input to raw RGB frames with their timestamps (NUT through a pipe),
//! the network stylizes them (in batches on CUDA), and a second ffmpeg encodes them while
//! copying the input's sound, subtitles and metadata. Decoding, the network and encoding run
//! at the same time, joined by bounded queues: memory stays flat whatever the length.
mod command;
mod ffmpeg;
mod nut;
mod stylize;

use crate::model::Stylizer;
use crate::plan::Job;
use anyhow::{anyhow, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

pub use stylize::Options;

/// Extensions (lowercase) of the video containers read and written.
pub const EXTENSIONS: [&str; 6] = ["mp4", "mov", "m4v", "mkv", "webm", "avi"];

/// The formats a video's output can be written in, for messages.
pub const WRITABLE: &str = "mp4, mov, m4v, mkv, webm, avi, gif, webp";

/// Whether a path's extension names a video container.
pub fn has_video_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Whether a file is a video: a video container, or a GIF or WebP with several frames (a
/// still GIF or WebP is a photo).
pub fn is_video(path: &Path) -> bool {
    has_video_extension(path) || is_animated_image(path)
}

/// Whether a video can be written to this path (its extension names a known container).
pub fn can_write(path: &Path) -> bool {
    command::Container::from_path(path).is_some()
}

fn is_animated_image(path: &Path) -> bool {
    use image::AnimationDecoder;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let reader = std::io::BufReader::new(file);
    match ext.as_deref() {
        Some("gif") => image::codecs::gif::GifDecoder::new(reader)
            .map(|d| d.into_frames().take(2).filter(Result::is_ok).count() > 1)
            .unwrap_or(false),
        Some("webp") => image::codecs::webp::WebPDecoder::new(reader)
            .map(|d| d.has_animation())
            .unwrap_or(false),
        _ => false,
    }
}

/// Stylizes videos one after the other, each with all of the device; calls `report` once per
/// video attempted. On Ctrl-C (`stop`), the video in progress is abandoned (nothing is left
/// under its name) and the rest are not started.
pub fn run(
    jobs: &[&Job],
    model: &Stylizer,
    options: &Options,
    stop: &AtomicBool,
    overall: &ProgressBar,
    mut report: impl FnMut(&Path, Result<()>),
) {
    if jobs.is_empty() {
        return;
    }
    let ffmpeg = match ffmpeg::locate() {
        Ok(found) => found,
        Err(err) => {
            for job in jobs {
                report(&job.input, Err(anyhow!("{err}")));
            }
            return;
        }
    };
    let multi = MultiProgress::with_draw_target(if faststyle::progress::interactive() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    // A hidden overall bar (a single input) stays hidden; a shown one goes below the file's.
    let overall = (!overall.is_hidden()).then(|| multi.add(overall.clone()));
    for job in jobs {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let file_bar = faststyle::progress::bar(0, "frames");
        let bar = match &overall {
            Some(o) => multi.insert_before(o, file_bar),
            None => multi.add(file_bar),
        };
        let name = job.input.file_name().unwrap_or_default().to_string_lossy();
        bar.set_message(name.into_owned());
        let outcome =
            crate::guard::catch(|| stylize::stylize(&ffmpeg, job, model, options, stop, &bar));
        bar.finish_and_clear();
        multi.remove(&bar);
        // `report` prints through the overall bar, which suspends the whole display.
        report(&job.input, outcome.map(|_| ()));
    }
}
