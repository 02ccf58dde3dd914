//! Conditional instance normalisation (Dumoulin, Shlens, Kudlur 2017, "A Learned
//! Representation for Artistic Style"): one network holds many styles, each with its own
//! scale and shift at every instance norm, everything else shared.
//!
//! With one style the scale and shift are `[C]`, the PyTorch example's `InstanceNorm2d`
//! layout; with N styles they are `[N, C]` under the same names, row i for style i.
use tch::nn;
use tch::Tensor;

/// The style a network applies: one of its styles, or a blend of several.
#[derive(Clone, Debug, PartialEq)]
pub enum StyleMix {
    /// Style i alone: row i of every scale and shift, exactly.
    One(usize),
    /// Σ wᵢ·rowᵢ with one weight per style, the weights summing to 1.
    Blend(Vec<f64>),
}

/// Instance normalisation with a learned scale and shift per style, and no running statistics.
#[derive(Debug)]
pub struct InstanceNorm {
    weight: Tensor,
    bias: Tensor,
}

impl InstanceNorm {
    /// Epsilon of PyTorch's `InstanceNorm2d`.
    pub const EPS: f64 = 1e-5;

    /// Scales of 1 and shifts of 0 for `styles` styles (`[C]` for one, `[styles, C]` for more).
    pub fn new(p: nn::Path, channels: i64, styles: i64) -> Self {
        let shape: Vec<i64> = if styles == 1 {
            vec![channels]
        } else {
            vec![styles, channels]
        };
        Self {
            weight: p.ones("weight", &shape),
            bias: p.zeros("bias", &shape),
        }
    }

    /// The scale and shift (each `[C]`) of a style or blend.
    pub fn affine(&self, style: &StyleMix) -> (Tensor, Tensor) {
        let pick = |t: &Tensor| match style {
            _ if t.dim() == 1 => t.shallow_clone(),
            StyleMix::One(i) => t.select(0, *i as i64),
            StyleMix::Blend(w) => Tensor::from_slice(w)
                .to_kind(t.kind())
                .to_device(t.device())
                .matmul(t),
        };
        (pick(&self.weight), pick(&self.bias))
    }

    /// Normalises each channel of each image, then scales and shifts it as `style` says.
    pub fn forward(&self, x: &Tensor, style: &StyleMix) -> Tensor {
        let kind = x.kind();
        let (weight, bias) = self.affine(style);
        x.instance_norm(
            Some(&weight.to_kind(kind)),
            Some(&bias.to_kind(kind)),
            None::<&Tensor>,
            None::<&Tensor>,
            true,
            0.1,
            Self::EPS,
            true,
        )
    }
}
