//! Decoding a file's bytes into a [`Photo`]: the format from the content, the size limit
//! from the header before any pixel is decoded, the EXIF orientation applied, the colour
//! profile and metadata read. HEIF and AVIF go to [`super::heif`].
use super::colour::{self, Embedded};
use super::encode::OutputFormat;
use super::heif;
use super::metadata::Metadata;
use super::photo::{Alpha, Colour, Photo, Rgb16Image};
use anyhow::{anyhow, bail, Context, Result};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};
use std::io::Cursor;
use std::path::Path;

/// An image over the pixel limit, refused from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The limit, in pixels.
    pub limit: u64,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pixels = u64::from(self.width) * u64::from(self.height);
        write!(
            f,
            "image is {}×{} = {pixels} pixels, over the limit of {} (--max-pixels)",
            self.width, self.height, self.limit
        )
    }
}

impl std::error::Error for TooLarge {}

/// Refuses a `w`×`h` image over `max_pixels`.
pub fn check_size(w: u32, h: u32, max_pixels: Option<u64>) -> Result<()> {
    match max_pixels {
        Some(limit) if u64::from(w) * u64::from(h) > limit => Err(TooLarge {
            width: w,
            height: h,
            limit,
        }
        .into()),
        _ => Ok(()),
    }
}

/// The reader of `bytes` with its format from the content (TGA, which has no signature,
/// from `name`).
fn open_reader<'a>(bytes: &'a [u8], name: Option<&Path>) -> Result<ImageReader<Cursor<&'a [u8]>>> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .context("cannot read")?;
    let by_name = name.and_then(|n| ImageFormat::from_path(n).ok());
    if reader.format().is_none() && by_name == Some(ImageFormat::Tga) {
        reader.set_format(ImageFormat::Tga);
    }
    if reader.format().is_none() {
        bail!("not an image (unrecognised content)");
    }
    Ok(reader)
}

/// The width and height that an image's header declares, without decoding it.
pub fn dimensions(bytes: &[u8], name: Option<&Path>) -> Result<(u32, u32)> {
    if heif::is_heif(bytes) {
        return heif::dimensions(bytes);
    }
    open_reader(bytes, name)?
        .into_dimensions()
        .map_err(one_line)
}

/// Decodes an image from its bytes: the format comes from the content, an image over
/// `max_pixels` is refused from its header, the EXIF orientation is applied; 16-bit PNG and
/// TIFF stay 16-bit, grey and palette pixels become RGB, a GIF gives its first frame. `name`
/// (the file's name) is consulted only for TGA, the one format without a signature.
pub fn decode_photo(bytes: &[u8], name: Option<&Path>, max_pixels: Option<u64>) -> Result<Photo> {
    if bytes.is_empty() {
        bail!("empty file");
    }
    if heif::is_heif(bytes) {
        return heif::decode(bytes, max_pixels);
    }
    let mut reader = open_reader(bytes, name)?;
    let format = reader.format().expect("checked by open_reader()");
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes)?;
    }
    let (w, h) = open_reader(bytes, name)?
        .into_dimensions()
        .map_err(one_line)?;
    check_size(w, h, max_pixels)?;
    if let Some(limit) = max_pixels {
        // The crate's default allocation limit (512 MiB) would refuse photos well inside ours.
        let mut limits = Limits::default();
        limits.max_alloc = Some((limit.saturating_mul(8)).max(512 << 20));
        reader.limits(limits);
    }
    let mut decoder = reader.into_decoder().map_err(one_line)?;
    // A damaged EXIF block or profile should not cost the user a readable photo: it is then
    // left out.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let icc = decoder.icc_profile().ok().flatten();
    let exif = decoder.exif_metadata().ok().flatten();
    let xmp = decoder.xmp_metadata().ok().flatten();
    let mut image = DynamicImage::from_decoder(decoder).map_err(one_line)?;
    image.apply_orientation(orientation);
    let (colour, alpha) = split(image, icc)?;
    Ok(Photo {
        colour: colour.0,
        alpha,
        profile: colour.1,
        metadata: Metadata::upright(exif, xmp),
        default_format: format
            .extensions_str()
            .first()
            .and_then(|ext| OutputFormat::from_extension(ext)),
    })
}

