//! `scripts/export_onnx.py`: the exported model, run by ONNX Runtime, gives `infer`'s
//! pictures (within one 8-bit level) on sizes that need the in-graph padding, for a one-style
//! model and for a chosen style and a blend of a several-style model.
mod common;

use faststyle::checkpoint::{self, Metadata};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Kind, Tensor};

/// Odd sizes: below the minimum side of 8, not multiples of 4, and one already aligned.
const SIZES: [(u32, u32); 4] = [(37, 29), (5, 3), (61, 64), (32, 40)];

/// The project's Python when it has ONNX Runtime; otherwise a visible skip note.
fn python_with_onnxruntime() -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = py.exists()
        && Command::new(&py)
            .args(["-c", "import onnx, onnxruntime"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {} lacks onnx/onnxruntime (run scripts/setup.sh)",
            py.display()
        );
        return None;
    }
    Some(py)
}

fn export(py: &Path, model: &Path, onnx: &Path, style: Option<&str>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/export_onnx.py");
    let mut cmd = Command::new(py);
    cmd.arg(script).arg(model).arg(onnx);
    if let Some(style) = style {
        cmd.args(["--style", style]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "export failed: {}",
        common::stderr(&out)
    );
}

/// Runs `onnx` in ONNX Runtime on each PNG of `inputs` and writes the rounded result beside
/// it as `NAME.ort.png`, the way `infer` rounds.
fn run_onnxruntime(py: &Path, onnx: &Path, inputs: &[PathBuf]) {
    const CODE: &str = r#"
import sys
import numpy as np
import onnxruntime as ort
from PIL import Image
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
for path in sys.argv[2:]:
    x = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)[None]
    y = session.run(None, {"image": np.ascontiguousarray(x)})[0]
    assert y.shape == x.shape, (y.shape, x.shape)
    out = np.rint(y[0].transpose(1, 2, 0)).astype(np.uint8)
    Image.fromarray(out).save(path[:-4] + ".ort.png")
"#;
    let out = Command::new(py)
        .args(["-c", CODE])
        .arg(onnx)
        .args(inputs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "onnxruntime failed: {}",
        common::stderr(&out)
    );
}

/// Stylizes `inputs` with `infer` into `dir/infer/`, exports `model` (with `style`), runs it
/// in ONNX Runtime and checks that every pixel agrees within one level.
fn check_against_infer(
    py: &Path,
    dir: &Path,
    infer_model: &Path,
    model: &Path,
    style: Option<&str>,
) {
    let inputs: Vec<PathBuf> = SIZES
        .iter()
        .enumerate()
        .map(|(i, &(w, h))| {
            let p = dir.join(format!("in{i}.png"));
            common::write_image(&p, w, h, i as u64);
            p
        })
        .collect();
    let stylized = dir.join("infer");
    let mut args = vec!["-c".into(), infer_model.to_path_buf()];
    args.extend(inputs.iter().cloned());
    args.extend([
        "-o".into(),
        stylized.clone(),
        "--device".into(),
        "cpu".into(),
    ]);
    let out = common::run("infer", &args);
    assert!(
        out.status.success(),
        "infer failed: {}",
        common::stderr(&out)
    );
    let onnx = dir.join("model.onnx");
    export(py, model, &onnx, style);
    run_onnxruntime(py, &onnx, &inputs);
    for (i, input) in inputs.iter().enumerate() {
        let ours = common::read_rgb(&stylized.join(format!("in{i}.png")));
        let theirs = common::read_rgb(&input.with_extension("ort.png"));
        assert_eq!(
            ours.dimensions(),
            theirs.dimensions(),
            "{}",
            input.display()
        );
        let worst = ours
            .as_raw()
            .iter()
            .zip(theirs.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(
            worst <= 1,
            "{:?}: ONNX Runtime differs from infer by {worst}/255",
            ours.dimensions()
        );
        // The comparison means something only if the picture is not flat or clamped.
        let (lo, hi) = ours
            .as_raw()
            .iter()
            .fold((255, 0), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert!(hi - lo > 20, "{:?}: output is flat", ours.dimensions());
    }
}

#[test]
fn onnx_runtime_matches_infer_on_odd_sizes() {
    let Some(py) = python_with_onnxruntime() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    common::random_model(&model, 5);
    check_against_infer(&py, dir.path(), &model, &model, None);
}

/// Instance-norm parameters of two random models stacked as rows [2, C] (metadata `styles`),
/// as DESIGN.md's several-style format; and `infer`'s one-style model of a given blend.
fn write_two_styles(dir: &Path) -> (PathBuf, impl Fn(f64, &Path)) {
    let (vs_a, _) = common::random_net(11);
    let (vs_b, _) = common::random_net(12);
    let a = checkpoint::variables(&vs_a);
    let b = checkpoint::variables(&vs_b);
    let is_norm = |name: &str| {
        name.split('.')
            .rev()
            .nth(1)
            .is_some_and(|m| m.starts_with("in"))
    };
    let stacked: Vec<(String, Tensor)> = a
        .iter()
        .zip(&b)
        .map(|((name, ta), (_, tb))| {
            let t = if is_norm(name) {
                Tensor::stack(&[ta, tb], 0)
            } else {
                ta.shallow_clone()
            };
            (name.clone(), t)
        })
        .collect();
    let mut meta = Metadata::new();
    meta.insert("format".into(), checkpoint::MODEL_FORMAT.into());
    meta.insert("styles".into(), r#"["a","b"]"#.into());
    let multi = dir.join("two.safetensors");
    checkpoint::write(&multi, &stacked, &meta, Kind::Float).unwrap();
    let blended = move |wa: f64, path: &Path| {
        let tensors: Vec<(String, Tensor)> = a
            .iter()
            .zip(&b)
            .map(|((name, ta), (_, tb))| {
                let t = if is_norm(name) {
                    ta * wa + tb * (1.0 - wa)
                } else {
                    ta.shallow_clone()
                };
                (name.clone(), t)
            })
            .collect();
        let mut meta = Metadata::new();
        meta.insert("format".into(), checkpoint::MODEL_FORMAT.into());
        checkpoint::write(path, &tensors, &meta, Kind::Float).unwrap();
    };
    (multi, blended)
}

#[test]
fn several_styles_export_the_chosen_style_or_blend() {
    let Some(py) = python_with_onnxruntime() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (multi, blended) = write_two_styles(dir.path());
    // Weights 3 and 7 normalise to 0.3 and 0.7.
    for (style, weight_a) in [("b", 0.0), ("a:3,b:7", 0.3)] {
        let case = dir.path().join(style.replace([':', ','], "_"));
        std::fs::create_dir(&case).unwrap();
        let single = case.join("single.safetensors");
        blended(weight_a, &single);
        check_against_infer(&py, &case, &single, &multi, Some(style));
    }
    // An unknown style is one clear line, not a traceback.
    let out = Command::new(&py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/export_onnx.py"))
        .arg(&multi)
        .arg(dir.path().join("x.onnx"))
        .args(["--style", "c"])
        .output()
        .unwrap();
    let err = common::stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("unknown style `c`") && !err.contains("Traceback"),
        "{err}"
    );
    assert!(!dir.path().join("x.onnx").exists());
}
