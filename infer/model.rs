//! The style model, loaded once, and one forward pass per picture.
use anyhow::{anyhow, bail, Context, Result};
use faststyle::checkpoint;
use faststyle::device::Precision;
use faststyle::imageio;
use faststyle::transformer::TransformerNet;
use image::RgbImage;
use std::path::Path;
use tch::nn::{Module, VarStore};
use tch::{Device, Kind, Tensor};

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

    /// The device the network runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Stylizes pictures of one size in one forward pass (instance norm is per picture, so
    /// each result equals that of [`Stylizer::stylize`]). Bytes, not floats, cross between
    /// the CPU and the device.
    pub fn stylize_batch(&self, pictures: &[&RgbImage]) -> Result<Vec<RgbImage>> {
        let Some(first) = pictures.first() else {
            return Ok(Vec::new());
        };
        let (w, h) = first.dimensions();
        if pictures.iter().any(|p| p.dimensions() != (w, h)) {
            bail!("pictures of one batch differ in size");
        }
        let mut bytes = Vec::with_capacity(pictures.len() * first.as_raw().len());
        for p in pictures {
            bytes.extend_from_slice(p.as_raw());
        }
        let n = pictures.len() as i64;
        let x = Tensor::from_slice(&bytes)
            .view([n, i64::from(h), i64::from(w), 3])
            .to_device(self.device)
            .permute([0, 3, 1, 2])
            .to_kind(self.kind);
        let y = tch::no_grad(|| self.net.forward(&x));
        let out = y
            .to_kind(Kind::Float)
            .clamp(0.0, 255.0)
            .round()
            .to_kind(Kind::Uint8)
            .permute([0, 2, 3, 1])
            .contiguous()
            .view([-1])
            .to_device(Device::Cpu);
        let data = Vec::<u8>::try_from(&out).context("cannot copy the stylized frames")?;
        let per = first.as_raw().len();
        data.chunks_exact(per)
            .map(|c| {
                RgbImage::from_raw(w, h, c.to_vec())
                    .ok_or_else(|| anyhow!("stylized frame of the wrong size"))
            })
            .collect()
    }

    /// Stylizes one picture; the result has the picture's size.
    pub fn stylize(&self, rgb: &RgbImage) -> Result<RgbImage> {
        let x = imageio::to_tensor(rgb)
            .to_device(self.device)
            .to_kind(self.kind);
        let y = tch::no_grad(|| self.net.forward(&x));
        imageio::from_tensor(&y)
    }
}
