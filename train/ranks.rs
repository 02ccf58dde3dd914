//! Data-parallel training's side of a run: joining the other processes (c10d, through the
//! launcher's environment), agreeing with them at every step, averaging gradients, and
//! explaining a failure with what the failed rank said. With no launcher it is one process
//! and every method is free.
use crate::launch::{Launch, Launcher};
use crate::signals::Stop;
use anyhow::{anyhow, bail, Context, Result};
use faststyle::data::{Batch, Slice};
use faststyle::device::DeviceChoice;
use faststyle::dist::{self, Group, JoinOptions, ReduceOp, Reducer};
use faststyle::training::{GradSync, Shard};
use std::cell::OnceCell;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// The processes of the run, seen from this one.
pub struct Ranks {
    dist: Option<Dist>,
}

/// A run of several processes (or of one, started by a launcher).
struct Dist {
    group: Group,
    reducer: OnceCell<Reducer>,
    timeout: Duration,
}

/// What the processes agreed on before a step.
pub struct Round {
    /// Photos of the global batch that the processes hold in all.
    pub photos: usize,
    /// Set when some process was asked to stop (this step is then everyone's last): the exit
    /// code that every rank ends with, whichever rank got the signal: 143 when one got SIGTERM,
    /// else 130 for Ctrl-C, else 1.
    pub stop: Option<u8>,
}

/// A collective failed (a peer is gone, or timed out): the cause is likely another rank's.
#[derive(Debug)]
struct Collective(String);

impl std::fmt::Display for Collective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Collective {}

/// Tags a collective's error, so that [`Ranks::explain`] looks for the rank that caused it.
fn collective<T>(what: &str, result: Result<T>) -> Result<T> {
    result.map_err(|e| anyhow::Error::new(Collective(format!("{what}: {e:#}"))))
}

impl Ranks {
    /// One process, as without a launcher.
    pub fn one() -> Self {
        Self { dist: None }
    }

    /// The device of this rank: under a launcher, `auto` and `cuda` mean `cuda:LOCAL_RANK`
    /// (one GPU per rank; where each rank sees one GPU, that one).
    pub fn device(choice: DeviceChoice, launch: Option<&Launch>) -> Result<Device> {
        let Some(launch) = launch else {
            return choice.resolve();
        };
        let cuda = match choice {
            DeviceChoice::Cpu => return Ok(Device::Cpu),
            DeviceChoice::Auto if !tch::Cuda::is_available() => return Ok(Device::Cpu),
            DeviceChoice::Cuda(n) if n != 0 => bail!(
                "--device cuda:{n} names one GPU, but under a launcher each rank takes the GPU of its LOCAL_RANK: use --device cuda"
            ),
            _ => DeviceChoice::Cuda(0).resolve()?,
        };
        let count = tch::Cuda::device_count() as usize;
        match launch.local_rank {
            _ if count == 1 => Ok(cuda),
            n if n < count => Ok(Device::Cuda(n)),
            n => bail!("LOCAL_RANK {n}, but this machine shows only {count} GPUs: start at most {count} processes per machine"),
        }
    }

    /// Meets the other processes of `launch` (within `timeout`); one process without one.
    pub fn join(launch: Option<Launch>, device: Device, timeout: Duration) -> Result<Self> {
        let Some(launch) = launch else {
            return Ok(Self::one());
        };
        let options = JoinOptions {
            host: launch.host.clone(),
            port: launch.port,
            // The agent's store outlives a restart: each attempt keeps to keys of its own.
            prefix: format!("attempt_{}/", launch.attempt),
            rank: launch.rank,
            world: launch.world,
            serve: launch.serve,
            timeout,
            device,
        };
        let group = Group::join(&options).map_err(|e| {
            let text = format!("{e:#}");
            let (r, w, t) = (launch.rank, launch.world, timeout.as_secs());
            let at = format!("{}:{}", launch.host, launch.port);
            match (text.strip_prefix("store: "), text.strip_prefix("peers: ")) {
                (Some(why), _) if launch.serve => anyhow!(
                    "rank {r} of {w}: cannot host the rendezvous store at {at} (MASTER_PORT): {why}"
                ),
                (Some(why), _) => anyhow!(
                    "rank {r} of {w}: cannot reach the rendezvous store at {at} (MASTER_ADDR:MASTER_PORT) within {t} s: {why}"
                ),
                (_, Some(why)) => anyhow!(
                    "rank {r} of {w}: not all {w} ranks arrived within {t} s (each one started, with the same MASTER_ADDR and MASTER_PORT{}?): {why}",
                    if launch.launcher == Launcher::Slurm { ", by srun" } else { "" }
                ),
                _ => anyhow!("rank {r} of {w}: cannot join the other ranks: {text}"),
            }
        })?;
        Ok(Self {
            dist: Some(Dist {
                group,
                reducer: OnceCell::new(),
                timeout,
            }),
        })
    }

