//! Faults that real machines bring, on the real binaries with tiny sizes: SIGTERM, SIGKILL at
//! random instants, full and read-only disks (a small tmpfs, mounted when the tests run as
//! root; skipped visibly otherwise), and damaged or foreign files.
mod common;

use common::{bin, error_lines, random_model, stderr, write_image, write_random_vgg};
use faststyle::checkpoint::{self, TrainState};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A scratch folder with three 32² photos, a style image and random VGG16 weights.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("photos")).unwrap();
        for i in 0..3 {
            write_image(&dir.path().join(format!("photos/p{i}.png")), 32, 32, i + 1);
        }
        write_image(&dir.path().join("style.png"), 40, 32, 99);
        write_random_vgg(&dir.path().join("vgg.safetensors"), 7);
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A small CPU run into `out` with logs in `logs`, `extra` appended.
    fn args(&self, out: &Path, logs: &Path, extra: &[&str]) -> Vec<String> {
        let p = |n: &str| self.path(n).to_str().unwrap().to_string();
        let mut args: Vec<String> = [
            "--dataset",
            &p("photos"),
            "--style",
            &p("style.png"),
            "--vgg",
            &p("vgg.safetensors"),
            "--out",
            out.to_str().unwrap(),
            "--logdir",
            logs.to_str().unwrap(),
            "--image-size",
            "32",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--log-every",
            "1",
            // These runs are stopped and resumed with another --iterations, which moves
            // the fast recipe's warm-up (it follows the run's length); the example's lr
            // is constant, so the resumed run must equal the shorter uninterrupted one.
            "--recipe",
            "example",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// The uninterrupted run of `iterations` steps (into `reference/`), as step lines.
    fn reference(&self, iterations: u64) -> BTreeMap<u64, String> {
        let out = self.path("reference");
        let args = self.args(
            &out,
            &out.join("logs"),
            &["--iterations", &iterations.to_string()],
        );
        let run = train(&args);
        assert_ok(&run);
        step_lines(&String::from_utf8_lossy(&run.stdout))
    }
}

/// The arguments that resume the run in `out` up to `iterations`.
fn resume_args(out: &Path, iterations: u64) -> Vec<String> {
    let it = iterations.to_string();
    [
        "--resume",
        out.to_str().unwrap(),
        "--iterations",
        &it,
        "--log-every",
        "1",
        "--device",
        "cpu",
    ]
    .map(String::from)
    .to_vec()
}

fn train(args: &[String]) -> Output {
    Command::new(bin("train")).args(args).output().unwrap()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

/// The per-step log lines (`step N … total T`, without the throughput) by step.
fn step_lines(stdout: &str) -> BTreeMap<u64, String> {
    stdout
        .lines()
        .filter_map(|l| {
            let step = l
                .strip_prefix("step ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((step, l.split(" images/s").next()?.to_string()))
        })
        .collect()
}

/// A child whose stdout lines are collected as they come.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(program: &str, args: &[String]) -> Self {
        let mut child = Command::new(bin(program))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// Waits (at most a minute) until `done` holds for the lines so far.
    fn wait_for(&self, done: impl Fn(&[String]) -> bool) {
        let start = Instant::now();
        while !done(&self.lines.lock().unwrap()) {
            assert!(start.elapsed() < Duration::from_secs(60), "timed out");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Waits for the exit: the code (None when a signal ended it), stdout and stderr.
    fn finish(mut self) -> (Option<i32>, String, String) {
        let mut err = String::new();
        std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut err).unwrap();
        let status = self.child.wait().unwrap();
        self.reader.take().unwrap().join().unwrap();
        let out = self.lines.lock().unwrap().join("\n");
        (status.code(), out, err)
    }
}

/// Temporary files (`.NAME.tmp-PID`) in a folder.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<PathBuf>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p: &PathBuf| is_temp(p))
        .collect()
}

/// Whether a file has a temporary name (`.NAME.tmp-PID`).
fn is_temp(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().contains(".tmp-"))
}

#[test]
fn sigterm_during_training_saves_and_resumes_exactly() {
    let s = Setup::new();
    let out = s.path("run");
    let args = s.args(&out, &out.join("logs"), &["--iterations", "100000"]);
    let run = Running::start("train", &args);
    run.wait_for(|l| l.len() >= 2);
    run.signal("-TERM");
    let sent = Instant::now();
    let (code, stdout, err) = run.finish();
    // Generous: on a loaded 2-core machine a step takes seconds.
    assert!(
        sent.elapsed() < Duration::from_secs(120),
        "{:?} to stop",
        sent.elapsed()
    );
    assert_eq!(code, Some(143), "{err}");
    assert!(err.contains("terminated (SIGTERM)"), "{err}");
    assert!(err.contains("resume with: train --resume"), "{err}");
    let done = step_lines(&stdout).len() as u64;
    let state = TrainState::load(&out.join("style.state.safetensors")).unwrap();
    assert_eq!(
        state.step, done,
        "the step in progress was finished and saved"
    );
    let model = checkpoint::read(&out.join("style.safetensors")).unwrap();
    assert_eq!(model.metadata["iterations"], done.to_string());

    let resumed = train(&resume_args(&out, done + 2));
    assert_ok(&resumed);
    let mut lines = step_lines(&stdout);
    lines.extend(step_lines(&String::from_utf8_lossy(&resumed.stdout)));
    assert_eq!(
        lines,
        s.reference(done + 2),
        "per-step losses differ after SIGTERM"
    );
}

#[test]
fn sigkill_at_random_instants_loses_only_the_steps_since_the_last_checkpoint() {
    const ITERATIONS: u64 = 14;
    const KILLS: usize = 8;
    let s = Setup::new();
    let started = Instant::now();
    let reference = s.reference(ITERATIONS);
    let whole = started.elapsed();
    let out = s.path("run");
    let fresh = s.args(
        &out,
        &out.join("logs"),
        &[
            "--iterations",
            &ITERATIONS.to_string(),
            "--checkpoint-every",
            "1",
        ],
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(19);
    let (mut kills, mut attempts, mut cut_between, mut logged) = (0, 0, 0, BTreeMap::new());
    loop {
        attempts += 1;
        assert!(attempts < 40, "the run never finished");
        let state = out.join("style.state.safetensors");
        let args = if state.exists() {
            resume_args(&out, ITERATIONS)
        } else {
            fresh.clone()
        };
        let mut run = Running::start("train", &args);
        let finished = if kills < KILLS {
            // Anywhere from the start-up to the end of a whole run.
            let delay = whole.mul_f64(rng.random_range(0.3..1.0));
            let deadline = Instant::now() + delay;
            let mut exited = false;
            while Instant::now() < deadline && !exited {
                exited = run.child.try_wait().unwrap().is_some();
                std::thread::sleep(Duration::from_millis(5));
            }
            if !exited {
                run.child.kill().unwrap();
                kills += 1;
            }
            let (code, stdout, err) = run.finish();
            assert!(!err.contains("panicked"), "{err}");
            if exited {
                assert_eq!(code, Some(0), "{err}");
            }
            logged.extend(step_lines(&stdout));
            exited
        } else {
            let (code, stdout, err) = run.finish();
            assert_eq!(code, Some(0), "{err}");
            logged.extend(step_lines(&stdout));
            true
        };
        // A kill between the model's rename and the state's leaves the model ahead.
        if let (Ok(state), Ok(meta)) = (
            TrainState::load(&state),
            checkpoint::read_metadata(&out.join("style.safetensors")),
        ) {
            if meta.get("sha256") != Some(&state.model_sha256) {
                cut_between += 1;
            }
        }
        if finished {
            break;
        }
    }
    eprintln!("{kills} kills in {attempts} runs; {cut_between} left the model ahead of its state");
    // Every step logged by any of the runs equals the uninterrupted run's.
    assert_eq!(logged, reference, "per-step losses differ");
    let a = checkpoint::read(&s.path("reference/style.safetensors")).unwrap();
    let b = checkpoint::read(&out.join("style.safetensors")).unwrap();
    for (name, t) in &a.tensors {
        assert!(t.equal(&b.tensors[name]), "{name} differs");
    }
    assert_eq!(temp_files(&out), Vec::<PathBuf>::new());
}

#[test]
fn a_model_left_ahead_of_its_state_is_rewritten_from_the_state() {
    // What a kill between the two renames of a save leaves: the model of step 3 beside the
    // state of step 2.
    let s = Setup::new();
    let out = s.path("run");
    let first = train(&s.args(&out, &out.join("logs"), &["--iterations", "2"]));
    assert_ok(&first);
    let state = out.join("style.state.safetensors");
    std::fs::copy(&state, s.path("state-2")).unwrap();
    assert_ok(&train(&resume_args(&out, 3)));
    std::fs::copy(s.path("state-2"), &state).unwrap();

    let resumed = train(&resume_args(&out, 5));
    assert_ok(&resumed);
    let err = stderr(&resumed);
    assert!(
        err.contains("is from iteration 3, a save cut short"),
        "{err}"
    );
    let mut lines = step_lines(&String::from_utf8_lossy(&first.stdout));
    lines.extend(step_lines(&String::from_utf8_lossy(&resumed.stdout)));
    assert_eq!(lines, s.reference(5));
}

/// A tmpfs mounted on a private folder (unmounted when dropped), or `None` (said why) where
/// mounting is not allowed.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(kib: u64, options: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let opts = format!("size={kib}k{options}");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self { dir }),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs (needs root): {}",
                    stderr(&o).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk, then frees `keep` bytes of it again.
    fn fill(&self, keep: u64) -> PathBuf {
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(keep)).unwrap();
        filler
    }

    /// The files in the tmpfs other than the filler.
    fn files(&self) -> Vec<PathBuf> {
        walkdir::WalkDir::new(self.path())
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file() && e.file_name() != "filler")
            .map(|e| e.path().to_path_buf())
            .collect()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The one error line of a run that met a full disk, naming a file under `dir`.
fn full_disk_error(err: &str, dir: &Path) -> String {
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("no space left on device"), "{err}");
    assert!(lines[0].contains(dir.to_str().unwrap()), "{err}");
    assert!(!err.contains("panicked") && !err.contains(".tmp-"), "{err}");
    lines[0].to_string()
}

