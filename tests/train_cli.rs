//! `train`'s command line as a user meets it: resuming with the original command, a changed
//! recipe refused by name, and the VGG16 weights found from any folder.
mod common;

use common::{error_lines, stderr, write_image, write_random_vgg};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch folder with two 32² photos, a style image and random VGG16 weights.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("photos")).unwrap();
        for i in 0..2 {
            write_image(&dir.path().join(format!("photos/p{i}.png")), 32, 32, i + 1);
        }
        write_image(&dir.path().join("style.png"), 40, 32, 99);
        write_image(&dir.path().join("other.png"), 40, 32, 98);
        write_random_vgg(&dir.path().join("vgg.safetensors"), 7);
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A small run's command line (absolute paths), with `extra` appended.
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let p = |n: &str| self.path(n).to_str().unwrap().to_string();
        let mut args: Vec<String> = [
            "--dataset",
            &p("photos"),
            "--style",
            &p("style.png"),
            "--vgg",
            &p("vgg.safetensors"),
            "--out",
            &p("run"),
            "--logdir",
            &p("logs"),
            "--image-size",
            "32",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

/// Runs `train` in `cwd` with `args`, the environment changed by `env` (None removes).
fn train_in(cwd: &Path, args: &[String], env: &[(&str, Option<&Path>)]) -> Output {
    let mut cmd = Command::new(common::bin("train"));
    cmd.args(args).current_dir(cwd);
    for (key, value) in env {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd.output().unwrap()
}

fn train(s: &Setup, args: &[String]) -> Output {
    train_in(s.dir.path(), args, &[])
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "train failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

/// The steps logged on stdout (`step N …` lines).
fn steps(out: &Output) -> Vec<u64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.strip_prefix("step ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The one `error:` line of a failed run.
fn error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let lines = error_lines(out);
    assert_eq!(lines.len(), 1, "{}", stderr(out));
    assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
    lines[0].clone()
}

fn config_json(s: &Setup) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(s.path("logs/config.json")).unwrap()).unwrap()
}

#[test]
fn resume_accepts_the_original_command_and_keeps_its_intervals() {
    let s = Setup::new();
    let intervals = [
        "--log-every",
        "1",
        "--image-every",
        "3",
        "--checkpoint-every",
        "2",
    ];
    let first = train(
        &s,
        &s.args(&[&["--iterations", "2"], &intervals[..]].concat()),
    );
    assert_ok(&first);
    assert_eq!(steps(&first), [1, 2]);

    // The same command with --resume added (no value: the run that --out names), longer.
    let again = train(&s, &s.args(&["--iterations", "4", "--resume"]));
    assert_ok(&again);
    // The recorded --log-every 1 still holds (the default, 10, would log step 4 alone).
    assert_eq!(steps(&again), [3, 4], "{}", stderr(&again));
    let config = config_json(&s);
    assert_eq!(config["recipe"]["name"], "fast", "fast is the default");
    assert_eq!(config["recipe"]["decay"], "none");
    assert_eq!(config["log_every"], 1);
    assert_eq!(config["image_every"], 3);
    assert_eq!(config["checkpoint_every"], 2);

    // Recipe flags repeated with their recorded values, spelled differently, are accepted;
    // a new interval replaces the recorded one.
    let run = s.path("run");
    let repeated = [
        "--resume",
        run.to_str().unwrap(),
        "--iterations",
        "5",
        "--dataset",
        "photos/",
        "--style",
        "./style.png",
        "--lr",
        "0.004",
        "--style-weight",
        "1e10",
        "--seed",
        "42",
        "--batch-size",
        "2",
        "--name",
        "style",
        "--log-every",
        "5",
        "--device",
        "cpu",
    ]
    .map(String::from);
    let resumed = train(&s, &repeated);
    assert_ok(&resumed);
    assert_eq!(steps(&resumed), [5]);
    assert_eq!(config_json(&s)["log_every"], 5);
    assert_eq!(config_json(&s)["image_every"], 3);
}

#[test]
fn resume_refuses_a_changed_recipe_naming_both_values() {
    let s = Setup::new();
    assert_ok(&train(&s, &s.args(&["--iterations", "1"])));
    let refused = |extra: &[&str], needles: &[&str]| {
        let out = train(
            &s,
            &s.args(&[&["--iterations", "2", "--resume"], extra].concat()),
        );
        let line = error_line(&out);
        for n in needles {
            assert!(line.contains(n), "`{n}` not in: {line}");
        }
        assert!(line.contains("cannot change when resuming"), "{line}");
    };
    refused(&["--lr", "0.5"], &["--lr", "0.004", "0.5"]);
    refused(
        &["--content-weight", "2e5"],
        &["--content-weight", "100000", "200000"],
    );
    refused(&["--style-size", "64"], &["--style-size", "none", "64"]);
    refused(&["--recipe", "example"], &["--recipe", "fast", "example"]);
    refused(&["--warmup", "0.1"], &["--warmup", "0.05", "0.1"]);
    refused(&["--augment"], &["--augment", "false", "true"]);
    refused(
        &["--balance-styles", "false"],
        &["--balance-styles", "true", "false"],
    );
    // Flags that s.args gives: replaced by a different value.
    let changed = |flag: &str, value: &str| {
        let mut args = s.args(&["--iterations", "2", "--resume"]);
        let i = args.iter().position(|a| a == flag).unwrap();
        args[i + 1] = value.into();
        error_line(&train(&s, &args))
    };
    let line = changed("--style", s.path("other.png").to_str().unwrap());
    assert!(line.contains("--style") && line.contains("style.png") && line.contains("other.png"));
    let line = changed("--image-size", "48");
    assert!(line.contains("--image-size") && line.contains("32") && line.contains("48"));
    // Nothing ran: the model still holds one iteration.
    let file = faststyle::checkpoint::read(&s.path("run/style.safetensors")).unwrap();
    assert_eq!(file.metadata["iterations"], "1");
}

/// `args` without `--vgg FILE`.
fn without_vgg(args: Vec<String>) -> Vec<String> {
    let i = args.iter().position(|a| a == "--vgg").unwrap();
    [&args[..i], &args[i + 2..]].concat()
}

/// The VGG16 file that a run used, from its configuration.
fn vgg_used(s: &Setup) -> PathBuf {
    PathBuf::from(config_json(s)["vgg"].as_str().unwrap())
}

#[test]
fn vgg_weights_are_found_from_any_folder_in_the_stated_order() {
    let s = Setup::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let user_data = tempfile::tempdir().unwrap();
    let args = without_vgg(s.args(&["--iterations", "1"]));
    let vgg = s.path("vgg.safetensors");

    // 1. $FASTSTYLE_VGG16, from a folder that has no checkpoints/.
    let env = [("FASTSTYLE_VGG16", Some(vgg.as_path()))];
    assert_ok(&train_in(elsewhere.path(), &args, &env));
    assert_eq!(vgg_used(&s), vgg);
    // … a wrong one is an error naming the variable and the file, even if others exist.
    std::fs::remove_dir_all(s.path("run")).unwrap();
    let missing = s.path("missing.safetensors");
    let env = [("FASTSTYLE_VGG16", Some(missing.as_path()))];
    let line = error_line(&train_in(elsewhere.path(), &args, &env));
    assert!(
        line.contains("FASTSTYLE_VGG16") && line.contains("missing.safetensors"),
        "{line}"
    );
    // … and --vgg comes before it.
    let gone = s.path("gone.safetensors");
    let explicit = [
        &args[..],
        &["--vgg".to_string(), gone.display().to_string()],
    ]
    .concat();
    let env = [("FASTSTYLE_VGG16", Some(vgg.as_path()))];
    let line = error_line(&train_in(elsewhere.path(), &explicit, &env));
    assert!(
        line.contains("--vgg") && line.contains("gone.safetensors"),
        "{line}"
    );

    // 2. checkpoints/ of the current folder.
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir(cwd.path().join("checkpoints")).unwrap();
    let local = cwd.path().join("checkpoints/vgg16.safetensors");
    std::fs::copy(&vgg, &local).unwrap();
    let env = [("FASTSTYLE_VGG16", None)];
    assert_ok(&train_in(cwd.path(), &args, &env));
    assert!(vgg_used(&s).ends_with("checkpoints/vgg16.safetensors"));
    assert!(
        vgg_used(&s).starts_with(cwd.path().canonicalize().unwrap())
            || vgg_used(&s).starts_with(cwd.path())
    );

    // 3. this repository's checkpoints/ (known to the build), then 4. the user's data folder.
    std::fs::remove_dir_all(s.path("run")).unwrap();
    let user_file = user_data.path().join("faststyle/vgg16.safetensors");
    std::fs::create_dir_all(user_file.parent().unwrap()).unwrap();
    std::fs::copy(&vgg, &user_file).unwrap();
    let env = [
        ("FASTSTYLE_VGG16", None),
        ("XDG_DATA_HOME", Some(user_data.path())),
    ];
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/vgg16.safetensors");
    assert_ok(&train_in(elsewhere.path(), &args, &env));
    if repo.is_file() {
        assert_eq!(vgg_used(&s), repo);
        eprintln!(
            "note: {} exists, so the per-user folder was not reached",
            repo.display()
        );
    } else {
        assert_eq!(vgg_used(&s), user_file);
        // With nothing anywhere, the error lists the places in order.
        std::fs::remove_file(&user_file).unwrap();
        std::fs::remove_dir_all(s.path("run")).unwrap();
        let line = error_line(&train_in(elsewhere.path(), &args, &env));
        let order = [
            "--vgg",
            "FASTSTYLE_VGG16",
            "checkpoints/vgg16.safetensors",
            "faststyle/vgg16",
        ];
        let at: Vec<usize> = order.iter().map(|n| line.find(n).expect(n)).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{line}");
    }
}
