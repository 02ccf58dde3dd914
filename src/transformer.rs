//! The transformer network of Johnson et al. 2016, laid out as the PyTorch fast-neural-style
//! example lays it out (instance norm, upsample + conv, reflection padding), with its tensor names.
//!
//! Its instance norms are conditional ([`crate::conditional`]): a network holds one style
//! (the example's layout) or several, and every forward pass says which style, or blend, to apply.
use crate::conditional::{InstanceNorm, StyleMix};
use tch::nn::{self, Module};
use tch::Tensor;

/// Reflection padding followed by a convolution: the example's `ConvLayer`.
#[derive(Debug)]
pub struct ConvLayer {
    conv: nn::Conv2D,
    pad: i64,
    stride: i64,
    upsample: bool,
}

impl ConvLayer {
    fn new(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64) -> Self {
        let config = nn::ConvConfig {
            stride,
            ..Default::default()
        };
        Self {
            conv: nn::conv2d(p / "conv2d", c_in, c_out, kernel, config),
            pad: kernel / 2,
            stride,
            upsample: false,
        }
    }

    /// The example's `UpsampleConvLayer`: nearest ×2 upsampling before the padded convolution.
    fn upsampling(p: nn::Path, c_in: i64, c_out: i64, kernel: i64) -> Self {
        Self {
            upsample: true,
            ..Self::new(p, c_in, c_out, kernel, 1)
        }
    }
}

impl ConvLayer {
    /// Weight (OIHW) and bias, in `kind`.
    pub fn params(&self, kind: tch::Kind) -> (Tensor, Option<Tensor>) {
        let bias = self.conv.bs.as_ref().map(|b| b.to_kind(kind));
        (self.conv.ws.to_kind(kind), bias)
    }

    /// Kernel side, stride, and whether a nearest ×2 upsampling comes first.
    pub fn geometry(&self) -> (i64, i64, bool) {
        (2 * self.pad + 1, self.stride, self.upsample)
    }
}

impl Module for ConvLayer {
    fn forward(&self, x: &Tensor) -> Tensor {
        // Weights follow the input's precision: mixed precision keeps float32 master weights.
        let (w, b) = self.params(x.kind());
        if self.upsample {
            return crate::fastconv::upsample_conv(x, &w, b.as_ref(), [1; 4]);
        }
        let p = self.pad;
        let padded = x.reflection_pad2d([p, p, p, p]);
        if self.stride == 1 {
            return crate::fastconv::conv(&padded, &w, b.as_ref());
        }
        let s = [self.stride, self.stride];
        padded.conv2d(&w, b.as_ref(), s, [0, 0], [1, 1], 1)
    }
}

/// Two 3×3 convolutions with instance norm, added to the input (He et al. 2016).
#[derive(Debug)]
pub struct ResidualBlock {
    conv1: ConvLayer,
    in1: InstanceNorm,
    conv2: ConvLayer,
    in2: InstanceNorm,
}

impl ResidualBlock {
    fn new(p: nn::Path, channels: i64, styles: i64) -> Self {
        Self {
            conv1: ConvLayer::new(&p / "conv1", channels, channels, 3, 1),
            in1: InstanceNorm::new(&p / "in1", channels, styles),
            conv2: ConvLayer::new(&p / "conv2", channels, channels, 3, 1),
            in2: InstanceNorm::new(&p / "in2", channels, styles),
        }
    }

    fn forward(&self, x: &Tensor, s: &StyleMix) -> Tensor {
        let out = relu(self.in1.forward(&x.apply(&self.conv1), s));
        let mut y = self.in2.forward(&out.apply(&self.conv2), s);
        drop(out);
        if y.requires_grad() {
            y + x
        } else {
            y += x;
            y
        }
    }

    /// Its two (convolution, norm) pairs; the input is added after the second norm.
    pub fn layers(&self) -> [(&ConvLayer, &InstanceNorm); 2] {
        [(&self.conv1, &self.in1), (&self.conv2, &self.in2)]
    }
}

/// The image transformation network: 3 downsampling convolutions, 5 residual blocks,
/// 2 upsampling convolutions and a final 9×9 convolution. Pixels in and out are in 0…255.
#[derive(Debug)]
pub struct TransformerNet {
    conv1: ConvLayer,
    in1: InstanceNorm,
    conv2: ConvLayer,
    in2: InstanceNorm,
    conv3: ConvLayer,
    in3: InstanceNorm,
    res: Vec<ResidualBlock>,
    deconv1: ConvLayer,
    in4: InstanceNorm,
    deconv2: ConvLayer,
    in5: InstanceNorm,
    deconv3: ConvLayer,
    styles: usize,
}

impl TransformerNet {
    /// The side that the network's own layout needs: a multiple of 4 (two stride-2 steps),
    /// and at least 8 so that every reflection pad is smaller than the map it pads.
    const ALIGN: i64 = 4;
    const MIN_SIDE: i64 = 8;

