//! One video through the network: an ffmpeg decoding, this thread running the network, an
//! ffmpeg encoding, joined by bounded queues, and the result renamed into place only when
//! everything succeeded.
use super::command::{self, Container, Encode};
use super::ffmpeg::{Messages, Process};
use super::nut::{self, StreamInfo};
use crate::model::Stylizer;
use crate::plan::Job;
use anyhow::{anyhow, bail, ensure, Context, Result};
use faststyle::fsutil::{self, WriteError};
use faststyle::imageio;
use image::RgbImage;
use indicatif::ProgressBar;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// What happens to each video around the network.
pub struct Options {
    /// Longer side limit applied when decoding.
    pub max_size: Option<u32>,
    /// Keep the original's chroma.
    pub preserve_color: bool,
    /// Blend weight of the stylized result, 0…1.
    pub strength: f32,
    /// Constant rate factor of H.264 and VP9.
    pub crf: u8,
}

/// Pixels a CUDA batch may hold (eight 1024² frames, four 1080p frames).
const BATCH_PIXELS: usize = 8 << 20;
/// Most frames in one CUDA batch.
const MAX_BATCH: usize = 8;

/// A decoded frame on its way to the encoder.
struct Item {
    pts: i64,
    original: RgbImage,
    stylized: Option<RgbImage>,
}

/// Removes the temporary output unless the run got as far as renaming it.
struct TempFile(Option<PathBuf>);

impl TempFile {
    /// The file was renamed into place: nothing to remove.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Stylizes one video into `job.output`; returns the number of frames.
pub fn stylize(
    ffmpeg: &Path,
    job: &Job,
    model: &Stylizer,
    options: &Options,
    stop: &AtomicBool,
    bar: &ProgressBar,
) -> Result<u64> {
    let container = Container::from_path(&job.output).ok_or_else(|| {
        anyhow!(
            "cannot write a video as {} (use one of {})",
            job.output.display(),
            super::WRITABLE
        )
    })?;
    if let Some(parent) = job.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsutil::create_dir_all(parent)?;
    }
    let even = container.needs_even_size();
    let mut decoder = Process::spawn(
        ffmpeg,
        &command::decode(&job.input, options.max_size, even),
        false,
    )?;
    let stdout = decoder.child.stdout.take().context("no pipe from ffmpeg")?;
    let mut reader = match nut::Reader::open(BufReader::with_capacity(1 << 20, stdout)) {
        Ok(reader) => reader,
        Err(err) => {
            // ffmpeg's own message says more than an empty pipe.
            let (_, messages) = decoder.finish()?;
            return Err(input_error(&messages, &err.to_string()));
        }
    };
    let info = reader.info().clone();
    // Sides that 4:2:0 encoders cannot take grow by one pixel (the edge repeated).
    let out_info = StreamInfo {
        width: if even {
            info.width.next_multiple_of(2)
        } else {
            info.width
        },
        height: if even {
            info.height.next_multiple_of(2)
        } else {
            info.height
        },
        ..info.clone()
    };
    if let Some(n) = decoder.with_messages(Messages::frames_estimate) {
        bar.set_length(n);
        bar.reset_eta();
    }

    let tmp = TempFile(Some(fsutil::temp_path(&job.output)));
    let tmp_path = tmp.0.clone().unwrap_or_default();
    let encode = Encode {
        input: &job.input,
        output: &tmp_path,
        container,
        crf: options.crf,
        frame_rate: info.frame_rate.as_deref(),
    };
    let mut encoder = match Process::spawn(ffmpeg, &command::encode(&encode), true) {
        Ok(p) => p,
        Err(e) => {
            decoder.kill();
            return Err(e);
        }
    };
    let stdin = encoder.child.stdin.take().context("no pipe to ffmpeg")?;

