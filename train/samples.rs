//! The stylized sample images that TensorBoard shows as a run goes.
use crate::args::Config;
use crate::logger::Logger;
use anyhow::{bail, Result};
use faststyle::data::{self, Dataset};
use faststyle::imageio;
use tch::{Device, Kind, Tensor};

/// Photos shown as stylized samples in TensorBoard.
const SAMPLES: usize = 4;

/// The first few readable photos of the dataset, as training crops, for sample images.
pub fn sample_batch(dataset: &Dataset, config: &Config) -> Result<Tensor> {
    let mut crops = Vec::new();
    for path in &dataset.files {
        if crops.len() == SAMPLES {
            break;
        }
        match data::load_photo(path, config.image_size) {
            Ok(pixels) => crops.push(pixels),
            // The loader meets it too, and reports it once.
            Err(_) => continue,
        }
    }
    if crops.is_empty() {
        bail!("{}: no photo could be read", config.dataset.display());
    }
    let s = config.image_size as i64;
    Ok(Tensor::from_slice(&crops.concat())
        .view([crops.len() as i64, s, s, 3])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float))
}

/// Logs a style image (1×3×H×W, 0…255) as a `side`-square crop under `tag`.
pub fn log_style(logger: &mut Logger, style: &Tensor, tag: &str, side: u32) -> Result<()> {
    let img = imageio::from_tensor(style)?;
    let bytes = data::square_crop(&img, side, &mut fast_image_resize::Resizer::new())?;
    logger.image(tag, &bytes, side as usize, 0)
}

/// Logs each image of a batch (N×3×S×S, 0…255) as `{tag}/{i}`.
pub fn log_batch(logger: &mut Logger, batch: &Tensor, tag: &str, step: u64) -> Result<()> {
    let side = batch.size()[2] as usize;
    let hwc = batch
        .detach()
        .clamp(0.0, 255.0)
        .round()
        .to_kind(Kind::Uint8)
        .permute([0, 2, 3, 1])
        .contiguous()
        .to_device(Device::Cpu);
    for i in 0..hwc.size()[0] {
        let img = hwc.get(i);
        let n = img.numel();
        let mut bytes = vec![0u8; n];
        img.copy_data_u8(&mut bytes, n);
        logger.image(&format!("{tag}/{i}"), &bytes, side, step)?;
    }
    Ok(())
}
