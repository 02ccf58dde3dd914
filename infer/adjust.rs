//! What happens to a photo around the network, the same for files and for the server: the
//! size limit and the conversion to sRGB before it; after it, the conversion back to the
//! photo's colour space, the colour options and the metadata.
//!
//! The network sees sRGB at 8 bits (it was trained on sRGB photos). Its result is converted to
//! the photo's own colour space (where the output format holds a profile; else it stays
//! sRGB), and `--preserve-color` and `--strength` blend there, in the photo's own encoded
//! RGB values, with the photo's own pixels: so `--strength 0` gives back the photo's pixels,
//! tagged with its profile, exactly.
use anyhow::Result;
use faststyle::imageio::{self, Colour, Depth, OutputFormat, Photo, Picture};
use image::RgbImage;

/// A photo ready for the network: scaled to the size limit, with its sRGB 8-bit copy when its
/// own pixels are not that already.
pub struct Prepared {
    /// The photo as read (scaled).
    pub photo: Photo,
    srgb: Option<RgbImage>,
}

impl Prepared {
    /// What the network takes: the photo in sRGB at 8 bits.
    pub fn network_input(&self) -> &RgbImage {
        match (&self.srgb, &self.photo.colour) {
            (Some(srgb), _) => srgb,
            (None, Colour::Eight(rgb)) => rgb,
            (None, Colour::Sixteen(_)) => unreachable!("a 16-bit photo always has its copy"),
        }
    }
}

/// Scales a decoded photo down to the size limit, if any, and makes the network's input.
pub fn prepare(photo: Photo, max_size: Option<u32>) -> Result<Prepared> {
    let photo = match max_size {
        Some(max) => imageio::fit_photo_within(photo, max)?,
        None => photo,
    };
    let srgb = photo.srgb_copy()?;
    Ok(Prepared { photo, srgb })
}

/// What is done to the network's result.
#[derive(Clone, Copy, Debug)]
pub struct Finish {
    /// Keep the original's chroma.
    pub preserve_color: bool,
    /// Blend weight of the stylized result, 0…1.
    pub strength: f32,
    /// Leave EXIF and XMP out.
    pub strip_metadata: bool,
}

/// The depth that the network's result should have for a photo written as `format`: 16 bits
/// for 16-bit photos in formats that hold them, else 8.
pub fn network_depth(photo: &Photo, format: OutputFormat) -> Depth {
    format.depth_for(photo.colour.depth())
}

/// The stylized photo as it is written in `format`: `stylized` (sRGB, from the network)
/// converted to the photo's colour space where `format` holds a profile, the colour options
/// applied against the photo's own pixels, the photo's alpha and (unless stripped) metadata.
pub fn finish_photo(
    prepared: Prepared,
    stylized: Colour,
    format: OutputFormat,
    finish: Finish,
) -> Result<Photo> {
    let Prepared { photo, srgb } = prepared;
    drop(srgb);
    let depth = format.depth_for(photo.colour.depth());
    let target = photo.profile.clone().filter(|_| format.holds_profile());
    let mut out = stylized.to_depth(depth);
    imageio::convert_colour(&mut out, None, target.as_ref())?;
    if finish.preserve_color || finish.strength < 1.0 {
        let mut original = photo.colour.to_depth(depth);
        imageio::convert_colour(&mut original, photo.profile.as_ref(), target.as_ref())?;
        imageio::adjust_colour(&mut out, &original, finish.preserve_color, finish.strength)?;
    }
    Ok(Photo {
        colour: out,
        alpha: photo.alpha,
        profile: target,
        metadata: if finish.strip_metadata {
            Default::default()
        } else {
            photo.metadata
        },
        default_format: photo.default_format,
    })
}

/// Applies the colour options to the network's result and gives it the original's alpha
/// (sRGB pictures, as the server's previews have).
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
