//! Images in and out: decoding (format from content, EXIF orientation, alpha kept aside),
//! conversion to and from network tensors, resizing, colour operations and encoding.
use crate::fsutil;
use anyhow::{anyhow, bail, Context, Result};
use fast_image_resize::{images::Image, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::codecs::jpeg::JpegEncoder;
use image::metadata::Orientation;
use image::{
    DynamicImage, GrayImage, ImageDecoder, ImageFormat, ImageReader, Rgb, RgbImage, RgbaImage,
};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Default JPEG quality of written files.
pub const DEFAULT_JPEG_QUALITY: u8 = 90;

/// An upright picture: its RGB pixels and, when the file had one, its alpha channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Picture {
    /// Colour, 8 bits per channel.
    pub rgb: RgbImage,
    /// Opacity, same size as `rgb`; `None` for opaque formats.
    pub alpha: Option<GrayImage>,
}

impl Picture {
    /// Width and height in pixels.
    pub fn dimensions(&self) -> (u32, u32) {
        self.rgb.dimensions()
    }
}

/// Reads and decodes an image file (see [`decode`]).
pub fn read(path: &Path) -> Result<Picture> {
    let bytes = std::fs::read(path).context("cannot read")?;
    decode(&bytes, Some(path))
}

/// Decodes an image from its bytes: the format comes from the content, EXIF orientation is
/// applied, 16-bit, grey, palette and CMYK pixels become 8-bit RGB, a GIF gives its first frame.
/// `name` (the file's name) is consulted only for TGA, the one format without a signature.
pub fn decode(bytes: &[u8], name: Option<&Path>) -> Result<Picture> {
    if bytes.is_empty() {
        bail!("empty file");
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .context("cannot read")?;
    let by_name = name.and_then(|n| ImageFormat::from_path(n).ok());
    if reader.format().is_none() && by_name == Some(ImageFormat::Tga) {
        reader.set_format(ImageFormat::Tga);
    }
    let Some(format) = reader.format() else {
        if bytes.get(4..8) == Some(b"ftyp") {
            bail!("HEIF/HEIC images are not supported (convert to JPEG or PNG first)");
        }
        bail!("not an image (unrecognised content)");
    };
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes)?;
    }
    let mut decoder = reader.into_decoder().map_err(one_line)?;
    // A damaged EXIF block should not cost the user a readable photo: it then stays as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(one_line)?;
    image.apply_orientation(orientation);
    let alpha = image.color().has_alpha().then(|| {
        let rgba = image.to_rgba8();
        GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
            image::Luma([rgba.get_pixel(x, y)[3]])
        })
    });
    Ok(Picture {
        rgb: image.into_rgb8(),
        alpha,
    })
}

