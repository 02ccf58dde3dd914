//! A tile: a piece of one layer's map that knows where it lies in the whole map, so that each
//! layer pads by reflection only at the image's borders and eats into the halo elsewhere, and
//! the result inside the tile equals the untiled network's exactly.
use crate::conditional::{InstanceNorm, StyleMix};
use crate::fastconv;
use crate::transformer::ConvLayer;
use tch::{Kind, Tensor};

/// The rows (or columns) `[start, end)` that a tile holds, of `full` in the whole map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// First index held.
    pub start: i64,
    /// One past the last index held.
    pub end: i64,
    /// Size of the whole map along this axis.
    pub full: i64,
}

impl Span {
    /// `[start, end)` widened by `halo` on each side, within the map.
    pub fn around(start: i64, end: i64, halo: i64, full: i64) -> Self {
        Self {
            start: (start - halo).max(0),
            end: (end + halo).min(full),
            full,
        }
    }

    /// Padding before and after: `p` at the map's borders, none inside (the halo serves).
    fn pads(self, p: i64) -> (i64, i64) {
        (
            if self.start == 0 { p } else { 0 },
            if self.end == self.full { p } else { 0 },
        )
    }

    /// A `k`-wide, stride-`s` convolution with `k / 2` padding at the borders: the output
    /// indices it computes exactly, and the offset and length of the padded input it reads.
    fn conv(self, k: i64, s: i64) -> (Self, i64, i64) {
        let p = k / 2;
        let (before, after) = self.pads(p);
        let (lo, hi) = (self.start - before, self.end + after);
        // Output o reads padded input [o·s − p, o·s − p + k).
        let first = (lo + p + s - 1).div_euclid(s);
        let last = (hi + p - k).div_euclid(s);
        let out = Self {
            start: first,
            end: last + 1,
            full: (self.full - 1) / s + 1,
        };
        (out, first * s - p - lo, (last - first) * s + k)
    }
}

/// One tile of a layer's map, N×C×rows×cols.
pub struct Tile {
    /// The values.
    pub t: Tensor,
    /// Where its rows lie.
    pub rows: Span,
    /// Where its columns lie.
    pub cols: Span,
}

impl Tile {
    /// The layer (upsampling or not) on this tile: a smaller tile, exact where it is defined.
    pub fn conv(&self, layer: &ConvLayer) -> Tile {
        let (k, s, upsample) = layer.geometry();
        let (w, b) = layer.params(self.t.kind());
        if upsample {
            let (pl, pr) = self.cols.pads(1);
            let (pt, pb) = self.rows.pads(1);
            let t = fastconv::upsample_conv(&self.t, &w, b.as_ref(), [pl, pr, pt, pb]);
            let up = |sp: Span, (b, a): (i64, i64)| Span {
                start: 2 * (sp.start - b + 1),
                end: 2 * (sp.end + a - 1),
                full: 2 * sp.full,
            };
            return Tile {
                t,
                rows: up(self.rows, (pt, pb)),
                cols: up(self.cols, (pl, pr)),
            };
        }
        let p = k / 2;
        let (pt, pb) = self.rows.pads(p);
        let (pl, pr) = self.cols.pads(p);
        let padded = if pt + pb + pl + pr > 0 {
            self.t.reflection_pad2d([pl, pr, pt, pb])
        } else {
            self.t.shallow_clone()
        };
        let (rows, r0, rn) = self.rows.conv(k, s);
        let (cols, c0, cn) = self.cols.conv(k, s);
        let input = padded.narrow(2, r0, rn).narrow(3, c0, cn);
        let t = if s == 1 {
            fastconv::conv(&input, &w, b.as_ref())
        } else {
            input.conv2d(&w, b.as_ref(), [s, s], [0, 0], [1, 1], 1)
        };
        Tile { t, rows, cols }
    }

    /// The part of the tile at rows `[r0, r1)` and columns `[c0, c1)` of the whole map.
    pub fn part(&self, (r0, r1): (i64, i64), (c0, c1): (i64, i64)) -> Tensor {
        assert!(
            self.rows.start <= r0 && r1 <= self.rows.end,
            "tile rows {:?} lack {r0}..{r1}",
            self.rows
        );
        assert!(
            self.cols.start <= c0 && c1 <= self.cols.end,
            "tile columns {:?} lack {c0}..{c1}",
            self.cols
        );
        self.t
            .narrow(2, r0 - self.rows.start, r1 - r0)
            .narrow(3, c0 - self.cols.start, c1 - c0)
    }