#[test]
fn a_full_checkpoint_disk_stops_training_and_the_last_checkpoint_resumes() {
    let Some(disk) = Tmpfs::mount(64 << 10, "") else {
        return;
    };
    let s = Setup::new();
    let out = disk.path().join("run");
    let args = s.args(
        &out,
        &s.path("logs"),
        &["--iterations", "100000", "--checkpoint-every", "2"],
    );
    let run = Running::start("train", &args);
    let state = out.join("style.state.safetensors");
    run.wait_for(|_| state.exists());
    let filler = disk.fill(0);
    let (code, stdout, err) = run.finish();
    assert_eq!(code, Some(1), "{err}");
    full_disk_error(&err, &out);
    assert!(
        err.contains("free space, then resume with: train --resume"),
        "{err}"
    );
    assert_eq!(temp_files(&out), Vec::<PathBuf>::new());
    // The last checkpoint is whole and loads.
    let saved = TrainState::load(&state).unwrap();
    checkpoint::read(&out.join("style.safetensors")).unwrap();
    assert!(saved.step >= 2 && saved.step.is_multiple_of(2));

    std::fs::remove_file(filler).unwrap();
    let resumed = train(&resume_args(&out, saved.step + 2));
    assert_ok(&resumed);
    let mut lines = step_lines(&stdout);
    lines.retain(|&k, _| k <= saved.step);
    lines.extend(step_lines(&String::from_utf8_lossy(&resumed.stdout)));
    assert_eq!(lines, s.reference(saved.step + 2));
}

