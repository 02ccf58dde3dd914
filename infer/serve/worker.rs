//! The model worker: one thread that runs the networks, taking jobs from a bounded queue. Each
//! job carries its network, so a reload never changes the model of a job already queued. On
//! CUDA, waiting jobs for the same model, style (or the same blend) and size go through the
//! network together.
use super::metrics::Metrics;
use super::models::Network;
use crate::guard;
use crate::model::Stylizer;
use anyhow::{anyhow, Result};
use faststyle::conditional::StyleMix;
use faststyle::imageio::{Colour, Depth};
use faststyle::styles::StyleChoice;
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
    /// The model's network.
    pub network: Network,
    /// The style or blend to apply, resolved from `choice` against the model's styles.
    pub style: StyleMix,
    /// `style=` as the client wrote it (what a batch selects; it resolves to `style`).
    pub choice: Option<StyleChoice>,
    /// The picture, already decoded and scaled.
    pub rgb: RgbImage,
    /// The depth of the result: 16 bits for a 16-bit photo answered in a format that holds
    /// them (such a job goes through the network alone).
    pub depth: Depth,
    /// Receives the network's output.
    pub reply: oneshot::Sender<Result<Colour>>,
}

impl Job {
    /// Whether two jobs can share one pass through the network: the same model, the same
    /// resolved style or mix (however it was written), the same size, 8-bit results.
    fn batches_with(&self, other: &Job) -> bool {
        Arc::ptr_eq(&self.network, &other.network)
            && self.style == other.style
            && self.rgb.dimensions() == other.rgb.dimensions()
            && self.depth == Depth::Eight
            && other.depth == Depth::Eight
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

/// Starts the worker thread for networks on `device`; it stops when the queue is closed and
/// empty.
pub fn spawn(
    device: tch::Device,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
) -> Result<JoinHandle<()>> {
    let max_batch = max_batch(device);
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
                let network = Arc::clone(&batch[0].network);
                // Only this thread runs networks: the lock is never contended.
                let mut net = network.lock().unwrap_or_else(|e| e.into_inner());
                let results = run(&mut net, &batch);
                drop(net);
                metrics.observe_batch(batch.len(), start.elapsed());
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
        })
        .map_err(|e| anyhow!("cannot start the model worker: {e}"))
}

/// One pass through the network; a failure (say, out of memory) is every job's error.
fn run(net: &mut Stylizer, batch: &[Job]) -> Vec<Result<Colour>> {
    let outcome = guard::catch(|| {
        if let [job] = batch {
            Ok(vec![net.stylize_as_at(&job.rgb, &job.style, job.depth)?])
        } else {
            // Every job of a batch resolves to the same mix, so the first one's choice
            // selects what the batch gets.
            net.select(batch[0].choice.as_ref())?;
            let pictures = batch.iter().map(|j| &j.rgb).collect::<Vec<_>>();
            let results = net.stylize_batch(&pictures)?;
            Ok(results.into_iter().map(Colour::Eight).collect())
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
    use faststyle::checkpoint::{self, ModelInfo};
    use faststyle::device::Precision;
    use faststyle::transformer::TransformerNet;
    use std::sync::Mutex;

    /// `n` distinct networks (default weights, through a model file as the server loads them).
    fn networks(n: usize) -> Vec<Network> {
        let dir = tempfile::tempdir().unwrap();
        (0..n)
            .map(|i| {
                let vs = tch::nn::VarStore::new(tch::Device::Cpu);
                let _net = TransformerNet::new(&vs.root());
                let path = dir.path().join(format!("{i}.safetensors"));
                let info = ModelInfo {
                    style: "test".into(),
                    ..Default::default()
                };
                checkpoint::save_model(&path, &vs, &info, tch::Kind::Float).unwrap();
                let net = Stylizer::load(&path, tch::Device::Cpu, Precision::Fp32).unwrap();
                Arc::new(Mutex::new(net))
            })
            .collect()
    }

    fn job(model: &Network, w: u32, h: u32) -> (Job, oneshot::Receiver<Result<Colour>>) {
        styled(model, StyleMix::One(0), None, w, h)
    }

    fn styled(
        model: &Network,
        style: StyleMix,
        choice: Option<&str>,
        w: u32,
        h: u32,
    ) -> (Job, oneshot::Receiver<Result<Colour>>) {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            network: Arc::clone(model),
            style,
            choice: choice.map(|c| c.parse().unwrap()),
            rgb: RgbImage::new(w, h),
            depth: Depth::Eight,
            reply,
        };
        (job, rx)
    }

    #[test]
    fn a_batch_takes_only_jobs_of_the_same_style_or_the_same_blend() {
        let queue = Queue::new(10, Arc::new(Metrics::default()));
        let net = &networks(1)[0];
        let half = StyleMix::Blend(vec![0.5, 0.5]);
        let mut receivers = Vec::new();
        for (style, choice) in [
            (StyleMix::One(0), "a"),
            (StyleMix::One(1), "b"),
            (half.clone(), "a:1,b:1"),
            (StyleMix::One(0), "0"), // the same style written otherwise
            (StyleMix::Blend(vec![0.75, 0.25]), "a:3,b:1"),
            (half.clone(), "b:2,a:2"), // the same mix written otherwise
            (StyleMix::One(1), "b"),
        ] {
            let (j, rx) = styled(net, style, Some(choice), 8, 8);
            queue.push(j).unwrap();
            receivers.push(rx);
        }
        let choices = |b: &[Job]| -> Vec<String> {
            b.iter()
                .map(|j| j.choice.as_ref().unwrap().to_string())
                .collect()
        };
        let batches: Vec<Vec<String>> = (0..4)
            .map(|_| choices(&queue.take_batch(8).unwrap()))
            .collect();
        assert_eq!(
            batches,
            [
                vec!["a", "0"],
                vec!["b", "b"],
                vec!["a:1,b:1", "b:2,a:2"],
                vec!["a:3,b:1"],
            ]
        );
        assert_eq!(queue.depth(), 0);
    }

    #[test]
    fn a_batch_takes_only_jobs_of_the_same_model_and_size_in_order() {
        let queue = Queue::new(10, Arc::new(Metrics::default()));
        let nets = networks(2);
        let index = |n: &Network| nets.iter().position(|m| Arc::ptr_eq(m, n)).unwrap();
        let mut receivers = Vec::new();
        for (model, w, h) in [(0, 8, 8), (0, 8, 4), (1, 8, 8), (0, 8, 8), (0, 8, 8)] {
            let (j, rx) = job(&nets[model], w, h);
            queue.push(j).unwrap();
            receivers.push(rx);
        }
        let sizes = |b: &[Job]| -> Vec<(usize, (u32, u32))> {
            b.iter()
                .map(|j| (index(&j.network), j.rgb.dimensions()))
                .collect()
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
        let net = &networks(1)[0];
        assert!(queue.push(job(net, 1, 1).0).is_ok());
        assert_eq!(queue.push(job(net, 1, 1).0), Err(Refused::Full));
        queue.close();
        assert_eq!(queue.push(job(net, 1, 1).0), Err(Refused::Closed));
    }
}