    /// Applies a norm with the whole map's statistics, and ReLU, in place.
    pub fn norm_relu(&mut self, stats: &Stats, norm: &InstanceNorm, style: &StyleMix) {
        let (scale, shift) = stats.affine(norm, style, self.t.kind(), self.t.device());
        self.t *= &scale;
        self.t += &shift;
        let _ = self.t.relu_();
    }
}

/// Per-channel mean and variance over a whole map, gathered tile by tile (each position
/// once): each tile's own mean and variance in one pass (no copies of the tile), merged in
/// float64 (Chan et al.'s pairwise update).
pub struct Stats {
    /// Mean and sum of squared deviations so far (C, float64), updated in place.
    moments: Option<(Tensor, Tensor)>,
    count: i64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// No positions yet.
    pub fn new() -> Self {
        Self {
            moments: None,
            count: 0,
        }
    }

    /// Adds the positions of `t` (N=1×C×H×W).
    pub fn add(&mut self, t: &Tensor) {
        let size = t.size();
        let n = size[0] * size[2] * size[3];
        if n == 0 {
            return;
        }
        let t = if t.kind() == Kind::Float || t.kind() == Kind::Double {
            t.shallow_clone()
        } else {
            t.to_kind(Kind::Float)
        };
        let (var, mean) = t.var_mean_correction([0, 2, 3].as_slice(), 0, false);
        let (var, mean) = (var.to_kind(Kind::Double), mean.to_kind(Kind::Double));
        let before = self.count as f64;
        self.count += n;
        let (n, total) = (n as f64, self.count as f64);
        // Updated in place: fresh totals per tile would leave small long-lived blocks
        // scattered among the tiles' large ones, and the heap would grow with the photo.
        match &mut self.moments {
            Some((m, m2)) => {
                let delta = &mean - &*m;
                *m2 += var * n + delta.square() * (before * n / total);
                *m += delta * (n / total);
            }
            None => self.moments = Some((mean, var * n)),
        }
    }

    /// The norm as a per-channel scale and shift (1×C×1×1): γ / √(var + ε) and β − mean·scale.
    pub fn affine(
        &self,
        norm: &InstanceNorm,
        style: &StyleMix,
        kind: Kind,
        device: tch::Device,
    ) -> (Tensor, Tensor) {
        let Some((mean, m2)) = &self.moments else {
            panic!("statistics used before any tile was added")
        };
        let var = m2 / self.count as f64;
        let (gamma, beta) = norm.affine(style);
        let (gamma, beta) = (gamma.to_kind(Kind::Double), beta.to_kind(Kind::Double));
        let (gamma, beta) = (
            gamma.to_device(mean.device()),
            beta.to_device(mean.device()),
        );
        let scale = gamma * (var + InstanceNorm::EPS).rsqrt();
        let shift = beta - mean * &scale;
        let shape = [1, -1, 1, 1];
        (
            scale.view(shape).to_device(device).to_kind(kind),
            shift.view(shape).to_device(device).to_kind(kind),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convolution_spans_at_borders_and_inside() {
        // 9×9, stride 1: at the border the padding keeps the extent; inside, 4 are eaten.
        let (out, off, len) = Span {
            start: 0,
            end: 20,
            full: 100,
        }
        .conv(9, 1);
        assert_eq!((out.start, out.end, off, len), (0, 16, 0, 24));
        let (out, off, _) = Span {
            start: 10,
            end: 100,
            full: 100,
        }
        .conv(9, 1);
        assert_eq!((out.start, out.end, off), (14, 100, 0));
        // 3×3, stride 2 from an even start: output o reads 2o − 1 … 2o + 1.
        let (out, off, len) = Span {
            start: 4,
            end: 12,
            full: 16,
        }
        .conv(3, 2);
        assert_eq!((out.start, out.end, out.full), (3, 6, 8));
        assert_eq!((off, len), (1, 7));
    }
}
