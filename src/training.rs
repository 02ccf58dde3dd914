//! One training step of the transformer network: forward, perceptual losses, backward and
//! Adam, in the chosen precision (mixed precision keeps float32 weights, grams and losses).
use crate::conditional::StyleMix;
use crate::device::{self, Precision};
use crate::loss::{self, LossWeights, Losses};
use crate::optim::Adam;
use crate::temporal::{Draws, MovedBatch, Purpose};
use crate::transformer::TransformerNet;
use crate::vgg::Vgg16;
use anyhow::{anyhow, Result};
use tch::{Device, Kind, Tensor};

/// What every step uses besides the batch and the optimizer.
pub struct Step<'a> {
    /// The network being trained.
    pub net: &'a TransformerNet,
    /// The frozen loss network.
    pub vgg: &'a Vgg16,
    /// The style image's gram matrices.
    pub style_grams: &'a [Tensor; 4],
    /// The network's style (row of its conditional instance norms) that these grams train.
    pub style: usize,
    /// Weights of the losses.
    pub weights: LossWeights,
    /// Precision of the forward passes.
    pub precision: Precision,
    /// Where the networks live.
    pub device: Device,
    /// Whether a batch crosses to a CUDA device from pinned memory without waiting (else the
    /// copy waits for the device's queued work, which stalls the step's launches).
    pub pinned_copies: bool,
    /// What the step's random draws (the stability and temporal terms') are a function of.
    pub draws: Draws,
    /// This process's part of a data-parallel step; `None` for one process.
    pub shard: Option<Shard<'a>>,
    /// Train on the loss divided by its own (detached) value, the gradient of its log: so
    /// that in a network of several styles, a style whose losses are larger does not set
    /// Adam's step sizes for the others. The losses returned are the plain ones.
    pub balance: bool,
}

/// How a data-parallel step meets the other processes (see `train`'s ranks).
pub trait GradSync {
    /// Arms the averaging of the gradients that the next backward pass makes.
    fn before_backward(&self) -> Result<()>;
    /// Whether the gradients were finite on every process, so that fp16 retries agree.
    fn all_finite(&self, finite: bool) -> Result<bool>;
    /// The mean of a one-element tensor over the processes (a new tensor, detached).
    fn mean(&self, value: &Tensor) -> Result<Tensor>;
}

/// One process's part of a data-parallel step: its batch is photos `offset..offset + n` of a
/// global batch of `global` photos.
pub struct Shard<'a> {
    /// Averages the gradients over the processes.
    pub sync: &'a dyn GradSync,
    /// Where this batch starts in the global batch.
    pub offset: i64,
    /// Photos in the global batch.
    pub global: i64,
    /// Factor of this batch's losses: its photos × processes ÷ global photos (1 for equal
    /// shares), so that the processes' mean loss, and their averaged gradients, are the
    /// global batch's.
    pub weight: f64,
}

