//! Data-parallel training on the CPU (c10d's Gloo over loopback), launched by `.venv`'s
//! torchrun as a user would: the same losses and weights as one process with the whole batch,
//! one writer, recovery from a killed worker, a clean stop on Ctrl-C, bounded failures.
mod common;

use common::{bin, free_port, stderr, write_image, write_random_vgg};
use faststyle::checkpoint;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A scratch folder with photos, a style image and random VGG16 weights.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(photos: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("photos");
        std::fs::create_dir_all(&data).unwrap();
        for i in 0..photos {
            write_image(&data.join(format!("p{i}.png")), 36, 34, i as u64 + 1);
        }
        write_image(&dir.path().join("style.png"), 40, 32, 99);
        write_random_vgg(&dir.path().join("vgg.safetensors"), 7);
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `train`'s arguments for a small CPU run into `out` (logs in `out/logs`).
    fn args(&self, out: &str, extra: &[&str]) -> Vec<String> {
        let out = self.path(out);
        let mut args: Vec<String> = vec![
            "--dataset".into(),
            self.path("photos").display().to_string(),
            "--style".into(),
            self.path("style.png").display().to_string(),
            "--vgg".into(),
            self.path("vgg.safetensors").display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--logdir".into(),
            out.join("logs").display().to_string(),
            "--image-size".into(),
            "32".into(),
            "--device".into(),
            "cpu".into(),
            "--log-every".into(),
            "1".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

/// `.venv/bin/torchrun`, or None (the test then says it was skipped).
fn torchrun() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/torchrun");
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipped: {} is missing (run scripts/setup.sh)",
            path.display()
        );
        None
    }
}

/// torchrun starting `procs` processes of `train` with `args` (on a free loopback port).
fn launch(torchrun: &Path, procs: usize, extra: &[&str], args: &[String]) -> Command {
    let mut cmd = Command::new(torchrun);
    cmd.args(["--standalone", "--nproc-per-node", &procs.to_string()])
        .args(extra)
        .args(["--no-python", bin("train").to_str().unwrap()])
        .args(args)
        .env("OMP_NUM_THREADS", "1");
    cmd
}

fn one_process(args: &[String]) -> Output {
    Command::new(bin("train"))
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

/// The logged losses of each `step N …` line, in the order printed.
fn step_lines(stdout: &str) -> Vec<(u64, Vec<(String, f64)>)> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("step ")?;
            let mut words = rest.split_whitespace();
            let step = words.next()?.parse().ok()?;
            let words: Vec<&str> = words.collect();
            let losses = words
                .chunks(2)
                .filter(|kv| kv.len() == 2 && kv[0] != "epoch" && kv[0] != "images/s")
                .map(|kv| (kv[0].to_string(), kv[1].parse().unwrap()))
                .collect();
            Some((step, losses))
        })
        .collect()
}

/// The last line of each step (a restarted run logs its redone steps again).
fn last_of_each(lines: Vec<(u64, Vec<(String, f64)>)>) -> BTreeMap<u64, Vec<(String, f64)>> {
    lines.into_iter().collect()
}

fn assert_losses_close(
    a: &BTreeMap<u64, Vec<(String, f64)>>,
    b: &BTreeMap<u64, Vec<(String, f64)>>,
    rel: f64,
) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (step, losses) in a {
        for ((name, x), (name_b, y)) in losses.iter().zip(&b[step]) {
            assert_eq!(name, name_b);
            let err = (x - y).abs() / x.abs().max(y.abs()).max(1e-30);
            assert!(
                err <= rel,
                "step {step}: {name} {x} vs {y} (relative {err:.2e})"
            );
        }
    }
}