    /// Whether this process is one of several (or was started by a launcher).
    pub fn distributed(&self) -> bool {
        self.dist.is_some()
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.dist.as_ref().map_or(0, |d| d.group.rank)
    }

    /// Processes in all.
    pub fn world(&self) -> usize {
        self.dist.as_ref().map_or(1, |d| d.group.world)
    }

    /// Whether this process writes the run's files, logs and progress (rank 0 alone).
    pub fn writes(&self) -> bool {
        self.rank() == 0
    }

    /// The loader's slice for this rank.
    pub fn slice(&self) -> Slice {
        Slice {
            rank: self.rank(),
            world: self.world(),
        }
    }

    /// Refuses a global batch that does not divide among the processes.
    pub fn check_batch(&self, batch: usize) -> Result<()> {
        let world = self.world();
        if !batch.is_multiple_of(world) {
            bail!("--batch-size {batch} does not divide among {world} processes: use a multiple of {world} (the batch size is the global batch)");
        }
        Ok(())
    }

    /// Makes sure that every process runs the same run from the same step (a resume reads the
    /// files of rank 0's machine on every machine: they must share the folder).
    pub fn check_same_run(&self, step: u64, fingerprint: u64) -> Result<()> {
        let Some(d) = &self.dist else {
            return Ok(());
        };
        // Each value and its negation, so that one MAX gives the minimum too.
        let parts = |v: u64| [(v >> 32) as i64, (v & 0xffff_ffff) as i64];
        let mine = [parts(step), parts(fingerprint)].concat();
        let values: Vec<i64> = mine
            .iter()
            .copied()
            .chain(mine.iter().map(|v| -v))
            .collect();
        let t = Tensor::from_slice(&values);
        collective("comparing the run", d.group.all_reduce(&t, ReduceOp::Max))?;
        let got = Vec::<i64>::try_from(&t).context("cannot read the comparison")?;
        let (max, min) = got.split_at(mine.len());
        let same = max.iter().zip(min).all(|(a, b)| *a == -b);
        if !same {
            let steps = (max[0] << 32 | max[1], -(min[0] << 32 | min[1]));
            if steps.0 != steps.1 {
                bail!("the ranks do not resume from the same step ({} here; {} to {} among them): every rank must see the run folder that rank 0 writes (a folder that all machines share)", step, steps.1, steps.0);
            }
            bail!("the ranks were not given the same run (their configurations differ): start every rank with the same command line");
        }
        Ok(())
    }

    /// Gives every rank rank 0's values of `params` (as DDP does before training).
    pub fn share_weights(&self, params: &[(String, Tensor)]) -> Result<()> {
        let Some(d) = &self.dist else {
            return Ok(());
        };
        tch::no_grad(|| {
            for (name, p) in params {
                collective(
                    &format!("sharing {name}"),
                    d.group.broadcast(&p.detach(), 0),
                )?;
            }
            Ok(())
        })
    }

    /// Averages the gradients of `params` over the ranks from now on (DDP's reducer).
    pub fn reduce_gradients(&self, params: &[(String, Tensor)]) -> Result<()> {
        if let Some(d) = &self.dist {
            let reducer = Reducer::new(&d.group, params, dist::BUCKET_BYTES)?;
            if d.reducer.set(reducer).is_err() {
                bail!("the gradients are already reduced");
            }
        }
        Ok(())
    }

    /// Agrees on the step about to run: the global batch's photo count, and whether any rank
    /// was asked to stop. One process: its own count, and no stop (it checks after the step).
    pub fn round(&self, photos: usize, stop: &Stop) -> Result<Round> {
        let Some(d) = &self.dist else {
            return Ok(Round { photos, stop: None });
        };
        // Counts, so that one sum tells the ranks' photos, stops and signals apart.
        let code = stop.requested().then(|| stop.exit_code());
        let t = Tensor::from_slice(&[
            photos as i64,
            i64::from(code.is_some()),
            i64::from(code == Some(143)),
            i64::from(code == Some(130)),
        ]);
        collective(
            "agreeing on the step",
            d.group.all_reduce(&t, ReduceOp::Sum),
        )?;
        let v = Vec::<i64>::try_from(&t).context("cannot read the agreement")?;
        Ok(Round {
            photos: v[0] as usize,
            stop: match (v[1], v[2], v[3]) {
                (0, _, _) => None,
                (_, n, _) if n > 0 => Some(143),
                (_, _, n) if n > 0 => Some(130),
                _ => Some(1),
            },
        })
    }

