//! Which launcher started this process, read from its standard environment: torchrun (and
//! Kubeflow's PyTorchJob, which sets the same variables) or Slurm's srun. Without either,
//! `train` is one process.
use anyhow::{bail, Context, Result};

/// The launcher that started the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// torchrun, or anything else that sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
    Torchrun,
    /// Slurm's srun (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, the node list).
    Slurm,
}

/// This process's place in a data-parallel job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Who started it.
    pub launcher: Launcher,
    /// Its rank, from 0.
    pub rank: usize,
    /// Processes in all.
    pub world: usize,
    /// Its rank among the processes of its machine: its GPU.
    pub local_rank: usize,
    /// Host of the rendezvous store.
    pub host: String,
    /// Port of the rendezvous store.
    pub port: u16,
    /// Whether this process hosts the store (rank 0, unless torchrun's agent hosts it).
    pub serve: bool,
    /// Which start of the job this is (torchrun's restart count; 0 for the first).
    pub attempt: usize,
}

impl Launch {
    /// The launch described by the process's environment, if any.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// The launch that the variables `var` gives describe (torchrun's first).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let number = |name: &str| -> Result<Option<usize>> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .with_context(|| format!("{name}={v} is not a number"))
                })
                .transpose()
        };
        let port = |v: String| -> Result<u16> {
            v.trim()
                .parse::<u16>()
                .with_context(|| format!("MASTER_PORT={v} is not a port number"))
        };
        if let (Some(rank), Some(world)) = (number("RANK")?, number("WORLD_SIZE")?) {
            check_rank("RANK", rank, "WORLD_SIZE", world)?;
            let (Some(host), Some(p)) = (var("MASTER_ADDR"), var("MASTER_PORT")) else {
                bail!("RANK and WORLD_SIZE are set but MASTER_ADDR or MASTER_PORT is not: the launcher must say where rank 0's store is");
            };
            // torchrun's agent hosts the store and tells its workers so; otherwise rank 0 does.
            let agent = var("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True");
            return Ok(Some(Self {
                launcher: Launcher::Torchrun,
                rank,
                world,
                local_rank: number("LOCAL_RANK")?.unwrap_or(0),
                host,
                port: port(p)?,
                serve: rank == 0 && !agent,
                attempt: number("TORCHELASTIC_RESTART_COUNT")?.unwrap_or(0),
            }));
        }
        if let (Some(rank), Some(world)) = (number("SLURM_PROCID")?, number("SLURM_NTASKS")?) {
            check_rank("SLURM_PROCID", rank, "SLURM_NTASKS", world)?;
            if world == 1 {
                // One task (a batch script run without srun): one process, as without Slurm.
                return Ok(None);
            }
            let host = match var("MASTER_ADDR") {
                Some(h) => h,
                None => {
                    let list = ["SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"]
                        .into_iter()
                        .find_map(&var)
                        .context("SLURM_PROCID is set but no node list (SLURM_JOB_NODELIST) is, nor MASTER_ADDR")?;
                    first_host(&list)?
                }
            };
            let port = match var("MASTER_PORT") {
                Some(p) => port(p)?,
                // A port of the job's own, so that two jobs sharing a first node do not clash.
                None => 15000 + (number("SLURM_JOB_ID")?.unwrap_or(0) % 20000) as u16,
            };
            return Ok(Some(Self {
                launcher: Launcher::Slurm,
                rank,
                world,
                local_rank: number("SLURM_LOCALID")?.unwrap_or(0),
                host,
                port,
                serve: rank == 0,
                // A requeued job starts a new store on rank 0.
                attempt: 0,
            }));
        }
        Ok(None)
    }
}

fn check_rank(rank_var: &str, rank: usize, world_var: &str, world: usize) -> Result<()> {
    if world == 0 || rank >= world {
        bail!("{rank_var}={rank} does not fit {world_var}={world}");
    }
    Ok(())
}

/// The first host of a Slurm node list in its compressed form: `gpu[03-05,09],cpu1` gives
/// `gpu03`, `rack[1-2]-n[07-08]` gives `rack1-n07`.
pub fn first_host(list: &str) -> Result<String> {
    let mut host = String::new();
    let mut chars = list.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            ',' => break,
            '[' => {
                // The first number (or name) of the bracket, with its zero padding.
                let inside: String = chars.by_ref().take_while(|&c| c != ']').collect();
                let first = inside.split([',', '-']).next().unwrap_or("");
                if first.is_empty() {
                    bail!("node list `{list}`: empty brackets");
                }
                host.push_str(first);
            }
            c => host.push(c),
        }
    }
    if host.is_empty() {
        bail!("node list `{list}` names no host");
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Option<Launch>> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Launch::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn first_hosts_of_compressed_node_lists() {
        for (list, host) in [
            ("node7", "node7"),
            ("gpu[03-05,09]", "gpu03"),
            ("gpu[03-05,09],cpu1", "gpu03"),
            ("a,b", "a"),
            ("rack[1-2]-n[07-08]", "rack1-n07"),
            ("n[12,4]", "n12"),
            ("login-[001-100].cluster", "login-001.cluster"),
        ] {
            assert_eq!(first_host(list).unwrap(), host, "{list}");
        }
        assert!(first_host("").is_err());
        assert!(first_host("n[]").is_err());
    }

    #[test]
    fn torchrun_variables() {
        let l = launch(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29400"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(l.launcher, Launcher::Torchrun);
        assert_eq!(l.attempt, 2);
        assert_eq!((l.rank, l.world, l.local_rank), (3, 8, 1));
        assert_eq!(
            (l.host.as_str(), l.port, l.serve),
            ("10.0.0.1", 29400, false)
        );
        // A PyTorchJob without torchrun: rank 0 hosts the store.
        let l = launch(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "job-master-0"),
            ("MASTER_PORT", "23456"),
        ])
        .unwrap()
        .unwrap();
        assert!(l.serve);
        assert_eq!(l.local_rank, 0);
        assert!(launch(&[("RANK", "2"), ("WORLD_SIZE", "2")]).is_err());
        assert!(launch(&[("RANK", "0"), ("WORLD_SIZE", "2")]).is_err());
        assert!(launch(&[
            ("RANK", "x"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "1")
        ])
        .is_err());
    }

    #[test]
    fn slurm_variables() {
        let l = launch(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[012-015]"),
            ("SLURM_JOB_ID", "123456"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(l.launcher, Launcher::Slurm);
        assert_eq!((l.rank, l.world, l.local_rank), (5, 16, 1));
        assert_eq!(
            (l.host.as_str(), l.port, l.serve),
            ("gpu012", 15000 + 3456, false)
        );
        // torchrun inside an allocation: torchrun's variables win.
        let l = launch(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_JOB_NODELIST", "n1"),
            ("RANK", "1"),
            ("WORLD_SIZE", "4"),
            ("MASTER_ADDR", "n1"),
            ("MASTER_PORT", "29500"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((l.launcher, l.rank, l.world), (Launcher::Torchrun, 1, 4));
        // One task is one process; nothing set is one process.
        assert_eq!(
            launch(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")]).unwrap(),
            None
        );
        assert_eq!(launch(&[]).unwrap(), None);
    }
}
