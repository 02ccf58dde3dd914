//! Pixels and tensors, resizing, and the colour options (blend, preserve colour) at 8 or 16
//! bits.
use super::photo::{Alpha, Colour, Photo, Picture, Rgb16Image};
use anyhow::{anyhow, bail, Context, Result};
use fast_image_resize::{images::Image, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{GrayImage, ImageBuffer, RgbImage};
use tch::{Kind, Tensor};

/// An RGB image as a 1×3×H×W float tensor of pixel values 0…255 on the CPU.
pub fn to_tensor(image: &RgbImage) -> Tensor {
    to_device_tensor(image, tch::Device::Cpu, Kind::Float)
}

/// An RGB image as a 1×3×H×W tensor of pixel values 0…255 of `kind` on `device`. The bytes
/// cross to the device as they are (a quarter of float32's size) and are converted there.
pub fn to_device_tensor(image: &RgbImage, device: tch::Device, kind: Kind) -> Tensor {
    let (w, h) = image.dimensions();
    Tensor::from_slice(image.as_raw())
        .to_device(device)
        .view([1, i64::from(h), i64::from(w), 3])
        .permute([0, 3, 1, 2])
        .contiguous()
        .to_kind(kind)
}

/// The H×W×3 values of a 1×3×H×W (or 3×H×W) tensor of pixel values, clamped to 0…255 and
/// scaled by `scale` (1 for 8 bits, 257 for 16), rounded, in `kind`, on the CPU.
fn quantised(tensor: &Tensor, scale: f64, kind: Kind) -> Result<(Tensor, u32, u32)> {
    let t = match tensor.size().as_slice() {
        [1, 3, _, _] => tensor.squeeze_dim(0),
        [3, _, _] => tensor.shallow_clone(),
        other => bail!("expected an image tensor of shape 1×3×H×W, got {other:?}"),
    };
    let (h, w) = (t.size()[1], t.size()[2]);
    // Rounded on the tensor's device, so that only integers cross to the CPU.
    let values = (t.to_kind(Kind::Float).clamp(0.0, 255.0) * scale)
        .round()
        .to_kind(kind)
        .permute([1, 2, 0])
        .contiguous()
        .view([-1])
        .to_device(tch::Device::Cpu);
    Ok((values, u32::try_from(w)?, u32::try_from(h)?))
}

/// A 1×3×H×W (or 3×H×W) tensor of pixel values as an RGB image: clamped to 0…255, rounded.
pub fn from_tensor(tensor: &Tensor) -> Result<RgbImage> {
    let (values, w, h) = quantised(tensor, 1.0, Kind::Uint8)?;
    let data = Vec::<u8>::try_from(&values).context("cannot copy the image tensor")?;
    RgbImage::from_raw(w, h, data).ok_or_else(|| anyhow!("image tensor of the wrong size"))
}

/// A tensor of pixel values 0…255 as a 16-bit RGB image: the network's float output
/// quantised to 16 bits (v · 257, rounded), not to 8.
pub fn from_tensor_16(tensor: &Tensor) -> Result<Rgb16Image> {
    let (values, w, h) = quantised(tensor, 257.0, Kind::Int)?;
    let data = Vec::<i32>::try_from(&values).context("cannot copy the image tensor")?;
    let data = data.into_iter().map(|v| v as u16).collect();
    Rgb16Image::from_raw(w, h, data).ok_or_else(|| anyhow!("image tensor of the wrong size"))
}

fn resize_options() -> ResizeOptions {
    ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
}

/// The size that fits a `w`×`h` picture within `max_side`, or `None` if it already does.
fn fitted(w: u32, h: u32, max_side: u32) -> Option<(u32, u32)> {
    let max_side = max_side.max(1);
    let longer = w.max(h);
    if longer <= max_side {
        return None;
    }
    let scale = f64::from(max_side) / f64::from(longer);
    let side = |s: u32| ((f64::from(s) * scale).round() as u32).clamp(1, max_side);
    Some((side(w), side(h)))
}

/// Scales a picture down (Lanczos3) so that its longer side is at most `max_side` pixels;
/// a picture already small enough is returned unchanged.
pub fn fit_within(picture: Picture, max_side: u32) -> Result<Picture> {
    let (w, h) = picture.dimensions();
    if fitted(w, h, max_side).is_none() {
        return Ok(picture);
    }
    let photo = fit_photo_within(Photo::from_picture(picture), max_side)?;
    photo.into_picture()
}

/// Scales a photo down (Lanczos3, at its own depth and in its own colour values) so that its
/// longer side is at most `max_side` pixels; a photo already small enough is unchanged.
pub fn fit_photo_within(photo: Photo, max_side: u32) -> Result<Photo> {
    let (w, h) = photo.dimensions();
    let Some((nw, nh)) = fitted(w, h, max_side) else {
        return Ok(photo);
    };
    let mut resizer = Resizer::new();
    let mut resize = |bytes: Vec<u8>, pixel: PixelType| -> Result<Vec<u8>> {
        let src = Image::from_vec_u8(w, h, bytes, pixel)?;
        let mut dst = Image::new(nw, nh, pixel);
        resizer.resize(&src, &mut dst, &resize_options())?;
        Ok(dst.into_vec())
    };
    let wrong = || anyhow!("resized image of the wrong size");
    // With alpha, colour and opacity are resized together, colour weighted by opacity, so
    // that the colour hidden under transparent pixels does not bleed into visible ones.
    let (colour, alpha) = match (photo.colour, photo.alpha) {
        (Colour::Eight(rgb), None) => {
            let out = resize(rgb.into_raw(), PixelType::U8x3)?;
            (
                Colour::Eight(RgbImage::from_raw(nw, nh, out).ok_or_else(wrong)?),
                None,
            )
        }
        (Colour::Sixteen(rgb), None) => {
            let out = resize(to_bytes(rgb.as_raw()), PixelType::U16x3)?;
            (
                Colour::Sixteen(Rgb16Image::from_raw(nw, nh, from_bytes(&out)).ok_or_else(wrong)?),
                None,
            )
        }
        (colour, Some(alpha)) => {
            let alpha = alpha.to_depth(colour.depth());
            match (colour, alpha) {
                (Colour::Eight(rgb), Alpha::Eight(a)) => {
                    let rgba = merge(rgb.as_raw(), a.as_raw());
                    let out = resize(rgba, PixelType::U8x4)?;
                    let (rgb, a) = unmerge(&out);
                    (
                        Colour::Eight(RgbImage::from_raw(nw, nh, rgb).ok_or_else(wrong)?),
                        Some(Alpha::Eight(
                            GrayImage::from_raw(nw, nh, a).ok_or_else(wrong)?,
                        )),
                    )
                }
                (Colour::Sixteen(rgb), Alpha::Sixteen(a)) => {
                    let rgba = merge(rgb.as_raw(), a.as_raw());
                    let out = resize(to_bytes(&rgba), PixelType::U16x4)?;
                    let (rgb, a) = unmerge(&from_bytes(&out));
                    (
                        Colour::Sixteen(Rgb16Image::from_raw(nw, nh, rgb).ok_or_else(wrong)?),
                        Some(Alpha::Sixteen(
                            ImageBuffer::from_raw(nw, nh, a).ok_or_else(wrong)?,
                        )),
                    )
                }
                _ => unreachable!("alpha made the colour's depth"),
            }
        }
    };
    Ok(Photo {
        colour,
        alpha,
        ..photo
    })
}

fn to_bytes(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|s| s.to_ne_bytes()).collect()
}

