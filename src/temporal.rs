//! Temporal consistency trained in (Wang et al. 2020, "Consistent Video Style Transfer via
//! Compound Regularization"): each photo moves by a small random motion T, as the next frame
//! of a video would, with its noise redrawn as a camera's is; the network's output for the
//! moved photo must equal its output for the photo, moved the same way:
//! W · mean over valid pixels of (f(T(x) + n) − T(f(x)))². No optical flow is needed: the
//! motion is drawn, so its flow is known.
//!
//! Every random draw of a step is a function of the run's seed, the step and the photo, never
//! of a generator's history, so that a resumed run draws exactly what the uninterrupted one
//! drew.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// The weight that `train --temporal-weight` takes when given no number (see the README's
/// *Steady frames for video* for the measurement that chose it).
pub const RECOMMENDED_WEIGHT: f64 = 3e3;

/// Standard deviation, in pixel levels (0…255), of the noise redrawn in the moved photo: the
/// same as the stability term's, so that a still draw is that term.
pub const NOISE_STD: f64 = 10.0;

/// Largest translation, as a fraction of the photo's side (2.6 px at 128, 5 px at 256).
const MAX_SHIFT: f64 = 0.02;
/// Largest rotation, in degrees.
const MAX_ROTATION_DEG: f64 = 2.0;
/// Largest zoom: a factor within 1/(1 + z) … 1 + z.
const MAX_ZOOM: f64 = 0.03;
/// Standard deviation of the non-rigid field's control points, as a fraction of the side.
const FIELD_STD: f64 = 0.006;
/// Control points of the non-rigid field along each side (upsampled bicubically).
const FIELD_POINTS: i64 = 4;
/// Share of draws that keep the camera still (only the noise is redrawn).
const STILL_SHARE: f64 = 0.25;

/// What a step's random draws are a function of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Draws {
    /// The run's seed.
    pub seed: u64,
    /// The step (0 for the first batch).
    pub step: u64,
    /// Index of the batch's first photo in the step's whole batch (a data-parallel rank's
    /// offset; 0 in one process), so that a photo draws the same wherever it is trained.
    pub first_photo: u64,
}

/// What a draw is for: each purpose has its own stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The stability term's noise.
    StabilityNoise = 1,
    /// The temporal term's motion.
    Motion = 2,
    /// The temporal term's redrawn noise.
    MotionNoise = 3,
}

/// SplitMix64's finaliser: a well-mixed 64-bit function of a 64-bit value.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Draws {
    /// The key of photo `photo`'s draw for `purpose`.
    pub fn key(&self, purpose: Purpose, photo: usize) -> u64 {
        let photo = self.first_photo + photo as u64;
        mix(mix(mix(mix(self.seed) ^ self.step) ^ purpose as u64) ^ photo)
    }

    /// Gaussian noise of standard deviation `std` shaped like `x` (N×C×H×W, float32, on its
    /// device), each photo's drawn from its own key.
    pub fn noise(&self, purpose: Purpose, x: &Tensor, std: f64) -> Tensor {
        let size = x.size();
        let parts: Vec<Tensor> = (0..size[0] as usize)
            .map(|i| {
                // libtorch's generator, seeded afresh: its history never matters.
                tch::manual_seed((self.key(purpose, i) >> 1) as i64);
                Tensor::randn([1, size[1], size[2], size[3]], (Kind::Float, x.device()))
            })
            .collect();
        Tensor::cat(&parts, 0) * std
    }
}

/// One photo's motion: output pixel p samples the photo at c + A·(p − c) + t + d(p), where c
/// is the centre and d the non-rigid field (its control points, in pixels).
#[derive(Clone, Debug, PartialEq)]
pub struct MotionParams {
    /// The linear part A (rotation and zoom), row-major.
    pub linear: [f64; 4],
    /// The translation t, in pixels (x, y).
    pub shift: [f64; 2],
    /// The non-rigid field's control points: x then y displacements, FIELD_POINTS² each.
    pub field: Vec<f64>,
}

impl MotionParams {
    /// A random small motion for a photo of side `side` (pixels), from `rng`.
    pub fn draw(rng: &mut impl Rng, side: f64) -> Self {
        let still = rng.random::<f64>() < STILL_SHARE;
        if still {
            return Self::identity();
        }
        let angle = rng
            .random_range(-MAX_ROTATION_DEG..=MAX_ROTATION_DEG)
            .to_radians();
        let zoom = rng
            .random_range(-(1.0 + MAX_ZOOM).ln()..=(1.0 + MAX_ZOOM).ln())
            .exp();
        let (sin, cos) = angle.sin_cos();
        let shift = MAX_SHIFT * side;
        let n = (2 * FIELD_POINTS * FIELD_POINTS) as usize;
        Self {
            linear: [cos / zoom, -sin / zoom, sin / zoom, cos / zoom],
            shift: [
                rng.random_range(-shift..=shift),
                rng.random_range(-shift..=shift),
            ],
            field: (0..n).map(|_| normal(rng) * FIELD_STD * side).collect(),
        }
    }

