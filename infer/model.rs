//! The style model, loaded once, and one forward pass per picture.
use anyhow::Result;
use faststyle::checkpoint;
use faststyle::device::Precision;
use faststyle::imageio;
use faststyle::transformer::TransformerNet;
use image::RgbImage;
use std::path::Path;
use tch::nn::{Module, VarStore};
use tch::{Device, Kind};

/// A transformer network with a style model's weights, on its device, in its precision.
pub struct Stylizer {
    // The var store owns the weights that `net` refers to.
    _vs: VarStore,
    net: TransformerNet,
    device: Device,
    kind: Kind,
}

impl Stylizer {
    /// Loads a style model file (float32 or float16) and converts it to `precision`.
    pub fn load(path: &Path, device: Device, precision: Precision) -> Result<Self> {
        let mut vs = VarStore::new(device);
        let net = TransformerNet::new(&vs.root());
        checkpoint::load_model(path, &vs)?;
        let kind = precision.kind();
        if kind != Kind::Float {
            vs.set_kind(kind);
        }
        Ok(Self {
            _vs: vs,
            net,
            device,
            kind,
        })
    }

    /// Stylizes one picture; the result has the picture's size.
    pub fn stylize(&self, rgb: &RgbImage) -> Result<RgbImage> {
        let x = imageio::to_device_tensor(rgb, self.device, self.kind);
        let y = tch::no_grad(|| self.net.forward(&x));
        imageio::from_tensor(&y)
    }
}