/// An image error as one line (some decoders' messages span several).
fn one_line(e: image::ImageError) -> anyhow::Error {
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

/// A 1×3×H×W (or 3×H×W) tensor of pixel values as an RGB image: clamped to 0…255, rounded.
pub fn from_tensor(tensor: &Tensor) -> Result<RgbImage> {
    let t = match tensor.size().as_slice() {
        [1, 3, _, _] => tensor.squeeze_dim(0),
        [3, _, _] => tensor.shallow_clone(),
        other => bail!("expected an image tensor of shape 1×3×H×W, got {other:?}"),
    };
    let (h, w) = (t.size()[1], t.size()[2]);
    // Rounded on the tensor's device, so that only bytes cross to the CPU.
    let bytes = t
        .to_kind(Kind::Float)
        .clamp(0.0, 255.0)
        .round()
        .to_kind(Kind::Uint8)
        .permute([1, 2, 0])
        .contiguous()
        .view([-1])
        .to_device(tch::Device::Cpu);
    let data = Vec::<u8>::try_from(&bytes).context("cannot copy the image tensor")?;
    let (w, h) = (u32::try_from(w)?, u32::try_from(h)?);
    RgbImage::from_raw(w, h, data).ok_or_else(|| anyhow!("image tensor of the wrong size"))
}

/// Scales a picture down (Lanczos3) so that its longer side is at most `max_side` pixels;
/// a picture already small enough is returned unchanged.
pub fn fit_within(picture: Picture, max_side: u32) -> Result<Picture> {
    let (w, h) = picture.dimensions();
    let longer = w.max(h);
    if longer <= max_side.max(1) {
        return Ok(picture);
    }
    let scale = f64::from(max_side.max(1)) / f64::from(longer);
    let side = |s: u32| ((f64::from(s) * scale).round() as u32).clamp(1, max_side.max(1));
    let (nw, nh) = (side(w), side(h));
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    let mut resizer = Resizer::new();
    match picture.alpha {
        // Resized together, with colour weighted by opacity, so that the colour hidden under
        // transparent pixels does not bleed into visible ones.
        Some(alpha) => {
            let rgba = RgbaImage::from_fn(w, h, |x, y| {
                let [r, g, b] = picture.rgb.get_pixel(x, y).0;
                image::Rgba([r, g, b, alpha.get_pixel(x, y)[0]])
            });
            let src = Image::from_vec_u8(w, h, rgba.into_raw(), PixelType::U8x4)?;
            let mut dst = Image::new(nw, nh, PixelType::U8x4);
            resizer.resize(&src, &mut dst, &options)?;
            let out = RgbaImage::from_raw(nw, nh, dst.into_vec())
                .ok_or_else(|| anyhow!("resized image of the wrong size"))?;
            Ok(split_alpha(&out))
        }
        None => {
            let src = Image::from_vec_u8(w, h, picture.rgb.into_raw(), PixelType::U8x3)?;
            let mut dst = Image::new(nw, nh, PixelType::U8x3);
            resizer.resize(&src, &mut dst, &options)?;
            let rgb = RgbImage::from_raw(nw, nh, dst.into_vec())
                .ok_or_else(|| anyhow!("resized image of the wrong size"))?;
            Ok(Picture { rgb, alpha: None })
        }
    }
}

fn split_alpha(rgba: &RgbaImage) -> Picture {
    let (w, h) = rgba.dimensions();
    Picture {
        rgb: RgbImage::from_fn(w, h, |x, y| {
            let [r, g, b, _] = rgba.get_pixel(x, y).0;
            Rgb([r, g, b])
        }),
        alpha: Some(GrayImage::from_fn(w, h, |x, y| {
            image::Luma([rgba.get_pixel(x, y)[3]])
        })),
    }
}

fn same_size(a: &RgbImage, b: &RgbImage) -> Result<()> {
    if a.dimensions() != b.dimensions() {
        bail!(
            "images differ in size: {:?} and {:?}",
            a.dimensions(),
            b.dimensions()
        );
    }
    Ok(())
}

fn to_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// BT.601 luma, as JPEG's YCbCr uses it.
fn luma(p: &Rgb<u8>) -> f32 {
    0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
}

/// Keeps the original's colours: luminance from `stylized`, chroma (Cb, Cr; BT.601 full range
/// as in JPEG) from `original`.
pub fn preserve_color(stylized: &RgbImage, original: &RgbImage) -> Result<RgbImage> {
    same_size(stylized, original)?;
    // Replacing Y while keeping Cb and Cr adds the same amount to R, G and B.
    Ok(RgbImage::from_fn(
        stylized.width(),
        stylized.height(),
        |x, y| {
            let o = original.get_pixel(x, y);
            let dy = luma(stylized.get_pixel(x, y)) - luma(o);
            Rgb(o.0.map(|c| to_u8(f32::from(c) + dy)))
        },
    ))
}

/// Blends `strength`·stylized + (1 − strength)·original; strength 0 gives the original exactly.
pub fn blend(stylized: &RgbImage, original: &RgbImage, strength: f32) -> Result<RgbImage> {
    same_size(stylized, original)?;
    let mut out = original.clone();
    for (o, s) in out.as_mut().iter_mut().zip(stylized.as_raw()) {
        *o = to_u8(strength * f32::from(*s) + (1.0 - strength) * f32::from(*o));
    }
    Ok(out)
}

/// A format that output files can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// PNG, lossless, with alpha.
    Png,
    /// JPEG at a chosen quality, no alpha.
    Jpeg,
    /// WebP, lossless (the only WebP that the `image` crate writes), with alpha.
    WebP,
    /// BMP, 24-bit.
    Bmp,
    /// TIFF, with alpha.
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

/// Whether a path's extension names an image format (decodable, or common but unsupported such
/// as HEIC, so that such files are reported rather than silently skipped).
pub fn has_image_extension(path: &Path) -> bool {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return false;
    };
    ImageFormat::from_extension(ext).is_some()
        || matches!(ext.to_ascii_lowercase().as_str(), "jpe" | "heic" | "heif")
}

