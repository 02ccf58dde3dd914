//! Many images through one network: decoding runs in parallel ahead of the network, the
//! network on this thread one image at a time, encoding and writing in parallel behind it.
//! Both queues are bounded, so memory stays flat however many files there are.
use crate::adjust;
use crate::guard;
use crate::model::Stylizer;
use crate::plan::Job;
use anyhow::Result;
use faststyle::fsutil;
use faststyle::imageio::{self, Picture};
use image::RgbImage;
use rayon::prelude::*;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel};
use std::sync::{Condvar, Mutex};

/// What happens to each image around the network.
pub struct Options {
    /// Longer side limit applied before the network.
    pub max_size: Option<u32>,
    /// Keep the original's chroma.
    pub preserve_color: bool,
    /// Blend weight of the stylized result, 0…1.
    pub strength: f32,
    /// Quality of JPEG outputs.
    pub jpeg_quality: u8,
}

/// Stylizes every job, calling `report` on this thread once per job attempted with its
/// outcome. Stops early, after the images in progress, when `stop` becomes true.
pub fn run(
    jobs: &[Job],
    model: &Stylizer,
    options: &Options,
    stop: &AtomicBool,
    mut report: impl FnMut(&Path, Result<()>),
) {
    let width = rayon::current_num_threads().max(1);
    let (decoded_tx, decoded_rx) = sync_channel::<(usize, Result<Picture>)>(width);
    let (done_tx, done_rx) = channel::<(usize, Result<()>)>();
    let encoding = Slots::new(2 * width);
    std::thread::scope(|threads| {
        threads.spawn(move || {
            // Decoded a chunk at a time and sent in order; rayon's workers never block on the
            // channel (only this thread does), so encoding always finds free workers.
            for (c, chunk) in jobs.chunks(width).enumerate() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let pictures: Vec<_> = chunk
                    .par_iter()
                    .map(|job| guard::catch(|| decode(job, options)))
                    .collect();
                for (i, picture) in pictures.into_iter().enumerate() {
                    if decoded_tx.send((c * width + i, picture)).is_err() {
                        return; // the network loop stopped
                    }
                }
            }
        });
        rayon::in_place_scope(|tasks| {
            for (index, picture) in decoded_rx.iter() {
                let job = &jobs[index];
                let stylized = picture.and_then(|original| {
                    let result = guard::catch(|| model.stylize(&original.rgb));
                    result.map(|stylized| (original, stylized))
                });
                match stylized {
                    Err(err) => report(&job.input, Err(err)),
                    Ok((original, stylized)) => {
                        encoding.acquire();
                        let (done_tx, encoding) = (done_tx.clone(), &encoding);
                        tasks.spawn(move |_| {
                            let outcome = guard::catch(|| finish(job, original, stylized, options));
                            encoding.release();
                            let _ = done_tx.send((index, outcome));
                        });
                    }
                }
                while let Ok((i, outcome)) = done_rx.try_recv() {
                    report(&jobs[i].input, outcome);
                }
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
        });
        // Unblocks the decoding thread if it waits to send.
        drop(decoded_rx);
    });
    drop(done_tx);
    for (i, outcome) in done_rx {
        report(&jobs[i].input, outcome);
    }
}

/// Reads an input and scales it to the size limit.
fn decode(job: &Job, options: &Options) -> Result<Picture> {
    adjust::prepare(imageio::read(&job.input)?, options.max_size)
}

/// Applies the colour options to the network's result and writes it with the input's alpha.
fn finish(job: &Job, original: Picture, stylized: RgbImage, options: &Options) -> Result<()> {
    let picture = adjust::finish(original, stylized, options.preserve_color, options.strength)?;
    if let Some(parent) = job.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsutil::create_dir_all(parent)?;
    }
    // A failed write names the output and the reason ("no space left on device").
    imageio::write(&job.output, &picture, options.jpeg_quality)
        .map_err(|e| fsutil::naming(e, &job.output))
}

/// A counting limit on the encodes in flight.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn new(n: usize) -> Self {
        Self {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
    }

    fn release(&self) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.freed.notify_one();
    }
}
