//! The model worker: one thread that owns the networks and takes jobs from a bounded queue.
//! On CUDA, waiting jobs for the same model, style and size go through the network together.
use super::metrics::Metrics;
use crate::guard;
use crate::model::Stylizer;
use anyhow::{anyhow, Result};
use image::RgbImage;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;

/// Largest batch on CUDA; on the CPU a batch is one picture (a batch is no faster there, and
/// one at a time gives exactly what `infer` gives).
const CUDA_MAX_BATCH: usize = 8;

/// The most pictures per pass on `device`.
pub fn max_batch(device: tch::Device) -> usize {
    if device.is_cuda() {
        CUDA_MAX_BATCH
    } else {
        1
    }
}

/// One picture to stylize and where its result goes.
pub struct Job {
    /// Index of the model in the catalog.
    pub model: usize,
    /// The `style=` choice of a model with several styles (none yet: see `params`).
    pub style: Option<String>,
    /// The picture, already decoded and scaled.
    pub rgb: RgbImage,
    /// Receives the network's output.
    pub reply: oneshot::Sender<Result<RgbImage>>,
}

impl Job {
    /// Whether two jobs can share one pass through the network.
    fn batches_with(&self, other: &Job) -> bool {
        self.model == other.model
            && self.style == other.style
            && self.rgb.dimensions() == other.rgb.dimensions()
    }
}

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its bound of waiting jobs.
    Full,
    /// The server is shutting down.
    Closed,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// A bounded queue of jobs between the HTTP side and the worker.
pub struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    metrics: Arc<Metrics>,
}

impl Queue {
    /// A queue that holds at most `capacity` waiting jobs.
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a job, or says why not (the job is dropped, so its reply channel closes).
    pub fn push(&self, job: Job) -> Result<(), Refused> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refused::Closed);
        }
        if state.jobs.len() >= self.capacity {
            return Err(Refused::Full);
        }
        state.jobs.push_back(job);
        self.metrics.queue_depth.set(state.jobs.len() as i64);
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// Jobs waiting now.
    pub fn depth(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Refuses new jobs; the worker finishes those already queued, then stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Waits for the oldest job and takes with it up to `max - 1` other waiting jobs that
    /// batch with it (in their order). `None` once closed and empty.
    fn take_batch(&self, max: usize) -> Option<Vec<Job>> {
        let mut state = self.lock();
        loop {
            if let Some(first) = state.jobs.pop_front() {
                let batch = take_matching(&mut state.jobs, first, max);
                self.metrics.queue_depth.set(state.jobs.len() as i64);
                return Some(batch);
            }
            if state.closed {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// `first` and up to `max - 1` jobs of `waiting` that batch with it, removed from `waiting`.
fn take_matching(waiting: &mut VecDeque<Job>, first: Job, max: usize) -> Vec<Job> {
    let mut batch = vec![first];
    let mut i = 0;
    while batch.len() < max && i < waiting.len() {
        if waiting[i].batches_with(&batch[0]) {
            batch.extend(waiting.remove(i));
        } else {
            i += 1;
        }
    }
    batch
}

/// Starts the worker thread over the networks; it stops when the queue is closed and empty.
pub fn spawn(
    networks: Vec<Stylizer>,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
) -> Result<JoinHandle<()>> {
    let max_batch = networks.first().map_or(1, |net| max_batch(net.device()));
    std::thread::Builder::new()
        .name("model-worker".into())
        .spawn(move || {
            while let Some(mut batch) = queue.take_batch(max_batch) {
                // A client that went away no longer waits for its result.
                batch.retain(|job| !job.reply.is_closed());
                if batch.is_empty() {
                    continue;
                }
                let start = Instant::now();
                let results = run(&networks[batch[0].model], &batch);
                metrics.observe_batch(batch.len(), start.elapsed());
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
        })
        .map_err(|e| anyhow!("cannot start the model worker: {e}"))
}

/// One pass through the network; a failure (say, out of memory) is every job's error.
fn run(net: &Stylizer, batch: &[Job]) -> Vec<Result<RgbImage>> {
    let outcome = guard::catch(|| {
        if let [job] = batch {
            Ok(vec![net.stylize(&job.rgb)?])
        } else {
            net.stylize_batch(&batch.iter().map(|j| &j.rgb).collect::<Vec<_>>())
        }
    });
    match outcome {
        Ok(images) => images.into_iter().map(Ok).collect(),
        Err(err) => {
            let message = crate::one_line(&err);
            batch.iter().map(|_| Err(anyhow!("{message}"))).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(model: usize, w: u32, h: u32) -> (Job, oneshot::Receiver<Result<RgbImage>>) {
        let (reply, rx) = oneshot::channel();
        let rgb = RgbImage::new(w, h);
        let job = Job {
            model,
            style: None,
            rgb,
            reply,
        };
        (job, rx)
    }

    #[test]
    fn a_batch_takes_only_jobs_of_the_same_model_and_size_in_order() {
        let queue = Queue::new(10, Arc::new(Metrics::default()));
        let mut receivers = Vec::new();
        for (model, w, h) in [(0, 8, 8), (0, 8, 4), (1, 8, 8), (0, 8, 8), (0, 8, 8)] {
            let (j, rx) = job(model, w, h);
            queue.push(j).unwrap();
            receivers.push(rx);
        }
        let sizes = |b: &[Job]| -> Vec<(usize, (u32, u32))> {
            b.iter().map(|j| (j.model, j.rgb.dimensions())).collect()
        };
        let first = queue.take_batch(2).unwrap();
        assert_eq!(sizes(&first), [(0, (8, 8)), (0, (8, 8))]);
        let second = queue.take_batch(8).unwrap();
        assert_eq!(sizes(&second), [(0, (8, 4))]);
        let third = queue.take_batch(8).unwrap();
        assert_eq!(sizes(&third), [(1, (8, 8))]);
        assert_eq!(queue.depth(), 1);
        queue.close();
        assert_eq!(queue.take_batch(8).unwrap().len(), 1);
        assert!(queue.take_batch(8).is_none());
    }

    #[test]
    fn a_full_or_closed_queue_refuses() {
        let queue = Queue::new(1, Arc::new(Metrics::default()));
        assert!(queue.push(job(0, 1, 1).0).is_ok());
        assert_eq!(queue.push(job(0, 1, 1).0), Err(Refused::Full));
        queue.close();
        assert_eq!(queue.push(job(0, 1, 1).0), Err(Refused::Closed));
    }
}
