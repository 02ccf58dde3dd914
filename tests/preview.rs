//! `train --preview`: one photo's pixels optimised against training's losses (random VGG16
//! weights written by the test, tiny images).
mod common;

use common::{error_lines, read_rgb, stderr, write_image, write_random_vgg};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        write_image(&dir.path().join("photo.png"), 48, 32, 1);
        write_image(&dir.path().join("big.png"), 64, 40, 2);
        write_image(&dir.path().join("style.png"), 40, 40, 99);
        write_random_vgg(&dir.path().join("vgg.safetensors"), 7);
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn args(&self, photo: &str, extra: &[&str]) -> Vec<String> {
        let p = |n: &str| self.path(n).display().to_string();
        let mut args: Vec<String> = [
            "--preview",
            &p(photo),
            "--style",
            &p("style.png"),
            "--vgg",
            &p("vgg.safetensors"),
            "--image-size",
            "32",
            "--device",
            "cpu",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

fn train(args: &[String]) -> Output {
    common::run("train", args)
}

/// The total loss of every logged step.
fn totals(out: &Output) -> Vec<f64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("step "))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn preview_lowers_the_losses_and_writes_the_photo_at_the_training_scale() {
    let s = Setup::new();
    let out = train(&s.args("photo.png", &["--iterations", "40", "--log-every", "10"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let t = totals(&out);
    assert_eq!(t.len(), 5, "steps 1, 10, 20, 30, 40: {t:?}");
    assert!(t[4] < 0.7 * t[0], "the total loss did not fall: {t:?}");
    // Default name beside the photo; the photo's shorter side is already --image-size.
    let written = read_rgb(&s.path("photo-preview.jpg"));
    assert_eq!(written.dimensions(), (48, 32));
    let photo = read_rgb(&s.path("photo.png"));
    let moved = written
        .pixels()
        .zip(photo.pixels())
        .filter(|(a, b)| a.0.iter().zip(b.0).any(|(x, y)| x.abs_diff(y) > 8))
        .count();
    assert!(
        moved > 100,
        "the preview hardly differs from the photo ({moved} pixels)"
    );

    // A larger photo is brought to the training scale, aspect kept; -o names the file.
    let png = s.path("out/big.png");
    std::fs::create_dir_all(png.parent().unwrap()).unwrap();
    let out = train(&s.args(
        "big.png",
        &["--iterations", "2", "-o", png.to_str().unwrap()],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_rgb(&png).dimensions(), (51, 32));
    let leftovers: Vec<_> = std::fs::read_dir(png.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
}

#[test]
fn preview_errors_are_one_line() {
    let s = Setup::new();
    let fails = |args: Vec<String>, needles: &[&str]| {
        let out = train(&args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let lines = error_lines(&out);
        assert_eq!(lines.len(), 1, "{}", stderr(&out));
        for n in needles {
            assert!(lines[0].contains(n), "`{n}` not in {}", lines[0]);
        }
    };
    fails(s.args("missing.png", &[]), &["missing.png"]);
    std::fs::write(s.path("junk.png"), b"not a picture").unwrap();
    fails(s.args("junk.png", &[]), &["junk.png"]);
    let photo = s.path("photo.png").display().to_string();
    fails(
        s.args("photo.png", &["-o", &photo]),
        &["overwrite the photo"],
    );
    fails(
        s.args("photo.png", &["-o", "x.nope"]),
        &["x.nope", "format"],
    );
    fails(
        s.args("photo.png", &["--style-weight=-1"]),
        &["--style-weight"],
    );
    fails(
        s.args("photo.png", &["--precision", "fp16"]),
        &["fp16", "CUDA"],
    );
    // Options of a training run do not apply (clap's usage error, exit 2).
    let out = train(&s.args("photo.png", &["--dataset", "photos"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(Path::new(&photo).exists());
}

#[test]
fn ctrl_c_writes_the_preview_reached_so_far() {
    let s = Setup::new();
    let mut child = Command::new(common::bin("train"))
        .args(s.args("photo.png", &["--iterations", "100000", "--log-every", "1"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first steps (the handler is installed by then), then press Ctrl-C.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(());
            lines.push(line);
        }
        lines
    });
    for _ in 0..3 {
        rx.recv_timeout(Duration::from_secs(120))
            .expect("no step within 2 minutes");
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let sent = Instant::now();
    let out = child.wait_with_output().unwrap();
    let lines = reader.join().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(20), "slow to stop");
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let last = lines.last().unwrap().split_whitespace().nth(1).unwrap();
    assert!(
        stderr(&out).contains(&format!("interrupted at step {last}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        read_rgb(&s.path("photo-preview.jpg")).dimensions(),
        (48, 32)
    );
}

#[test]
fn lists_of_weights_and_sizes_give_one_labelled_sheet_of_every_combination() {
    let s = Setup::new();
    let sheet = s.path("sheet.png");
    let mut args = s.args(
        "photo.png",
        &[
            "--style-weight",
            "1e8,1e12",
            "--style-size",
            "16,24",
            "--iterations",
            "3",
            "--log-every",
            "1",
            "-o",
            sheet.to_str().unwrap(),
        ],
    );
    // A second photo, right after the first.
    args.insert(2, s.path("big.png").display().to_string());
    let out = train(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    // 2 photos × (the photo + 2 weights × 2 sizes); cells of the largest tile (51×32 at
    // --image-size 32), two label lines of 8 px glyphs each, 6 px gaps.
    let img = read_rgb(&sheet);
    let (cell_w, cell_h) = (51 + 6, 32 + (2 * 8 + 2 + 2 * 6));
    assert_eq!(img.dimensions(), (5 * cell_w + 6, 2 * cell_h + 6));
    assert_eq!(
        totals(&out).len(),
        8 * 3,
        "3 logged steps for each of 8 previews"
    );
    // The first tile of the first row is the photo itself (48×32 centred in its cell).
    let photo = read_rgb(&s.path("photo.png"));
    let (x0, y0) = (6 + 1, 6);
    let same = (0..48)
        .flat_map(|x| (0..32).map(move |y| (x, y)))
        .all(|(x, y)| img.get_pixel(x0 + x, y0 + y) == photo.get_pixel(x, y));
    assert!(same, "the first tile is not the photo");
    // The weights change the preview: the 1e8 and 1e12 tiles of the same size differ.
    let tile = |col: u32| -> Vec<u8> {
        let x = 6 + col * cell_w + 1;
        (0..48)
            .flat_map(|dx| (0..32).map(move |dy| (dx, dy)))
            .flat_map(|(dx, dy)| img.get_pixel(x + dx, y0 + dy).0)
            .collect()
    };
    let (weak, strong) = (tile(1), tile(3));
    let differ = weak
        .iter()
        .zip(&strong)
        .filter(|(a, b)| a.abs_diff(**b) > 4)
        .count();
    assert!(
        differ > 100,
        "style weights 1e8 and 1e12 look alike ({differ} values)"
    );
    // A list is for --preview only: training refuses it in one line.
    let out = train(&[
        "--dataset".into(),
        s.dir.path().display().to_string(),
        "--style".into(),
        s.path("style.png").display().to_string(),
        "--style-weight".into(),
        "1e9,1e10".into(),
        "--vgg".into(),
        s.path("vgg.safetensors").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines = error_lines(&out);
    assert_eq!(lines.len(), 1, "{}", stderr(&out));
    assert!(lines[0].contains("--style-weight") && lines[0].contains("--preview"));
}
