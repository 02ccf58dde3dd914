//! Colour management through moxcms: a file's ICC profile, and conversions between it and
//! sRGB (what the network was trained on) at 8 or 16 bits, row by row and in parallel.
use super::photo::{narrow, Colour, Gray16Image, Rgb16Image};
use anyhow::{anyhow, Result};
use image::{GrayImage, RgbImage};
use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};
use rayon::prelude::*;
use std::sync::Arc;

/// An RGB colour profile that the colour engine can use, with the bytes to embed in outputs.
#[derive(Clone)]
pub struct Profile {
    icc: Arc<Vec<u8>>,
    parsed: Arc<ColorProfile>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Profile({} bytes of ICC)", self.icc.len())
    }
}

impl PartialEq for Profile {
    fn eq(&self, other: &Self) -> bool {
        self.icc == other.icc
    }
}

/// What an embedded profile turned out to be.
pub enum Embedded {
    /// An RGB profile the engine converts from and to.
    Rgb(Profile),
    /// A grey profile, for grey pixels.
    Gray(Arc<ColorProfile>),
    /// Unusable here (unparseable, CMYK, Lab…): the pixels are taken as sRGB, as viewers that
    /// cannot use a profile show them.
    Unusable,
}

/// Reads an embedded ICC profile.
pub fn embedded(icc: Vec<u8>) -> Embedded {
    let Ok(parsed) = ColorProfile::new_from_slice(&icc) else {
        return Embedded::Unusable;
    };
    match parsed.color_space {
        DataColorSpace::Rgb => {
            let profile = Profile {
                icc: Arc::new(icc),
                parsed: Arc::new(parsed),
            };
            // Both directions must exist, or the photo could not be written back in it.
            let srgb = ColorProfile::new_srgb();
            let ok = [Layout::Rgb]
                .iter()
                .all(|&l| transform8(&profile.parsed, l, &srgb, l).is_ok())
                && transform8(&srgb, Layout::Rgb, &profile.parsed, Layout::Rgb).is_ok();
            if ok {
                Embedded::Rgb(profile)
            } else {
                Embedded::Unusable
            }
        }
        DataColorSpace::Gray => Embedded::Gray(Arc::new(parsed)),
        _ => Embedded::Unusable,
    }
}

impl Profile {
    /// A profile that the engine builds (say, from a HEIF file's colour code points).
    pub fn from_engine(parsed: ColorProfile) -> Result<Self> {
        let icc = parsed
            .encode()
            .map_err(|e| anyhow!("cannot write the colour profile: {e:?}"))?;
        Ok(Self {
            icc: Arc::new(icc),
            parsed: Arc::new(parsed),
        })
    }

    /// The ICC bytes, to embed in an output.
    pub fn icc(&self) -> &[u8] {
        &self.icc
    }
}

fn transform8(
    from: &ColorProfile,
    from_layout: Layout,
    to: &ColorProfile,
    to_layout: Layout,
) -> Result<Arc<moxcms::Transform8BitExecutor>> {
    from.create_transform_8bit(from_layout, to, to_layout, TransformOptions::default())
        .map_err(|e| anyhow!("colour conversion not possible: {e:?}"))
}

fn transform16(
    from: &ColorProfile,
    from_layout: Layout,
    to: &ColorProfile,
    to_layout: Layout,
) -> Result<Arc<moxcms::Transform16BitExecutor>> {
    from.create_transform_16bit(from_layout, to, to_layout, TransformOptions::default())
        .map_err(|e| anyhow!("colour conversion not possible: {e:?}"))
}

/// The profile of a side of a conversion: `None` is sRGB.
fn parsed(profile: Option<&Profile>) -> ColorProfile {
    profile.map_or_else(ColorProfile::new_srgb, |p| (*p.parsed).clone())
}

/// Converts `colour` in place from `from` to `to` (`None`: sRGB), at its own depth.
pub fn convert(colour: &mut Colour, from: Option<&Profile>, to: Option<&Profile>) -> Result<()> {
    if from == to {
        return Ok(());
    }
    let (src, dst) = (parsed(from), parsed(to));
    let width = colour.dimensions().0 as usize * 3;
    if width == 0 {
        return Ok(());
    }
    match colour {
        Colour::Eight(image) => {
            let t = transform8(&src, Layout::Rgb, &dst, Layout::Rgb)?;
            let raw: &mut [u8] = image;
            in_rows(raw, width, |row, tmp| t.transform(row, tmp))
        }
        Colour::Sixteen(image) => {
            let t = transform16(&src, Layout::Rgb, &dst, Layout::Rgb)?;
            let raw: &mut [u16] = image;
            in_rows(raw, width, |row, tmp| t.transform(row, tmp))
        }
    }
}

