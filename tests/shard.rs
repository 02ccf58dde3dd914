//! `infer --shard K/N --skip-existing` as a batch scheduler runs it: N workers as separate
//! processes over one folder, one killed midway and restarted; every photo is written exactly
//! once, whole.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SHARDS: u64 = 3;
const PHOTOS: usize = 36;

/// Visible files under `dir` (relative paths) with their inode and modification time.
fn written(dir: &Path) -> BTreeMap<PathBuf, (u64, i64, i64)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            let m = e.metadata().unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
            (rel, (m.ino(), m.mtime(), m.mtime_nsec()))
        })
        .collect()
}

fn worker(model: &Path, input: &Path, out: &Path, shard: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(common::bin("infer"));
    cmd.arg("-c")
        .arg(model)
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(["--device", "cpu", "--shard", shard])
        .args(extra)
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// The count in the last `stylized A of B images` line (0 when there is none: one or no image).
fn stylized(out: &Output) -> usize {
    let err = common::stderr(out);
    err.lines()
        .filter_map(|l| l.strip_prefix("stylized "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .next_back()
        .unwrap_or(0)
}

fn skipped(out: &Output) -> usize {
    common::stderr(out)
        .lines()
        .filter_map(|l| l.strip_prefix("skipped "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .next_back()
        .unwrap_or(0)
}

#[test]
fn shards_cover_every_photo_once_and_a_killed_worker_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    common::random_model(&model, 9);
    let input = dir.path().join("photos");
    let mut expected = BTreeSet::new();
    for i in 0..PHOTOS {
        let rel = PathBuf::from(format!("album{}/p{i:02}.png", i % 3));
        std::fs::create_dir_all(input.join(&rel).parent().unwrap()).unwrap();
        common::write_image(&input.join(&rel), 96, 80, i as u64);
        expected.insert(rel);
    }
    let out = dir.path().join("out");

    // Shards other than the last, to the end (in parallel, as array tasks run).
    let others: Vec<_> = (0..SHARDS - 1)
        .map(|k| {
            let shard = format!("{k}/{SHARDS}");
            worker(&model, &input, &out, &shard, &[]).spawn().unwrap()
        })
        .collect();
    let others: Vec<Output> = others
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &others {
        assert!(o.status.success(), "{}", common::stderr(o));
    }
    let by_others = written(&out);
    let done_by_others: usize = others.iter().map(stylized).sum();
    assert_eq!(by_others.len(), done_by_others);

    // The last shard, killed (SIGKILL, as a preempted node) once it has written something.
    let last = format!("{}/{SHARDS}", SHARDS - 1);
    let mut victim = worker(&model, &input, &out, &last, &[]).spawn().unwrap();
    let started = Instant::now();
    while written(&out).len() == by_others.len() {
        assert!(victim.try_wait().unwrap().is_none(), "worker ended first");
        assert!(started.elapsed() < Duration::from_secs(120), "no output");
        std::thread::sleep(Duration::from_millis(2));
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    let before_rerun = written(&out);
    let left_by_victim = before_rerun.len() - by_others.len();
    assert!(left_by_victim >= 1);
    assert!(
        before_rerun.len() < PHOTOS,
        "the killed worker had finished ({} outputs): nothing to resume",
        before_rerun.len()
    );

    // Restarted with --skip-existing, it does only what is missing.
    let rerun = worker(&model, &input, &out, &last, &["--skip-existing"])
        .output()
        .unwrap();
    assert!(rerun.status.success(), "{}", common::stderr(&rerun));
    assert_eq!(
        skipped(&rerun),
        left_by_victim,
        "{}",
        common::stderr(&rerun)
    );
    let after = written(&out);
    let rerun_count = if stylized(&rerun) == 0 {
        after.len() - before_rerun.len() // one image: no summary line
    } else {
        stylized(&rerun)
    };
    assert_eq!(after.len(), before_rerun.len() + rerun_count);

    // Every photo exactly once: all outputs present, nothing extra, nothing rewritten.
    let names: BTreeSet<PathBuf> = after.keys().cloned().collect();
    assert_eq!(names, expected);
    for (rel, stamp) in &before_rerun {
        assert_eq!(&after[rel], stamp, "{} was written again", rel.display());
    }
    // Whole files: each decodes at the input's size.
    for rel in &expected {
        let img = common::read_rgb(&out.join(rel));
        assert_eq!(img.dimensions(), (96, 80), "{}", rel.display());
    }
    // Each shard is a fixed part of the list: a second pass of every shard skips everything.
    for k in 0..SHARDS {
        let again = worker(
            &model,
            &input,
            &out,
            &format!("{k}/{SHARDS}"),
            &["--skip-existing"],
        )
        .output()
        .unwrap();
        assert!(again.status.success(), "{}", common::stderr(&again));
        assert_eq!(stylized(&again), 0);
    }
    assert_eq!(written(&out), after);
}

#[test]
fn bad_shards_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    common::random_model(&model, 1);
    let photo = dir.path().join("p.png");
    common::write_image(&photo, 16, 16, 0);
    for (shard, env, says) in [
        ("3/3", None, "does not exist"),
        ("auto", None, "SLURM_ARRAY_TASK_ID"),
        (
            "auto/2",
            Some(("JOB_COMPLETION_INDEX", "5")),
            "shard 5 of 2",
        ),
    ] {
        let mut cmd = Command::new(common::bin("infer"));
        cmd.arg("-c")
            .arg(&model)
            .arg(&photo)
            .args(["--device", "cpu", "--shard", shard]);
        cmd.env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("JOB_COMPLETION_INDEX");
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{shard}");
        let err = common::stderr(&out);
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error:") && first.contains(says),
            "{shard}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
