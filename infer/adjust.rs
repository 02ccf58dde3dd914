//! What happens to a picture around the network, the same for files and for the server:
//! the size limit before it, the colour options after it.
use anyhow::Result;
use faststyle::imageio::{self, Picture};
use image::RgbImage;

/// Scales a decoded picture down to the size limit, if any.
pub fn prepare(picture: Picture, max_size: Option<u32>) -> Result<Picture> {
    match max_size {
        Some(max) => imageio::fit_within(picture, max),
        None => Ok(picture),
    }
}

/// Applies the colour options to the network's result and gives it the original's alpha.
pub fn finish(
    original: Picture,
    stylized: RgbImage,
    preserve_color: bool,
    strength: f32,
) -> Result<Picture> {
    let mut rgb = stylized;
    if preserve_color {
        rgb = imageio::preserve_color(&rgb, &original.rgb)?;
    }
    if strength < 1.0 {
        rgb = imageio::blend(&rgb, &original.rgb, strength)?;
    }
    Ok(Picture {
        rgb,
        alpha: original.alpha,
    })
}
