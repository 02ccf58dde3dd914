//! Images in and out. A [`Photo`] is a file's picture as the photographer has it: upright, at
//! 8 or 16 bits per channel, in its own colour space (its ICC profile), with its EXIF and
//! XMP. A [`Picture`] is what the network sees: sRGB at 8 bits, with the alpha kept aside.
//!
//! One concern per module: decoding (format from the content, the size limit from the
//! header, orientation), HEIF and AVIF through libheif loaded at run time, colour management
//! (ICC profiles through moxcms), metadata, pixels (tensors, resizing, the colour options)
//! and encoding.
mod colour;
mod decode;
mod encode;
mod heif;
mod metadata;
mod photo;
mod pixels;

pub use colour::{convert as convert_colour, Profile};
pub use decode::{check_jpeg_complete, decode_photo, dimensions, TooLarge};
pub use encode::{
    encode, encode_photo, has_image_extension, output_name, write, write_photo, OutputFormat,
    DEFAULT_JPEG_QUALITY, WRITABLE_EXTENSIONS,
};
pub use heif::HOW_TO_GET as LIBHEIF_HOW_TO_GET;
pub use metadata::Metadata;
pub use photo::{narrow, widen, Alpha, Colour, Depth, Gray16Image, Photo, Picture, Rgb16Image};
pub use pixels::{
    adjust_colour, blend, fit_photo_within, fit_within, from_tensor, from_tensor_16,
    preserve_color, to_device_tensor, to_tensor,
};

use anyhow::{Context, Result};
use std::path::Path;

/// Reads and decodes an image file as the network's sRGB picture (see [`decode`]).
pub fn read(path: &Path) -> Result<Picture> {
    let bytes = std::fs::read(path).context("cannot read")?;
    decode(&bytes, Some(path))
}

/// Decodes an image from its bytes as the network's picture: colour-managed to sRGB at 8
/// bits (see [`decode_photo`]).
pub fn decode(bytes: &[u8], name: Option<&Path>) -> Result<Picture> {
    decode_photo(bytes, name, None)?.into_picture()
}

/// Reads and decodes an image file as it is (see [`decode_photo`]).
pub fn read_photo(path: &Path, max_pixels: Option<u64>) -> Result<Photo> {
    let bytes = std::fs::read(path).context("cannot read")?;
    decode_photo(&bytes, Some(path), max_pixels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;
    use image::{DynamicImage, GrayImage, ImageFormat, Rgb, RgbImage};
    use std::io::Cursor;
    use tch::Tensor;

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
            ((f32::from(s) + f32::from(o)) / 2.0).round() as u8
        );
    }

    #[test]
    fn output_names() {
        assert_eq!(output_name(Path::new("a/b.JPG")), Path::new("a/b.JPG"));
        assert_eq!(output_name(Path::new("a/b.heic")), Path::new("a/b.jpg"));
        assert_eq!(output_name(Path::new("a/b.AVIF")), Path::new("a/b.jpg"));
        assert_eq!(output_name(Path::new("a/b.exr")), Path::new("a/b.png"));
        assert!(has_image_extension(Path::new("x.HEIC")));
        assert!(has_image_extension(Path::new("x.Jpeg")));
        assert!(!has_image_extension(Path::new("notes.txt")));
        assert!(!has_image_extension(Path::new("README")));
    }
}
