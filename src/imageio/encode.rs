//! Encoding a [`Photo`] in an output format: at 16 bits where the format holds them (PNG,
//! TIFF), tagged with its colour profile where the format holds one (PNG, JPEG, WebP, TIFF;
//! other formats get sRGB pixels, which is what an untagged file means), with EXIF and XMP
//! where the format holds them (PNG, JPEG, WebP).
use super::colour;
use super::decode::one_line;
use super::metadata;
use super::photo::{Alpha, Colour, Depth, Photo, Picture};
use crate::fsutil;
use anyhow::{anyhow, bail, Result};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::tiff::TiffEncoder;
use image::{ExtendedColorType, ImageEncoder, ImageFormat};
use std::borrow::Cow;
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// Default JPEG quality of written files.
pub const DEFAULT_JPEG_QUALITY: u8 = 90;

/// A format that output files can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// PNG, lossless, with alpha, 8 or 16 bits, profile, EXIF and XMP.
    Png,
    /// JPEG at a chosen quality, no alpha; profile, EXIF and XMP.
    Jpeg,
    /// WebP, lossless (the only WebP that the `image` crate writes), with alpha, profile,
    /// EXIF and XMP.
    WebP,
    /// BMP, 24-bit.
    Bmp,
    /// TIFF, with alpha, 8 or 16 bits, and profile.
    Tiff,
    /// GIF (256 colours), with on/off transparency.
    Gif,
    /// TGA, with alpha.
    Tga,
    /// QOI, with alpha.
    Qoi,
    /// Binary PPM.
    Ppm,
}

impl OutputFormat {
    /// The format that a file extension (any case) names, if it can be written.
    pub fn from_extension(ext: &str) -> Option<Self> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "png" | "apng" => Self::Png,
            "jpg" | "jpeg" | "jpe" | "jfif" => Self::Jpeg,
            "webp" => Self::WebP,
            "bmp" => Self::Bmp,
            "tif" | "tiff" => Self::Tiff,
            "gif" => Self::Gif,
            "tga" => Self::Tga,
            "qoi" => Self::Qoi,
            "ppm" | "pnm" => Self::Ppm,
            _ => return None,
        })
    }

    /// The format of a path's extension, if it can be written.
    pub fn from_path(path: &Path) -> Option<Self> {
        Self::from_extension(path.extension()?.to_str()?)
    }

    /// Whether the format stores an alpha channel.
    pub fn holds_alpha(self) -> bool {
        matches!(
            self,
            Self::Png | Self::WebP | Self::Tiff | Self::Gif | Self::Tga | Self::Qoi
        )
    }

    /// Whether the format stores 16 bits per channel.
    pub fn holds_16_bits(self) -> bool {
        matches!(self, Self::Png | Self::Tiff)
    }

    /// Whether the format stores an ICC colour profile.
    pub fn holds_profile(self) -> bool {
        matches!(self, Self::Png | Self::Jpeg | Self::WebP | Self::Tiff)
    }

    /// Whether the format stores EXIF and XMP (as written here).
    pub fn holds_metadata(self) -> bool {
        matches!(self, Self::Png | Self::Jpeg | Self::WebP)
    }

    /// The depth that a photo of `depth` is written at in this format.
    pub fn depth_for(self, depth: Depth) -> Depth {
        if self.holds_16_bits() {
            depth
        } else {
            Depth::Eight
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Self::Png => ImageFormat::Png,
            Self::Jpeg => ImageFormat::Jpeg,
            Self::WebP => ImageFormat::WebP,
            Self::Bmp => ImageFormat::Bmp,
            Self::Tiff => ImageFormat::Tiff,
            Self::Gif => ImageFormat::Gif,
            Self::Tga => ImageFormat::Tga,
            Self::Qoi => ImageFormat::Qoi,
            Self::Ppm => ImageFormat::Pnm,
        }
    }
}

/// Extensions (lowercase) of the writable formats, for messages.
pub const WRITABLE_EXTENSIONS: &str = "png, jpg, webp, bmp, tif, gif, tga, qoi, ppm";

/// Extensions of HEIF and AVIF files (read through libheif, written as JPEG by default).
const HEIF_EXTENSIONS: [&str; 4] = ["heic", "heif", "hif", "avif"];

/// Whether a path's extension names an image format that is read (HEIF and AVIF included,
/// so that without libheif such files are reported rather than silently skipped).
pub fn has_image_extension(path: &Path) -> bool {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return false;
    };
    let lower = ext.to_ascii_lowercase();
    ImageFormat::from_extension(ext).is_some()
        || lower == "jpe"
        || HEIF_EXTENSIONS.contains(&lower.as_str())
}

/// The output name for an input file: the same name when its format can be written; a HEIF
/// or AVIF photo's name with `jpg` (phones' photos, where a JPEG is what everything reads);
/// else the name with `png`.
pub fn output_name(input: &Path) -> PathBuf {
    let ext = input
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if OutputFormat::from_path(input).is_some() {
        input.to_path_buf()
    } else if ext.is_some_and(|e| HEIF_EXTENSIONS.contains(&e.as_str())) {
        input.with_extension("jpg")
    } else {
        input.with_extension("png")
    }
}