/// Whether an event file is a sequence of whole TensorBoard records.
fn whole_records(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 0;
    while at < bytes.len() {
        let Some(len) = bytes.get(at..at + 8) else {
            return false;
        };
        let len = u64::from_le_bytes(len.try_into().unwrap()) as usize;
        at += 8 + 4 + len + 4;
    }
    at == bytes.len()
}

#[test]
fn a_full_log_disk_saves_the_checkpoint_elsewhere_and_stops() {
    let Some(disk) = Tmpfs::mount(2 << 10, "") else {
        return;
    };
    let s = Setup::new();
    let (out, logs) = (s.path("run"), disk.path().join("logs"));
    let args = s.args(
        &out,
        &logs,
        &["--iterations", "100000", "--image-every", "1000"],
    );
    let run = Running::start("train", &args);
    run.wait_for(|l| !l.is_empty());
    disk.fill(0);
    let (code, stdout, err) = run.finish();
    assert_eq!(code, Some(1), "{err}");
    let line = full_disk_error(&err, &logs);
    assert!(line.contains("events.out.tfevents"), "{line}");
    let printed = step_lines(&stdout).len() as u64;
    let state = TrainState::load(&out.join("style.state.safetensors")).unwrap();
    // The step whose log failed was trained, and saved.
    assert_eq!(state.step, printed + 1, "{err}");
    assert!(
        err.contains(&format!("the run is saved at iteration {}", state.step)),
        "{err}"
    );
    for event in disk
        .files()
        .iter()
        .filter(|p| p.to_string_lossy().contains("tfevents"))
    {
        assert!(
            whole_records(event),
            "{} ends in a partial record",
            event.display()
        );
    }
}