    let batch = if model.device().is_cuda() {
        (BATCH_PIXELS / (info.width as usize * info.height as usize).max(1)).clamp(1, MAX_BATCH)
    } else {
        1
    };
    let keep_original = options.preserve_color || options.strength < 1.0;
    let (decoded_tx, decoded_rx) = sync_channel::<Result<Item>>(2 * batch);
    let (done_tx, done_rx) = sync_channel::<Item>(2 * batch);
    let mut frames = 0u64;
    let outcome: Result<()> = std::thread::scope(|threads| {
        let decoding = threads.spawn(move || decode_frames(&mut reader, &info, stop, &decoded_tx));
        let writing = threads.spawn(move || {
            let nut = nut::Writer::new(BufWriter::with_capacity(1 << 20, stdin), out_info)?;
            write_frames(nut, done_rx, options, even)
        });
        let network = Network {
            model,
            batch,
            keep_original,
            stop,
            bar,
        }
        .run(&decoded_rx, &done_tx, &mut frames);
        drop(done_tx);
        if network.is_err() || stop.load(Ordering::SeqCst) {
            // Unblock and end both sides at once; the partial output is deleted below.
            decoder.child.kill().ok();
            encoder.child.kill().ok();
        }
        drop(decoded_rx);
        let decoded = decoding
            .join()
            .unwrap_or_else(|_| Err(anyhow!("decoder thread panicked")));
        let written = writing
            .join()
            .unwrap_or_else(|_| Err(anyhow!("encoder thread panicked")));
        network?;
        // The network's error came first; then the decoder's (the cause of an encoder's broken
        // pipe); then the encoder's.
        decoded?;
        written
    });
    if stop.load(Ordering::SeqCst) {
        decoder.kill();
        encoder.kill();
        bail!("interrupted; nothing written");
    }
    if outcome.is_err() {
        // A full or read-only output disk ends the encoder first; the rest follows from it.
        encoder.end();
        if let Some(err) = encoder.with_messages(|m| disk_failure(m, &job.output)) {
            decoder.kill();
            return Err(err);
        }
    }
    let (decoded, messages) = match decoder.finish() {
        Ok(done) => done,
        Err(err) => {
            encoder.kill();
            return Err(err);
        }
    };
    if !decoded {
        encoder.kill();
        return Err(input_error(&messages, "ffmpeg failed"));
    }
    if let Err(err) = outcome {
        encoder.kill();
        return Err(err);
    }
    // ffmpeg ends a truncated file as if it were whole, saying so only in its log.
    if let Some(first) = messages.errors.first() {
        encoder.kill();
        bail!("corrupt or truncated video: {first}");
    }
    let (encoded, messages) = encoder.finish()?;
    if let Some(err) = disk_failure(&messages, &job.output).filter(|_| !encoded) {
        return Err(err);
    }
    if !encoded {
        bail!(
            "ffmpeg could not encode the result: {}",
            messages.reason().unwrap_or_default()
        );
    }
    ensure!(frames > 0, "no video frames could be decoded");
    std::fs::File::open(&tmp_path)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp_path, &job.output))
        .map_err(|e| WriteError::new(&job.output, "write", &e))?;
    tmp.keep();
    Ok(frames)
}

/// The error of an encoder that could not write the output because the disk is full,
/// over quota or read-only, from what ffmpeg said (naming the output, not its temporary name).
fn disk_failure(messages: &Messages, output: &Path) -> Option<anyhow::Error> {
    use std::io::ErrorKind;
    [
        ("No space left on device", ErrorKind::StorageFull),
        ("Disk quota exceeded", ErrorKind::QuotaExceeded),
        ("Read-only file system", ErrorKind::ReadOnlyFilesystem),
    ]
    .into_iter()
    .find(|(text, _)| messages.said(text))
    .map(|(_, kind)| WriteError::of_kind(output, kind).into())
}

