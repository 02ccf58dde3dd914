//! Integration tests of the `train` binary on tiny photo folders, with random VGG16 weights
//! written by the test in the real file format.
mod common;

use common::{bin, stderr, write_image, write_random_vgg};
use faststyle::checkpoint;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// A scratch folder with a dataset of `photos` images of `side`², a style image and VGG weights.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(photos: usize, side: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("photos/sub");
        std::fs::create_dir_all(&data).unwrap();
        for i in 0..photos {
            write_image(&data.join(format!("p{i}.png")), side, side, i as u64 + 1);
        }
        write_image(&dir.path().join("style.png"), 40, 32, 99);
        write_random_vgg(&dir.path().join("vgg.safetensors"), 7);
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Arguments of a small CPU run into `out` (logs under `out/logs`).
    fn args(&self, out: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "--dataset",
            self.path("photos").to_str().unwrap(),
            "--style",
            self.path("style.png").to_str().unwrap(),
            "--vgg",
            self.path("vgg.safetensors").to_str().unwrap(),
            "--out",
            self.path(out).to_str().unwrap(),
            "--logdir",
            self.path(out).join("logs").to_str().unwrap(),
            "--image-size",
            "32",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

fn train(args: &[String]) -> Output {
    Command::new(bin("train")).args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The per-step log lines (`step N … content X style Y tv Z total T …`) by step.
fn step_lines(out: &Output) -> BTreeMap<u64, String> {
    stdout(out)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("step ")?;
            let step = rest.split_whitespace().next()?.parse().ok()?;
            // Everything but the throughput, which differs between runs.
            let losses = l.split(" images/s").next()?.to_string();
            Some((step, losses))
        })
        .collect()
}

/// A named loss of every logged step.
fn losses(out: &Output, name: &str) -> Vec<f64> {
    step_lines(out)
        .values()
        .map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == name).unwrap();
            words.next().unwrap().parse().unwrap()
        })
        .collect()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "train failed:\n{}\n{}",
        stdout(out),
        stderr(out)
    );
}

fn venv_python() -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if py.exists() {
        Some(py)
    } else {
        eprintln!(
            "skipped: {} is missing (run scripts/setup.sh)",
            py.display()
        );
        None
    }
}

#[test]
fn loss_falls_when_overfitting_one_photo() {
    let s = Setup::new(1, 32);
    let out = train(&s.args(
        "run",
        &["--iterations", "40", "--log-every", "5", "--lr", "1e-2"],
    ));
    assert_ok(&out);
    let total = losses(&out, "total");
    assert_eq!(total.len(), 8, "{}", stdout(&out));
    assert!(
        total[7] < 0.5 * total[0],
        "total loss did not fall: {total:?}"
    );
    // The final style model is self-contained: it loads and has the metadata of DESIGN.md.
    let file = checkpoint::read(&s.path("run/style.safetensors")).unwrap();
    assert_eq!(file.metadata["format"], checkpoint::MODEL_FORMAT);
    assert_eq!(file.metadata["iterations"], "40");
    assert_eq!(file.metadata["image_size"], "32");
    assert!(file.tensors.keys().all(|k| !k.starts_with("adam")));
}

#[test]
fn first_steps_match_pytorch_example() {
    let Some(py) = venv_python() else { return };
    // A single photo that is already --image-size square and a style image used as is:
    // no resampling, so the numbers must agree with PyTorch's.
    let s = Setup::new(1, 32);
    // The network's own initialisation: the exaggerated outputs of common::random_net would
    // make a few Adam steps chaotic enough to amplify float rounding between the two.
    tch::manual_seed(3);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _net = faststyle::transformer::TransformerNet::new(&vs.root());
    checkpoint::save_model(
        &s.path("init.safetensors"),
        &vs,
        &Default::default(),
        Kind::Float,
    )
    .unwrap();
    let steps = 4;
    let out = train(&s.args(
        "run",
        &[
            "--recipe",
            "example",
            "--init",
            s.path("init.safetensors").to_str().unwrap(),
            "--iterations",
            "4",
            "--log-every",
            "1",
        ],
    ));
    assert_ok(&out);
    let reference = Command::new(py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/torch_net.py"))
        .args(["train", "--steps", &steps.to_string(), "--checkpoint-init"])
        .arg(s.path("init.safetensors"))
        .arg("--vgg")
        .arg(s.path("vgg.safetensors"))
        .arg("--content")
        .arg(s.path("photos/sub/p0.png"))
        .arg("--style")
        .arg(s.path("style.png"))
        .arg("--out")
        .arg(s.path("ref.json"))
        .output()
        .unwrap();
    assert!(reference.status.success(), "{}", stderr(&reference));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("ref.json")).unwrap()).unwrap();
    for name in ["content", "style", "total"] {
        let ours = losses(&out, name);
        let theirs: Vec<f64> = json[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(ours.len(), steps);
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            // Step 1 is one forward pass; later steps also compare the Adam updates.
            let tol = if i == 0 { 1e-4 } else { 1e-3 };
            assert!(
                ((a - b) / b).abs() < tol,
                "{name} loss at step {}: ours {a}, PyTorch {b}",
                i + 1
            );
        }
    }
}