/// `n` photos of 48² in a folder.
fn photos(dir: &Path, n: u64) -> PathBuf {
    let folder = dir.join("photos");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..n {
        write_image(&folder.join(format!("p{i:02}.png")), 48, 48, i + 1);
    }
    folder
}

fn infer(args: &[&Path]) -> Output {
    Command::new(bin("infer"))
        .args(args)
        .args(["--device", "cpu"])
        .output()
        .unwrap()
}

#[test]
fn infer_stops_on_a_full_disk_and_skip_existing_finishes() {
    let Some(disk) = Tmpfs::mount(1 << 10, "") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    random_model(&model, 3);
    let inputs = photos(dir.path(), 20);
    let out = disk.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let filler = disk.fill(40 << 10); // room for a few 48² PNGs (about 7 kB each)
    let c = Path::new("-c");
    let o = Path::new("-o");
    let first = infer(&[c, &model, &inputs, o, &out]);
    let err = stderr(&first);
    assert_eq!(first.status.code(), Some(1), "{err}");
    let errors = error_lines(&first);
    assert!(!errors.is_empty() && errors.len() < 20, "{err}");
    for e in &errors {
        assert!(
            e.contains("no space left on device") && e.contains(out.to_str().unwrap()),
            "{e}"
        );
    }
    assert!(
        err.contains("stopped: the output disk takes no more writes"),
        "{err}"
    );
    assert!(err.contains("--skip-existing"), "{err}");
    let written = disk.files();
    assert!(written.len() + errors.len() < 20, "did not stop: {err}");
    for f in &written {
        assert!(!is_temp(f), "{}", f.display());
        image::open(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }

    std::fs::remove_file(filler).unwrap();
    let skip = Path::new("--skip-existing");
    let second = infer(&[c, &model, &inputs, o, &out, skip]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(disk.files().len(), 20);
}

#[test]
fn infer_on_a_read_only_folder_says_so_and_stops() {
    let Some(disk) = Tmpfs::mount(1 << 10, ",ro") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    random_model(&model, 3);
    let inputs = photos(dir.path(), 12);
    let out = infer(&[
        Path::new("-c"),
        &model,
        &inputs,
        Path::new("-o"),
        disk.path(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let errors = error_lines(&out);
    assert!(!errors.is_empty() && errors.len() < 12, "{err}");
    assert!(
        errors.iter().all(|e| e.contains("read-only file system")),
        "{err}"
    );
    assert!(err.contains("stopped:"), "{err}");
}

/// An ffmpeg for the video tests, or `None` (said why).
fn ffmpeg() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/ffmpeg");
    let found = std::env::var_os("FASTSTYLE_FFMPEG")
        .map(PathBuf::from)
        .or_else(|| {
            Command::new("ffmpeg")
                .arg("-version")
                .output()
                .ok()
                .map(|_| PathBuf::from("ffmpeg"))
        });
    let found = found.or_else(|| venv.exists().then_some(venv));
    if found.is_none() {
        eprintln!("skipped: no ffmpeg (run scripts/setup.sh)");
    }
    found
}

#[test]
fn a_video_on_a_full_disk_is_one_error_and_leaves_nothing() {
    let Some(ffmpeg) = ffmpeg() else { return };
    let Some(disk) = Tmpfs::mount(512, "") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    random_model(&model, 3);
    let clips = dir.path().join("clips");
    std::fs::create_dir_all(&clips).unwrap();
    for name in ["a.mp4", "b.mp4"] {
        let made = Command::new(&ffmpeg)
            .args([
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=64x48:rate=10",
                "-t",
                "3",
            ])
            .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
            .arg(clips.join(name))
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", stderr(&made));
    }
    disk.fill(8 << 10);
    let out = disk.path().join("out");
    let run = Command::new(bin("infer"))
        .arg("-c")
        .arg(&model)
        .arg(&clips)
        .arg("-o")
        .arg(&out)
        .args(["--device", "cpu"])
        .env("FASTSTYLE_FFMPEG", &ffmpeg)
        .output()
        .unwrap();
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(1), "{err}");
    let line = full_disk_error(&err, &out);
    assert!(line.contains("a.mp4"), "{line}");
    assert!(
        err.contains("stopped:") && err.contains("1 not tried"),
        "{err}"
    );
    assert_eq!(disk.files(), Vec::<PathBuf>::new());
}

#[test]
fn a_preview_and_an_onnx_export_on_a_full_disk_leave_nothing() {
    let Some(disk) = Tmpfs::mount(256, "") else {
        return;
    };
    let s = Setup::new();
    disk.fill(0);
    let preview = disk.path().join("preview.png");
    let out = Command::new(bin("train"))
        .arg("--preview")
        .arg(s.path("photos/p0.png"))
        .arg("--style")
        .arg(s.path("style.png"))
        .arg("--vgg")
        .arg(s.path("vgg.safetensors"))
        .args([
            "--iterations",
            "1",
            "--image-size",
            "32",
            "--device",
            "cpu",
            "-o",
        ])
        .arg(&preview)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(full_disk_error(&err, disk.path()).contains("preview.png"));
    assert_eq!(disk.files(), Vec::<PathBuf>::new());

    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if !py.exists() {
        eprintln!(
            "skipped the ONNX export: {} is missing (run scripts/setup.sh)",
            py.display()
        );
        return;
    }
    let model = s.path("m.safetensors");
    random_model(&model, 3);
    let onnx = disk.path().join("m.onnx");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/export_onnx.py");
    let out = Command::new(py)
        .arg(script)
        .arg(&model)
        .arg(&onnx)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(full_disk_error(&err, disk.path()).contains("m.onnx"));
    assert_eq!(disk.files(), Vec::<PathBuf>::new());
}

#[test]
fn sigterm_stops_infer_after_the_images_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    random_model(&model, 3);
    let folder = dir.path().join("photos");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..40 {
        write_image(&folder.join(format!("p{i:02}.png")), 160, 120, i + 1);
    }
    let out = dir.path().join("out");
    let args: Vec<String> = [
        "-c",
        model.to_str().unwrap(),
        folder.to_str().unwrap(),
        "-o",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        out.to_str().unwrap().to_string(),
        "--device".into(),
        "cpu".into(),
    ])
    .collect();
    let run = Running::start("infer", &args);
    let start = Instant::now();
    while std::fs::read_dir(&out).map_or(0, |d| d.count()) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no output appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run.signal("-TERM");
    let (code, _, err) = run.finish();
    assert_eq!(code, Some(143), "{err}");
    let written: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(written.len() < 40, "not stopped early: {err}");
    assert!(
        err.contains(&format!(
            "interrupted: stylized {} of 40 images",
            written.len()
        )),
        "{err}"
    );
    for f in &written {
        assert!(!is_temp(f), "{}", f.display());
        image::open(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

/// The one `error:` line of a failed command, which must contain every needle.
fn one_error(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    let lines = error_lines(out);
    assert_eq!(lines.len(), 1, "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` not in: {}", lines[0]);
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// `bytes` with one bit of the byte `from_end` bytes before the end flipped.
fn flip(bytes: &[u8], from_end: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let i = b.len() - from_end;
    b[i] ^= 0x10;
    b
}

/// A safetensors file's bytes without its checksum entry (as a converted file has none).
fn without_checksum(bytes: &[u8]) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"]
        .as_object_mut()
        .unwrap()
        .remove("sha256");
    let mut text = header.to_string().into_bytes();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + n..]);
    out
}

#[test]
fn damaged_and_foreign_style_models_get_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    random_model(&model, 3);
    let photo = dir.path().join("p.png");
    write_image(&photo, 24, 24, 1);
    let good = std::fs::read(&model).unwrap();
    let try_model = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = dir.path().join(format!("{name}.png"));
        infer(&[Path::new("-c"), &path, &photo, Path::new("-o"), &out])
    };
    one_error(
        &try_model("cut.safetensors", &good[..good.len() / 2]),
        2,
        &["cut.safetensors", "truncated"],
    );
    one_error(
        &try_model("flip.safetensors", &flip(&good, 100)),
        2,
        &["flip.safetensors", "damaged", "checksum"],
    );
    // A file without a checksum (converted from PyTorch) still loads.
    assert!(try_model("plain.safetensors", &without_checksum(&good))
        .status
        .success());
}