/// A decoding failure in words a user can act on, with ffmpeg's own reason.
fn input_error(messages: &Messages, fallback: &str) -> anyhow::Error {
    let reason = messages.reason().unwrap_or_else(|| fallback.to_string());
    if messages.said("matches no streams") {
        anyhow!("no video stream in this file")
    } else if messages.said("Invalid data found") || messages.said("moov atom not found") {
        anyhow!("not a readable video (truncated or corrupt): {reason}")
    } else {
        anyhow!("ffmpeg cannot decode it: {reason}")
    }
}

/// Reads frames from the decoder into the queue until the end, an error, or a stop.
fn decode_frames<R: std::io::Read>(
    reader: &mut nut::Reader<R>,
    info: &StreamInfo,
    stop: &AtomicBool,
    out: &SyncSender<Result<Item>>,
) -> Result<()> {
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            Err(err) => {
                let _ = out.send(Err(anyhow!("{err}")));
                return Err(err);
            }
        };
        let original = RgbImage::from_raw(info.width, info.height, frame.rgb)
            .ok_or_else(|| anyhow!("decoded frame of the wrong size"))?;
        let item = Item {
            pts: frame.pts,
            original,
            stylized: None,
        };
        if out.send(Ok(item)).is_err() {
            return Ok(()); // the network stopped
        }
    }
}

/// The network's side of the pipeline.
struct Network<'a> {
    model: &'a Stylizer,
    /// Frames per forward pass.
    batch: usize,
    /// Whether the colour options need each original frame after the network.
    keep_original: bool,
    stop: &'a AtomicBool,
    bar: &'a ProgressBar,
}

impl Network<'_> {
    /// Stylizes frames in batches of up to `batch` as they arrive; counts them in `frames`.
    fn run(
        &self,
        input: &Receiver<Result<Item>>,
        output: &SyncSender<Item>,
        frames: &mut u64,
    ) -> Result<()> {
        let Self {
            model,
            batch,
            keep_original,
            stop,
            bar,
        } = *self;
        let mut items: Vec<Item> = Vec::with_capacity(batch);
        let mut ended = false;
        while !ended {
            // The first frame of a batch waits; the rest only complete it while frames are ready.
            match input.recv() {
                Ok(item) => items.push(item?),
                Err(_) => break,
            }
            while items.len() < batch {
                match input.recv() {
                    Ok(item) => items.push(item?),
                    Err(_) => {
                        ended = true;
                        break;
                    }
                }
            }
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let originals: Vec<&RgbImage> = items.iter().map(|i| &i.original).collect();
            let stylized = model.stylize_batch(&originals)?;
            *frames += stylized.len() as u64;
            for (mut item, out) in items.drain(..).zip(stylized) {
                item.stylized = Some(out);
                if !keep_original {
                    item.original = RgbImage::new(0, 0); // not needed any more
                }
                if output.send(item).is_err() {
                    bail!("the encoder stopped");
                }
            }
            bar.set_position(*frames);
        }
        Ok(())
    }
}

/// Applies the colour options and sends each frame to the encoder, in order.
fn write_frames<W: std::io::Write>(
    mut nut: nut::Writer<W>,
    input: Receiver<Item>,
    options: &Options,
    even: bool,
) -> Result<()> {
    for item in input {
        let mut rgb = item.stylized.context("frame without a result")?;
        if options.preserve_color {
            rgb = imageio::preserve_color(&rgb, &item.original)?;
        }
        if options.strength < 1.0 {
            rgb = imageio::blend(&rgb, &item.original, options.strength)?;
        }
        if even {
            rgb = pad_even(rgb);
        }
        nut.write_frame(item.pts, rgb.as_raw())?;
    }
    nut.finish()?;
    Ok(())
}

/// The picture with its last column and row repeated where its sides are odd.
fn pad_even(rgb: RgbImage) -> RgbImage {
    let (w, h) = rgb.dimensions();
    if w % 2 == 0 && h % 2 == 0 {
        return rgb;
    }
    let (pw, ph) = (w.next_multiple_of(2), h.next_multiple_of(2));
    RgbImage::from_fn(pw, ph, |x, y| *rgb.get_pixel(x.min(w - 1), y.min(h - 1)))
}