/// Colour (with its profile, if usable) and alpha of a decoded image, at 8 bits or, for
/// 16-bit images, 16.
#[allow(clippy::type_complexity)]
fn split(
    image: DynamicImage,
    icc: Option<Vec<u8>>,
) -> Result<((Colour, Option<colour::Profile>), Option<Alpha>)> {
    let embedded = icc.map_or(Embedded::Unusable, colour::embedded);
    let (w, h) = (image.width(), image.height());
    let sixteen = matches!(
        image,
        DynamicImage::ImageRgb16(_)
            | DynamicImage::ImageRgba16(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_)
    );
    let grey = matches!(
        image,
        DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_)
    );
    let alpha = match &image {
        DynamicImage::ImageRgba8(i) => Some(Alpha::Eight(channel(i.as_raw(), 4, w, h))),
        DynamicImage::ImageLumaA8(i) => Some(Alpha::Eight(channel(i.as_raw(), 2, w, h))),
        DynamicImage::ImageRgba16(i) => Some(Alpha::Sixteen(channel(i.as_raw(), 4, w, h))),
        DynamicImage::ImageLumaA16(i) => Some(Alpha::Sixteen(channel(i.as_raw(), 2, w, h))),
        other if other.color().has_alpha() => {
            Some(Alpha::Eight(channel(other.to_rgba8().as_raw(), 4, w, h)))
        }
        _ => None,
    };
    let colour = match (embedded, grey, sixteen) {
        // Grey pixels with a grey profile: converted to sRGB now (outputs are colour).
        (Embedded::Gray(p), true, false) => (colour::gray8_to_srgb(&image.to_luma8(), &p)?, None),
        (Embedded::Gray(p), true, true) => (colour::gray16_to_srgb(&image.to_luma16(), &p)?, None),
        (Embedded::Rgb(p), false, s) => (rgb(image, s)?, Some(p)),
        (_, _, s) => (rgb(image, s)?, None),
    };
    Ok((colour, alpha))
}

/// The last of `channels` interleaved channels (alpha) as an image of its own.
fn channel<T: image::Primitive>(
    raw: &[T],
    channels: usize,
    w: u32,
    h: u32,
) -> image::ImageBuffer<image::Luma<T>, Vec<T>> {
    let data = raw
        .chunks_exact(channels)
        .map(|p| p[channels - 1])
        .collect();
    image::ImageBuffer::from_raw(w, h, data).expect("one value per pixel")
}

fn rgb(image: DynamicImage, sixteen: bool) -> Result<Colour> {
    Ok(if sixteen {
        let (w, h) = (image.width(), image.height());
        let rgb = image.into_rgb16();
        Colour::Sixteen(
            Rgb16Image::from_raw(w, h, rgb.into_raw())
                .ok_or_else(|| anyhow!("image of the wrong size"))?,
        )
    } else {
        let rgb: RgbImage = image.into_rgb8();
        Colour::Eight(rgb)
    })
}

/// An image error as one line (some decoders' messages span several).
pub fn one_line(e: image::ImageError) -> anyhow::Error {
    anyhow!(
        "{}",
        e.to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Walks a JPEG's segments up to its end-of-image marker. zune-jpeg (behind `image`) decodes a
/// truncated file without an error and fills the missing part with grey, so a missing end is
/// detected here. Segments are skipped by their length, so an EXIF thumbnail's own end marker
/// does not count.
pub fn check_jpeg_complete(bytes: &[u8]) -> Result<()> {
    let truncated = || anyhow!("truncated JPEG (the file ends before its end-of-image marker)");
    let len = bytes.len();
    let mut i = 2; // after SOI
    loop {
        // Tolerate stray bytes between segments, as decoders do: go to the next 0xFF.
        i += bytes[i.min(len)..]
            .iter()
            .position(|&b| b == 0xFF)
            .ok_or_else(truncated)?;
        while i < len && bytes[i] == 0xFF {
            i += 1; // fill bytes
        }
        let marker = *bytes.get(i).ok_or_else(truncated)?;
        i += 1;
        match marker {
            0xD9 => return Ok(()),
            // Markers without a length field.
            0x00 | 0x01 | 0xD0..=0xD8 => continue,
            _ => {}
        }
        let seg = bytes.get(i..i + 2).ok_or_else(truncated)?;
        let seg_len = usize::from(u16::from_be_bytes([seg[0], seg[1]]));
        if seg_len < 2 {
            bail!("corrupt JPEG (segment length {seg_len})");
        }
        i += seg_len;
        if i > len {
            return Err(truncated());
        }
        if marker == 0xDA {
            i = skip_entropy_coded(bytes, i).ok_or_else(truncated)?;
        }
    }
}

/// Position of the first real marker after entropy-coded data starting at `start`: a 0xFF not
/// followed by a stuffed zero or a restart marker. `None` when the data runs to the end.
fn skip_entropy_coded(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    loop {
        let ff = i + bytes.get(i..)?.iter().position(|&b| b == 0xFF)?;
        let mut k = ff + 1;
        while *bytes.get(k)? == 0xFF {
            k += 1;
        }
        match bytes[k] {
            0x00 | 0xD0..=0xD7 => i = k + 1,
            _ => return Some(ff),
        }
    }
}
