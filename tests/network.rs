//! The transformer network against values computed independently here, checkpoint round
//! trips, and (when the project's Python environment exists) PyTorch's own forward pass.
mod common;

use faststyle::checkpoint::{self, ModelInfo, MODEL_FORMAT};
use faststyle::imageio;
use faststyle::transformer::TransformerNet;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use tch::nn::{Module, VarStore};
use tch::{Device, Kind, Tensor};

/// One feature map, rows of columns, in f64.
type Map = Vec<Vec<f64>>;

/// PyTorch's reflection (the edge is not repeated) of index `i` into `0..n`.
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    let r = if i < 0 {
        -i
    } else if i >= n {
        2 * (n - 1) - i
    } else {
        i
    };
    assert!((0..n).contains(&r), "pad larger than the map");
    r as usize
}

/// One kernel tap of a convolution with reflection padding `pad`: out[i][j] =
/// weight · in[refl(stride·i + ky − pad)][refl(stride·j + kx − pad)], for an odd kernel of
/// side 2·pad + 1.
fn tap(input: &Map, ky: i64, kx: i64, pad: i64, stride: usize, weight: f64) -> Map {
    let (h, w) = (input.len(), input[0].len());
    let k = 2 * pad + 1;
    let oh = (h + 2 * pad as usize - k as usize) / stride + 1;
    let ow = (w + 2 * pad as usize - k as usize) / stride + 1;
    (0..oh)
        .map(|i| {
            (0..ow)
                .map(|j| {
                    let y = reflect((stride * i) as i64 + ky - pad, h);
                    let x = reflect((stride * j) as i64 + kx - pad, w);
                    weight * input[y][x]
                })
                .collect()
        })
        .collect()
}

fn add(a: &Map, b: &Map) -> Map {
    a.iter()
        .zip(b)
        .map(|(r, s)| r.iter().zip(s).map(|(x, y)| x + y).collect())
        .collect()
}

fn map(a: &Map, f: impl Fn(f64) -> f64) -> Map {
    a.iter()
        .map(|r| r.iter().map(|&x| f(x)).collect())
        .collect()
}

/// Instance norm of one channel: biased variance, eps 1e-5, then scale and shift.
fn instance_norm(a: &Map, weight: f64, bias: f64) -> Map {
    let n = (a.len() * a[0].len()) as f64;
    let mean = a.iter().flatten().sum::<f64>() / n;
    let var = a.iter().flatten().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    map(a, |x| (x - mean) / (var + 1e-5).sqrt() * weight + bias)
}

fn relu(a: &Map) -> Map {
    map(a, |x| x.max(0.0))
}

fn upsample2(a: &Map) -> Map {
    (0..2 * a.len())
        .map(|i| (0..2 * a[0].len()).map(|j| a[i / 2][j / 2]).collect())
        .collect()
}

/// The hand-set weights: every tensor zero except single taps that route channel 0 through
/// the network, at off-centre positions so that reflection padding is exercised.
struct Taps;

impl Taps {
    /// (tensor name, index, value).
    fn entries() -> Vec<(String, Vec<i64>, f64)> {
        let mut e: Vec<(String, Vec<i64>, f64)> = vec![
            ("conv1.conv2d.weight".into(), vec![0, 0, 1, 7], 0.02),
            ("conv1.conv2d.weight".into(), vec![0, 1, 1, 7], -0.01),
            ("conv1.conv2d.weight".into(), vec![0, 2, 1, 7], 0.015),
            ("conv1.conv2d.bias".into(), vec![0], 0.3),
            ("in1.weight".into(), vec![0], 1.5),
            ("in1.bias".into(), vec![0], 0.2),
            ("conv2.conv2d.weight".into(), vec![0, 0, 0, 2], 0.8),
            ("conv2.conv2d.bias".into(), vec![0], 0.1),
            ("in2.weight".into(), vec![0], 0.7),
            ("in2.bias".into(), vec![0], 0.3),
            ("conv3.conv2d.weight".into(), vec![0, 0, 2, 1], -1.2),
            ("in3.weight".into(), vec![0], 1.1),
            ("in3.bias".into(), vec![0], 0.1),
            ("deconv1.conv2d.weight".into(), vec![0, 0, 0, 2], 1.3),
            ("in4.weight".into(), vec![0], 0.9),
            ("in4.bias".into(), vec![0], 0.25),
            ("deconv2.conv2d.weight".into(), vec![0, 0, 2, 0], 0.6),
            ("in5.weight".into(), vec![0], 1.2),
            ("in5.bias".into(), vec![0], 0.1),
            ("deconv3.conv2d.weight".into(), vec![0, 0, 0, 0], 30.0),
            ("deconv3.conv2d.weight".into(), vec![1, 0, 8, 0], -20.0),
            ("deconv3.conv2d.weight".into(), vec![2, 0, 4, 4], 25.0),
            ("deconv3.conv2d.bias".into(), vec![0], 100.0),
            ("deconv3.conv2d.bias".into(), vec![1], 120.0),
            ("deconv3.conv2d.bias".into(), vec![2], 90.0),
        ];
        for r in 1..=5 {
            let p = |s: &str| format!("res{r}.{s}");
            e.push((p("conv1.conv2d.weight"), vec![0, 0, 1, 0], 0.9));
            e.push((p("in1.weight"), vec![0], 0.5));
            e.push((p("in1.bias"), vec![0], 0.2));
            e.push((p("conv2.conv2d.weight"), vec![0, 0, 2, 2], 1.0));
            e.push((p("in2.weight"), vec![0], 0.3 * r as f64));
            e.push((p("in2.bias"), vec![0], 0.05));
        }
        e
    }

