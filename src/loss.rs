//! Perceptual losses: gram matrix, content loss, style loss and total variation.
use crate::vgg::{Features, Vgg16};
use tch::{Kind, Reduction, Tensor};

/// Gram matrix of each image's feature map: F·Fᵀ / (C·H·W), computed in float32.
pub fn gram_matrix(features: &Tensor) -> Tensor {
    let size = features.size();
    let (b, c, h, w) = (size[0], size[1], size[2], size[3]);
    let f = features.to_kind(Kind::Float).view([b, c, h * w]);
    f.bmm(&f.transpose(1, 2)) / (c * h * w) as f64
}

/// Content loss: weight · mean((φ(y) − φ(x))²) on relu2_2.
pub fn content_loss(y_relu2_2: &Tensor, x_relu2_2: &Tensor, weight: f64) -> Tensor {
    y_relu2_2
        .to_kind(Kind::Float)
        .mse_loss(&x_relu2_2.to_kind(Kind::Float), Reduction::Mean)
        * weight
}

/// Style loss: weight · Σ_layers mean((gram(φ(y)) − gram(φ(s)))²), style grams broadcast
/// over the batch.
pub fn style_loss(y: &Features, style_grams: &[Tensor; 4], weight: f64) -> Tensor {
    y.layers()
        .iter()
        .zip(style_grams)
        .map(|(f, g)| {
            let gy = gram_matrix(f);
            (gy - g).square().mean(Kind::Float)
        })
        .fold(Tensor::from(0f32).to_device(y.relu1_2.device()), |a, b| {
            a + b
        })
        * weight
}

/// Total variation: weight · (mean|∂x y| + mean|∂y y|), anisotropic, on the output image.
pub fn tv_loss(y: &Tensor, weight: f64) -> Tensor {
    let y = y.to_kind(Kind::Float);
    let (h, w) = (y.size()[2], y.size()[3]);
    let dx = (y.narrow(3, 1, w - 1) - y.narrow(3, 0, w - 1))
        .abs()
        .mean(Kind::Float);
    let dy = (y.narrow(2, 1, h - 1) - y.narrow(2, 0, h - 1))
        .abs()
        .mean(Kind::Float);
    (dx + dy) * weight
}

/// Standard deviation, in pixel levels (0…255), of the Gaussian noise that the stability term
/// adds to each photo: about the sensor noise and compression error that make video flicker.
pub const STABILITY_NOISE_STD: f64 = 10.0;

/// Stability (Gupta et al. 2017, noise robustness): weight · mean((y − y_noisy)²), where
/// y_noisy is the network's output for the same photo with Gaussian noise added.
pub fn stability_loss(y: &Tensor, y_noisy: &Tensor, weight: f64) -> Tensor {
    y.to_kind(Kind::Float)
        .mse_loss(&y_noisy.to_kind(Kind::Float), Reduction::Mean)
        * weight
}

/// Weights of the losses.
#[derive(Clone, Copy, Debug)]
pub struct LossWeights {
    /// Content weight (default 1e5).
    pub content: f64,
    /// Style weight (default 1e10).
    pub style: f64,
    /// Total-variation weight (default 0).
    pub tv: f64,
    /// Stability (noise-robustness) weight (default 0: off).
    pub stability: f64,
    /// Temporal-consistency weight (default 0: off; see `temporal`).
    pub temporal: f64,
}

/// The losses of one batch, as scalar tensors.
pub struct Losses {
    /// Weighted content loss.
    pub content: Tensor,
    /// Weighted style loss.
    pub style: Tensor,
    /// Weighted total-variation loss.
    pub tv: Tensor,
    /// Weighted stability loss (zero unless the training step adds it).
    pub stability: Tensor,
    /// Weighted temporal loss (zero unless the training step adds it).
    pub temporal: Tensor,
    /// Their sum.
    pub total: Tensor,
}

impl Losses {
    /// Multiplies every loss by `factor`.
    pub fn scale(&mut self, factor: f64) {
        for loss in [
            &mut self.content,
            &mut self.style,
            &mut self.tv,
            &mut self.stability,
            &mut self.temporal,
            &mut self.total,
        ] {
            *loss = &*loss * factor;
        }
    }
}

/// The style image's gram matrices at the four layers (a batch of one).
pub fn style_targets(vgg: &Vgg16, style: &Tensor) -> [Tensor; 4] {
    tch::no_grad(|| vgg.features(style).layers().map(gram_matrix))
}

/// All losses of a stylized batch `y` against its content batch `x`.
pub fn perceptual_losses(
    vgg: &Vgg16,
    x: &Tensor,
    y: &Tensor,
    style_grams: &[Tensor; 4],
    weights: LossWeights,
) -> Losses {
    let x_content = tch::no_grad(|| vgg.content_features(x));
    losses_against(vgg, &x_content, y, style_grams, weights)
}

/// All losses of `y` against content features already computed (relu2_2 of the content).
pub fn losses_against(
    vgg: &Vgg16,
    x_content: &Tensor,
    y: &Tensor,
    style_grams: &[Tensor; 4],
    weights: LossWeights,
) -> Losses {
    let fy = vgg.features(y);
    let content = content_loss(&fy.relu2_2, x_content, weights.content);
    let style = style_loss(&fy, style_grams, weights.style);
    let tv = if weights.tv != 0.0 {
        tv_loss(y, weights.tv)
    } else {
        Tensor::zeros([], (Kind::Float, y.device()))
    };
    let total = &content + &style + &tv;
    Losses {
        content,
        style,
        tv,
        stability: Tensor::zeros([], (Kind::Float, y.device())),
        temporal: Tensor::zeros([], (Kind::Float, y.device())),
        total,
    }
}
