//! One training photo, from file to crop, in buffers that a loader worker keeps from photo to
//! photo: the file's bytes, the decoded pixels, the resized crop and its resizer.
use crate::imageio;
use anyhow::{Context, Result};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{ColorType, ImageDecoder, ImageFormat, ImageReader};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::{Cursor, Read};
use std::path::Path;

/// Where a crop comes from in its photo, and whether it is mirrored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Crop {
    /// The centre square of the photo (the example's Resize + CenterCrop).
    Centre,
    /// A random resized crop (`--augment`): left, top, width, height in the photo's pixels,
    /// and a horizontal flip.
    Random {
        left: f64,
        top: f64,
        width: f64,
        height: f64,
        flip: bool,
    },
}

/// Fraction of the centred square's area that a random crop covers, at least.
pub const MIN_CROP_AREA: f64 = 0.25;
/// Widest aspect ratio of a random crop (and its inverse the tallest).
pub const MAX_CROP_ASPECT: f64 = 4.0 / 3.0;

impl Crop {
    /// The random crop of the photo at `index` of `epoch`'s order in a `w`×`h` photo: a
    /// function of the seed and the position only, so that a resumed run crops alike.
    pub fn random(seed: u64, epoch: u64, index: usize, w: u32, h: u32) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0061_7567_6d65_6e74);
        rng.set_stream((epoch << 32) ^ index as u64);
        let side = f64::from(w.min(h));
        let area = side * side * rng.random_range(MIN_CROP_AREA..=1.0);
        let aspect = rng
            .random_range(-MAX_CROP_ASPECT.ln()..=MAX_CROP_ASPECT.ln())
            .exp();
        let width = (area * aspect).sqrt().min(f64::from(w));
        let height = (area / aspect).sqrt().min(f64::from(h));
        Crop::Random {
            left: rng.random_range(0.0..=f64::from(w) - width),
            top: rng.random_range(0.0..=f64::from(h) - height),
            width,
            height,
            flip: rng.random_bool(0.5),
        }
    }
}

/// A worker's buffers, kept from photo to photo so that no photo allocates anew.
#[derive(Default)]
pub struct PhotoBuffers {
    file: Vec<u8>,
    decoded: Vec<u8>,
    resized: Vec<u8>,
    resizer: Resizer,
}

impl PhotoBuffers {
    /// Reads `path` and writes its crop (`crop` of it, or `crop_of` the decoded size when
    /// given) as `size`² CHW bytes into `out` (3·size² long).
    pub fn load(
        &mut self,
        path: &Path,
        size: u32,
        crop_of: &dyn Fn(u32, u32) -> Crop,
        out: &mut [u8],
    ) -> Result<()> {
        self.file.clear();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut self.file))
            .context("cannot read")?;
        let (w, h) = self.decode(path)?;
        let crop = crop_of(w, h);
        self.crop_chw(w, h, size, crop, out)
    }

    /// Decodes the file's bytes into `decoded` as 8-bit RGB, upright; returns its size. The
    /// common photo (8-bit RGB JPEG or PNG, upright, no colour profile) decodes straight into
    /// the kept buffer; any other goes through [`imageio::decode`].
    fn decode(&mut self, path: &Path) -> Result<(u32, u32)> {
        if let Some(size) = self.decode_plain()? {
            return Ok(size);
        }
        let picture = imageio::decode(&self.file, Some(path))?;
        let size = picture.dimensions();
        self.decoded.clear();
        self.decoded.extend_from_slice(picture.rgb.as_raw());
        Ok(size)
    }

    /// The fast path of [`PhotoBuffers::decode`]; `None` when the photo needs the general one.
    fn decode_plain(&mut self) -> Result<Option<(u32, u32)>> {
        let Ok(reader) = ImageReader::new(Cursor::new(&self.file[..])).with_guessed_format() else {
            return Ok(None);
        };
        let format = reader.format();
        if !matches!(format, Some(ImageFormat::Jpeg | ImageFormat::Png)) {
            return Ok(None);
        }
        if format == Some(ImageFormat::Jpeg) {
            imageio::check_jpeg_complete(&self.file)?;
        }
        let Ok(mut decoder) = reader.into_decoder() else {
            return Ok(None);
        };
        let plain = decoder.color_type() == ColorType::Rgb8
            && matches!(decoder.orientation(), Ok(Orientation::NoTransforms))
            && matches!(decoder.icc_profile(), Ok(None));
        if !plain {
            return Ok(None);
        }
        let (w, h) = decoder.dimensions();
        self.decoded.resize(decoder.total_bytes() as usize, 0);
        if decoder.read_image(&mut self.decoded).is_err() {
            // The general path gives the error in its usual words.
            return Ok(None);
        }
        Ok(Some((w, h)))
    }

    /// Resizes the decoded photo's `crop` to `size`² (bilinear, as torchvision's Resize on
    /// PIL images) and writes it as CHW into `out`.
    fn crop_chw(&mut self, w: u32, h: u32, size: u32, crop: Crop, out: &mut [u8]) -> Result<()> {
        let n = (size * size) as usize;
        self.resized.resize(3 * n, 0);
        let flip = matches!(crop, Crop::Random { flip: true, .. });
        if crop == Crop::Centre && (w, h) == (size, size) {
            // Already the crop: no resampling, so that the example's numbers can be checked.
            self.resized.copy_from_slice(&self.decoded[..3 * n]);
        } else {
            let src = ImageRef::new(w, h, &self.decoded, PixelType::U8x3)?;
            let mut dst = Image::from_slice_u8(size, size, &mut self.resized, PixelType::U8x3)?;
            let options =
                ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
            let options = match crop {
                Crop::Centre => options.fit_into_destination(Some((0.5, 0.5))),
                Crop::Random {
                    left,
                    top,
                    width,
                    height,
                    ..
                } => options.crop(left, top, width, height),
            };
            self.resizer.resize(&src, &mut dst, &options)?;
        }
        hwc_to_chw(&self.resized, size as usize, flip, out);
        Ok(())
    }
}