    /// Creates a one-style network's variables under `p` (the root of a var store for
    /// checkpoint names): the PyTorch example's network.
    pub fn new(p: &nn::Path) -> Self {
        Self::with_styles(p, 1)
    }

    /// Creates a network of `styles` styles (at least 1): its instance norms' scales and
    /// shifts are `[styles, C]` when there are several.
    pub fn with_styles(p: &nn::Path, styles: usize) -> Self {
        let n = styles.max(1) as i64;
        Self {
            conv1: ConvLayer::new(p / "conv1", 3, 32, 9, 1),
            in1: InstanceNorm::new(p / "in1", 32, n),
            conv2: ConvLayer::new(p / "conv2", 32, 64, 3, 2),
            in2: InstanceNorm::new(p / "in2", 64, n),
            conv3: ConvLayer::new(p / "conv3", 64, 128, 3, 2),
            in3: InstanceNorm::new(p / "in3", 128, n),
            res: (1..=5)
                .map(|i| ResidualBlock::new(p / format!("res{i}"), 128, n))
                .collect(),
            deconv1: ConvLayer::upsampling(p / "deconv1", 128, 64, 3),
            in4: InstanceNorm::new(p / "in4", 64, n),
            deconv2: ConvLayer::upsampling(p / "deconv2", 64, 32, 3),
            in5: InstanceNorm::new(p / "in5", 32, n),
            deconv3: ConvLayer::new(p / "deconv3", 32, 3, 9, 1),
            styles: n as usize,
        }
    }

    /// The number of styles the network holds.
    pub fn styles(&self) -> usize {
        self.styles
    }

    /// The three downsampling (convolution, norm) pairs, each followed by ReLU.
    pub fn encoder(&self) -> [(&ConvLayer, &InstanceNorm); 3] {
        [
            (&self.conv1, &self.in1),
            (&self.conv2, &self.in2),
            (&self.conv3, &self.in3),
        ]
    }

    /// The residual blocks.
    pub fn residuals(&self) -> &[ResidualBlock] {
        &self.res
    }

    /// The two upsampling (convolution, norm) pairs, each followed by ReLU, and the last
    /// convolution.
    pub fn decoder(&self) -> ([(&ConvLayer, &InstanceNorm); 2], &ConvLayer) {
        (
            [(&self.deconv1, &self.in4), (&self.deconv2, &self.in5)],
            &self.deconv3,
        )
    }

    /// The network exactly as PyTorch's example computes it, in style `s`; sides must be
    /// multiples of 4, ≥ 8.
    pub fn forward_aligned(&self, x: &Tensor, s: &StyleMix) -> Tensor {
        let mut y = relu(self.in1.forward(&x.apply(&self.conv1), s));
        y = relu(self.in2.forward(&y.apply(&self.conv2), s));
        y = relu(self.in3.forward(&y.apply(&self.conv3), s));
        for block in &self.res {
            y = block.forward(&y, s);
        }
        y = relu(self.in4.forward(&y.apply(&self.deconv1), s));
        y = relu(self.in5.forward(&y.apply(&self.deconv2), s));
        y.apply(&self.deconv3)
    }

    /// Stylizes a batch (N×3×H×W, 0…255) of any size in style `s`; the output has the
    /// input's size. The style must be one the network holds (see [`crate::styles`]).
    pub fn forward_style(&self, x: &Tensor, s: &StyleMix) -> Tensor {
        let size = x.size();
        let (h, w) = (size[2], size[3]);
        let (ph, pw) = (pad_for(h), pad_for(w));
        if ph == 0 && pw == 0 {
            return self.forward_aligned(x, s);
        }
        // Replication, not reflection: it works for any side, even a single pixel.
        let padded = x.replication_pad2d([0, pw, 0, ph]);
        self.forward_aligned(&padded, s)
            .narrow(2, 0, h)
            .narrow(3, 0, w)
    }
}

/// ReLU, in place when no gradient is recorded (inference): one large map less at a time.
fn relu(mut t: Tensor) -> Tensor {
    if t.requires_grad() {
        t.relu()
    } else {
        let _ = t.relu_();
        t
    }
}

/// Padding (right, bottom) that brings a side up to what the network needs.
pub fn pad_for(side: i64) -> i64 {
    let aligned = side.max(TransformerNet::MIN_SIDE);
    let aligned =
        (aligned + TransformerNet::ALIGN - 1) / TransformerNet::ALIGN * TransformerNet::ALIGN;
    aligned - side
}

impl Module for TransformerNet {
    /// Stylizes a batch (N×3×H×W, 0…255) of any size in the first style (a one-style
    /// network's only one); the output has the input's size.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_style(x, &StyleMix::One(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_reaches_a_multiple_of_four_at_least_eight() {
        for side in 1..40 {
            let p = pad_for(side);
            assert!(
                p >= 0 && (side + p) % 4 == 0 && side + p >= 8,
                "side {side}"
            );
            assert!(p < 8);
        }
        assert_eq!(pad_for(256), 0);
    }
}