/// The output name for an input file: the same name when its format can be written, else the
/// same name with the extension `png`.
pub fn output_name(input: &Path) -> PathBuf {
    if OutputFormat::from_path(input).is_some() {
        input.to_path_buf()
    } else {
        input.with_extension("png")
    }
}

/// Encodes a picture; its alpha is kept where the format holds one. `jpeg_quality` is 1…100.
pub fn encode(picture: &Picture, format: OutputFormat, jpeg_quality: u8) -> Result<Vec<u8>> {
    let image = match (&picture.alpha, format.holds_alpha()) {
        (Some(alpha), true) => {
            same_size_alpha(&picture.rgb, alpha)?;
            let rgba = RgbaImage::from_fn(picture.rgb.width(), picture.rgb.height(), |x, y| {
                let [r, g, b] = picture.rgb.get_pixel(x, y).0;
                image::Rgba([r, g, b, alpha.get_pixel(x, y)[0]])
            });
            DynamicImage::ImageRgba8(rgba)
        }
        _ => DynamicImage::ImageRgb8(picture.rgb.clone()),
    };
    let mut out = Cursor::new(Vec::new());
    let result = if format == OutputFormat::Jpeg {
        let encoder = JpegEncoder::new_with_quality(&mut out, jpeg_quality.clamp(1, 100));
        image.write_with_encoder(encoder)
    } else {
        image.write_to(&mut out, format.image_format())
    };
    result.map_err(one_line)?;
    Ok(out.into_inner())
}

fn same_size_alpha(rgb: &RgbImage, alpha: &GrayImage) -> Result<()> {
    if rgb.dimensions() != alpha.dimensions() {
        bail!("alpha channel differs in size from the image");
    }
    Ok(())
}

