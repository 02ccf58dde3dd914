//! `train --stability-weight`: the noise-robustness term (Gupta et al. 2017) is logged, adds
//! to the total, and makes the trained network less sensitive to noise.
mod common;

use common::{bin, stderr, write_image, write_random_vgg};
use faststyle::checkpoint;
use faststyle::transformer::TransformerNet;
use std::path::Path;
use std::process::{Command, Output};
use tch::nn::{Module, VarStore};
use tch::{Device, Kind, Tensor};

fn train(dir: &Path, name: &str, iterations: &str, extra: &[&str]) -> Output {
    let p = |s: &str| dir.join(s).to_str().unwrap().to_string();
    let out = Command::new(bin("train"))
        .args([
            "--dataset",
            &p("photos"),
            "--style",
            &p("style.png"),
            "--vgg",
            &p("vgg.safetensors"),
            "--out",
            &p(name),
            "--logdir",
            &p(&format!("{name}/logs")),
            "--image-size",
            "32",
            "--batch-size",
            "2",
            "--iterations",
            iterations,
            "--log-every",
            "1",
            "--device",
            "cpu",
            "--seed",
            "3",
            "--name",
            name,
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "train failed: {}", stderr(&out));
    out
}

/// The `NAME VALUE` pairs of each per-step log line.
fn logged(out: &Output, name: &str) -> Vec<f64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("step "))
        .map(|l| {
            let mut w = l.split_whitespace();
            w.find(|x| *x == name).unwrap();
            w.next().unwrap().parse().unwrap()
        })
        .collect()
}

/// Mean squared change of a model's output when noise (σ = 10 levels) is added to photos.
fn noise_sensitivity(model: &Path) -> f64 {
    let vs = VarStore::new(Device::Cpu);
    let net = TransformerNet::new(&vs.root());
    checkpoint::load_model(model, &vs).unwrap();
    tch::manual_seed(5);
    let x = Tensor::rand([4, 3, 32, 32], (Kind::Float, Device::Cpu)) * 255.0;
    let noisy = &x + Tensor::randn_like(&x) * 10.0;
    tch::no_grad(|| {
        (net.forward(&x) - net.forward(&noisy))
            .square()
            .mean(Kind::Float)
            .double_value(&[])
    })
}

#[test]
fn the_stability_term_is_logged_and_makes_the_network_steadier() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("photos")).unwrap();
    for i in 0..4 {
        write_image(&dir.path().join(format!("photos/p{i}.png")), 32, 32, i + 1);
    }
    write_image(&dir.path().join("style.png"), 32, 32, 99);
    write_random_vgg(&dir.path().join("vgg.safetensors"), 11);

    let plain = train(dir.path(), "plain", "5", &[]);
    let steady = train(dir.path(), "steady", "5", &["--stability-weight", "1000"]);
    assert!(logged(&plain, "stability").iter().all(|v| *v == 0.0));
    let stab = logged(&steady, "stability");
    assert!(stab.iter().all(|v| *v > 0.0), "{stab:?}");
    // The total includes the term.
    let parts = ["content", "style", "tv", "stability"].map(|n| logged(&steady, n));
    let total = logged(&steady, "total");
    for (i, t) in total.iter().enumerate() {
        let sum: f64 = parts.iter().map(|p| p[i]).sum();
        assert!((sum - t).abs() <= 1e-4 * t.abs(), "step {i}: {sum} vs {t}");
    }
    // The term leaves the other losses of the first step alone (same seed, same batch).
    assert_eq!(logged(&plain, "content")[0], logged(&steady, "content")[0]);

    // Trained on the term alone, the network becomes far less sensitive to noise than the
    // network it started from (the plain run after its first steps).
    let only = &[
        "--content-weight",
        "0",
        "--style-weight",
        "0",
        "--stability-weight",
        "1",
    ];
    train(dir.path(), "only", "30", only);
    let before = noise_sensitivity(&dir.path().join("plain/plain.safetensors"));
    let after = noise_sensitivity(&dir.path().join("only/only.safetensors"));
    eprintln!("noise sensitivity: plain {before:.3}, with the stability term {after:.3}");
    assert!(after < before / 2.0, "{after} vs {before}");
}
