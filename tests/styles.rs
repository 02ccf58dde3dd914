//! Several styles in one network: the checkpoint format, picking and blending styles in
//! `infer`, the style sheet, training several styles, and adding a style to a model.
mod common;

use common::{
    cpu_step, error_lines, random_net, read_rgb, run, stderr, write_image, write_random_vgg,
};
use faststyle::checkpoint::{self, ModelFile, ModelInfo};
use faststyle::conditional::StyleMix;
use faststyle::device::Precision;
use faststyle::imageio;
use faststyle::loss::{self, LossWeights};
use faststyle::optim::Adam;
use faststyle::training::LossScaler;
use faststyle::transformer::TransformerNet;
use faststyle::vgg::Vgg16;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use tch::nn::{Module, VarStore};
use tch::{Device, Kind, Tensor};
use tempfile::TempDir;

const NAMES: [&str; 3] = ["udnie", "starry-night", "mosaic"];

fn p(dir: &TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

/// Runs a binary that must fail with exit code `code` and exactly one `error:` line
/// holding every needle; returns that line.
fn fails(bin: &str, args: &[&str], code: i32, needles: &[&str]) -> String {
    let out = run(bin, args);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {text}");
    assert!(!text.contains("panicked"), "{text}");
    let mut lines = error_lines(&out);
    assert_eq!(lines.len(), 1, "{args:?}: {text}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{args:?}: `{needle}` not in {}",
            lines[0]
        );
    }
    lines.remove(0)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The tensors of a multi-style model with each 2-D tensor (a norm's rows) cut to `row`.
fn one_style_tensors(model: &ModelFile, row: i64) -> Vec<(String, Tensor)> {
    let mut tensors: Vec<_> = model
        .file
        .tensors
        .iter()
        .map(|(k, v)| {
            let t = if v.dim() == 2 {
                v.get(row)
            } else {
                v.shallow_clone()
            };
            (k.clone(), t)
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// Writes a one-style model holding row `row` of `model` under the style name `name`.
fn write_row_model(model: &ModelFile, row: i64, name: &str, path: &Path) {
    let info = ModelInfo {
        style: name.into(),
        ..Default::default()
    };
    checkpoint::write(
        path,
        &one_style_tensors(model, row),
        &info.metadata(),
        Kind::Float,
    )
    .unwrap();
}

fn one_style_net(path: &Path) -> (VarStore, TransformerNet) {
    let vs = VarStore::new(Device::Cpu);
    let net = TransformerNet::new(&vs.root());
    checkpoint::load_model(path, &vs).unwrap();
    (vs, net)
}

#[test]
fn each_row_picked_alone_is_the_one_style_model_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let multi = p(&dir, "multi.safetensors");
    common::random_styles_model(&multi, 11, &NAMES);
    let model = ModelFile::read(&multi).unwrap();
    assert_eq!(model.styles, NAMES);
    assert_eq!(model.file.tensors["in1.weight"].size(), [3, 32]);
    assert_eq!(model.file.tensors["res3.in2.bias"].size(), [3, 128]);
    assert_eq!(
        model.file.tensors["conv1.conv2d.weight"].size(),
        [32, 3, 9, 9]
    );
    assert!(!model.file.metadata.contains_key("style"));
    let (_vs, net) = model.network(&multi, Device::Cpu).unwrap();
    assert_eq!(net.styles(), 3);

    let photo = p(&dir, "photo.png");
    write_image(&photo, 30, 22, 3);
    let x = imageio::to_tensor(&common::test_image(30, 22, 3, 0, 255));
    let mut outputs = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let single = p(&dir, &format!("{name}.safetensors"));
        write_row_model(&model, i as i64, name, &single);
        let (_one_vs, one) = one_style_net(&single);
        let (a, b) = tch::no_grad(|| (net.forward_style(&x, &StyleMix::One(i)), one.forward(&x)));
        assert!(a.equal(&b), "style {name}: not bit-identical");
        outputs.push(a);

        // The same through `infer`: by name and by index, against the one-style model.
        let by_name = p(&dir, &format!("{name}-name.png"));
        let by_index = p(&dir, &format!("{name}-index.png"));
        let reference = p(&dir, &format!("{name}-one.png"));
        ok(&run(
            "infer",
            [
                "-c",
                s(&multi),
                s(&photo),
                "-o",
                s(&by_name),
                "--style",
                name,
            ],
        ));
        let index = i.to_string();
        ok(&run(
            "infer",
            [
                "-c",
                s(&multi),
                s(&photo),
                "-o",
                s(&by_index),
                "--style",
                &index,
            ],
        ));
        ok(&run(
            "infer",
            ["-c", s(&single), s(&photo), "-o", s(&reference)],
        ));
        let want = read_rgb(&reference);
        assert_eq!(read_rgb(&by_name), want, "{name}");
        assert_eq!(read_rgb(&by_index), want, "{name}");
    }
    // The styles really differ.
    let gap = (&outputs[0] - &outputs[1]).abs().max().double_value(&[]);
    assert!(gap > 1.0, "styles 0 and 1 give the same output ({gap})");
}

#[test]
fn a_blend_mixes_the_scales_and_shifts() {
    let dir = tempfile::tempdir().unwrap();
    let multi = p(&dir, "multi.safetensors");
    common::random_styles_model(&multi, 12, &NAMES);
    let model = ModelFile::read(&multi).unwrap();
    let (_vs, net) = model.network(&multi, Device::Cpu).unwrap();

    // The one-style network whose scales and shifts are ¼ udnie + ¾ starry-night.
    let mixed: Vec<(String, Tensor)> = model
        .file
        .tensors
        .iter()
        .map(|(k, v)| {
            let t = if v.dim() == 2 {
                v.get(0) * 0.25 + v.get(1) * 0.75
            } else {
                v.shallow_clone()
            };
            (k.clone(), t)
        })
        .collect();
    let mixed_path = p(&dir, "mixed.safetensors");
    checkpoint::write(&mixed_path, &mixed, &Default::default(), Kind::Float).unwrap();
    let (_mvs, mixed_net) = one_style_net(&mixed_path);

    let x = imageio::to_tensor(&common::test_image(24, 24, 4, 0, 255));
    let blend = StyleMix::Blend(vec![0.25, 0.75, 0.0]);
    let (y, want, a, b) = tch::no_grad(|| {
        (
            net.forward_style(&x, &blend),
            mixed_net.forward(&x),
            net.forward_style(&x, &StyleMix::One(0)),
            net.forward_style(&x, &StyleMix::One(1)),
        )
    });
    let diff = (&y - &want).abs().max().double_value(&[]);
    assert!(
        diff < 1e-2,
        "blend differs from the mixed network by {diff}"
    );
    for (name, pure) in [("udnie", &a), ("starry-night", &b)] {
        let gap = (&y - pure).abs().max().double_value(&[]);
        assert!(gap > 1.0, "the blend is just {name} ({gap})");
    }

    // `infer` normalises the weights: 1:3 is 0.25:0.75, whatever the order.
    let photo = p(&dir, "photo.png");
    write_image(&photo, 24, 24, 4);
    let (one, two) = (p(&dir, "b1.png"), p(&dir, "b2.png"));
    let pure = p(&dir, "pure.png");
    ok(&run(
        "infer",
        [
            "-c",
            s(&multi),
            s(&photo),
            "-o",
            s(&one),
            "--style",
            "udnie:1,starry-night:3",
        ],
    ));
    ok(&run(
        "infer",
        [
            "-c",
            s(&multi),
            s(&photo),
            "-o",
            s(&two),
            "--style",
            "1:0.75,0:0.25",
        ],
    ));
    ok(&run(
        "infer",
        [
            "-c",
            s(&multi),
            s(&photo),
            "-o",
            s(&pure),
            "--style",
            "udnie",
        ],
    ));
    assert_eq!(read_rgb(&one), read_rgb(&two));
    assert_ne!(read_rgb(&one), read_rgb(&pure));
}

/// The example's PyTorch network runs each row of a multi-style model (picked by
/// scripts/torch_net.py) as our network runs that style.
#[test]
fn pytorch_runs_each_row_as_the_example_network() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        eprintln!(
            "skipped: {} is missing (run scripts/setup.sh)",
            python.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let multi = p(&dir, "multi.safetensors");
    common::random_styles_model(&multi, 13, &NAMES);
    let model = ModelFile::read(&multi).unwrap();
    let (_vs, net) = model.network(&multi, Device::Cpu).unwrap();
    let photo = p(&dir, "photo.png");
    write_image(&photo, 32, 24, 5);
    let x = imageio::to_tensor(&imageio::read(&photo).unwrap().rgb);
    for (i, style) in ["udnie", "2"].iter().enumerate() {
        let row = [0, 2][i];
        let out = p(&dir, &format!("ref{i}.safetensors"));
        let reference = std::process::Command::new(&python)
            .arg(root.join("scripts/torch_net.py"))
            .args(["stylize", "--checkpoint", s(&multi), "--input", s(&photo)])
            .args(["--output", s(&out), "--style", style])
            .output()
            .unwrap();
        assert!(reference.status.success(), "{}", stderr(&reference));
        let theirs = checkpoint::read(&out)
            .unwrap()
            .tensors
            .remove("output")
            .unwrap();
        let ours = tch::no_grad(|| net.forward_style(&x, &StyleMix::One(row)));
        let diff = (&ours - &theirs).abs().max().double_value(&[]);
        assert!(
            diff < 1e-2,
            "style {style}: max difference {diff} against PyTorch"
        );
    }
}

#[test]
fn style_choices_that_name_no_style_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let multi = p(&dir, "multi.safetensors");
    common::random_styles_model(&multi, 14, &NAMES);
    let single = p(&dir, "single.safetensors");
    common::random_model(&single, 15); // its style is named `random`
    let photo = p(&dir, "photo.png");
    write_image(&photo, 16, 16, 6);
    let out = p(&dir, "out.png");
    let infer = |model: &Path, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["-c", s(model), s(&photo), "-o", s(&out)]
            .map(String::from)
            .to_vec();
        a.extend(extra.iter().map(|e| e.to_string()));
        a
    };
    let fails_with = |a: Vec<String>, needles: &[&str]| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        fails("infer", &refs, 2, needles)
    };

    fails_with(
        infer(&multi, &[]),
        &[
            "multi.safetensors",
            "3 styles",
            "--style",
            "0 udnie, 1 starry-night, 2 mosaic",
        ],
    );
    fails_with(
        infer(&multi, &["--style", "candy"]),
        &["no style `candy`", "2 mosaic"],
    );
    fails_with(infer(&multi, &["--style", "3"]), &["no style `3`"]);
    fails_with(
        infer(&multi, &["--style", "udnie:1,candy:1"]),
        &["no style `candy`"],
    );
    // Syntax errors are usage errors.
    for bad in ["udnie:x", "udnie:-1", "udnie:0,mosaic:0", ""] {
        let out = run("infer", infer(&multi, &["--style", bad]));
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(stderr(&out).contains("--style"), "{bad}: {}", stderr(&out));
    }
    assert!(!out.exists(), "nothing is written after a bad --style");

    // A one-style model takes its own style (by name or 0) and refuses others.
    ok(&run("infer", infer(&single, &[])));
    let plain = read_rgb(&out);
    ok(&run("infer", infer(&single, &["--style", "random"])));
    assert_eq!(read_rgb(&out), plain);
    ok(&run("infer", infer(&single, &["--style", "0"])));
    fails_with(
        infer(&single, &["--style", "udnie"]),
        &["no style `udnie`", "0 random"],
    );

    // --sheet: one photo, no --style, a writable output that is not the photo.
    let two = ["-c", s(&multi), "--sheet", s(&photo), s(&photo)];
    fails("infer", &two, 2, &["--sheet takes one photo"]);
    let out = run(
        "infer",
        ["-c", s(&multi), "--sheet", s(&photo), "--style", "udnie"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--sheet"), "{}", stderr(&out));
    let onto_input = ["-c", s(&multi), "--sheet", s(&photo), "-o", s(&photo)];
    fails("infer", &onto_input, 2, &["refusing to overwrite"]);
    let bad_format = p(&dir, "sheet.xyz");
    let bad = ["-c", s(&multi), "--sheet", s(&photo), "-o", s(&bad_format)];
    fails("infer", &bad, 2, &["sheet.xyz", "cannot write this format"]);
    let folder = ["-c", s(&multi), "--sheet", s(dir.path())];
    fails("infer", &folder, 2, &["not an image file"]);
}

#[test]
fn the_sheet_shows_the_photo_and_every_style_labelled() {
    let dir = tempfile::tempdir().unwrap();
    let multi = p(&dir, "multi.safetensors");
    common::random_styles_model(&multi, 16, &NAMES);
    let photo = p(&dir, "photo.png");
    let original = write_image(&photo, 48, 40, 7);
    ok(&run("infer", ["-c", s(&multi), "--sheet", s(&photo)]));
    let sheet = read_rgb(&p(&dir, "photo-sheet.png"));
    // One row of four tiles (the photo and three styles), 6 px apart, labels 20 px high.
    let (gap, label) = (6, 8 + 12);
    assert_eq!(sheet.dimensions(), (4 * (48 + gap) + gap, gap + 40 + label));
    let tile =
        |i: u32| image::imageops::crop_imm(&sheet, gap + i * (48 + gap), gap, 48, 40).to_image();
    assert_eq!(tile(0), original);
    for (i, name) in NAMES.iter().enumerate() {
        let single = p(&dir, &format!("{name}.png"));
        ok(&run(
            "infer",
            [
                "-c",
                s(&multi),
                s(&photo),
                "-o",
                s(&single),
                "--style",
                name,
            ],
        ));
        assert_eq!(tile(i as u32 + 1), read_rgb(&single), "tile of {name}");
        // Its label is drawn below it: dark pixels in the strip.
        let strip =
            image::imageops::crop_imm(&sheet, gap + (i as u32 + 1) * 54, 40 + 2 * gap, 48, 8)
                .to_image();
        assert!(
            strip.pixels().any(|px| px.0.iter().all(|&c| c < 64)),
            "no label under {name}"
        );
    }
}

// ---------------------------------------------------------------- training several styles

/// A scratch folder with three 32² photos, style images and random VGG16 weights.
struct Run {
    dir: TempDir,
}

impl Run {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("photos")).unwrap();
        std::fs::create_dir_all(dir.path().join("styles")).unwrap();
        for i in 0..3 {
            write_image(&dir.path().join(format!("photos/p{i}.png")), 32, 32, i + 1);
        }
        // Written out of name order: a folder's styles are sorted by name.
        write_image(&dir.path().join("styles/wave.png"), 36, 28, 91);
        write_image(&dir.path().join("styles/candy.png"), 28, 36, 92);
        write_image(&dir.path().join("lines.png"), 32, 32, 93);
        write_random_vgg(&dir.path().join("vgg.safetensors"), 7);
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Arguments of a small CPU run into `out`, with `extra` after them.
    fn args(&self, out: &str, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--dataset".into(),
            s(&self.path("photos")).into(),
            "--vgg".into(),
            s(&self.path("vgg.safetensors")).into(),
            "--out".into(),
            s(&self.path(out)).into(),
            "--logdir".into(),
            s(&self.path(out).join("logs")).into(),
            "--image-size".into(),
            "32".into(),
            "--batch-size".into(),
            "2".into(),
            "--device".into(),
            "cpu".into(),
        ];
        a.extend(extra.iter().map(|e| e.to_string()));
        a
    }
}

