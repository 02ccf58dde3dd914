//! `infer --sheet`: one picture holding a photo and the photo in every style of the model,
//! each tile labelled with its name (the photo's label is `original`).
use crate::model::Stylizer;
use crate::pipeline::Options;
use anyhow::{bail, Context, Result};
use faststyle::conditional::StyleMix;
use faststyle::imageio::{self, OutputFormat, Picture, WRITABLE_EXTENSIONS};
use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Space between tiles and around the labels, in pixels.
const GAP: u32 = 6;
const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([20, 20, 20]);

/// `NAME-sheet.EXT` beside the photo (PNG when its format cannot be written).
pub fn default_output(input: &Path) -> PathBuf {
    let named = imageio::output_name(input);
    let mut name: OsString = named.file_stem().unwrap_or_default().to_owned();
    name.push("-sheet.");
    name.push(named.extension().unwrap_or("png".as_ref()));
    input.with_file_name(name)
}

/// Makes the sheet of `input` and writes it to `output`.
pub fn run(input: &Path, output: &Path, model: &Stylizer, options: &Options) -> Result<()> {
    if !input.is_file() {
        bail!("--sheet {}: not an image file", input.display());
    }
    if OutputFormat::from_path(output).is_none() {
        bail!(
            "--output {}: cannot write this format (use one of the extensions {WRITABLE_EXTENSIONS})",
            output.display()
        );
    }
    if output.canonicalize().ok() == Some(input.canonicalize()?) {
        bail!(
            "--output {} is the input photo; refusing to overwrite it",
            output.display()
        );
    }
    let mut picture = imageio::read(input).with_context(|| input.display().to_string())?;
    if let Some(max) = options.max_size {
        picture = imageio::fit_within(picture, max)?;
    }
    let photo = picture.rgb;
    let mut tiles = vec![("original".to_string(), photo.clone())];
    for (i, name) in model.style_names().iter().enumerate() {
        let mut rgb = model.stylize_as(&photo, &StyleMix::One(i))?;
        if options.preserve_color {
            rgb = imageio::preserve_color(&rgb, &photo)?;
        }
        if options.strength < 1.0 {
            rgb = imageio::blend(&rgb, &photo, options.strength)?;
        }
        tiles.push((name.clone(), rgb));
    }
    let sheet = compose(&tiles);
    let picture = Picture {
        rgb: sheet,
        alpha: None,
    };
    imageio::write(output, &picture, options.jpeg_quality)
        .map_err(|e| faststyle::fsutil::naming(e, output))
}

/// Lays equal-sized tiles out in a grid (one row up to four tiles), each with its label
/// below it, on a white background.
pub fn compose(tiles: &[(String, RgbImage)]) -> RgbImage {
    let (w, h) = tiles[0].1.dimensions();
    let n = tiles.len() as u32;
    let cols = if n <= 4 {
        n
    } else {
        (n as f64).sqrt().ceil() as u32
    };
    let rows = n.div_ceil(cols);
    // Labels a readable size whatever the photo's: 8 px glyphs scaled by 1…4.
    let scale = (w / 128).clamp(1, 4);
    let label_h = 8 * scale + 2 * GAP;
    let cell = (w + GAP, h + label_h);
    let mut sheet = RgbImage::from_pixel(cols * cell.0 + GAP, rows * cell.1 + GAP, BACKGROUND);
    for (i, (label, tile)) in tiles.iter().enumerate() {
        let (x, y) = (
            GAP + (i as u32 % cols) * cell.0,
            GAP + (i as u32 / cols) * cell.1,
        );
        image::imageops::replace(&mut sheet, tile, x.into(), y.into());
        draw_text(&mut sheet, label, x, y + h + GAP, scale, w);
    }
    sheet
}

/// Draws `text` with the 8×8 bitmap font, each glyph pixel a `scale`² square, cut to
/// `max_width` (with `..`). Characters the font lacks are drawn as `?`.
fn draw_text(img: &mut RgbImage, text: &str, x: u32, y: u32, scale: u32, max_width: u32) {
    let fits = (max_width / (8 * scale)) as usize;
    let mut chars: Vec<char> = text.chars().collect();
    if chars.len() > fits {
        chars.truncate(fits.saturating_sub(2));
        chars.extend(['.', '.']);
    }
    for (i, c) in chars.iter().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(*c)
            .or_else(|| font8x8::LATIN_FONTS.get(*c))
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
            .unwrap_or_default();
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                // Bit 0 is the leftmost pixel of the row.
                if bits & (1 << col) == 0 {
                    continue;
                }
                let x0 = x + (i as u32 * 8 + col) * scale;
                let y0 = y + row as u32 * scale;
                for dy in 0..scale {
                    for dx in 0..scale {
                        if let Some(p) = img.get_pixel_mut_checked(x0 + dx, y0 + dy) {
                            *p = INK;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_sit_in_a_grid_with_labels_below() {
        let tile = |v: u8| RgbImage::from_pixel(40, 30, Rgb([v, v, v]));
        let tiles: Vec<_> = (0..3).map(|i| (format!("s{i}"), tile(100 + i))).collect();
        let sheet = compose(&tiles);
        let label_h = 8 + 2 * GAP;
        assert_eq!(sheet.dimensions(), (3 * 46 + GAP, GAP + 30 + label_h));
        // Each tile is copied unchanged at its place.
        for i in 0..3u32 {
            let x = GAP + i * 46;
            assert_eq!(sheet.get_pixel(x + 5, GAP + 5), &Rgb([100 + i as u8; 3]));
        }
        // The label strip holds ink, and only ink and background.
        let strip: Vec<_> = (0..40)
            .flat_map(|x| (0..8).map(move |y| (GAP + x, GAP + 30 + GAP + y)))
            .map(|(x, y)| *sheet.get_pixel(x, y))
            .collect();
        assert!(strip.contains(&INK) && strip.contains(&BACKGROUND));
        assert!(strip.iter().all(|p| *p == INK || *p == BACKGROUND));
        // Five tiles and more make a squarish grid.
        let five: Vec<_> = (0..5).map(|i| (format!("{i}"), tile(0))).collect();
        assert_eq!(compose(&five).width(), 3 * 46 + GAP);
    }

    #[test]
    fn default_output_names() {
        assert_eq!(
            default_output(Path::new("a/photo.jpg")),
            Path::new("a/photo-sheet.jpg")
        );
        assert_eq!(
            default_output(Path::new("a/photo.heic")),
            Path::new("a/photo-sheet.png")
        );
    }
}