#[test]
fn two_processes_train_as_one_process_with_the_whole_batch() {
    let Some(torchrun) = torchrun() else { return };
    // Six photos in global batches of 4: the epoch ends with a batch of 2, which leaves rank 1
    // without photos (it takes part at weight 0). The stability term checks that each rank
    // draws its photos' share of the global batch's noise. (Three steps: the losses of later
    // ones carry more and more of the weights' rounding noise that Adam amplifies, see below.)
    let s = Setup::new(6);
    let steps = 3;
    let flags = [
        "--batch-size",
        "4",
        "--iterations",
        "3",
        "--stability-weight",
        "1e-3",
        // The bound on the weights below is in steps of the example's constant lr, 1e-3.
        "--recipe",
        "example",
    ];
    let one = one_process(&s.args("one", &flags));
    assert_ok(&one);
    let two = launch(&torchrun, 2, &[], &s.args("two", &flags))
        .output()
        .unwrap();
    assert_ok(&two);

    let (a, b) = (
        step_lines(&String::from_utf8_lossy(&one.stdout)),
        step_lines(&String::from_utf8_lossy(&two.stdout)),
    );
    let centre_first = a[0].1.clone();
    // Rank 0 alone logs: each step once.
    assert_eq!(b.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_losses_close(&last_of_each(a), &last_of_each(b), 1e-4);

    // Adam turns a gradient that is only rounding noise (the convolution biases before an
    // instance norm have none in exact arithmetic) into a full step of either sign, so a few
    // weights differ by up to lr per step whatever the reduction order, as they do between
    // one-process runs on 1 and 2 threads. Every other weight agrees within 1e-5.
    let x = checkpoint::read(&s.path("one/style.safetensors")).unwrap();
    let y = checkpoint::read(&s.path("two/style.safetensors")).unwrap();
    let (mut total, mut far, mut worst) = (0i64, 0i64, 0f64);
    for (name, t) in &x.tensors {
        let d = (t - &y.tensors[name]).abs();
        total += d.numel() as i64;
        far += d.gt(1e-5).sum(tch::Kind::Int64).int64_value(&[]);
        worst = worst.max(d.max().double_value(&[]));
    }
    let share = far as f64 / total as f64;
    assert!(
        share < 0.01,
        "{far} of {total} weights differ by more than 1e-5"
    );
    assert!(
        worst <= 2.0 * 1e-3 * steps as f64,
        "a weight differs by {worst}"
    );

    // One writer: one model, one state, one event file (and the run's one lock).
    let mut files: Vec<String> = std::fs::read_dir(s.path("two"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            ".style.lock",
            "logs",
            "style.safetensors",
            "style.state.safetensors"
        ]
    );
    let events = std::fs::read_dir(s.path("two/logs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("tfevents")
        })
        .count();
    assert_eq!(events, 1);
    let err = stderr(&two);
    assert_eq!(err.matches("saved style model").count(), 1, "{err}");

    // With `--augment`, each photo gets the same random crop in whichever process decodes it.
    let augmented = [&flags[..], &["--augment"]].concat();
    let (a, b) = one_and_two(&s, &torchrun, "augmented", &augmented);
    assert_losses_close(&last_of_each(a.clone()), &last_of_each(b), 1e-4);
    // And not the centre crops: the first step's losses differ from the run above.
    assert_ne!(a[0].1, centre_first);

    // Two styles with --balance-styles: every rank divides by the global batch's loss (its
    // own would weigh the ranks' gradients differently, and be 0/0 on the rank left without
    // photos), so two processes still train as one.
    write_image(&s.path("style2.png"), 28, 36, 98);
    let second = s.path("style2.png").display().to_string();
    let balanced = [&flags[..], &["--style", &second, "--balance-styles"]].concat();
    let (a, b) = one_and_two(&s, &torchrun, "balanced", &balanced);
    assert_eq!(a.len(), steps);
    assert_losses_close(&last_of_each(a), &last_of_each(b), 1e-4);
}

/// One logged step: its number and its named losses.
type Logged = (u64, Vec<(String, f64)>);

/// The logged steps of one process and of two (under torchrun) run with `flags`, into
/// `one-LABEL` and `two-LABEL`; both must succeed.
fn one_and_two(
    s: &Setup,
    torchrun: &Path,
    label: &str,
    flags: &[&str],
) -> (Vec<Logged>, Vec<Logged>) {
    let one = one_process(&s.args(&format!("one-{label}"), flags));
    let two = launch(torchrun, 2, &[], &s.args(&format!("two-{label}"), flags))
        .output()
        .unwrap();
    assert_ok(&one);
    assert_ok(&two);
    (
        step_lines(&String::from_utf8_lossy(&one.stdout)),
        step_lines(&String::from_utf8_lossy(&two.stdout)),
    )
}

/// The processes that torchrun (pid `parent`) started, by their RANK.
fn workers(parent: u32) -> BTreeMap<usize, u32> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The parent pid is the second field after the command name in parentheses.
        let after = stat.rsplit(')').next().unwrap_or("");
        let ppid: u32 = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid != parent {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        for var in environ.split(|b| *b == 0) {
            if let Some(rank) = var.strip_prefix(b"RANK=") {
                if let Ok(rank) = String::from_utf8_lossy(rank).parse() {
                    found.insert(rank, pid);
                }
            }
        }
    }
    found
}

