//! Batch runs over folders too big for one machine: `--shard K/N` keeps the inputs whose
//! relative path hashes to shard K of N, so that workers that never talk split one input list
//! exactly; `--skip-existing` drops the inputs whose output is already there, so a restarted
//! worker does only what is missing (outputs are written by rename: one that exists is whole).
use crate::plan::Plan;
use anyhow::{bail, Context, Result};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

/// Shard K of N (0 ≤ K < N).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This worker's shard.
    pub index: u64,
    /// How many shards there are.
    pub count: u64,
}

/// What `--shard` said: explicit numbers, or numbers to take from the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardSpec {
    /// `K/N`.
    Fixed(Shard),
    /// `auto`: K and N from a Slurm job array; `auto/N`: K from the scheduler, N given.
    FromEnv(Option<u64>),
}

impl FromStr for ShardSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || format!("`{s}` is not K/N, auto or auto/N (e.g. 3/10)");
        let (k, n) = match s.split_once('/') {
            Some((k, n)) => (k, Some(n)),
            None => (s, None),
        };
        let n = n
            .map(|n| n.trim().parse::<u64>().map_err(|_| usage()))
            .transpose()?;
        if n == Some(0) {
            return Err("the shard count N must be at least 1".into());
        }
        if k.trim() == "auto" {
            return Ok(Self::FromEnv(n));
        }
        let (Ok(index), Some(count)) = (k.trim().parse::<u64>(), n) else {
            return Err(usage());
        };
        Shard::new(index, count).map(Self::Fixed)
    }
}

impl Shard {
    fn new(index: u64, count: u64) -> Result<Self, String> {
        if index >= count {
            return Err(format!(
                "shard {index} of {count} does not exist (shards are 0…{})",
                count - 1
            ));
        }
        Ok(Self { index, count })
    }

    /// Whether the input at `relative` (its path under the folder given) belongs here.
    pub fn holds(self, relative: &str) -> bool {
        fnv1a(relative.as_bytes()) % self.count == self.index
    }
}

impl ShardSpec {
    /// The shard, reading the scheduler's variables where asked: Slurm's
    /// `SLURM_ARRAY_TASK_ID` (less `SLURM_ARRAY_TASK_MIN`) of `SLURM_ARRAY_TASK_COUNT`, or
    /// Kubernetes' `JOB_COMPLETION_INDEX` of the N given.
    pub fn resolve(self, env: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        let number = |name: &str| -> Result<Option<u64>> {
            env(name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .with_context(|| format!("--shard auto: {name}={v} is not a number"))
                })
                .transpose()
        };
        let shard = match self {
            Self::Fixed(shard) => return Ok(shard),
            Self::FromEnv(count) => {
                // Array ids need not start at 0 (`--array=1-10`).
                let slurm = match number("SLURM_ARRAY_TASK_ID")? {
                    Some(id) => {
                        Some(id.saturating_sub(number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0)))
                    }
                    None => None,
                };
                let index = match (number("JOB_COMPLETION_INDEX")?, slurm) {
                    (Some(k), _) | (None, Some(k)) => k,
                    (None, None) => bail!(
                        "--shard auto: neither JOB_COMPLETION_INDEX nor SLURM_ARRAY_TASK_ID is set (use --shard K/N)"
                    ),
                };
                let count = match (count, number("SLURM_ARRAY_TASK_COUNT")?) {
                    (Some(n), _) | (None, Some(n)) => n,
                    (None, None) => bail!(
                        "--shard auto: SLURM_ARRAY_TASK_COUNT is not set; give the count as --shard auto/N"
                    ),
                };
                Shard::new(index, count)
            }
        };
        shard.map_err(|e| anyhow::anyhow!("--shard: {e}"))
    }
}

/// 64-bit FNV-1a: tiny, fixed forever (unlike std's hasher), and the same on every machine.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The path an input is known by on every worker: relative to the folder given on the
/// command line (a loose file: its name), components joined with `/`.
fn relative_key(input: &Path, roots: &[PathBuf]) -> String {
    let relative = roots
        .iter()
        .filter(|r| r.is_dir())
        .find_map(|r| input.strip_prefix(r).ok())
        .filter(|rel| !rel.as_os_str().is_empty())
        .or_else(|| input.file_name().map(Path::new))
        .unwrap_or(input);
    let parts: Vec<_> = relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy()),
            _ => None,
        })
        .collect();
    parts.join("/")
}

/// Keeps the jobs (and the refused inputs, so that each is reported by one worker only) of
/// `shard`; `roots` are the inputs given on the command line.
pub fn keep_shard(plan: &mut Plan, roots: &[PathBuf], shard: Shard) {
    plan.jobs
        .retain(|job| shard.holds(&relative_key(&job.input, roots)));
    plan.failures
        .retain(|f| shard.holds(&relative_key(&f.path, roots)));
}

/// Drops the jobs whose output file exists; returns how many.
pub fn skip_existing(plan: &mut Plan) -> usize {
    let before = plan.jobs.len();
    plan.jobs.retain(|job| !job.output.is_file());
    before - plan.jobs.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs_parse_and_refuse_nonsense() {
        let fixed = |index, count| ShardSpec::Fixed(Shard { index, count });
        assert_eq!("3/10".parse(), Ok(fixed(3, 10)));
        assert_eq!("auto".parse(), Ok(ShardSpec::FromEnv(None)));
        assert_eq!("auto/4".parse(), Ok(ShardSpec::FromEnv(Some(4))));
        for bad in ["10/10", "1/0", "3", "a/b", "-1/3", ""] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_come_from_the_schedulers_variables() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|v| v.0 == k).map(|v| v.1.to_string())
        };
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ]);
        let auto = ShardSpec::FromEnv(None);
        assert_eq!(auto.resolve(slurm).unwrap(), Shard { index: 4, count: 8 });
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2")]);
        let shard = ShardSpec::FromEnv(Some(3)).resolve(k8s).unwrap();
        assert_eq!(shard, Shard { index: 2, count: 3 });
        assert!(auto.resolve(env(&[("JOB_COMPLETION_INDEX", "2")])).is_err());
        assert!(auto.resolve(env(&[])).is_err());
        let beyond = ShardSpec::FromEnv(Some(2)).resolve(env(&[("JOB_COMPLETION_INDEX", "2")]));
        assert!(beyond.is_err());
    }

    #[test]
    fn every_path_falls_in_exactly_one_shard_and_shards_are_balanced() {
        let count = 7;
        let mut sizes = vec![0usize; count as usize];
        for i in 0..7000 {
            let key = format!("album{}/IMG_{i:05}.jpg", i % 13);
            let owners: Vec<u64> = (0..count)
                .filter(|&index| Shard { index, count }.holds(&key))
                .collect();
            assert_eq!(owners.len(), 1, "{key}");
            sizes[owners[0] as usize] += 1;
        }
        assert!(sizes.iter().all(|&n| (800..1200).contains(&n)), "{sizes:?}");
        // Fixed forever: a known value of FNV-1a 64.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn the_key_is_the_path_under_the_folder_given() {
        let dir = std::env::temp_dir();
        let roots = vec![dir.clone(), PathBuf::from("loose.jpg")];
        assert_eq!(
            relative_key(&dir.join("a").join("b.jpg"), &roots),
            "a/b.jpg"
        );
        assert_eq!(relative_key(Path::new("x/loose.jpg"), &roots), "loose.jpg");
    }
}