/// Runs a row transform over every row of `raw`, in parallel, writing each row back.
fn in_rows<T: Copy + Default + Send + Sync>(
    raw: &mut [T],
    width: usize,
    f: impl Fn(&[T], &mut [T]) -> Result<(), moxcms::CmsError> + Sync,
) -> Result<()> {
    raw.par_chunks_mut(width).try_for_each_init(
        || vec![T::default(); width],
        |tmp, row| {
            f(row, tmp).map_err(|e| anyhow!("colour conversion failed: {e:?}"))?;
            row.copy_from_slice(tmp);
            Ok(())
        },
    )
}

/// The colour in sRGB at 8 bits, converted from `profile` (`None`: already sRGB).
pub fn to_srgb8(colour: &Colour, profile: Option<&Profile>) -> Result<RgbImage> {
    let (w, h) = colour.dimensions();
    let width = w as usize * 3;
    let mut out = RgbImage::new(w, h);
    if width == 0 {
        return Ok(out);
    }
    let raw: &mut [u8] = &mut out;
    let srgb = ColorProfile::new_srgb();
    match (colour, profile) {
        (Colour::Eight(image), None) => raw.copy_from_slice(image.as_raw()),
        (Colour::Eight(image), Some(p)) => {
            let t = transform8(&p.parsed, Layout::Rgb, &srgb, Layout::Rgb)?;
            raw.par_chunks_mut(width)
                .zip(image.as_raw().par_chunks(width))
                .try_for_each(|(dst, src)| t.transform(src, dst))
                .map_err(|e| anyhow!("colour conversion failed: {e:?}"))?;
        }
        (Colour::Sixteen(image), None) => {
            for (d, &s) in raw.iter_mut().zip(image.as_raw()) {
                *d = narrow(s);
            }
        }
        (Colour::Sixteen(image), Some(p)) => {
            // Converted at 16 bits, then rounded once to 8.
            let t = transform16(&p.parsed, Layout::Rgb, &srgb, Layout::Rgb)?;
            raw.par_chunks_mut(width)
                .zip(image.as_raw().par_chunks(width))
                .try_for_each_init(
                    || vec![0u16; width],
                    |tmp, (dst, src)| {
                        t.transform(src, tmp)?;
                        for (d, &s) in dst.iter_mut().zip(tmp.iter()) {
                            *d = narrow(s);
                        }
                        Ok(())
                    },
                )
                .map_err(|e: moxcms::CmsError| anyhow!("colour conversion failed: {e:?}"))?;
        }
    }
    Ok(out)
}

/// Grey pixels (8-bit) with a grey profile, as sRGB colour.
pub fn gray8_to_srgb(gray: &GrayImage, profile: &ColorProfile) -> Result<Colour> {
    let (w, h) = gray.dimensions();
    let t = transform8(
        profile,
        Layout::Gray,
        &ColorProfile::new_srgb(),
        Layout::Rgb,
    )?;
    let out = gray_rows(gray.as_raw(), w as usize, |s, d| t.transform(s, d))?;
    Ok(Colour::Eight(
        RgbImage::from_raw(w, h, out).ok_or_else(|| anyhow!("grey image of the wrong size"))?,
    ))
}

/// Grey pixels (16-bit) with a grey profile, as sRGB colour.
pub fn gray16_to_srgb(gray: &Gray16Image, profile: &ColorProfile) -> Result<Colour> {
    let (w, h) = gray.dimensions();
    let t = transform16(
        profile,
        Layout::Gray,
        &ColorProfile::new_srgb(),
        Layout::Rgb,
    )?;
    let out = gray_rows(gray.as_raw(), w as usize, |s, d| t.transform(s, d))?;
    Ok(Colour::Sixteen(
        Rgb16Image::from_raw(w, h, out).ok_or_else(|| anyhow!("grey image of the wrong size"))?,
    ))
}

/// Grey rows of `width` through a grey → RGB transform, into a new buffer.
fn gray_rows<T: Copy + Default + Send + Sync>(
    gray: &[T],
    width: usize,
    f: impl Fn(&[T], &mut [T]) -> Result<(), moxcms::CmsError> + Sync,
) -> Result<Vec<T>> {
    let mut out = vec![T::default(); gray.len() * 3];
    if width > 0 {
        out.par_chunks_mut(width * 3)
            .zip(gray.par_chunks(width))
            .try_for_each(|(dst, src)| f(src, dst))
            .map_err(|e| anyhow!("colour conversion failed: {e:?}"))?;
    }
    Ok(out)
}