type Seen = std::sync::Arc<std::sync::Mutex<String>>;

/// Reads a child's stdout on a thread; `seen` grows as lines arrive.
fn collect_stdout(child: &mut Child) -> (Seen, std::thread::JoinHandle<()>) {
    let out = child.stdout.take().unwrap();
    collect(out)
}

/// Reads a child's stderr on a thread, likewise.
fn collect_stderr(child: &mut Child) -> (Seen, std::thread::JoinHandle<()>) {
    let err = child.stderr.take().unwrap();
    collect(err)
}

fn collect(out: impl std::io::Read + Send + 'static) -> (Seen, std::thread::JoinHandle<()>) {
    use std::io::BufRead;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let s = seen.clone();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let mut text = s.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    (seen, reader)
}

fn wait_for(seen: &std::sync::Mutex<String>, needle: &str, limit: Duration) {
    let start = Instant::now();
    while !seen.lock().unwrap().contains(needle) {
        assert!(
            start.elapsed() < limit,
            "no `{needle}` within {limit:?}: {}",
            seen.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_run_resumes_at_another_world_size_where_it_left_off() {
    let Some(torchrun) = torchrun() else { return };
    // Six photos in global batches of 4: the first half of each run (two steps) ends the
    // epoch on a batch of 2, so the second half starts a new epoch from the saved position.
    let s = Setup::new(6);
    let first = ["--batch-size", "4", "--iterations", "2"];
    let whole = ["--batch-size", "4", "--iterations", "4"];
    let resumed = ["--batch-size", "4", "--iterations", "4", "--resume"];
    let reference = one_process(&s.args("whole", &whole));
    assert_ok(&reference);
    let reference = last_of_each(step_lines(&String::from_utf8_lossy(&reference.stdout)));
    let later = |lines: &BTreeMap<u64, Vec<(String, f64)>>| -> BTreeMap<_, _> {
        lines
            .iter()
            .filter(|(step, _)| **step > 2)
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    };

    // Two processes, then one.
    let two = launch(&torchrun, 2, &[], &s.args("down", &first))
        .output()
        .unwrap();
    assert_ok(&two);
    let one = one_process(&s.args("down", &resumed));
    assert_ok(&one);
    let down = last_of_each(step_lines(&String::from_utf8_lossy(&one.stdout)));
    assert_eq!(down.keys().copied().collect::<Vec<_>>(), vec![3, 4]);
    assert_losses_close(&later(&reference), &down, 1e-4);

    // One process, then two.
    assert_ok(&one_process(&s.args("up", &first)));
    let two = launch(&torchrun, 2, &[], &s.args("up", &resumed))
        .output()
        .unwrap();
    assert_ok(&two);
    let up = last_of_each(step_lines(&String::from_utf8_lossy(&two.stdout)));
    assert_eq!(up.keys().copied().collect::<Vec<_>>(), vec![3, 4]);
    assert_losses_close(&later(&reference), &up, 1e-4);
    for run in ["down", "up"] {
        let file = checkpoint::read(&s.path(&format!("{run}/style.safetensors"))).unwrap();
        assert_eq!(file.metadata["iterations"], "4", "{run}");
    }
}

#[test]
fn a_killed_worker_brings_all_back_and_the_run_continues_exactly() {
    let Some(torchrun) = torchrun() else { return };
    let s = Setup::new(4);
    let flags = [
        "--batch-size",
        "2",
        "--iterations",
        "10",
        "--checkpoint-every",
        "2",
        "--resume",
        "auto",
    ];
    let whole = launch(&torchrun, 2, &[], &s.args("whole", &flags))
        .output()
        .unwrap();
    assert_ok(&whole);

    let mut child = launch(
        &torchrun,
        2,
        &["--max-restarts", "1"],
        &s.args("run", &flags),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let (seen, reader) = collect_stdout(&mut child);
    let (errors, err_reader) = collect_stderr(&mut child);
    wait_for(&seen, "\nstep 3 ", Duration::from_secs(120));
    let ranks = workers(child.id());
    let victim = ranks.get(&1).copied().expect("no worker with RANK=1");
    let killed = Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    reader.join().unwrap();
    err_reader.join().unwrap();
    let out = seen.lock().unwrap().clone();
    let err = errors.lock().unwrap().clone();
    assert!(
        status.success(),
        "torchrun failed ({status:?}):\n{out}\n{err}"
    );

    let lines = step_lines(&out);
    let steps: Vec<u64> = lines.iter().map(|(s, _)| *s).collect();
    // Steps after the last checkpoint before the kill were logged twice: the run restarted.
    assert!(
        steps.windows(2).any(|w| w[1] <= w[0]),
        "no restart is visible in the steps {steps:?}"
    );
    let restarted_at = steps.windows(2).position(|w| w[1] <= w[0]).unwrap() + 1;
    let after: BTreeMap<_, _> = lines[restarted_at..].iter().cloned().collect();
    let reference = last_of_each(step_lines(&String::from_utf8_lossy(&whole.stdout)));
    let expected: BTreeMap<_, _> = reference
        .into_iter()
        .filter(|(s, _)| after.contains_key(s))
        .collect();
    assert_eq!(*after.keys().last().unwrap(), 10);
    assert_losses_close(&expected, &after, 1e-6);
    let file = checkpoint::read(&s.path("run/style.safetensors")).unwrap();
    assert_eq!(file.metadata["iterations"], "10");
}

#[test]
fn ctrl_c_stops_every_rank_after_one_save() {
    let Some(torchrun) = torchrun() else { return };
    let s = Setup::new(4);
    let mut child = launch(
        &torchrun,
        2,
        &[],
        &s.args("run", &["--batch-size", "2", "--iterations", "100000"]),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let (seen, reader) = collect_stdout(&mut child);
    wait_for(&seen, "\nstep 2 ", Duration::from_secs(120));
    // A terminal's Ctrl-C reaches torchrun (its workers run in sessions of their own), which
    // passes it on to them.
    let sent = Instant::now();
    let int = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(int.success());
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(40),
        "took {:?}",
        sent.elapsed()
    );
    let logged = step_lines(&seen.lock().unwrap()).len();
    let file = checkpoint::read(&s.path("run/style.safetensors")).unwrap();
    assert_eq!(file.metadata["iterations"], logged.to_string(), "{err}");
    assert_eq!(err.matches("interrupted at iteration").count(), 1, "{err}");
    assert!(!err.contains("error:"), "{err}");
}

#[test]
fn sigterm_to_one_rank_stops_every_rank_with_143() {
    // The ranks are started as a PyTorchJob's pods are, with torchrun's variables set, so that
    // each one's own exit code is seen (torchrun reports only the first failure).
    if torchrun().is_none() {
        return;
    }
    let s = Setup::new(4);
    let port = free_port().to_string();
    let args = s.args("run", &["--batch-size", "2", "--iterations", "100000"]);
    let mut ranks: Vec<Child> = (0..2)
        .map(|rank| {
            Command::new(bin("train"))
                .args(&args)
                .env("OMP_NUM_THREADS", "1")
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (seen, reader) = collect_stdout(&mut ranks[0]);
    let (err0, err_reader) = collect_stderr(&mut ranks[0]);
    wait_for(&seen, "\nstep 2 ", Duration::from_secs(120));
    // The scheduler stops the job through one pod: only rank 1 gets the signal.
    let term = Command::new("kill")
        .args(["-TERM", &ranks[1].id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let sent = Instant::now();
    let codes: Vec<Option<i32>> = ranks.iter_mut().map(|r| r.wait().unwrap().code()).collect();
    reader.join().unwrap();
    err_reader.join().unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(40),
        "took {:?}",
        sent.elapsed()
    );
    let err = err0.lock().unwrap().clone();
    assert_eq!(codes, vec![Some(143), Some(143)], "{err}");
    assert_eq!(err.matches("interrupted at iteration").count(), 1, "{err}");
    let logged = step_lines(&seen.lock().unwrap()).len();
    let file = checkpoint::read(&s.path("run/style.safetensors")).unwrap();
    assert_eq!(file.metadata["iterations"], logged.to_string(), "{err}");
}

#[test]
fn a_rank_that_cannot_reach_the_store_fails_in_bounded_time() {
    let s = Setup::new(2);
    // A port that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let out = Command::new(bin("train"))
        .args(s.args("run", &["--batch-size", "2", "--dist-timeout", "2"]))
        .env("RANK", "1")
        .env("WORLD_SIZE", "2")
        .env("LOCAL_RANK", "1")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .output()
        .unwrap();
    let took = start.elapsed();
    assert!(!out.status.success());
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("error: rank 1 of 2: cannot reach the rendezvous store at 127.0.0.1:"),
        "{err}"
    );
    assert!(!s.path("run").exists(), "a rank other than 0 wrote files");
}

#[test]
fn a_batch_that_does_not_divide_is_refused() {
    let Some(torchrun) = torchrun() else { return };
    let s = Setup::new(2);
    let out = launch(&torchrun, 2, &[], &s.args("run", &["--batch-size", "3"]))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(!ours.is_empty(), "{err}");
    for line in ours {
        assert!(
            line.contains("--batch-size 3 does not divide among 2 processes"),
            "{err}"
        );
    }
}

#[test]
fn nccl_with_a_world_of_one_trains_as_plain_training_on_that_gpu() {
    if !tch::Cuda::is_available() {
        eprintln!("skipped: no CUDA device, so no NCCL (the Gloo tests cover the CPU)");
        return;
    }
    let Some(torchrun) = torchrun() else { return };
    let s = Setup::new(4);
    let flags = ["--batch-size", "2", "--iterations", "3"];
    let on_cuda = |out: &str| {
        let mut args = s.args(out, &flags);
        let at = args.iter().position(|a| a == "--device").unwrap();
        args[at + 1] = "cuda".into();
        args
    };
    let plain = one_process(&on_cuda("plain"));
    assert_ok(&plain);
    let nccl = launch(&torchrun, 1, &[], &on_cuda("nccl"))
        .output()
        .unwrap();
    assert_ok(&nccl);
    assert!(
        String::from_utf8_lossy(&nccl.stdout).contains("data-parallel group of 1 process"),
        "{}",
        String::from_utf8_lossy(&nccl.stdout)
    );
    // The same photos and weights: an all-reduce over one rank changes no gradient (cuDNN's
    // choice of algorithms may still differ in the last bits).
    assert_losses_close(
        &last_of_each(step_lines(&String::from_utf8_lossy(&plain.stdout))),
        &last_of_each(step_lines(&String::from_utf8_lossy(&nccl.stdout))),
        1e-3,
    );
}
