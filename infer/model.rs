//! The style model, loaded once, and one forward pass per picture.
use anyhow::{anyhow, bail, Context, Result};
use faststyle::checkpoint::ModelFile;
use faststyle::conditional::StyleMix;
use faststyle::device::Precision;
use faststyle::imageio::{self, Colour, Depth};
use faststyle::styles::{self, StyleChoice};
use faststyle::tiled::{self, Tiling};
use faststyle::transformer::TransformerNet;
use image::RgbImage;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// A transformer network with a style model's weights, on its device, in its precision.
pub struct Stylizer {
    // The var store owns the weights that `net` refers to.
    _vs: VarStore,
    net: TransformerNet,
    device: Device,
    kind: Kind,
    path: PathBuf,
    names: Vec<String>,
    // What `stylize` applies: set for a one-style model, chosen by `select` for several.
    style: Option<StyleMix>,
    tiling: Tiling,
}

impl Stylizer {
    /// Loads a style model file (float32 or float16, one style or several) and converts it
    /// to `precision`.
    pub fn load(path: &Path, device: Device, precision: Precision) -> Result<Self> {
        let model = ModelFile::read(path)?;
        let (mut vs, net) = model.network(path, device)?;
        let kind = precision.kind();
        if kind != Kind::Float {
            vs.set_kind(kind);
        }
        let style = (model.styles.len() == 1).then_some(StyleMix::One(0));
        Ok(Self {
            _vs: vs,
            net,
            device,
            kind,
            path: path.to_path_buf(),
            names: model.styles,
            style,
            tiling: Tiling::Auto,
        })
    }

    /// When pictures are stylized in tiles (bounded memory) rather than in one pass.
    pub fn with_tiling(self, tiling: Tiling) -> Self {
        Self { tiling, ..self }
    }

    /// The model's style names, in row order (one name for a one-style model).
    pub fn style_names(&self) -> &[String] {
        &self.names
    }

    /// What `choice` (or no choice) means for this model; a one-line error naming the
    /// model and listing its styles when it names none of them.
    pub fn resolve(&self, choice: Option<&StyleChoice>) -> Result<StyleMix> {
        styles::select(choice, &self.names).with_context(|| self.path.display().to_string())
    }

    /// Chooses the style that [`Stylizer::stylize_at`] and [`Stylizer::stylize_batch`] apply.
    pub fn select(&mut self, choice: Option<&StyleChoice>) -> Result<()> {
        self.style = Some(self.resolve(choice)?);
        Ok(())
    }

    /// The device the network runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Stylizes pictures of one size in one forward pass, in the selected style (instance
    /// norm is per picture, so each result equals that of [`Stylizer::stylize_at`]). Bytes, not
    /// floats, cross between the CPU and the device.
    pub fn stylize_batch(&self, pictures: &[&RgbImage]) -> Result<Vec<RgbImage>> {
        let style = self.selected()?;
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
        let y = tch::no_grad(|| self.net.forward_style(&x, style));
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

    /// Stylizes one picture in the selected style at `depth`: the network's output rounded
    /// to 8 bits, or quantised to 16 (for 16-bit photos).
    pub fn stylize_at(&self, rgb: &RgbImage, depth: Depth) -> Result<Colour> {
        self.stylize_as_at(rgb, self.selected()?, depth)
    }

    /// Stylizes one picture in `style` (from [`Stylizer::resolve`]) at `depth`.
    pub fn stylize_as_at(&self, rgb: &RgbImage, style: &StyleMix, depth: Depth) -> Result<Colour> {
        if depth == Depth::Eight {
            return self.stylize_as(rgb, style).map(Colour::Eight);
        }
        let (w, h) = rgb.dimensions();
        if let Some(tile) = self.tiling.tile_for(i64::from(w), i64::from(h)) {
            return tiled::stylize_16(&self.net, style, rgb, tile, self.device, self.kind)
                .map(Colour::Sixteen);
        }
        let x = imageio::to_device_tensor(rgb, self.device, self.kind);
        let y = tch::no_grad(|| self.net.forward_style(&x, style));
        imageio::from_tensor_16(&y).map(Colour::Sixteen)
    }

    /// The style chosen by [`Stylizer::select`].
    fn selected(&self) -> Result<&StyleMix> {
        self.style.as_ref().ok_or_else(|| {
            anyhow!(
                "{}: no style chosen among its {} styles",
                self.path.display(),
                self.names.len()
            )
        })
    }

    /// Stylizes one picture in `style` (from [`Stylizer::resolve`]).
    pub fn stylize_as(&self, rgb: &RgbImage, style: &StyleMix) -> Result<RgbImage> {
        let (w, h) = rgb.dimensions();
        if let Some(tile) = self.tiling.tile_for(i64::from(w), i64::from(h)) {
            return tiled::stylize(&self.net, style, rgb, tile, self.device, self.kind);
        }
        let x = imageio::to_device_tensor(rgb, self.device, self.kind);
        let y = tch::no_grad(|| self.net.forward_style(&x, style));
        imageio::from_tensor(&y)
    }
}