/// Encodes an sRGB picture; its alpha is kept where the format holds one. `jpeg_quality` is
/// 1…100.
pub fn encode(picture: &Picture, format: OutputFormat, jpeg_quality: u8) -> Result<Vec<u8>> {
    encode_photo(&Photo::from_picture(picture.clone()), format, jpeg_quality)
}

/// Encodes a photo as `format` holds it (see the module's summary). `jpeg_quality` is 1…100.
pub fn encode_photo(photo: &Photo, format: OutputFormat, jpeg_quality: u8) -> Result<Vec<u8>> {
    let (w, h) = photo.dimensions();
    let depth = format.depth_for(photo.colour.depth());
    let profile = photo.profile.as_ref().filter(|_| format.holds_profile());
    // Converted (a copy) only where the format needs other pixels than the photo's.
    let mut colour = Cow::Borrowed(&photo.colour);
    if profile.is_none() && photo.profile.is_some() {
        let mut c = colour.into_owned();
        colour::convert(&mut c, photo.profile.as_ref(), None)?;
        colour = Cow::Owned(c);
    }
    if colour.depth() != depth {
        colour = Cow::Owned(colour.into_owned().to_depth(depth));
    }
    let alpha = photo
        .alpha
        .as_ref()
        .filter(|_| format.holds_alpha())
        .map(|a| a.clone().to_depth(depth));
    if let Some(a) = &alpha {
        let (aw, ah) = match a {
            Alpha::Eight(a) => a.dimensions(),
            Alpha::Sixteen(a) => a.dimensions(),
        };
        if (aw, ah) != (w, h) {
            bail!("alpha channel differs in size from the image");
        }
    }
    let metadata = Some(&photo.metadata).filter(|_| format.holds_metadata());
    let samples = Samples::new(&colour, alpha.as_ref());
    let mut out = Cursor::new(Vec::new());
    match format {
        OutputFormat::Png => png(&mut out, &samples, w, h, profile, metadata)?,
        OutputFormat::Jpeg => {
            let mut encoder = JpegEncoder::new_with_quality(&mut out, jpeg_quality.clamp(1, 100));
            if let Some(p) = profile {
                encoder
                    .set_icc_profile(p.icc().to_vec())
                    .map_err(|e| anyhow!("{e}"))?;
            }
            if let Some(exif) = metadata.and_then(|m| m.exif.clone()) {
                encoder
                    .set_exif_metadata(exif)
                    .map_err(|e| anyhow!("{e}"))?;
            }
            // JPEG holds no alpha: the colour alone.
            let rgb = Samples::new(&colour, None);
            encoder
                .write_image(&rgb.bytes_ne(), w, h, rgb.colour_type())
                .map_err(one_line)?;
            if let Some(xmp) = metadata.and_then(|m| m.xmp.as_deref()) {
                return Ok(metadata::jpeg_with_xmp(out.into_inner(), xmp));
            }
        }
        OutputFormat::WebP => {
            let mut encoder = image_webp::WebPEncoder::new(&mut out);
            if let Some(p) = profile {
                encoder.set_icc_profile(p.icc().to_vec());
            }
            if let Some(m) = metadata {
                if let Some(exif) = &m.exif {
                    encoder.set_exif_metadata(exif.clone());
                }
                if let Some(xmp) = &m.xmp {
                    encoder.set_xmp_metadata(xmp.clone());
                }
            }
            let colour_type = if alpha.is_some() {
                image_webp::ColorType::Rgba8
            } else {
                image_webp::ColorType::Rgb8
            };
            encoder
                .encode(&samples.bytes_ne(), w, h, colour_type)
                .map_err(|e| anyhow!("{e}"))?;
        }
        OutputFormat::Tiff => {
            let mut encoder = TiffEncoder::new(&mut out);
            if let Some(p) = profile {
                encoder
                    .set_icc_profile(p.icc().to_vec())
                    .map_err(|e| anyhow!("{e}"))?;
            }
            encoder
                .write_image(&samples.bytes_ne(), w, h, samples.colour_type())
                .map_err(one_line)?;
        }
        other => image::write_buffer_with_format(
            &mut out,
            &samples.bytes_ne(),
            w,
            h,
            samples.colour_type(),
            other.image_format(),
        )
        .map_err(one_line)?,
    }
    Ok(out.into_inner())
}

