//! Photos of any size in bounded memory: the network run tile by tile, with every instance
//! norm using the statistics of the whole image, so that the result equals the untiled pass
//! (no seams, no colour shifts) up to rounding.
//!
//! Each norm needs its input's per-channel mean and variance over the whole image before any
//! tile can go past it. So the image goes through in passes, each gathering one layer's
//! statistics (tiles overlap by the halo that the layers up to there need, and each position
//! is counted once). The residual trunk (a quarter of each side, 128 channels) is kept whole,
//! in half precision, in two maps: the encoder's three norms are passes over the photo, each
//! residual convolution one pass over the trunk, and the decoder's two norms passes from the
//! trunk to the output, which is written straight into the picture. Peak memory is the two
//! maps (16 bytes per photo pixel each) plus one tile's layers, whatever the photo's size.
//!
//! Above [`KEEP_INTERMEDIATE_MAX_PIXELS`] the second map (a residual block's intermediate) is
//! not kept: each block recomputes its first convolution where the second needs it (three
//! passes over the trunk instead of two, five convolutions instead of two), so that the peak
//! is one map. That is how 50-megapixel photos stay within 2 GB.
mod store;
mod tile;

use crate::conditional::StyleMix;
use crate::imageio::Rgb16Image;
use crate::transformer::{pad_for, TransformerNet};
use anyhow::{bail, Result};
use image::RgbImage;
use std::str::FromStr;
use store::Map;
use tch::{Device, Kind, Tensor};
use tile::{Span, Stats, Tile};

/// Tile side (photo pixels) of `--tile auto`.
pub const DEFAULT_TILE: i64 = 512;
/// Photos above this many pixels are tiled under `--tile auto`; below it the untiled pass
/// stays within the same memory.
pub const AUTO_ABOVE_PIXELS: i64 = 3_000_000;

/// Photos up to this many pixels keep each residual block's intermediate map (16 bytes per
/// photo pixel, fastest); larger ones recompute it, for half the peak memory.
pub const KEEP_INTERMEDIATE_MAX_PIXELS: i64 = 24_000_000;

/// Photo pixels of halo around an encoder tile: enough for conv1 (4), conv2 and conv3.
const ENCODER_HALO: i64 = 8;
/// Trunk pixels of halo around a decoder tile: deconv1, deconv2 and deconv3 (12 photo pixels).
const DECODER_HALO: i64 = 3;

/// When to tile (`--tile`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tiling {
    /// Photos over [`AUTO_ABOVE_PIXELS`], in tiles of [`DEFAULT_TILE`].
    Auto,
    /// Never.
    Off,
    /// Photos with a side over N, in tiles of N (a multiple of 4, at least 64).
    Side(i64),
}

impl FromStr for Tiling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            _ => match s.parse::<i64>() {
                Ok(n) if n >= 64 && n % 4 == 0 => Ok(Self::Side(n)),
                _ => Err(format!(
                    "`{s}` is not auto, off or a tile side (a multiple of 4, at least 64)"
                )),
            },
        }
    }
}

impl Tiling {
    /// The tile side to use for a `width`×`height` photo, or `None` for the untiled pass.
    pub fn tile_for(self, width: i64, height: i64) -> Option<i64> {
        match self {
            Self::Off => None,
            Self::Auto => (width * height > AUTO_ABOVE_PIXELS).then_some(DEFAULT_TILE),
            Self::Side(n) => (width.max(height) > n).then_some(n),
        }
    }
}

/// Stylizes `image` in `style` in tiles of `tile` pixels on `device` in `kind`: the same
/// picture as the untiled network (clamped and rounded as `imageio::from_tensor` does).
pub fn stylize(
    net: &TransformerNet,
    style: &StyleMix,
    image: &RgbImage,
    tile: i64,
    device: Device,
    kind: Kind,
) -> Result<RgbImage> {
    let mut out = RgbImage::new(image.width(), image.height());
    run(
        net,
        style,
        image,
        tile,
        (device, kind),
        auto(image),
        &mut out,
    )?;
    Ok(out)
}