    /// No motion at all.
    pub fn identity() -> Self {
        Self {
            linear: [1.0, 0.0, 0.0, 1.0],
            shift: [0.0, 0.0],
            field: vec![0.0; (2 * FIELD_POINTS * FIELD_POINTS) as usize],
        }
    }
}

/// A standard normal number (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A motion of each photo of a batch: where each output pixel samples its photo, and which
/// output pixels sample inside it.
pub struct Motion {
    /// N×H×W×2 sampling positions, normalised as grid_sampler takes them (align_corners off).
    grid: Tensor,
    /// N×1×H×W, 1 where the position lies inside the photo, else 0 (float32).
    valid: Tensor,
}

impl Motion {
    /// Each photo's random motion for a batch of `n` photos of `h`×`w` pixels.
    pub fn draw(draws: &Draws, n: usize, h: i64, w: i64, device: Device) -> Self {
        let side = h.min(w) as f64;
        let params: Vec<MotionParams> = (0..n)
            .map(|i| {
                let mut rng = ChaCha8Rng::seed_from_u64(draws.key(Purpose::Motion, i));
                MotionParams::draw(&mut rng, side)
            })
            .collect();
        Self::from_params(&params, h, w, device)
    }

    /// The motions `params` (one per photo) of `h`×`w` photos.
    pub fn from_params(params: &[MotionParams], h: i64, w: i64, device: Device) -> Self {
        let n = params.len() as i64;
        let column = |f: &dyn Fn(&MotionParams) -> f64| {
            let v: Vec<f32> = params.iter().map(|p| f(p) as f32).collect();
            Tensor::from_slice(&v).view([n, 1, 1]).to_device(device)
        };
        let opts = (Kind::Float, device);
        let (cx, cy) = ((w - 1) as f64 / 2.0, (h - 1) as f64 / 2.0);
        let xs = Tensor::arange(w, opts).view([1, 1, w]) - cx;
        let ys = Tensor::arange(h, opts).view([1, h, 1]) - cy;
        let field: Vec<f32> = params
            .iter()
            .flat_map(|p| p.field.iter().map(|&v| v as f32))
            .collect();
        let field = Tensor::from_slice(&field)
            .view([n, 2, FIELD_POINTS, FIELD_POINTS])
            .to_device(device)
            .upsample_bicubic2d([h, w], true, None, None);
        let qx = &xs * column(&|p| p.linear[0])
            + &ys * column(&|p| p.linear[1])
            + column(&|p| p.shift[0])
            + field.select(1, 0)
            + cx;
        let qy = &xs * column(&|p| p.linear[2])
            + &ys * column(&|p| p.linear[3])
            + column(&|p| p.shift[1])
            + field.select(1, 1)
            + cy;
        Self::from_positions(&qx, &qy)
    }

    /// The motion that samples each output pixel at the pixel positions (`qx`, `qy`), both
    /// N×H×W (pixel centres at whole numbers).
    pub fn from_positions(qx: &Tensor, qy: &Tensor) -> Self {
        let size = qx.size();
        let (h, w) = (size[1], size[2]);
        let inside = |q: &Tensor, side: i64| q.ge(0.0).logical_and(&q.le((side - 1) as f64));
        let valid = inside(qx, w)
            .logical_and(&inside(qy, h))
            .unsqueeze(1)
            .to_kind(Kind::Float);
        let gx = (qx * 2.0 + 1.0) / w as f64 - 1.0;
        let gy = (qy * 2.0 + 1.0) / h as f64 - 1.0;
        Self {
            grid: Tensor::stack(&[gx, gy], 3),
            valid,
        }
    }

    /// The images (N×C×H×W) moved: bilinear, float32, edges repeated outside.
    pub fn warp(&self, images: &Tensor) -> Tensor {
        images
            .to_kind(Kind::Float)
            .contiguous()
            .grid_sampler(&self.grid, 0, 1, false)
    }

    /// N×1×H×W: 1 where the moved picture samples inside the photo.
    pub fn valid(&self) -> &Tensor {
        &self.valid
    }
}

/// A batch's photos, each moved by its random motion with its noise redrawn, ready for the
/// network; and the motions, to move the network's output the same way.
pub struct MovedBatch {
    /// T(x) + n, clamped to 0…255, in the forward passes' kind, channels-last.
    pub input: Tensor,
    motion: Motion,
}

