//! The loader of one data-parallel process: its slice of every global batch.
//!
//! Every global batch is the next `batch_size` photos of the epoch's order (fewer at the end of
//! an epoch); rank r decodes only its photos `r·B/world .. (r+1)·B/world` of it. An unreadable
//! photo leaves a gap rather than pulling the next photo in, since no process knows what the
//! others could read.
use super::{decode_rgb, square_crop, Batch, Dataset, LoaderConfig, Position, Slice};
use fast_image_resize::Resizer;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;
use tch::{Kind, Tensor};

/// Starts the thread that sends `slice`'s batches from `start` on until `stop` or a closed `tx`.
pub(super) fn spawn(
    dataset: Arc<Dataset>,
    config: LoaderConfig,
    start: Position,
    slice: Slice,
    stop: Arc<AtomicBool>,
    tx: SyncSender<Batch>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let share = (config.batch_size / slice.world).max(1);
        // Enough global batches at once to keep every core busy.
        let at_once = rayon::current_num_threads().div_ceil(share).max(2);
        let mut pos = start;
        loop {
            let order = dataset.epoch_order(config.seed, pos.epoch);
            while pos.index < order.len() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let mut stretches = Vec::new();
                let mut at = pos.index;
                while stretches.len() < at_once && at < order.len() {
                    let end = (at + config.batch_size).min(order.len());
                    let first = (at + slice.rank * share).min(end);
                    stretches.push((at, end, first..(first + share).min(end)));
                    at = end;
                }
                let wanted: Vec<usize> = stretches
                    .iter()
                    .flat_map(|(_, _, part)| part.clone())
                    .collect();
                let mut decoded = wanted
                    .par_iter()
                    .map_init(Resizer::new, |resizer, &k| {
                        decode_rgb(&dataset.files[order[k]])
                            .and_then(|img| square_crop(&img, config.image_size, resizer))
                    })
                    .collect::<Vec<_>>()
                    .into_iter();
                for (start, end, part) in stretches {
                    let mut pixels = Vec::new();
                    let mut skipped = Vec::new();
                    for k in part.clone() {
                        match decoded.next() {
                            Some(Ok(p)) => pixels.push(p),
                            Some(Err(e)) => {
                                skipped.push((dataset.files[order[k]].clone(), format!("{e:#}")))
                            }
                            None => return,
                        }
                    }
                    let next = if end == order.len() {
                        Position {
                            epoch: pos.epoch + 1,
                            index: 0,
                        }
                    } else {
                        Position {
                            epoch: pos.epoch,
                            index: end,
                        }
                    };
                    let batch = Batch {
                        images: to_batch(&pixels, config.image_size),
                        next,
                        skipped,
                        offset: part.start - start,
                        global: end - start,
                    };
                    if tx.send(batch).is_err() {
                        return;
                    }
                }
                pos.index = at;
            }
            pos = Position {
                epoch: pos.epoch + 1,
                index: 0,
            };
        }
    })
}

/// N×3×S×S uint8 from N square S×S RGB buffers.
fn to_batch(images: &[Vec<u8>], size: u32) -> Tensor {
    let s = size as i64;
    let flat: Vec<u8> = images.concat();
    Tensor::from_slice(&flat)
        .view([images.len() as i64, s, s, 3])
        .permute([0, 3, 1, 2])
        .contiguous()
        .to_kind(Kind::Uint8)
}