/// As [`stylize`], with the network's output quantised to 16 bits (as
/// `imageio::from_tensor_16` does) rather than rounded to 8.
pub fn stylize_16(
    net: &TransformerNet,
    style: &StyleMix,
    image: &RgbImage,
    tile: i64,
    device: Device,
    kind: Kind,
) -> Result<Rgb16Image> {
    let mut out = Rgb16Image::new(image.width(), image.height());
    run(
        net,
        style,
        image,
        tile,
        (device, kind),
        auto(image),
        &mut out,
    )?;
    Ok(out)
}

/// What the residual blocks do with their intermediate map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Intermediate {
    /// Kept in a second map.
    Keep,
    /// Recomputed where needed.
    Recompute,
}

fn auto(image: &RgbImage) -> Intermediate {
    if i64::from(image.width()) * i64::from(image.height()) > KEEP_INTERMEDIATE_MAX_PIXELS {
        Intermediate::Recompute
    } else {
        Intermediate::Keep
    }
}

fn run<C: Canvas>(
    net: &TransformerNet,
    style: &StyleMix,
    image: &RgbImage,
    tile: i64,
    (device, kind): (Device, Kind),
    intermediate: Intermediate,
    out: &mut C,
) -> Result<()> {
    if tile < 64 || tile % 4 != 0 {
        bail!("tile side {tile} is not a multiple of 4 of at least 64");
    }
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    let (hp, wp) = (h + pad_for(h), w + pad_for(w));
    let run = Run {
        net,
        style,
        image,
        device,
        kind,
        padded: (hp, wp),
    };
    tch::no_grad(|| {
        let mut trunk = Map::new(128, hp / 4, wp / 4, tile / 4);
        run.encoder(&mut trunk);
        match intermediate {
            Intermediate::Keep => {
                let mut scratch = Map::new(128, hp / 4, wp / 4, tile / 4);
                for block in net.residuals() {
                    run.residual(block, &mut trunk, &mut scratch);
                }
            }
            Intermediate::Recompute => {
                for block in net.residuals() {
                    run.residual_recomputed(block, &mut trunk);
                }
            }
        }
        run.decoder(&trunk, out)
    })
}

/// A picture that the decoder writes tiles of network output into.
trait Canvas {
    /// Writes a 1×3×h×w tile of pixel values (clamped, quantised) at (row, col).
    fn paste(&mut self, t: &Tensor, row: i64, col: i64) -> Result<()>;
}

impl Canvas for RgbImage {
    fn paste(&mut self, t: &Tensor, row: i64, col: i64) -> Result<()> {
        let data = Vec::<u8>::try_from(quantised(t, 1.0, Kind::Uint8).view([-1]))?;
        copy_rows(self.width() as usize, self, &data, t, row, col);
        Ok(())
    }
}

impl Canvas for Rgb16Image {
    fn paste(&mut self, t: &Tensor, row: i64, col: i64) -> Result<()> {
        let data = Vec::<i32>::try_from(quantised(t, 257.0, Kind::Int).view([-1]))?;
        let data: Vec<u16> = data.into_iter().map(|v| v as u16).collect();
        copy_rows(self.width() as usize, self, &data, t, row, col);
        Ok(())
    }
}

/// A tile's values clamped to 0…255, scaled (1 for 8 bits, 257 for 16), rounded, in `kind`,
/// as H×W×3 on the CPU.
fn quantised(t: &Tensor, scale: f64, kind: Kind) -> Tensor {
    (t.to_kind(Kind::Float).clamp(0.0, 255.0) * scale)
        .round()
        .to_kind(kind)
        .squeeze_dim(0)
        .permute([1, 2, 0])
        .contiguous()
        .to_device(Device::Cpu)
}

/// Copies a tile's H×W×3 values into a picture of `width` at (row, col).
fn copy_rows<T: Copy>(width: usize, raw: &mut [T], data: &[T], t: &Tensor, row: i64, col: i64) {
    let size = t.size();
    let (h, w) = (size[2] as usize, size[3] as usize);
    let stride = width * 3;
    for r in 0..h {
        let at = (row as usize + r) * stride + col as usize * 3;
        raw[at..at + w * 3].copy_from_slice(&data[r * w * 3..(r + 1) * w * 3]);
    }
}