#[test]
fn resume_repeats_the_uninterrupted_run() {
    // Three photos in batches of two: epochs end in a short batch, and the resume point
    // falls in the middle of an epoch.
    let s = Setup::new(3, 36);
    let whole = train(&s.args("whole", &["--iterations", "6", "--log-every", "1"]));
    assert_ok(&whole);
    let first = train(&s.args("split", &["--iterations", "3", "--log-every", "1"]));
    assert_ok(&first);
    let split_dir = s.path("split");
    let resume = [
        "--resume",
        split_dir.to_str().unwrap(),
        "--iterations",
        "6",
        "--log-every",
        "1",
        "--device",
        "cpu",
    ];
    let second = train(&resume.map(String::from));
    assert_ok(&second);
    let mut split = step_lines(&first);
    split.extend(step_lines(&second));
    assert_eq!(split.len(), 6);
    assert_eq!(
        step_lines(&whole),
        split,
        "per-step losses differ after resuming"
    );
    // The weights end up the same too.
    let a = checkpoint::read(&s.path("whole/style.safetensors")).unwrap();
    let b = checkpoint::read(&s.path("split/style.safetensors")).unwrap();
    for (name, t) in &a.tensors {
        assert!(t.equal(&b.tensors[name]), "{name} differs");
    }
}

/// Runs `args` and presses Ctrl-C once its stdout shows step `after`; returns the output.
fn train_interrupted(args: &[String], after: u64) -> Output {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(bin("train"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let at = line
            .strip_prefix("step ")
            .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok());
        lines.push(line);
        if at == Some(after) {
            let kill = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(kill.success());
        }
    }
    let mut out = child.wait_with_output().unwrap();
    out.stdout = (lines.join("\n") + "\n").into_bytes();
    out
}

#[test]
fn fast_recipe_resumes_exactly_through_its_warm_up_decay_and_crop_sizes() {
    // The fast recipe's lr follows the run's length and its crops change size at 40% of
    // it: a run stopped by Ctrl-C and resumed must repeat the uninterrupted one step for
    // step (augmented crops and a warm start from a base network included).
    let s = Setup::new(3, 40);
    // The base: a two-step run, named as the shipped one.
    assert_ok(&train(&s.args("made", &["--iterations", "2"])));
    let base = s.path("base.safetensors");
    std::fs::copy(s.path("made/style.safetensors"), &base).unwrap();
    let recipe = [
        "--recipe",
        "fast",
        "--base",
        base.to_str().unwrap(),
        "--progressive",
        "0.4",
        "--warmup",
        "0.2",
        "--decay",
        "cosine",
        "--augment",
        "--iterations",
        "40",
        "--log-every",
        "1",
    ];
    let whole = train(&s.args("whole", &recipe));
    assert_ok(&whole);
    let err = stderr(&whole);
    for phase in [
        "phase: 16 px warm-up from iteration 1",
        "phase: 16 px decay from iteration 9",
        "phase: 32 px decay from iteration 17",
    ] {
        assert!(err.contains(phase), "no `{phase}` in:\n{err}");
    }
    assert!(err.contains("base.safetensors"), "{err}");
    let first = train_interrupted(&s.args("split", &recipe), 5);
    assert_eq!(first.status.code(), Some(130), "{}", stderr(&first));
    let done = step_lines(&first).len();
    assert!((5..40).contains(&done), "stopped after {done} steps");
    let second = train(
        &[
            "--resume",
            s.path("split").to_str().unwrap(),
            "--log-every",
            "1",
            "--device",
            "cpu",
        ]
        .map(String::from),
    );
    assert_ok(&second);
    let mut split = step_lines(&first);
    split.extend(step_lines(&second));
    assert_eq!(
        step_lines(&whole),
        split,
        "per-step losses differ after resuming"
    );
    let a = checkpoint::read(&s.path("whole/style.safetensors")).unwrap();
    let b = checkpoint::read(&s.path("split/style.safetensors")).unwrap();
    for (name, t) in &a.tensors {
        assert!(t.equal(&b.tensors[name]), "{name} differs");
    }
    // The model records its recipe.
    let recipe: serde_json::Value = serde_json::from_str(&a.metadata["recipe"]).unwrap();
    assert_eq!(recipe["name"], "fast");
    assert_eq!(recipe["progressive"], 0.4);
    assert_eq!(recipe["augment"], true);
    assert_eq!(recipe["base"], "base.safetensors");
}