impl Step<'_> {
    /// Trains on one batch (N×3×S×S, uint8, any device); returns the losses computed before
    /// the update. The losses stay on the device: reading them is the caller's choice.
    ///
    /// Under fp16 loss scaling, a batch whose gradients overflow is tried again at half the
    /// scale (up to [`LossScaler::MAX_TRIES`] times) rather than skipped, so that an fp16 run
    /// makes the same updates on the same batches as a float32 one.
    pub fn run(&self, images: &Tensor, adam: &mut Adam, scaler: &mut LossScaler) -> Result<Losses> {
        let on_device = if self.pinned_copies && self.device.is_cuda() {
            images
                .pin_memory(self.device)
                .to_device_(self.device, images.kind(), true, false)
        } else {
            images.to_device(self.device)
        };
        let x = device::channels_last(&on_device.to_kind(Kind::Float));
        let input = match self.precision {
            Precision::Fp32 => x.shallow_clone(),
            other => x.to_kind(other.kind()),
        };
        // Drawn once per batch from the seed and the step (a retry or a resume draws the same).
        let noisy = (self.weights.stability > 0.0).then(|| {
            let noise = self
                .draws
                .noise(Purpose::StabilityNoise, &x, loss::STABILITY_NOISE_STD);
            (&x + noise).to_kind(input.kind())
        });
        let moved =
            (self.weights.temporal > 0.0).then(|| MovedBatch::draw(&self.draws, &x, input.kind()));
        let mut tries = 0;
        loop {
            let style = StyleMix::One(self.style);
            let y = self.net.forward_style(&input, &style);
            let mut losses =
                loss::perceptual_losses(self.vgg, &input, &y, self.style_grams, self.weights);
            if let Some(noisy) = &noisy {
                // The same photos with small noise must give the same output: a second forward
                // pass of the transformer (not of VGG), both branches trained.
                let y_noisy = self.net.forward_style(noisy, &style);
                losses.stability = loss::stability_loss(&y, &y_noisy, self.weights.stability);
                losses.total = &losses.total + &losses.stability;
            }
            if let Some(moved) = &moved {
                // The photos moved as a next frame would be must give the output moved the
                // same way: one more transformer pass, no VGG pass.
                let y_moved = self.net.forward_style(&moved.input, &style);
                losses.temporal = moved.loss(&y, &y_moved, self.weights.temporal);
                losses.total = &losses.total + &losses.temporal;
            }
            if let Some(shard) = self.shard.as_ref().filter(|s| s.weight != 1.0) {
                losses.scale(shard.weight);
            }
            adam.zero_grad()?;
            let sync = self.shard.as_ref().map(|s| s.sync);
            if let Some(sync) = sync {
                sync.before_backward()?;
            }
            if self.balance {
                // Divided by the global batch's loss, the same on every process, so that the
                // averaged gradients are those of one process with the whole batch.
                let divisor = match sync {
                    Some(sync) => sync.mean(&losses.total)?,
                    None => losses.total.detach(),
                };
                scaler.backward(&(&losses.total / divisor))?;
            } else {
                scaler.backward(&losses.total)?;
            }
            tries += 1;
            if scaler.unscale_and_check(adam, sync)? {
                adam.step()?;
                return Ok(losses);
            }
            if tries == LossScaler::MAX_TRIES {
                scaler.skipped += 1;
                return Ok(losses);
            }
        }
    }
}

/// Dynamic loss scaling for fp16 (as torch's GradScaler, but an overflow retries the batch
/// at a lower scale instead of skipping it); a no-op in other precisions.
pub struct LossScaler {
    scale: f64,
    enabled: bool,
    good_steps: u32,
    /// Batches whose gradients overflowed at every scale tried (their update was skipped).
    pub skipped: u64,
    /// Batches tried again at a lower scale after an overflow.
    pub retried: u64,
}

impl LossScaler {
    /// Tries of one batch before its update is skipped (the scale halves at each).
    pub const MAX_TRIES: u32 = 24;

    /// A scaler that is active only for fp16.
    pub fn new(precision: Precision) -> Self {
        Self {
            scale: 65536.0,
            enabled: precision == Precision::Fp16,
            good_steps: 0,
            skipped: 0,
            retried: 0,
        }
    }

    fn backward(&self, loss: &Tensor) -> Result<()> {
        // An error here is a collective's (a data-parallel peer is gone): report, not panic.
        let result = if self.enabled {
            (loss * self.scale).f_backward()
        } else {
            loss.f_backward()
        };
        result.map_err(|e| {
            let text = e.to_string();
            anyhow!(
                "backward pass: {}",
                text.lines().next().unwrap_or("libtorch error")
            )
        })
    }

    /// Unscales the gradients; false when they overflowed on any process (the scale is then
    /// halved everywhere alike).
    fn unscale_and_check(&mut self, adam: &mut Adam, sync: Option<&dyn GradSync>) -> Result<bool> {
        if !self.enabled {
            return Ok(true);
        }
        let mut finite = adam.unscale_grads(1.0 / self.scale)?;
        if let Some(sync) = sync {
            finite = sync.all_finite(finite)?;
        }
        if finite {
            self.good_steps += 1;
            if self.good_steps == 2000 {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
            Ok(true)
        } else {
            self.scale /= 2.0;
            self.good_steps = 0;
            self.retried += 1;
            Ok(false)
        }
    }
}
