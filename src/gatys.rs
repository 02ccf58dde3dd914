//! Gatys, Ecker, Bethge 2016: a photo's own pixels optimised against the perceptual losses
//! that training uses (same layers, same weights), to preview a style and its weights in a
//! minute instead of a night of training.
use crate::device::Precision;
use crate::loss::{self, LossWeights, Losses};
use crate::optim::Adam;
use crate::vgg::Vgg16;
use anyhow::Result;
use tch::{Kind, Tensor};

/// Adam's learning rate on 0…255 pixels, with the pixels clamped to 0…255 after each step.
/// Measured with the real VGG16 (a 128-pixel photo, Udnie, default weights, 150 loss
/// evaluations): Adam at 3 ends at a total loss of 2.97e5, at 1.5 at 3.13e5, at 8 at 3.77e5
/// (it oscillates); torch's L-BFGS (history 100, no line search) ends at 3.00e5 once clamped
/// (it is ahead by mid-run, 2.9e5 against 3.1e5 at 100 evaluations, but wanders outside
/// 0…255 and needs a closure and several evaluations per step). Adam is as good at the
/// budget, simpler, and gives one evaluation per step for the progress bar.
pub const LEARNING_RATE: f64 = 3.0;

/// An image being optimised, starting from the photo itself.
pub struct Gatys<'a> {
    vgg: &'a Vgg16,
    content: Tensor,
    style_grams: &'a [Tensor; 4],
    weights: LossWeights,
    kind: Kind,
    pixels: Tensor,
    adam: Adam,
}

impl<'a> Gatys<'a> {
    /// Starts from `photo` (1×3×H×W, 0…255, on the VGG's device); the VGG passes run in
    /// `precision`, the pixels, Gram matrices and losses stay float32.
    pub fn new(
        vgg: &'a Vgg16,
        photo: &Tensor,
        style_grams: &'a [Tensor; 4],
        weights: LossWeights,
        precision: Precision,
    ) -> Self {
        let kind = precision.kind();
        let photo = photo.to_kind(Kind::Float);
        let content = tch::no_grad(|| vgg.content_features(&photo.to_kind(kind)));
        let pixels = photo.detach().copy().set_requires_grad(true);
        let adam = Adam::new(
            vec![("pixels".into(), pixels.shallow_clone())],
            LEARNING_RATE,
        );
        Self {
            vgg,
            content,
            style_grams,
            weights,
            kind,
            pixels,
            adam,
        }
    }

    /// One Adam step on the pixels; returns the losses of the image before the step.
    pub fn step(&mut self) -> Result<Losses> {
        let y = self.pixels.to_kind(self.kind);
        let losses =
            loss::losses_against(self.vgg, &self.content, &y, self.style_grams, self.weights);
        self.adam.zero_grad()?;
        losses.total.backward();
        self.adam.step()?;
        tch::no_grad(|| {
            let _ = self.pixels.clamp_(0.0, 255.0);
        });
        Ok(losses)
    }

    /// The image as it stands (1×3×H×W, float32, 0…255).
    pub fn image(&self) -> Tensor {
        self.pixels.detach()
    }
}