#[test]
fn held_out_photos_are_scored_and_never_trained_on() {
    // A --val folder inside the dataset: its photo is not trained on, and the held-out
    // losses are logged at the interval and at the end.
    let s = Setup::new(3, 32);
    let held = s.path("photos/held");
    std::fs::create_dir_all(&held).unwrap();
    write_image(&held.join("h.png"), 40, 36, 77);
    let args = |extra: &[&str]| {
        let base = [
            "--val",
            held.to_str().unwrap(),
            "--val-every",
            "2",
            "--log-every",
            "1",
        ];
        s.args("run", &[&base[..], extra].concat())
    };
    let out = train(&args(&["--iterations", "3"]));
    assert_ok(&out);
    let text = stdout(&out);
    let val: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("val step "))
        .collect();
    assert_eq!(val.len(), 2, "{text}");
    assert!(
        val[0].starts_with("val step 2 ") && val[1].starts_with("val step 3 "),
        "{text}"
    );
    for line in &val {
        let total: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(total.is_finite() && total > 0.0, "{line}");
    }
    let err = stderr(&out);
    assert!(
        err.contains("on 3 photos") && err.contains("held-out photos: 1"),
        "{err}"
    );
    // A resume cannot change them.
    let resumed = train(&s.args("run", &["--iterations", "4", "--resume", "--val", "none"]));
    assert_eq!(resumed.status.code(), Some(1));
    assert!(
        stderr(&resumed).contains("--val cannot change"),
        "{}",
        stderr(&resumed)
    );
}

