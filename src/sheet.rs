//! Contact sheets: equal-sized pictures in a grid, each labelled below with its name (one or
//! more lines), in an 8×8 bitmap font (public-domain glyphs), on a white background. `infer
//! --sheet` shows a photo in every style of a model; `train --preview` a photo at each setting.
use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

/// Space between tiles and around the labels, in pixels.
pub const GAP: u32 = 6;
/// The sheet's background.
pub const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
/// The labels' colour.
pub const INK: Rgb<u8> = Rgb([20, 20, 20]);

/// Lays tiles out in a grid of `cols` columns (0: one row up to four tiles, else squarish),
/// each centred in a cell of the largest tile's size with its label below it (lines split
/// at `\n`).
pub fn compose(tiles: &[(String, RgbImage)], cols: u32) -> RgbImage {
    let w = tiles.iter().map(|(_, t)| t.width()).max().unwrap_or(1);
    let h = tiles.iter().map(|(_, t)| t.height()).max().unwrap_or(1);
    let n = tiles.len() as u32;
    let cols = match cols {
        0 if n <= 4 => n,
        0 => (n as f64).sqrt().ceil() as u32,
        c => c.min(n),
    };
    let rows = n.div_ceil(cols);
    let lines = tiles
        .iter()
        .map(|(label, _)| label.lines().count().max(1) as u32)
        .max()
        .unwrap_or(1);
    let longest = tiles
        .iter()
        .flat_map(|(label, _)| label.lines().map(|l| l.chars().count() as u32))
        .max()
        .unwrap_or(1)
        .max(1);
    // Labels a readable size whatever the photo's: 8 px glyphs scaled by 1…4, smaller when
    // the longest line would not fit at that size.
    let scale = (w / 128).clamp(1, 4).min((w / (8 * longest)).max(1));
    let label_h = lines * 8 * scale + (lines - 1) * scale * 2 + 2 * GAP;
    let cell = (w + GAP, h + label_h);
    let mut sheet = RgbImage::from_pixel(cols * cell.0 + GAP, rows * cell.1 + GAP, BACKGROUND);
    for (i, (label, tile)) in tiles.iter().enumerate() {
        let (x, y) = (
            GAP + (i as u32 % cols) * cell.0,
            GAP + (i as u32 / cols) * cell.1,
        );
        let (tx, ty) = (x + (w - tile.width()) / 2, y + (h - tile.height()) / 2);
        image::imageops::replace(&mut sheet, tile, tx.into(), ty.into());
        for (k, line) in label.lines().enumerate() {
            let y_line = y + h + GAP + k as u32 * 10 * scale;
            draw_text(&mut sheet, line, x, y_line, scale, w);
        }
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
        let sheet = compose(&tiles, 0);
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
        assert_eq!(compose(&five, 0).width(), 3 * 46 + GAP);
        // Given columns, and labels of two lines: taller label strips.
        let two: Vec<_> = (0..4).map(|i| (format!("a{i}\nb"), tile(0))).collect();
        let sheet = compose(&two, 2);
        assert_eq!(sheet.width(), 2 * 46 + GAP);
        assert_eq!(sheet.height(), GAP + 2 * (30 + 2 * 8 + 2 + 2 * GAP));
    }
}