fn from_bytes(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_ne_bytes([c[0], c[1]]))
        .collect()
}

fn merge<T: Copy>(rgb: &[T], alpha: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(alpha.len() * 4);
    for (p, &a) in rgb.chunks_exact(3).zip(alpha) {
        out.extend_from_slice(p);
        out.push(a);
    }
    out
}

fn unmerge<T: Copy>(rgba: &[T]) -> (Vec<T>, Vec<T>) {
    let mut rgb = Vec::with_capacity(rgba.len() / 4 * 3);
    let mut alpha = Vec::with_capacity(rgba.len() / 4);
    for p in rgba.chunks_exact(4) {
        rgb.extend_from_slice(&p[..3]);
        alpha.push(p[3]);
    }
    (rgb, alpha)
}

/// A channel value of 8 or 16 bits, for the colour options.
trait Sample: Copy {
    fn value(self) -> f32;
    fn from_value(v: f32) -> Self;
}

impl Sample for u8 {
    fn value(self) -> f32 {
        f32::from(self)
    }
    fn from_value(v: f32) -> Self {
        v.round().clamp(0.0, 255.0) as u8
    }
}

impl Sample for u16 {
    fn value(self) -> f32 {
        f32::from(self)
    }
    fn from_value(v: f32) -> Self {
        v.round().clamp(0.0, 65535.0) as u16
    }
}