/// One photo's passes.
struct Run<'a> {
    net: &'a TransformerNet,
    style: &'a StyleMix,
    image: &'a RgbImage,
    device: Device,
    kind: Kind,
    /// The photo's size after padding to what the network needs (rows, columns).
    padded: (i64, i64),
}

/// Every cell of a map's grid, row by row.
fn cells(map: &Map) -> impl Iterator<Item = (i64, i64)> {
    let (rows, cols) = map.grid();
    (0..rows).flat_map(move |i| (0..cols).map(move |j| (i, j)))
}

/// Rows and columns of a trunk cell at `f` times the trunk's resolution.
fn scaled(((r0, r1), (c0, c1)): ((i64, i64), (i64, i64)), f: i64) -> ((i64, i64), (i64, i64)) {
    ((r0 * f, r1 * f), (c0 * f, c1 * f))
}

impl Run<'_> {
    /// The photo's pixels (padded by replication to the network's size) as a tile.
    fn photo(&self, rows: Span, cols: Span) -> Tile {
        let (w, h) = (
            i64::from(self.image.width()),
            i64::from(self.image.height()),
        );
        let (r1, c1) = (rows.end.min(h), cols.end.min(w));
        let (rn, cn) = (r1 - rows.start, c1 - cols.start);
        let mut bytes = Vec::with_capacity((rn * cn * 3) as usize);
        let stride = (w * 3) as usize;
        for r in rows.start..r1 {
            let at = r as usize * stride + cols.start as usize * 3;
            bytes.extend_from_slice(&self.image.as_raw()[at..at + cn as usize * 3]);
        }
        // Bytes cross to the device, then become floats there.
        let mut t = Tensor::from_slice(&bytes)
            .view([rn, cn, 3])
            .permute([2, 0, 1])
            .unsqueeze(0)
            .to_device(self.device)
            .to_kind(self.kind);
        if rows.end > r1 || cols.end > c1 {
            t = t.replication_pad2d([0, cols.end - c1, 0, rows.end - r1]);
        }
        Tile { t, rows, cols }
    }

    /// A trunk map's cell with `halo` around it, as a tile on the network's device.
    fn trunk(&self, map: &Map, cell: (i64, i64), halo: i64) -> Tile {
        let (rows, cols) = map.size();
        let ((r0, r1), (c0, c1)) = map.cell(cell);
        let (rows, cols) = (
            Span::around(r0, r1, halo, rows),
            Span::around(c0, c1, halo, cols),
        );
        let t = map.fetch((rows.start, rows.end), (cols.start, cols.end));
        Tile {
            t: t.to_device(self.device).to_kind(self.kind),
            rows,
            cols,
        }
    }

    /// conv1 … in3: three passes over the photo, the last writing conv3's output to `trunk`,
    /// which then holds relu(in3(·)).
    fn encoder(&self, trunk: &mut Map) {
        let layers = self.net.encoder();
        let (hp, wp) = self.padded;
        let mut stats: Vec<Stats> = Vec::new();
        for depth in 0..layers.len() {
            let mut gathered = Stats::new();
            for cell in cells(trunk) {
                let ((r0, r1), (c0, c1)) = scaled(trunk.cell(cell), 4);
                let rows = Span::around(r0, r1, ENCODER_HALO, hp);
                let cols = Span::around(c0, c1, ENCODER_HALO, wp);
                let mut x = self.photo(rows, cols);
                for (l, (conv, norm)) in layers.iter().enumerate().take(depth + 1) {
                    x = x.conv(conv);
                    if l < depth {
                        x.norm_relu(&stats[l], norm, self.style);
                    }
                }
                let own = scaled(trunk.cell(cell), 1 << (2 - depth));
                let part = x.part(own.0, own.1);
                gathered.add(&part);
                if depth == layers.len() - 1 {
                    trunk.store(cell, &part);
                }
            }
            stats.push(gathered);
        }
        self.update(trunk, |x| {
            let (scale, shift) = stats[2].affine(layers[2].1, self.style, x.kind(), x.device());
            (x * scale + shift).relu()
        });
    }

    /// x + in2(conv2(relu(in1(conv1(x))))): conv1 into `scratch`, conv2 back into it (each
    /// row of cells committed once the next row, which reads it as halo, is done), then the sum.
    fn residual(
        &self,
        block: &crate::transformer::ResidualBlock,
        trunk: &mut Map,
        scratch: &mut Map,
    ) {
        let [(conv1, in1), (conv2, in2)] = block.layers();
        let mut stats1 = Stats::new();
        for cell in cells(trunk) {
            let a = self.trunk(trunk, cell, 1).conv(conv1);
            let own = trunk.cell(cell);
            let part = a.part(own.0, own.1);
            stats1.add(&part);
            scratch.store(cell, &part);
        }
        let mut stats2 = Stats::new();
        let mut pending = Vec::new();
        let (rows, cols) = scratch.grid();
        for i in 0..rows {
            let mut done = Vec::new();
            for j in 0..cols {
                let mut a = self.trunk(scratch, (i, j), 1);
                a.norm_relu(&stats1, in1, self.style);
                let b = a.conv(conv2);
                let own = scratch.cell((i, j));
                let part = b.part(own.0, own.1);
                stats2.add(&part);
                done.push(scratch.encode((i, j), &part));
            }
            for e in std::mem::replace(&mut pending, done) {
                scratch.commit(e);
            }
        }
        for e in pending {
            scratch.commit(e);
        }
        let (scale, shift) = stats2.affine(in2, self.style, Kind::Float, Device::Cpu);
        for cell in cells(trunk) {
            let own = trunk.cell(cell);
            let mut sum = trunk.fetch(own.0, own.1);
            let _ = sum.addcmul_(&scratch.fetch(own.0, own.1), &scale);
            sum += &shift;
            trunk.store(cell, &sum);
        }
    }

    /// The same block without `scratch`: a pass for conv1's statistics, a pass recomputing
    /// conv1 for conv2's, and one recomputing both for the sum, each row of cells committed
    /// once the next row (which reads it as halo) is done.
    fn residual_recomputed(&self, block: &crate::transformer::ResidualBlock, trunk: &mut Map) {
        let [(conv1, in1), (conv2, in2)] = block.layers();
        let mut stats1 = Stats::new();
        for cell in cells(trunk) {
            let a = self.trunk(trunk, cell, 1).conv(conv1);
            let own = trunk.cell(cell);
            stats1.add(&a.part(own.0, own.1));
        }
        // conv2 of relu(in1(conv1(x))) on a cell: conv1 on two pixels of halo, then conv2.
        let branch = |trunk: &Map, cell: (i64, i64)| -> Tensor {
            let mut a = self.trunk(trunk, cell, 2).conv(conv1);
            a.norm_relu(&stats1, in1, self.style);
            let own = trunk.cell(cell);
            a.conv(conv2).part(own.0, own.1)
        };
        let mut stats2 = Stats::new();
        for cell in cells(trunk) {
            stats2.add(&branch(trunk, cell));
        }
        let (scale, shift) = stats2.affine(in2, self.style, Kind::Float, Device::Cpu);
        let mut pending = Vec::new();
        let (rows, cols) = trunk.grid();
        for i in 0..rows {
            let mut done = Vec::with_capacity(cols as usize);
            for j in 0..cols {
                let b = branch(trunk, (i, j))
                    .to_device(Device::Cpu)
                    .to_kind(Kind::Float);
                let own = trunk.cell((i, j));
                let mut sum = trunk.fetch(own.0, own.1);
                let _ = sum.addcmul_(&b, &scale);
                sum += &shift;
                done.push(trunk.encode((i, j), &sum));
            }
            for e in std::mem::replace(&mut pending, done) {
                trunk.commit(e);
            }
        }
        for e in pending {
            trunk.commit(e);
        }
    }

    /// deconv1 … deconv3: two passes gathering in4's and in5's statistics, and the last one
    /// writing the picture.
    fn decoder<C: Canvas>(&self, trunk: &Map, out: &mut C) -> Result<()> {
        let ([(up1, in4), (up2, in5)], last) = self.net.decoder();
        let (w, h) = self.image.dimensions();
        let mut stats4 = Stats::new();
        let mut stats5 = Stats::new();
        for depth in 0..3 {
            for cell in cells(trunk) {
                let mut y = self.trunk(trunk, cell, DECODER_HALO).conv(up1);
                if depth == 0 {
                    let own = scaled(trunk.cell(cell), 2);
                    stats4.add(&y.part(own.0, own.1));
                    continue;
                }
                y.norm_relu(&stats4, in4, self.style);
                let mut y = y.conv(up2);
                let own = scaled(trunk.cell(cell), 4);
                if depth == 1 {
                    stats5.add(&y.part(own.0, own.1));
                    continue;
                }
                y.norm_relu(&stats5, in5, self.style);
                let y = y.conv(last);
                // The photo's own pixels only (not the alignment padding).
                let (r1, c1) = (own.0 .1.min(i64::from(h)), own.1 .1.min(i64::from(w)));
                if own.0 .0 < r1 && own.1 .0 < c1 {
                    let part = y.part((own.0 .0, r1), (own.1 .0, c1));
                    out.paste(&part, own.0 .0, own.1 .0)?;
                }
            }
        }
        Ok(())
    }

    /// Replaces every cell of `map` by `f` of it.
    fn update(&self, map: &mut Map, f: impl Fn(Tensor) -> Tensor) {
        for cell in cells(map) {
            let own = map.cell(cell);
            let x = f(map.fetch(own.0, own.1));
            map.store(cell, &x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;

    fn differences(a: &RgbImage, b: &RgbImage) -> (u8, f64) {
        let d: Vec<u8> = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| x.abs_diff(*y))
            .collect();
        let share = d.iter().filter(|&&v| v > 0).count() as f64 / d.len() as f64;
        (d.iter().copied().max().unwrap_or(0), share)
    }

    #[test]
    fn recomputing_the_intermediate_gives_the_kept_and_the_untiled_picture() {
        tch::manual_seed(3);
        let vs = VarStore::new(Device::Cpu);
        let net = TransformerNet::new(&vs.root());
        let style = StyleMix::One(0);
        let image = RgbImage::from_fn(150, 117, |x, y| {
            image::Rgb([
                (x * 3 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x * y) % 251) as u8,
            ])
        });
        let whole = {
            let x = crate::imageio::to_tensor(&image);
            crate::imageio::from_tensor(&tch::no_grad(|| net.forward_style(&x, &style))).unwrap()
        };
        let device = (Device::Cpu, Kind::Float);
        let mut kept = RgbImage::new(150, 117);
        run(
            &net,
            &style,
            &image,
            64,
            device,
            Intermediate::Keep,
            &mut kept,
        )
        .unwrap();
        let mut recomputed = RgbImage::new(150, 117);
        run(
            &net,
            &style,
            &image,
            64,
            device,
            Intermediate::Recompute,
            &mut recomputed,
        )
        .unwrap();
        for (name, tiled) in [("kept", &kept), ("recomputed", &recomputed)] {
            let (worst, share) = differences(&whole, tiled);
            assert!(worst <= 2, "{name}: {worst}/255 from the untiled picture");
            assert!(
                share < 0.05,
                "{name}: {:.1}% of values differ",
                share * 100.0
            );
        }
        // The 16-bit canvas holds the same picture, finer.
        let mut deep = Rgb16Image::new(150, 117);
        run(
            &net,
            &style,
            &image,
            64,
            device,
            Intermediate::Recompute,
            &mut deep,
        )
        .unwrap();
        let (worst, _) = differences(
            &recomputed,
            &RgbImage::from_fn(150, 117, |x, y| {
                image::Rgb(deep.get_pixel(x, y).0.map(crate::imageio::narrow))
            }),
        );
        assert!(worst <= 1, "16-bit canvas differs by {worst}/255");
    }
}
