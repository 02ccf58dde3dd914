//! Helpers shared by the integration tests: the built binaries, random style models written
//! through the library, small test images.
#![allow(dead_code)] // each test file uses its own subset

use faststyle::checkpoint::{self, ModelInfo};
use faststyle::device::Precision;
use faststyle::loss::LossWeights;
use faststyle::temporal::Draws;
use faststyle::training::Step;
use faststyle::transformer::TransformerNet;
use faststyle::vgg::Vgg16;
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
pub mod server;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Path of one of the package's binaries (`infer` or `train`), as cargo built it.
pub fn bin(name: &str) -> PathBuf {
    PathBuf::from(match name {
        "infer" => env!("CARGO_BIN_EXE_infer"),
        "train" => env!("CARGO_BIN_EXE_train"),
        other => panic!("no binary named {other}"),
    })
}

/// Runs a binary with arguments and returns its output (status, stdout, stderr).
pub fn run<S: AsRef<OsStr>>(name: &str, args: impl IntoIterator<Item = S>) -> Output {
    Command::new(bin(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"))
}

/// A transformer network with random weights from `seed`, in a CPU var store.
///
/// The numbers come from a seeded ChaCha generator, not libtorch's global one, which the
/// tests running in parallel threads would share and interleave. Convolutions are uniform in
/// ±1/√fan_in (PyTorch's default bound); instance-norm scales and shifts are moved away from
/// 1 and 0 so that they matter; the last layer is scaled and shifted so that outputs spread
/// over the middle of 0…255 (near 0 they would be clamped, hiding what the tests compare).
pub fn random_net(seed: u64) -> (VarStore, TransformerNet) {
    random_net_with_styles(seed, 1)
}

/// A float32 CPU training step of style 0 in one process, with the same random draws at every
/// step (seed 1, step 0).
pub fn cpu_step<'a>(
    net: &'a TransformerNet,
    vgg: &'a Vgg16,
    style_grams: &'a [Tensor; 4],
    weights: LossWeights,
    balance: bool,
) -> Step<'a> {
    Step {
        net,
        vgg,
        style_grams,
        style: 0,
        weights,
        precision: Precision::Fp32,
        device: Device::Cpu,
        pinned_copies: false,
        draws: Draws {
            seed: 1,
            step: 0,
            first_photo: 0,
        },
        shard: None,
        balance,
    }
}

/// A random network (as [`random_net`]) holding `styles` styles, each with its own scales and
/// shifts.
pub fn random_net_with_styles(seed: u64, styles: usize) -> (VarStore, TransformerNet) {
    let vs = VarStore::new(Device::Cpu);
    let net = TransformerNet::with_styles(&vs.root(), styles);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut vars: Vec<_> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut var) in vars {
            let size = var.size();
            let n = size.iter().product::<i64>() as usize;
            let mut uniform = |lo: f32, hi: f32| -> Vec<f32> {
                (0..n).map(|_| rng.random_range(lo..hi)).collect()
            };
            let values = if name.ends_with("conv2d.weight") {
                let bound = 1.0 / ((size[1] * size[2] * size[3]) as f32).sqrt();
                let scale = if name.starts_with("deconv3") {
                    40.0
                } else {
                    1.0
                };
                uniform(-bound * scale, bound * scale)
            } else if name.starts_with("deconv3") {
                uniform(118.0, 138.0) // its bias
            } else if name.ends_with("conv2d.bias") {
                uniform(-0.1, 0.1)
            } else if name.ends_with("weight") {
                uniform(0.75, 1.25) // instance-norm scale
            } else {
                uniform(-0.25, 0.25) // instance-norm shift
            };
            var.copy_(&Tensor::from_slice(&values).view(size.as_slice()));
        }
    });
    (vs, net)
}

/// Writes a random style model (see [`random_net`]) to `path` as float32.
pub fn random_model(path: &Path, seed: u64) {
    random_model_as(path, seed, Kind::Float);
}

/// Writes a random style model to `path`, its tensors stored as `kind` (Float or Half).
pub fn random_model_as(path: &Path, seed: u64, kind: Kind) {
    let (vs, _) = random_net(seed);
    let info = ModelInfo {
        style: "random".into(),
        ..Default::default()
    };
    checkpoint::save_model(path, &vs, &info, kind).expect("cannot save the random model");
}

/// Writes a random model of the styles `names` (see [`random_net_with_styles`]) to `path`.
pub fn random_styles_model(path: &Path, seed: u64, names: &[&str]) {
    let (vs, _) = random_net_with_styles(seed, names.len());
    let info = ModelInfo {
        style: names[0].into(),
        styles: if names.len() > 1 {
            names.iter().map(|n| n.to_string()).collect()
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    checkpoint::save_model(path, &vs, &info, Kind::Float).expect("cannot save the random model");
}

/// Random VGG16 weights in the real file format (He-scaled, so that activations neither
/// vanish nor explode).
pub fn write_random_vgg(path: &Path, seed: i64) {
    tch::manual_seed(seed);
    let mut tensors = Vec::new();
    for (i, c_in, c_out) in VGG_SHAPES {
        let std = (2.0 / (c_in * 9) as f64).sqrt();
        let w = Tensor::randn([c_out, c_in, 3, 3], (Kind::Float, Device::Cpu)) * std;
        let b = Tensor::randn([c_out], (Kind::Float, Device::Cpu)) * 0.01;
        tensors.push((format!("features.{i}.weight"), w));
        tensors.push((format!("features.{i}.bias"), b));
    }
    checkpoint::write(path, &tensors, &Default::default(), Kind::Float).unwrap();
}

/// torchvision's VGG16 convolutions that the losses use: (index, in, out channels).
const VGG_SHAPES: [(usize, i64, i64); 10] = [
    (0, 3, 64),
    (2, 64, 64),
    (5, 64, 128),
    (7, 128, 128),
    (10, 128, 256),
    (12, 256, 256),
    (14, 256, 256),
    (17, 256, 512),
    (19, 512, 512),
    (21, 512, 512),
];

/// A reproducible RGB test image: smooth gradients plus noise, values within `lo..=hi`.
pub fn test_image(w: u32, h: u32, seed: u64, lo: u8, hi: u8) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let span = f32::from(hi - lo);
    RgbImage::from_fn(w, h, |x, y| {
        let fx = x as f32 / w.max(2) as f32;
        let fy = y as f32 / h.max(2) as f32;
        let base = [fx, fy, 1.0 - (fx + fy) / 2.0];
        Rgb(base.map(|b| {
            let v = 0.8 * b + 0.2 * rng.random::<f32>();
            lo + (v * span).round().min(span) as u8
        }))
    })
}

/// Writes a reproducible test image (full range) in the format of `path`'s extension.
pub fn write_image(path: &Path, w: u32, h: u32, seed: u64) -> RgbImage {
    let img = test_image(w, h, seed, 0, 255);
    img.save(path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    img
}

/// Decodes an image file into RGB (8-bit), without orientation handling.
pub fn read_rgb(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .to_rgb8()
}

/// Standard error of a finished command, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Lines of standard error that start with `error:`.
pub fn error_lines(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_string)
        .collect()
}

/// BT.601 full-range YCbCr (as JPEG uses) of one pixel, computed independently of the crate.
pub fn ycbcr(p: &Rgb<u8>) -> [f64; 3] {
    let [r, g, b] = p.0.map(f64::from);
    [
        0.299 * r + 0.587 * g + 0.114 * b,
        128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b,
        128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b,
    ]
}

/// A loopback port that nobody listens on now (a server or store binds it a moment later).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