    fn apply(vs: &VarStore) {
        let vars = vs.variables();
        tch::no_grad(|| {
            for t in vars.values() {
                let _ = t.shallow_clone().zero_();
            }
            for (name, index, value) in Self::entries() {
                let mut t = vars
                    .get(&name)
                    .unwrap_or_else(|| panic!("no variable {name}"))
                    .shallow_clone();
                for &i in &index {
                    t = t.select(0, i);
                }
                let _ = t.fill_(value);
            }
        });
    }

    /// The network with these weights, computed on plain numbers.
    fn by_hand(rgb: &[Map; 3]) -> [Map; 3] {
        let c1 = [0.02, -0.01, 0.015];
        let mut y = (0..3)
            .map(|c| tap(&rgb[c], 1, 7, 4, 1, c1[c]))
            .reduce(|a, b| add(&a, &b))
            .unwrap();
        y = map(&y, |v| v + 0.3);
        y = relu(&instance_norm(&y, 1.5, 0.2));
        y = map(&tap(&y, 0, 2, 1, 2, 0.8), |v| v + 0.1);
        y = relu(&instance_norm(&y, 0.7, 0.3));
        y = tap(&y, 2, 1, 1, 2, -1.2);
        y = relu(&instance_norm(&y, 1.1, 0.1));
        for r in 1..=5 {
            let mut b = tap(&y, 1, 0, 1, 1, 0.9);
            b = relu(&instance_norm(&b, 0.5, 0.2));
            b = tap(&b, 2, 2, 1, 1, 1.0);
            b = instance_norm(&b, 0.3 * r as f64, 0.05);
            y = add(&b, &y);
        }
        y = tap(&upsample2(&y), 0, 2, 1, 1, 1.3);
        y = relu(&instance_norm(&y, 0.9, 0.25));
        y = tap(&upsample2(&y), 2, 0, 1, 1, 0.6);
        y = relu(&instance_norm(&y, 1.2, 0.1));
        [
            map(&tap(&y, 0, 0, 4, 1, 30.0), |v| v + 100.0),
            map(&tap(&y, 8, 0, 4, 1, -20.0), |v| v + 120.0),
            map(&tap(&y, 4, 4, 4, 1, 25.0), |v| v + 90.0),
        ]
    }
}

fn random_rgb(h: usize, w: usize, seed: u64) -> [Map; 3] {
    let img = common::test_image(w as u32, h as u32, seed, 0, 255);
    [0, 1, 2].map(|c| {
        (0..h)
            .map(|y| {
                (0..w)
                    .map(|x| f64::from(img.get_pixel(x as u32, y as u32)[c]))
                    .collect()
            })
            .collect()
    })
}

fn to_tensor(rgb: &[Map; 3]) -> Tensor {
    let (h, w) = (rgb[0].len() as i64, rgb[0][0].len() as i64);
    let flat: Vec<f32> = rgb.iter().flatten().flatten().map(|&v| v as f32).collect();
    Tensor::from_slice(&flat).view([1, 3, h, w])
}

/// Guards against weights under which the result is flat and would prove little.
fn assert_not_flat(expected: &[Map; 3]) {
    for (c, plane) in expected.iter().enumerate() {
        let (lo, hi) = plane
            .iter()
            .flatten()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert!(
            hi - lo > 5.0,
            "channel {c} of the hand result is flat: {lo}..{hi}"
        );
    }
}

fn max_diff(t: &Tensor, expected: &[Map; 3]) -> f64 {
    let (h, w) = (expected[0].len(), expected[0][0].len());
    assert_eq!(t.size(), [1, 3, h as i64, w as i64]);
    let mut worst = 0.0f64;
    for (c, plane) in expected.iter().enumerate() {
        for (y, row) in plane.iter().enumerate() {
            for (x, &v) in row.iter().enumerate() {
                let got = t.double_value(&[0, c as i64, y as i64, x as i64]);
                worst = worst.max((got - v).abs());
            }
        }
    }
    worst
}

#[test]
fn network_matches_a_hand_computation() {
    let vs = VarStore::new(Device::Cpu);
    let net = TransformerNet::new(&vs.root());
    Taps::apply(&vs);
    let rgb = random_rgb(12, 16, 1);
    let expected = Taps::by_hand(&rgb);
    assert_not_flat(&expected);
    let out = tch::no_grad(|| net.forward(&to_tensor(&rgb)));
    let diff = max_diff(&out, &expected);
    assert!(diff < 2e-3, "max difference {diff}");
}