#[test]
fn foreign_and_damaged_training_files_get_one_line_errors() {
    let s = Setup::new();
    let (a, b) = (s.path("a"), s.path("b"));
    for out in [&a, &b] {
        assert_ok(&train(&s.args(
            out,
            &out.join("logs"),
            &["--iterations", "1"],
        )));
    }
    let state = |dir: &Path| dir.join("style.state.safetensors");
    let kept = std::fs::read(state(&b)).unwrap();
    // A state from another run beside this run's model.
    std::fs::copy(state(&a), state(&b)).unwrap();
    one_error(
        &train(&resume_args(&b, 2)),
        1,
        &["b/style.state.safetensors", "another run"],
    );
    // A damaged state.
    std::fs::write(state(&b), flip(&kept, 1000)).unwrap();
    one_error(
        &train(&resume_args(&b, 2)),
        1,
        &["b/style.state.safetensors", "damaged"],
    );
    std::fs::write(state(&b), &kept[..kept.len() - 1000]).unwrap();
    one_error(
        &train(&resume_args(&b, 2)),
        1,
        &["b/style.state.safetensors", "truncated"],
    );
    // A state whose model is gone.
    std::fs::write(state(&b), &kept).unwrap();
    std::fs::remove_file(b.join("style.safetensors")).unwrap();
    one_error(
        &train(&resume_args(&b, 2)),
        1,
        &[
            "b/style.state.safetensors",
            "missing",
            "b/style.safetensors",
        ],
    );

    // VGG16 files with a wrong tensor: values that are not numbers, integers.
    let mut file = checkpoint::read(&s.path("vgg.safetensors")).unwrap();
    let w = tch::Tensor::full_like(&file.tensors["features.7.weight"], f64::NAN);
    file.tensors.insert("features.7.weight".into(), w);
    let tensors: Vec<_> = file.tensors.into_iter().collect();
    let nan = s.path("nan-vgg.safetensors");
    checkpoint::write(&nan, &tensors, &Default::default(), tch::Kind::Float).unwrap();
    let mut args = s.args(&s.path("c"), &s.path("c/logs"), &["--iterations", "1"]);
    let i = args.iter().position(|x| x == "--vgg").unwrap();
    args[i + 1] = nan.to_str().unwrap().to_string();
    one_error(
        &train(&args),
        1,
        &["nan-vgg.safetensors", "features.7.weight", "NaN"],
    );
}