#[test]
fn interrupt_saves_and_prints_the_resume_command() {
    let s = Setup::new(2, 32);
    let child = Command::new(bin("train"))
        .args(s.args("run", &["--iterations", "100000", "--log-every", "1"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the state of a started run (the first steps), then press Ctrl-C.
    let logs = s.path("run/logs/config.json");
    let start = Instant::now();
    while !logs.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let sent = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(20),
        "took {:?} to stop",
        sent.elapsed()
    );
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("resume with: train --resume"),
        "{}",
        stderr(&out)
    );
    let done = step_lines(&out).len() as u64;
    let file = checkpoint::read(&s.path("run/style.safetensors")).unwrap();
    assert_eq!(file.metadata["iterations"], done.to_string());
    // And the run goes on from there.
    let more = (done + 2).to_string();
    let resumed = train(
        &[
            "--resume",
            s.path("run").to_str().unwrap(),
            "--iterations",
            &more,
            "--log-every",
            "1",
            "--device",
            "cpu",
        ]
        .map(String::from),
    );
    assert_ok(&resumed);
    assert_eq!(
        step_lines(&resumed).keys().copied().collect::<Vec<_>>(),
        vec![done + 1, done + 2]
    );
}

#[test]
fn a_diverging_run_stops_and_keeps_the_last_good_checkpoint() {
    let s = Setup::new(1, 32);
    let out = train(&s.args(
        "run",
        &[
            "--iterations",
            "200",
            "--lr",
            "1e6",
            "--checkpoint-every",
            "1",
            "--log-every",
            "50",
        ],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("NaN") || err.contains("infinite"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    // The checkpoint left behind holds finite weights only.
    let file = checkpoint::read(&s.path("run/style.safetensors")).unwrap();
    let saved: u64 = file.metadata["iterations"].parse().unwrap();
    assert!((1..200).contains(&saved));
    for (name, t) in &file.tensors {
        assert!(
            bool::try_from(t.isfinite().all()).unwrap(),
            "{name} is not finite"
        );
    }
}

#[test]
fn unreadable_photos_are_skipped_and_counted() {
    let s = Setup::new(2, 32);
    std::fs::write(s.path("photos/broken.jpg"), b"not a jpeg at all").unwrap();
    std::fs::write(s.path("photos/notes.txt"), b"ignored: not an image").unwrap();
    // Three epochs: the broken photo is met three times and reported once.
    let out = train(&s.args("run", &["--iterations", "3", "--log-every", "1"]));
    assert_ok(&out);
    let err = stderr(&out);
    let warnings: Vec<_> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("broken.jpg"), "{err}");
    assert!(err.contains("skipped 1 unreadable photo"), "{err}");
    assert!(!err.contains("notes.txt"), "{err}");
}

/// Runs `train` expecting failure with exactly one `error:` line containing every `needle`.
fn assert_fails(args: &[String], needles: &[&str]) {
    let out = train(args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<_> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` not in: {}", lines[0]);
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_inputs_get_one_line_errors() {
    let s = Setup::new(1, 32);
    let args = |extra: &[&str]| s.args("run", &[&["--iterations", "1"], extra].concat());
    let empty = s.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let set = |flag: &str, value: &str| {
        let mut a = args(&[]);
        let i = a.iter().position(|x| x == flag).unwrap();
        a[i + 1] = value.to_string();
        a
    };
    let with = |flag: &str, value: &Path| set(flag, value.to_str().unwrap());
    assert_fails(&with("--dataset", &empty), &["no images found", "empty"]);
    assert_fails(
        &with("--dataset", &s.path("nowhere")),
        &["nowhere", "not found"],
    );
    assert_fails(&with("--style", &s.path("missing.jpg")), &["missing.jpg"]);
    assert_fails(
        &with("--vgg", &s.path("none.safetensors")),
        &["none.safetensors", "scripts/setup.sh"],
    );

    // A VGG file with one tensor of the wrong shape names it.
    let mut file = checkpoint::read(&s.path("vgg.safetensors")).unwrap();
    file.tensors.insert(
        "features.5.weight".into(),
        Tensor::zeros([1, 2, 3, 3], (Kind::Float, tch::Device::Cpu)),
    );
    let tensors: Vec<_> = file.tensors.into_iter().collect();
    checkpoint::write(
        &s.path("bad-vgg.safetensors"),
        &tensors,
        &Default::default(),
        Kind::Float,
    )
    .unwrap();
    assert_fails(
        &with("--vgg", &s.path("bad-vgg.safetensors")),
        &["bad-vgg.safetensors", "features.5.weight"],
    );
    std::fs::write(s.path("junk.safetensors"), b"junk").unwrap();
    assert_fails(
        &with("--vgg", &s.path("junk.safetensors")),
        &["junk.safetensors"],
    );

    assert_fails(&args(&["--log-every", "0"]), &["--log-every"]);
    assert_fails(&set("--device", "cuda:7"), &["CUDA"]);
    assert_fails(&args(&["--precision", "fp16"]), &["CUDA"]);

    // A finished run is never overwritten by a new one, and resuming keeps the recipe.
    assert_ok(&train(&args(&[])));
    assert_fails(&args(&[]), &["--resume"]);
    let resume = ["--resume", s.path("run").to_str().unwrap(), "--lr", "0.5"].map(String::from);
    assert_fails(&resume, &["--lr"]);
    assert_fails(
        &["--resume", s.path("empty").to_str().unwrap()].map(String::from),
        &["no training state"],
    );
}

#[test]
fn tensorboard_reads_the_event_files() {
    let Some(py) = venv_python() else { return };
    let s = Setup::new(2, 32);
    let out = train(&s.args(
        "run",
        &[
            "--iterations",
            "4",
            "--log-every",
            "2",
            "--image-every",
            "2",
        ],
    ));
    assert_ok(&out);
    let script = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0})
acc.Reload()
tags = acc.Tags()
out = {"scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
       "images": {t: [[e.step, e.width, e.height, len(e.encoded_image_string)] for e in acc.Images(t)] for t in tags["images"]}}
print(json.dumps(out))
"#;
    let read = Command::new(py)
        .args(["-c", script])
        .arg(s.path("run/logs"))
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", stderr(&read));
    let json: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    let logged = losses(&out, "total");
    for tag in [
        "loss/content",
        "loss/style",
        "loss/tv",
        "loss/total",
        "train/images_per_sec",
        "train/lr",
    ] {
        let points = json["scalars"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("no {tag}: {json}"));
        let steps: Vec<u64> = points.iter().map(|p| p[0].as_u64().unwrap()).collect();
        assert_eq!(steps, vec![2, 4], "{tag}");
    }
    for (point, printed) in json["scalars"]["loss/total"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&logged)
    {
        let v = point[1].as_f64().unwrap();
        assert!(((v - printed) / printed).abs() < 1e-6, "{v} vs {printed}");
    }
    let images = json["images"].as_object().unwrap();
    let stylized = images["samples/stylized/0"].as_array().unwrap();
    assert_eq!(
        stylized
            .iter()
            .map(|p| p[0].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![2, 4]
    );
    assert!(stylized
        .iter()
        .all(|p| p[1] == 32 && p[2] == 32 && p[3].as_u64().unwrap() > 0));
    assert!(images.contains_key("samples/input/1") && images.contains_key("style"));
    assert!(s.path("run/logs/config.json").exists());
}