/// Writes `side`² HWC RGB bytes as CHW into `out`, mirrored left to right when `flip`.
fn hwc_to_chw(hwc: &[u8], side: usize, flip: bool, out: &mut [u8]) {
    let n = side * side;
    let (r, rest) = out[..3 * n].split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for (y, row) in hwc.chunks_exact(3 * side).enumerate() {
        for (x, px) in row.chunks_exact(3).enumerate() {
            let i = y * side + if flip { side - 1 - x } else { x };
            r[i] = px[0];
            g[i] = px[1];
            b[i] = px[2];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_crops_stay_inside_and_depend_only_on_the_position() {
        let mut flips = 0;
        for index in 0..200 {
            let c = Crop::random(42, 3, index, 640, 427);
            assert_eq!(c, Crop::random(42, 3, index, 640, 427));
            let Crop::Random {
                left,
                top,
                width,
                height,
                flip,
            } = c
            else {
                panic!("not random")
            };
            assert!(left >= 0.0 && top >= 0.0, "{c:?}");
            assert!(
                left + width <= 640.0 + 1e-9 && top + height <= 427.0 + 1e-9,
                "{c:?}"
            );
            let area = width * height / (427.0 * 427.0);
            assert!((0.2..=1.0 + 1e-9).contains(&area), "{c:?}");
            flips += flip as usize;
        }
        assert!((60..140).contains(&flips), "{flips} flips of 200");
        assert_ne!(
            Crop::random(42, 3, 0, 640, 427),
            Crop::random(42, 4, 0, 640, 427)
        );
    }

    #[test]
    fn chw_layout_and_flip() {
        // 2×2 pixels: (y, x) → [10y+x, 100+10y+x, 200+10y+x]
        let hwc: Vec<u8> = (0..2u8)
            .flat_map(|y| {
                (0..2u8).flat_map(move |x| [10 * y + x, 100 + 10 * y + x, 200 + 10 * y + x])
            })
            .collect();
        let mut out = vec![0u8; 12];
        hwc_to_chw(&hwc, 2, false, &mut out);
        assert_eq!(out, [0, 1, 10, 11, 100, 101, 110, 111, 200, 201, 210, 211]);
        hwc_to_chw(&hwc, 2, true, &mut out);
        assert_eq!(out, [1, 0, 11, 10, 101, 100, 111, 110, 201, 200, 211, 210]);
    }
}