/// The `step N …` lines of a run's output, without the throughput.
fn step_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("step "))
        .map(|l| l.split(" images/s").next().unwrap().to_string())
        .collect()
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    checkpoint::read(path).unwrap().tensors
}

/// Whether the tags appear in a run's TensorBoard event files.
fn logged_tags(logdir: &Path) -> String {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(logdir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("tfevents") {
            all.extend(std::fs::read(path).unwrap());
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[test]
fn two_styles_train_in_one_network_and_resume_exactly() {
    let r = Run::new();
    let styles = s(&r.path("styles")).to_string();
    let whole = run(
        "train",
        r.args(
            "whole",
            &[
                "--style",
                &styles,
                "--iterations",
                "6",
                "--log-every",
                "1",
                "--image-every",
                "3",
            ],
        ),
    );
    ok(&whole);
    let model = r.path("whole/styles.safetensors");
    let file = ModelFile::read(&model).unwrap();
    assert_eq!(file.styles, ["candy", "wave"]);
    assert_eq!(file.file.tensors["in5.weight"].size(), [2, 32]);
    assert_eq!(
        file.file.tensors["conv1.conv2d.weight"].size(),
        [32, 3, 9, 9]
    );
    // Both styles' rows were trained (they started equal, at 1 and 0).
    let w = &file.file.tensors["in1.weight"];
    assert!(!w.get(0).equal(&w.get(1)));
    let tags = logged_tags(&r.path("whole/logs"));
    for tag in [
        "loss/style/candy",
        "loss/style/wave",
        "samples/candy/0",
        "samples/wave/0",
        "style/wave",
    ] {
        assert!(tags.contains(tag), "no TensorBoard tag {tag}");
    }

    // Interrupted after 4 iterations and resumed: the same losses, step by step.
    let first = run(
        "train",
        r.args(
            "split",
            &["--style", &styles, "--iterations", "4", "--log-every", "1"],
        ),
    );
    ok(&first);
    // The original command with --resume added: a different style list is refused, naming
    // both; the same list (the folder, expanded again) resumes.
    let candy = s(&r.path("styles/candy.png")).to_string();
    let changed = run(
        "train",
        r.args(
            "split",
            &["--style", &candy, "--iterations", "6", "--resume"],
        ),
    );
    assert_eq!(changed.status.code(), Some(1), "{}", stderr(&changed));
    let refusal = error_lines(&changed);
    assert_eq!(refusal.len(), 1, "{}", stderr(&changed));
    assert!(
        refusal[0].contains("--style cannot change") && refusal[0].contains("wave.png"),
        "{}",
        refusal[0]
    );
    let again = run(
        "train",
        r.args(
            "split",
            &[
                "--style",
                &styles,
                "--iterations",
                "6",
                "--log-every",
                "1",
                "--resume",
            ],
        ),
    );
    ok(&again);
    let mut split = step_lines(&first);
    split.extend(step_lines(&again));
    assert_eq!(split, step_lines(&whole));
    assert_eq!(split.len(), 6);

    // One style: the example's layout, no `styles` entry.
    let one = run(
        "train",
        r.args(
            "one",
            &["--style", s(&r.path("lines.png")), "--iterations", "1"],
        ),
    );
    ok(&one);
    let file = checkpoint::read(&r.path("one/lines.safetensors")).unwrap();
    assert_eq!(file.tensors["in1.weight"].size(), [32]);
    assert!(!file.metadata.contains_key("styles"));
    assert_eq!(file.metadata["style"], "lines.png");
}

#[test]
fn an_added_style_leaves_the_others_untouched_bit_for_bit() {
    let r = Run::new();
    let base = r.path("base.safetensors");
    common::random_styles_model(&base, 17, &["candy", "wave"]);
    let add = run(
        "train",
        r.args(
            "added",
            &[
                "--init",
                s(&base),
                "--add-style",
                s(&r.path("lines.png")),
                "--iterations",
                "3",
            ],
        ),
    );
    ok(&add);
    let model = r.path("added/base+lines.safetensors");
    assert_eq!(
        ModelFile::read(&model).unwrap().styles,
        ["candy", "wave", "lines"]
    );
    let (before, after) = (tensors(&base), tensors(&model));
    assert_eq!(before.len(), after.len());
    for (name, old) in &before {
        let new = &after[name];
        if old.dim() == 2 {
            assert!(new.narrow(0, 0, 2).equal(old), "{name}: old rows changed");
            // The new row started as the mean of the old ones and was trained from there.
            let start = old.mean_dim(0, false, Kind::Float);
            assert!(
                !new.get(2).equal(&start),
                "{name}: the new row was not trained"
            );
        } else {
            assert!(new.equal(old), "{name} changed");
        }
    }
    // And so the old styles' outputs are the same, bit for bit.
    let photo = r.path("photos/p0.png");
    for style in ["candy", "wave"] {
        let (a, b) = (
            r.path(&format!("{style}-a.png")),
            r.path(&format!("{style}-b.png")),
        );
        ok(&run(
            "infer",
            ["-c", s(&base), s(&photo), "-o", s(&a), "--style", style],
        ));
        ok(&run(
            "infer",
            ["-c", s(&model), s(&photo), "-o", s(&b), "--style", style],
        ));
        assert_eq!(read_rgb(&a), read_rgb(&b), "{style}");
    }

    // A one-style model grows to two styles; resuming an add-style run continues it.
    let one = r.path("one.safetensors");
    common::random_model(&one, 18);
    let grow = |iterations: &str| {
        r.args(
            "grown",
            &[
                "--init",
                s(&one),
                "--add-style",
                s(&r.path("lines.png")),
                "--iterations",
                iterations,
                "--log-every",
                "1",
            ],
        )
    };
    let whole = run("train", grow("4"));
    ok(&whole);
    let grown = r.path("grown/one+lines.safetensors");
    let file = ModelFile::read(&grown).unwrap();
    assert_eq!(file.styles, ["random", "lines"]);
    let (old, new) = (tensors(&one), &file.file.tensors);
    assert!(new["in2.bias"].get(0).equal(&old["in2.bias"]));
    assert!(new["conv2.conv2d.weight"].equal(&old["conv2.conv2d.weight"]));
    std::fs::remove_dir_all(r.path("grown")).unwrap();
    let first = run("train", grow("2"));
    ok(&first);
    let rest = run(
        "train",
        [
            "--resume",
            s(&r.path("grown")),
            "--iterations",
            "4",
            "--log-every",
            "1",
        ],
    );
    ok(&rest);
    let mut split = step_lines(&first);
    split.extend(step_lines(&rest));
    assert_eq!(split, step_lines(&whole));
}

#[test]
fn bad_style_options_are_one_line_errors() {
    let r = Run::new();
    let base = r.path("base.safetensors");
    common::random_styles_model(&base, 19, &["candy", "wave"]);
    let lines = s(&r.path("lines.png")).to_string();
    let train_fails = |out: &str, extra: &[&str], needles: &[&str]| {
        let a = r.args(out, extra);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        fails("train", &refs, 1, needles)
    };
    // Usage errors (clap, exit 2).
    for extra in [
        vec!["--add-style", lines.as_str(), "--iterations", "1"],
        vec![
            "--init",
            s(&base),
            "--add-style",
            lines.as_str(),
            "--style",
            lines.as_str(),
        ],
    ] {
        let out = run("train", r.args("u", &extra));
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("--"), "{}", stderr(&out));
    }
    std::fs::create_dir_all(r.path("empty")).unwrap();
    train_fails(
        "a",
        &["--style", s(&r.path("empty"))],
        &["empty", "no image files"],
    );
    let candy = r.path("candy.png");
    write_image(&candy, 20, 20, 5);
    train_fails(
        "b",
        &["--init", s(&base), "--add-style", s(&candy)],
        &["candy.png", "`candy` is already in the network"],
    );
    train_fails(
        "c",
        &["--init", s(&base), "--style", &lines],
        &[
            "base.safetensors",
            "holds 2 style(s) but this run trains 1",
            "--add-style",
        ],
    );
    let comma = r.path("a,b.png");
    write_image(&comma, 20, 20, 6);
    train_fails(
        "d",
        &["--style", &lines, "--style", s(&comma)],
        &["a,b.png", "must not contain"],
    );
    train_fails(
        "e",
        &[
            "--style",
            &lines,
            "--style",
            s(&r.path("styles/../lines.png")),
        ],
        &["`lines` is already in the network"],
    );
    train_fails(
        "f",
        &[
            "--init",
            s(&r.path("missing.safetensors")),
            "--add-style",
            &lines,
        ],
        &["missing.safetensors"],
    );
}

/// The gradient of one step of a fresh random network whose losses are weighted by `scale`.
fn step_gradient(vgg: &Vgg16, balance: bool, scale: f64) -> Vec<Tensor> {
    let (vs, net) = random_net(3);
    let pattern = |n: i64, modulus: i64| {
        Tensor::arange(n * 3 * 32 * 32, (Kind::Int64, Device::Cpu))
            .remainder(modulus)
            .view([n, 3, 32, 32])
    };
    let grams = loss::style_targets(vgg, &(pattern(1, 97).to_kind(Kind::Float) * 2.5));
    let images = pattern(2, 251).to_kind(Kind::Uint8);
    let mut adam = Adam::new(checkpoint::variables(&vs), 1e-3);
    let weights = LossWeights {
        content: 1e5 * scale,
        style: 1e10 * scale,
        tv: 0.0,
        stability: 0.0,
        temporal: 0.0,
    };
    let step = cpu_step(&net, vgg, &grams, weights, balance);
    step.run(&images, &mut adam, &mut LossScaler::new(Precision::Fp32))
        .unwrap();
    let mut vars: Vec<_> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.into_iter().map(|(_, v)| v.grad()).collect()
}

#[test]
fn a_balanced_step_follows_the_loss_whatever_its_scale() {
    // --balance-styles: a style whose losses are 100 times larger gets the same gradient,
    // so it no longer sets Adam's step sizes for the other styles; unbalanced, 100 times it.
    let dir = tempfile::tempdir().unwrap();
    write_random_vgg(&dir.path().join("vgg.safetensors"), 5);
    let vgg = Vgg16::load(&dir.path().join("vgg.safetensors"), Device::Cpu).unwrap();
    // Over all the weights at once: the biases before an instance norm get only rounding
    // noise (none in exact arithmetic), which does not scale.
    let close = |a: &[Tensor], b: &[Tensor], factor: f64| {
        let flat =
            |t: &[Tensor]| Tensor::cat(&t.iter().map(|g| g.flatten(0, -1)).collect::<Vec<_>>(), 0);
        let (a, b) = (flat(a), flat(b));
        let err = (a * factor - &b).norm().double_value(&[]);
        err <= 1e-4 * b.norm().double_value(&[])
    };
    let (small, large) = (
        step_gradient(&vgg, true, 1.0),
        step_gradient(&vgg, true, 100.0),
    );
    assert!(
        close(&small, &large, 1.0),
        "balanced gradients differ with the loss's scale"
    );
    let (small, large) = (
        step_gradient(&vgg, false, 1.0),
        step_gradient(&vgg, false, 100.0),
    );
    assert!(close(&small, &large, 100.0));
    assert!(!close(&small, &large, 1.0));
}