#[test]
fn unaligned_input_is_padded_by_replication_and_cropped_back() {
    let vs = VarStore::new(Device::Cpu);
    let net = TransformerNet::new(&vs.root());
    Taps::apply(&vs);
    let rgb = random_rgb(5, 7, 2);
    // Replicate the last row and column up to 8×8, the network's smallest aligned size.
    let padded = rgb.clone().map(|plane| {
        (0..8)
            .map(|y| (0..8).map(|x| plane[y.min(4)][x.min(6)]).collect())
            .collect::<Map>()
    });
    let full = Taps::by_hand(&padded);
    let expected = full.map(|plane| {
        plane[..5]
            .iter()
            .map(|row| row[..7].to_vec())
            .collect::<Map>()
    });
    assert_not_flat(&expected);
    let out = tch::no_grad(|| net.forward(&to_tensor(&rgb)));
    let diff = max_diff(&out, &expected);
    assert!(diff < 2e-3, "max difference {diff}");
}

fn variables(vs: &VarStore) -> HashMap<String, Tensor> {
    vs.variables()
}

#[test]
fn checkpoint_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (vs, net) = common::random_net(5);
    let info = ModelInfo {
        style: "mosaic.jpg".into(),
        styles: Vec::new(),
        iterations: 1234,
        content_weight: 1e5,
        style_weight: 1e10,
        image_size: 256,
        ..Default::default()
    };
    let path = dir.path().join("m.safetensors");
    checkpoint::save_model(&path, &vs, &info, Kind::Float).unwrap();

    tch::manual_seed(999); // a different random start, overwritten by the load
    let vs2 = VarStore::new(Device::Cpu);
    let net2 = TransformerNet::new(&vs2.root());
    let meta = checkpoint::load_model(&path, &vs2).unwrap();
    let (a, b) = (variables(&vs), variables(&vs2));
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        let u = &b[name];
        assert_eq!(t.size(), u.size(), "{name}");
        let bits = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        let (x, y) = (bits(t), bits(u));
        assert!(
            x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{name} differs"
        );
    }
    assert_eq!(meta.get("format").map(String::as_str), Some(MODEL_FORMAT));
    assert_eq!(meta.get("style").map(String::as_str), Some("mosaic.jpg"));
    assert_eq!(meta.get("iterations").map(String::as_str), Some("1234"));
    assert_eq!(meta.get("image_size").map(String::as_str), Some("256"));

    // And the loaded network computes the same thing, bit for bit.
    let x = imageio::to_tensor(&common::test_image(20, 12, 1, 0, 255));
    let (y1, y2) = tch::no_grad(|| (net.forward(&x), net2.forward(&x)));
    assert!(y1.equal(&y2));

    // Float16 storage: what loads is exactly the float16 rounding of the original.
    let half = dir.path().join("h.safetensors");
    checkpoint::save_model(&half, &vs, &info, Kind::Half).unwrap();
    let vs3 = VarStore::new(Device::Cpu);
    let _net3 = TransformerNet::new(&vs3.root());
    checkpoint::load_model(&half, &vs3).unwrap();
    let c = variables(&vs3);
    for (name, t) in &a {
        let rounded = t.to_kind(Kind::Half).to_kind(Kind::Float);
        assert!(rounded.equal(&c[name]), "{name} (float16)");
    }
}

/// Runs our network and PyTorch's on the same checkpoint and images; skipped, with a visible
/// note, when the project's Python environment or the reference script is missing.
#[test]
fn network_matches_pytorch() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    let script = root.join("scripts/torch_net.py");
    if !python.exists() || !script.exists() {
        // Written past the test harness's capture so that the skip shows in the log.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: network_matches_pytorch needs {} and {}",
            python.display(),
            script.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    common::random_model(&model, 21);
    let vs = VarStore::new(Device::Cpu);
    let net = TransformerNet::new(&vs.root());
    checkpoint::load_model(&model, &vs).unwrap();
    for (i, (w, h)) in [(32, 32), (64, 48)].into_iter().enumerate() {
        let input = dir.path().join(format!("in{i}.png"));
        common::write_image(&input, w, h, i as u64);
        let output = dir.path().join(format!("out{i}.safetensors"));
        let run = std::process::Command::new(&python)
            .arg(&script)
            .args(["stylize", "--checkpoint"])
            .arg(&model)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "torch_net.py failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let theirs = checkpoint::read(&output)
            .unwrap()
            .tensors
            .remove("output")
            .unwrap();
        let picture = imageio::read(&input).unwrap();
        let ours = tch::no_grad(|| net.forward(&imageio::to_tensor(&picture.rgb)));
        assert_eq!(ours.size(), theirs.size());
        let diff = (&ours - &theirs).abs().max().double_value(&[]);
        let range = theirs.max().double_value(&[]) - theirs.min().double_value(&[]);
        assert!(range > 10.0, "reference output is flat ({range})");
        assert!(
            diff < 1e-2,
            "{w}×{h}: max difference {diff} against PyTorch"
        );
    }
}