impl MovedBatch {
    /// The step's draws for the batch `x` (N×3×H×W, float32), as `kind`.
    pub fn draw(draws: &Draws, x: &Tensor, kind: Kind) -> Self {
        let size = x.size();
        let motion = Motion::draw(draws, size[0] as usize, size[2], size[3], x.device());
        let noise = draws.noise(Purpose::MotionNoise, x, NOISE_STD);
        let moved = (motion.warp(x) + noise).clamp(0.0, 255.0).to_kind(kind);
        Self {
            input: crate::device::channels_last(&moved),
            motion,
        }
    }

    /// The temporal term of the network's outputs for the photos (`y`) and for the moved
    /// photos (`y_moved`).
    pub fn loss(&self, y: &Tensor, y_moved: &Tensor, weight: f64) -> Tensor {
        temporal_loss(y_moved, &self.motion.warp(y), self.motion.valid(), weight)
    }
}

/// The temporal term: weight · mean over valid pixels (and channels) of
/// (y_moved − y_warped)², in float32.
pub fn temporal_loss(y_moved: &Tensor, y_warped: &Tensor, valid: &Tensor, weight: f64) -> Tensor {
    let diff = (y_moved.to_kind(Kind::Float) - y_warped.to_kind(Kind::Float)).square() * valid;
    let channels = y_moved.size()[1] as f64;
    let count = valid.sum(Kind::Float).clamp_min(1.0) * channels;
    diff.sum(Kind::Float) / count * weight
}

/// The fraction of the batch's pixels that `temporal_loss` counts.
pub fn valid_share(valid: &Tensor) -> f64 {
    valid.mean(Kind::Float).double_value(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Reduction;

    fn mse(a: &Tensor, b: &Tensor) -> f64 {
        a.mse_loss(b, Reduction::Mean).double_value(&[])
    }

    #[test]
    fn draws_depend_on_seed_step_and_photo_only() {
        let d = Draws {
            seed: 7,
            step: 3,
            first_photo: 0,
        };
        let x = Tensor::zeros([3, 3, 8, 8], (Kind::Float, Device::Cpu));
        let a = d.noise(Purpose::MotionNoise, &x, 1.0);
        tch::manual_seed(123); // another history
        let _ = Tensor::randn([100], (Kind::Float, Device::Cpu));
        let b = d.noise(Purpose::MotionNoise, &x, 1.0);
        assert!(a.equal(&b));
        // A rank holding photos 1.. of the batch draws what one process drew for them.
        let rank = Draws {
            first_photo: 1,
            ..d
        };
        let c = rank.noise(Purpose::MotionNoise, &x.narrow(0, 0, 2), 1.0);
        assert!(c.equal(&a.narrow(0, 1, 2)));
        let next = Draws { step: 4, ..d };
        assert!(!next.noise(Purpose::MotionNoise, &x, 1.0).equal(&a));
        assert_ne!(
            d.key(Purpose::Motion, 0),
            d.key(Purpose::MotionNoise, 0),
            "purposes share a stream"
        );
    }

    #[test]
    fn a_whole_pixel_shift_moves_pixels_and_masks_the_uncovered_border() {
        let params = MotionParams {
            linear: [1.0, 0.0, 0.0, 1.0],
            shift: [2.0, 0.0],
            field: vec![0.0; (2 * FIELD_POINTS * FIELD_POINTS) as usize],
        };
        let m = Motion::from_params(&[params], 5, 6, Device::Cpu);
        let x = Tensor::arange(30, (Kind::Float, Device::Cpu)).view([1, 1, 5, 6]);
        let moved = m.warp(&x);
        // Output pixel (x, y) shows the photo's (x + 2, y).
        let expect = x.narrow(3, 2, 4);
        assert!(moved.narrow(3, 0, 4).allclose(&expect, 1e-4, 1e-4, false));
        let valid = m.valid().squeeze();
        assert_eq!(valid.sum(Kind::Float).double_value(&[]), 20.0);
        assert_eq!(valid.double_value(&[0, 3]), 1.0);
        assert_eq!(valid.double_value(&[0, 4]), 0.0);
        // Identity moves nothing.
        let id = Motion::from_params(&[MotionParams::identity()], 5, 6, Device::Cpu);
        assert!(id.warp(&x).allclose(&x, 1e-4, 1e-4, false));
    }

    #[test]
    fn random_motions_are_small_and_mostly_valid() {
        let d = Draws {
            seed: 1,
            step: 0,
            first_photo: 0,
        };
        let m = Motion::draw(&d, 16, 64, 64, Device::Cpu);
        let share = valid_share(m.valid());
        assert!(share > 0.8 && share < 1.0, "{share}");
        let x = Tensor::rand([16, 3, 64, 64], (Kind::Float, Device::Cpu));
        let moved = m.warp(&x);
        assert!(mse(&moved, &x) > 0.0);
    }
}