/// Encodes a picture in the format of `path`'s extension and writes it atomically
/// (a temporary name, then a rename).
pub fn write(path: &Path, picture: &Picture, jpeg_quality: u8) -> Result<()> {
    let format = OutputFormat::from_path(path).ok_or_else(|| {
        anyhow!("cannot write this format (known extensions: {WRITABLE_EXTENSIONS})")
    })?;
    let bytes = encode(picture, format, jpeg_quality)?;
    fsutil::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                (x * 255 / w.max(1)) as u8,
                (y * 255 / h.max(1)) as u8,
                ((x + y) * 7 % 256) as u8,
            ])
        })
    }

    fn jpeg_bytes(image: &RgbImage, exif: Option<Vec<u8>>) -> Vec<u8> {
        use image::ImageEncoder;
        let mut out = Vec::new();
        let mut enc = JpegEncoder::new_with_quality(&mut out, 95);
        if let Some(exif) = exif {
            enc.set_exif_metadata(exif).unwrap();
        }
        enc.write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
        out
    }

    /// A minimal big-endian EXIF block (TIFF header, one IFD entry) with an orientation tag.
    fn exif_orientation(value: u16) -> Vec<u8> {
        let mut v = b"MM\0\x2a\0\0\0\x08".to_vec();
        v.extend_from_slice(&1u16.to_be_bytes()); // one entry
        v.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        v.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        v.extend_from_slice(&1u32.to_be_bytes()); // count
        v.extend_from_slice(&value.to_be_bytes());
        v.extend_from_slice(&[0, 0]); // value padding
        v.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        v
    }

    #[test]
    fn tensor_round_trip_is_exact() {
        let img = gradient(7, 5);
        let t = to_tensor(&img);
        assert_eq!(t.size(), [1, 3, 5, 7]);
        // Channel-first layout: pixel (x=3, y=2), green channel.
        let g = t.double_value(&[0, 1, 2, 3]);
        assert_eq!(g, f64::from(img.get_pixel(3, 2)[1]));
        assert_eq!(from_tensor(&t).unwrap(), img);
    }

    #[test]
    fn from_tensor_clamps_and_rounds() {
        let t = Tensor::from_slice(&[-20.0f32, 0.4, 0.6, 254.5, 300.0, 127.49]).view([1, 3, 1, 2]);
        let img = from_tensor(&t).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 1, 255]);
        assert_eq!(img.get_pixel(1, 0).0, [0, 254, 127]); // 254.5 rounds half to even
    }

    #[test]
    fn jpeg_orientation_is_applied() {
        // Left column bright, the rest dark: after a 90° clockwise turn, the top row is bright.
        let img = RgbImage::from_fn(
            16,
            8,
            |x, _| if x < 4 { Rgb([250; 3]) } else { Rgb([5; 3]) },
        );
        let bytes = jpeg_bytes(&img, Some(exif_orientation(6)));
        let pic = decode(&bytes, None).unwrap();
        assert_eq!(pic.dimensions(), (8, 16));
        assert!(pic.rgb.get_pixel(4, 1)[0] > 200, "top row should be bright");
        assert!(pic.rgb.get_pixel(4, 14)[0] < 50, "bottom should be dark");
        let plain = decode(&jpeg_bytes(&img, None), None).unwrap();
        assert_eq!(plain.dimensions(), (16, 8));
    }

    #[test]
    fn truncated_jpeg_is_an_error_and_thumbnail_end_markers_do_not_count() {
        let img = gradient(40, 30);
        // An EXIF block holding an end-of-image marker, as embedded thumbnails do.
        let mut exif = exif_orientation(1);
        exif.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xD9]);
        let bytes = jpeg_bytes(&img, Some(exif));
        assert!(decode(&bytes, None).is_ok());
        for cut in [bytes.len() - 2, bytes.len() / 2, 300] {
            let err = decode(&bytes[..cut], None).unwrap_err().to_string();
            assert!(err.contains("truncated"), "cut at {cut}: {err}");
        }
    }

    #[test]
    fn truncated_png_is_an_error() {
        let img = gradient(40, 30);
        let bytes = encode(
            &Picture {
                rgb: img,
                alpha: None,
            },
            OutputFormat::Png,
            90,
        )
        .unwrap();
        // Cut inside the image data (before IEND and the end of IDAT).
        assert!(decode(&bytes[..bytes.len() / 2], None).is_err());
        assert!(decode(&bytes[..bytes.len() - 20], None).is_err());
    }

    #[test]
    fn non_image_content_is_an_error() {
        let err = decode(b"hello, this is text", Some(Path::new("x.jpg")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an image"), "{err}");
        assert!(decode(b"", None).is_err());
    }

    #[test]
    fn formats_round_trip_with_alpha_where_held() {
        let rgb = gradient(9, 6);
        let alpha = GrayImage::from_fn(9, 6, |x, y| image::Luma([((x * 30 + y) % 256) as u8]));
        let pic = Picture {
            rgb: rgb.clone(),
            alpha: Some(alpha.clone()),
        };
        for format in [
            OutputFormat::Png,
            OutputFormat::WebP,
            OutputFormat::Tiff,
            OutputFormat::Tga,
            OutputFormat::Qoi,
            OutputFormat::Bmp,
            OutputFormat::Ppm,
        ] {
            let name = format!("x.{format:?}").to_lowercase();
            let back = decode(&encode(&pic, format, 90).unwrap(), Some(Path::new(&name))).unwrap();
            assert_eq!(back.rgb, rgb, "{format:?}");
            if format.holds_alpha() {
                assert_eq!(back.alpha.as_ref(), Some(&alpha), "{format:?}");
            } else {
                assert!(back.alpha.is_none(), "{format:?}");
            }
        }
        let jpeg = decode(&encode(&pic, OutputFormat::Jpeg, 95).unwrap(), None).unwrap();
        assert_eq!(jpeg.dimensions(), (9, 6));
        let gif = decode(&encode(&pic, OutputFormat::Gif, 90).unwrap(), None).unwrap();
        assert_eq!(gif.dimensions(), (9, 6));
    }

    #[test]
    fn sixteen_bit_grey_png_decodes_to_rgb() {
        let grey = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(5, 3, |x, _| {
            image::Luma([(x * 16000) as u16])
        });
        let mut bytes = Cursor::new(Vec::new());
        DynamicImage::ImageLuma16(grey)
            .write_to(&mut bytes, ImageFormat::Png)
            .unwrap();
        let pic = decode(bytes.get_ref(), None).unwrap();
        let p = pic.rgb.get_pixel(4, 1).0;
        assert_eq!(p, [249, 249, 249]); // 64000 / 257 = 249.03
        assert!(pic.alpha.is_none());
    }

    #[test]
    fn fit_within_keeps_aspect_and_alpha() {
        let pic = Picture {
            rgb: gradient(100, 40),
            alpha: Some(GrayImage::from_pixel(100, 40, image::Luma([255]))),
        };
        let small = fit_within(pic.clone(), 50).unwrap();
        assert_eq!(small.dimensions(), (50, 20));
        let alpha = small.alpha.unwrap();
        assert!(alpha.pixels().all(|p| p[0] == 255));
        let same = fit_within(pic.clone(), 100).unwrap();
        assert_eq!(same, pic);
        let tall = Picture {
            rgb: gradient(3, 1000),
            alpha: None,
        };
        assert_eq!(fit_within(tall, 10).unwrap().dimensions(), (1, 10));
    }

    #[test]
    fn preserve_color_keeps_chroma_and_blend_ends() {
        let original =
            RgbImage::from_fn(8, 8, |x, y| Rgb([100 + x as u8 * 5, 120, 90 + y as u8 * 4]));
        let stylized = RgbImage::from_fn(8, 8, |x, y| {
            Rgb([(x * 20) as u8 + 60, 150, (y * 9) as u8 + 50])
        });
        let out = preserve_color(&stylized, &original).unwrap();
        let ycc = |p: &Rgb<u8>| {
            let [r, g, b] = p.0.map(f64::from);
            (
                0.299 * r + 0.587 * g + 0.114 * b,
                128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b,
                128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b,
            )
        };
        for (x, y, p) in out.enumerate_pixels() {
            let (yo, cbo, cro) = ycc(p);
            let (_, cb, cr) = ycc(original.get_pixel(x, y));
            let (ys, _, _) = ycc(stylized.get_pixel(x, y));
            assert!((cbo - cb).abs() <= 1.0 && (cro - cr).abs() <= 1.0);
            assert!((yo - ys).abs() <= 1.0);
        }
        assert_eq!(blend(&stylized, &original, 0.0).unwrap(), original);
        assert_eq!(blend(&stylized, &original, 1.0).unwrap(), stylized);
        let half = blend(&stylized, &original, 0.5).unwrap();
        let (s, o) = (stylized.get_pixel(3, 3)[0], original.get_pixel(3, 3)[0]);
        assert_eq!(
            half.get_pixel(3, 3)[0],
            to_u8((f32::from(s) + f32::from(o)) / 2.0)
        );
    }

    #[test]
    fn output_names() {
        assert_eq!(output_name(Path::new("a/b.JPG")), Path::new("a/b.JPG"));
        assert_eq!(output_name(Path::new("a/b.heic")), Path::new("a/b.png"));
        assert_eq!(output_name(Path::new("a/b.exr")), Path::new("a/b.png"));
        assert!(has_image_extension(Path::new("x.HEIC")));
        assert!(has_image_extension(Path::new("x.Jpeg")));
        assert!(!has_image_extension(Path::new("notes.txt")));
        assert!(!has_image_extension(Path::new("README")));
    }
}