    /// Whether the run stops after this step, with the exit code it ends with: the agreed
    /// stop of several ranks, or one process's own signal.
    pub fn stopping(&self, round: &Round, stop: &Stop) -> Option<u8> {
        if self.dist.is_some() {
            round.stop
        } else {
            stop.requested().then(|| stop.exit_code())
        }
    }

    /// This rank's part of a step on `batch`, the global batch holding `round.photos`.
    pub fn shard(&self, batch: &Batch, round: &Round) -> Option<Shard<'_>> {
        let d = self.dist.as_ref()?;
        let local = batch.images.size()[0];
        Some(Shard {
            sync: d,
            // A rank without photos trains on a stand-in photo at weight 0.
            offset: if local == 0 { 0 } else { batch.offset as i64 },
            global: batch.global as i64,
            weight: if local == 0 {
                0.0
            } else {
                (local as usize * d.group.world) as f64 / round.photos as f64
            },
        })
    }

    /// Sums `t` over the ranks, in place.
    pub fn sum(&self, t: &Tensor) -> Result<()> {
        match &self.dist {
            Some(d) => collective("summing the losses", d.group.all_reduce(t, ReduceOp::Sum)),
            None => Ok(()),
        }
    }

    /// Waits until every rank got here (the end of the run: rank 0 has saved).
    pub fn barrier(&self) -> Result<()> {
        let Some(d) = &self.dist else {
            return Ok(());
        };
        let t = Tensor::zeros([1], (Kind::Int64, Device::Cpu));
        collective("finishing", d.group.all_reduce(&t, ReduceOp::Sum))
    }

    /// The error of this rank, told to the others through the store and explained: when a
    /// collective failed because another rank did, that rank and what it said.
    pub fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        let Some(d) = &self.dist else {
            return err;
        };
        let (rank, world) = (d.group.rank, d.group.world);
        let message = format!("{err:#}");
        let lost = is_collective(&err);
        let kind = if lost { "lost" } else { "root" };
        let _ = d
            .group
            .store_set(&format!("failed/{rank}"), &format!("{kind} {message}"));
        if !lost {
            return err.context(format!("rank {rank} of {world}"));
        }
        // The ranks that fail because of another report within moments of each other.
        let deadline = Instant::now() + Duration::from_secs(3).min(d.timeout);
        let mut silent: Vec<usize>;
        loop {
            silent = Vec::new();
            for other in (0..world).filter(|&r| r != rank) {
                match d.group.store_get(&format!("failed/{other}")) {
                    Ok(Some(record)) => {
                        if let Some(cause) = record.strip_prefix("root ") {
                            return anyhow!("rank {rank} of {world}: stopped because rank {other} failed: {cause}");
                        }
                    }
                    Ok(None) => silent.push(other),
                    Err(_) => {
                        return anyhow!("rank {rank} of {world}: {message} (the rendezvous store is gone too: its host, rank 0 or the launcher, stopped)");
                    }
                }
            }
            if silent.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if silent.is_empty() {
            return anyhow!("rank {rank} of {world}: {message}");
        }
        let list = silent
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        anyhow!("rank {rank} of {world}: {message} (rank {list} stopped answering without reporting an error: killed, out of memory, hung or unreachable)")
    }
}

/// Whether an error comes from a collective rather than from this rank's own work: one of
/// ours, or a backward pass's that the reducer's all-reduce raised.
fn is_collective(err: &anyhow::Error) -> bool {
    if err.downcast_ref::<Collective>().is_some() {
        return true;
    }
    let text = format!("{err:#}");
    text.starts_with("backward pass:")
        && [
            "Gloo",
            "gloo",
            "NCCL",
            "Connection",
            "connection",
            "peer",
            "Timed out",
            "timed out",
            "Socket",
            "socket",
        ]
        .iter()
        .any(|w| text.contains(w))
}

impl GradSync for Dist {
    fn before_backward(&self) -> Result<()> {
        match self.reducer.get() {
            Some(r) => collective("arming the gradient all-reduce", r.prepare()),
            None => Ok(()),
        }
    }

    fn all_finite(&self, finite: bool) -> Result<bool> {
        let t = Tensor::from_slice(&[i64::from(finite)]);
        collective(
            "agreeing on fp16 overflow",
            self.group.all_reduce(&t, ReduceOp::Min),
        )?;
        Ok(t.int64_value(&[0]) == 1)
    }

    fn mean(&self, value: &Tensor) -> Result<Tensor> {
        let sum = value.detach().copy();
        collective(
            "averaging the loss for --balance-styles",
            self.group.all_reduce(&sum, ReduceOp::Sum),
        )?;
        Ok(sum / self.group.world as f64)
    }
}

/// The distributed timeout's default: the rendezvous and each collective.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