/// A photo's samples, interleaved (RGB or RGBA) at 8 or 16 bits, borrowed where no
/// interleaving is needed.
enum Samples<'a> {
    Eight(Cow<'a, [u8]>, bool),
    Sixteen(Cow<'a, [u16]>, bool),
}

impl<'a> Samples<'a> {
    fn new(colour: &'a Colour, alpha: Option<&Alpha>) -> Self {
        match (colour, alpha) {
            (Colour::Eight(c), None) => Self::Eight(Cow::Borrowed(c.as_raw()), false),
            (Colour::Sixteen(c), None) => Self::Sixteen(Cow::Borrowed(c.as_raw()), false),
            (Colour::Eight(c), Some(Alpha::Eight(a))) => {
                Self::Eight(Cow::Owned(interleave(c.as_raw(), a.as_raw())), true)
            }
            (Colour::Sixteen(c), Some(Alpha::Sixteen(a))) => {
                Self::Sixteen(Cow::Owned(interleave(c.as_raw(), a.as_raw())), true)
            }
            (c, Some(a)) => {
                // Made to agree by the caller; kept total for safety.
                let a = a.clone().to_depth(c.depth());
                match Self::new(c, Some(&a)) {
                    Self::Eight(v, al) => Self::Eight(Cow::Owned(v.into_owned()), al),
                    Self::Sixteen(v, al) => Self::Sixteen(Cow::Owned(v.into_owned()), al),
                }
            }
        }
    }

    fn colour_type(&self) -> ExtendedColorType {
        match self {
            Self::Eight(_, false) => ExtendedColorType::Rgb8,
            Self::Eight(_, true) => ExtendedColorType::Rgba8,
            Self::Sixteen(_, false) => ExtendedColorType::Rgb16,
            Self::Sixteen(_, true) => ExtendedColorType::Rgba16,
        }
    }

    /// The samples as bytes in native byte order (what the `image` crate's encoders take).
    fn bytes_ne(&self) -> Cow<'_, [u8]> {
        match self {
            Self::Eight(v, _) => Cow::Borrowed(v),
            Self::Sixteen(v, _) => Cow::Owned(v.iter().flat_map(|s| s.to_ne_bytes()).collect()),
        }
    }

    /// The samples as PNG stores them: 16-bit big-endian.
    fn bytes_be(&self) -> Cow<'_, [u8]> {
        match self {
            Self::Eight(v, _) => Cow::Borrowed(v),
            Self::Sixteen(v, _) => Cow::Owned(v.iter().flat_map(|s| s.to_be_bytes()).collect()),
        }
    }
}

fn interleave<T: Copy>(rgb: &[T], alpha: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(alpha.len() * 4);
    for (p, &a) in rgb.chunks_exact(3).zip(alpha) {
        out.extend_from_slice(p);
        out.push(a);
    }
    out
}

/// PNG through the `png` crate directly (the `image` crate's encoder writes no XMP), with
/// the `image` crate's settings.
fn png(
    out: &mut Cursor<Vec<u8>>,
    samples: &Samples<'_>,
    w: u32,
    h: u32,
    profile: Option<&colour::Profile>,
    metadata: Option<&metadata::Metadata>,
) -> Result<()> {
    let mut info = png::Info::with_size(w, h);
    if let Some(p) = profile {
        info.icc_profile = Some(Cow::Borrowed(p.icc()));
    }
    if let Some(exif) = metadata.and_then(|m| m.exif.as_deref()) {
        info.exif_metadata = Some(Cow::Borrowed(exif));
    }
    let mut encoder = png::Encoder::with_info(out, info).map_err(|e| anyhow!("{e}"))?;
    let (colour, depth) = match samples.colour_type() {
        ExtendedColorType::Rgb8 => (png::ColorType::Rgb, png::BitDepth::Eight),
        ExtendedColorType::Rgba8 => (png::ColorType::Rgba, png::BitDepth::Eight),
        ExtendedColorType::Rgb16 => (png::ColorType::Rgb, png::BitDepth::Sixteen),
        _ => (png::ColorType::Rgba, png::BitDepth::Sixteen),
    };
    encoder.set_color(colour);
    encoder.set_depth(depth);
    encoder.set_compression(png::Compression::Balanced);
    encoder.set_filter(png::Filter::Adaptive);
    if let Some(xmp) = metadata.and_then(|m| m.xmp.as_deref()) {
        // XMP's registered keyword; iTXt is UTF-8, as XMP is.
        let text = String::from_utf8_lossy(xmp).into_owned();
        encoder
            .add_itxt_chunk("XML:com.adobe.xmp".into(), text)
            .map_err(|e| anyhow!("{e}"))?;
    }
    let mut writer = encoder.write_header().map_err(|e| anyhow!("{e}"))?;
    writer
        .write_image_data(&samples.bytes_be())
        .map_err(|e| anyhow!("{e}"))?;
    writer.finish().map_err(|e| anyhow!("{e}"))
}

/// The format that `path`'s extension names, or the error saying which can be written.
fn format_of(path: &Path) -> Result<OutputFormat> {
    OutputFormat::from_path(path).ok_or_else(|| {
        anyhow!("cannot write this format (known extensions: {WRITABLE_EXTENSIONS})")
    })
}

/// Encodes an sRGB picture in the format of `path`'s extension and writes it atomically
/// (a temporary name, then a rename).
pub fn write(path: &Path, picture: &Picture, jpeg_quality: u8) -> Result<()> {
    let bytes = encode(picture, format_of(path)?, jpeg_quality)?;
    fsutil::write_atomic(path, &bytes)
}

/// Encodes a photo in the format of `path`'s extension and writes it atomically.
pub fn write_photo(path: &Path, photo: &Photo, jpeg_quality: u8) -> Result<()> {
    let bytes = encode_photo(photo, format_of(path)?, jpeg_quality)?;
    fsutil::write_atomic(path, &bytes)
}