fn same_size(a: (u32, u32), b: (u32, u32)) -> Result<()> {
    if a != b {
        bail!("images differ in size: {a:?} and {b:?}");
    }
    Ok(())
}

/// BT.601 luma, as JPEG's YCbCr uses it.
fn luma<T: Sample>(p: &[T]) -> f32 {
    0.299 * p[0].value() + 0.587 * p[1].value() + 0.114 * p[2].value()
}

/// Keeps `original`'s chroma in `stylized` (interleaved RGB), in place.
fn preserve_in_place<T: Sample>(stylized: &mut [T], original: &[T]) {
    // Replacing Y while keeping Cb and Cr adds the same amount to R, G and B.
    for (s, o) in stylized.chunks_exact_mut(3).zip(original.chunks_exact(3)) {
        let dy = luma(s) - luma(o);
        for c in 0..3 {
            s[c] = T::from_value(o[c].value() + dy);
        }
    }
}

/// `strength`·stylized + (1 − strength)·original into `stylized`.
fn blend_in_place<T: Sample>(stylized: &mut [T], original: &[T], strength: f32) {
    if strength <= 0.0 {
        // Exactly the original, whatever the rounding.
        stylized.copy_from_slice(original);
        return;
    }
    for (s, &o) in stylized.iter_mut().zip(original) {
        *s = T::from_value(strength * s.value() + (1.0 - strength) * o.value());
    }
}

/// Keeps the original's colours: luminance from `stylized`, chroma (Cb, Cr; BT.601 full range
/// as in JPEG) from `original`.
pub fn preserve_color(stylized: &RgbImage, original: &RgbImage) -> Result<RgbImage> {
    same_size(stylized.dimensions(), original.dimensions())?;
    let mut out = stylized.clone();
    preserve_in_place(&mut out, original);
    Ok(out)
}

/// Blends `strength`·stylized + (1 − strength)·original; strength 0 gives the original exactly.
pub fn blend(stylized: &RgbImage, original: &RgbImage, strength: f32) -> Result<RgbImage> {
    same_size(stylized.dimensions(), original.dimensions())?;
    let mut out = stylized.clone();
    blend_in_place(&mut out, original, strength);
    Ok(out)
}

/// The colour options on `stylized` in place, against `original` of the same depth and
/// colour space: first `preserve_color`, then the blend with `strength` (1: none).
pub fn adjust_colour(
    stylized: &mut Colour,
    original: &Colour,
    preserve_color: bool,
    strength: f32,
) -> Result<()> {
    same_size(stylized.dimensions(), original.dimensions())?;
    match (stylized, original) {
        (Colour::Eight(s), Colour::Eight(o)) => adjust_samples(s, o, preserve_color, strength),
        (Colour::Sixteen(s), Colour::Sixteen(o)) => adjust_samples(s, o, preserve_color, strength),
        _ => bail!("the stylized and the original pictures differ in depth"),
    }
    Ok(())
}

fn adjust_samples<T: Sample>(s: &mut [T], o: &[T], preserve_color: bool, strength: f32) {
    if preserve_color {
        preserve_in_place(s, o);
    }
    if strength < 1.0 {
        blend_in_place(s, o, strength);
    }
}
