//! One training step of the transformer network: forward, perceptual losses, backward and
//! Adam, in the chosen precision (mixed precision keeps float32 weights, grams and losses).
use crate::device::{self, Precision};
use crate::loss::{self, LossWeights, Losses};
use crate::optim::Adam;
use crate::transformer::TransformerNet;
use crate::vgg::Vgg16;
use tch::nn::Module;
use tch::{Device, Kind, Tensor};

/// What every step uses besides the batch and the optimizer.
pub struct Step<'a> {
    /// The network being trained.
    pub net: &'a TransformerNet,
    /// The frozen loss network.
    pub vgg: &'a Vgg16,
    /// The style image's gram matrices.
    pub style_grams: &'a [Tensor; 4],
    /// Weights of the losses.
    pub weights: LossWeights,
    /// Precision of the forward passes.
    pub precision: Precision,
    /// Where the networks live.
    pub device: Device,
}

impl Step<'_> {
    /// Trains on one batch (N×3×S×S, uint8, any device); returns the losses computed before
    /// the update. The losses stay on the device: reading them is the caller's choice.
    pub fn run(&self, images: &Tensor, adam: &mut Adam, scaler: &mut LossScaler) -> Losses {
        let x = device::channels_last(&images.to_device(self.device).to_kind(Kind::Float));
        let input = match self.precision {
            Precision::Fp32 => x.shallow_clone(),
            other => x.to_kind(other.kind()),
        };
        let y = self.net.forward(&input);
        let mut losses =
            loss::perceptual_losses(self.vgg, &input, &y, self.style_grams, self.weights);
        if self.weights.stability > 0.0 {
            // The same photos with small noise must give the same output: a second forward
            // pass of the transformer (not of VGG), both branches trained.
            let noise = x.randn_like() * loss::STABILITY_NOISE_STD;
            let noisy = (&x + noise).to_kind(input.kind());
            let y_noisy = self.net.forward(&noisy);
            losses.stability = loss::stability_loss(&y, &y_noisy, self.weights.stability);
            losses.total = &losses.total + &losses.stability;
        }
        adam.zero_grad();
        scaler.backward(&losses.total);
        // An fp16 overflow skips the update, as torch's GradScaler does.
        if scaler.unscale_and_check(adam) {
            adam.step();
        }
        losses
    }
}

/// Dynamic loss scaling for fp16 (as torch's GradScaler); a no-op in other precisions.
pub struct LossScaler {
    scale: f64,
    enabled: bool,
    good_steps: u32,
    /// Updates skipped because the gradients overflowed.
    pub skipped: u64,
}

impl LossScaler {
    /// A scaler that is active only for fp16.
    pub fn new(precision: Precision) -> Self {
        Self {
            scale: 65536.0,
            enabled: precision == Precision::Fp16,
            good_steps: 0,
            skipped: 0,
        }
    }

    fn backward(&self, loss: &Tensor) {
        if self.enabled {
            (loss * self.scale).backward();
        } else {
            loss.backward();
        }
    }

    /// Unscales the gradients; false when they overflowed (the update must be skipped).
    fn unscale_and_check(&mut self, adam: &mut Adam) -> bool {
        if !self.enabled {
            return true;
        }
        adam.scale_grads(1.0 / self.scale);
        if adam.grads_finite() {
            self.good_steps += 1;
            if self.good_steps == 2000 {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
            true
        } else {
            self.scale /= 2.0;
            self.good_steps = 0;
            self.skipped += 1;
            false
        }
    }
}
