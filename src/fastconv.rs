//! Two of the network's convolutions rewritten for oneDNN, with the same numbers.
//!
//! [`upsample_conv`]: nearest ×2 upsampling, reflection padding 1 and a 3×3 convolution (the
//! example's `UpsampleConvLayer`), without the upsampled map: every output pixel of parity
//! (a, b) sees only two rows and two columns of the low-resolution input, so the layer is
//! one 2×2 convolution with 4× the output channels on the input (replicate-padded by 1, which
//! is what reflection of the upsampled map amounts to), then interleaved. Same numbers, 2.25×
//! fewer multiply-adds, and no upsampled or padded copy of the large map.
use tch::{Kind, Tensor};

/// Rows of the 3×3 kernel that each 2×2 tap sums, per output parity: parity 0 reads low-res
/// rows (i−1, i) with kernel rows (0, 1+2); parity 1 reads rows (i, i+1) with (0+1, 2).
const TAPS: [[&[i64]; 2]; 2] = [[&[0], &[1, 2]], [&[0, 1], &[2]]];

fn index(taps: &[i64], on: &Tensor) -> Tensor {
    Tensor::from_slice(taps).to_device(on.device())
}

/// The four 2×2 kernels stacked as [4·O, I, 2, 2], parity (a, b) at block 2a + b.
fn phase_weights(w: &Tensor) -> Tensor {
    let mut blocks = Vec::with_capacity(4);
    for rows in TAPS {
        for cols in TAPS {
            let mut taps = Vec::with_capacity(4);
            for r in rows {
                let row = w
                    .index_select(2, &index(r, w))
                    .sum_dim_intlist(2, true, None::<Kind>);
                for c in cols {
                    let tap = row.index_select(3, &index(c, w));
                    taps.push(tap.sum_dim_intlist(3, true, None::<Kind>));
                }
            }
            // taps: (row 0, col 0), (0, 1), (1, 0), (1, 1)
            let top = Tensor::cat(&[&taps[0], &taps[1]], 3);
            let bottom = Tensor::cat(&[&taps[2], &taps[3]], 3);
            blocks.push(Tensor::cat(&[top, bottom], 2));
        }
    }
    Tensor::cat(&blocks, 0)
}

/// The upsampling layer on `x` (N×I×H×W) with 3×3 weight `w` and bias `b`. `pads` (left, right, top,
/// bottom) is 1 on each side where `x` ends at the image's border (replicated there), 0 where
/// it continues (that side then loses one low-res pixel of output: a tile's halo). The output
/// has 2·(H + top + bottom − 2) rows and likewise columns; with all pads 1, 2H × 2W.
pub fn upsample_conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, pads: [i64; 4]) -> Tensor {
    let device = x.device();
    let (o, kind) = (w.size()[0], x.kind());
    let weights = phase_weights(w).to_kind(kind);
    let bias = b.map(|b| b.repeat([4]));
    let x = if pads.iter().any(|&p| p > 0) {
        x.replication_pad2d(pads)
    } else {
        x.shallow_clone()
    };
    // y[(2a + b)·O + c, r, s] = the parity (a, b) output at low-res position (r + 1 − a, s + 1 − b).
    let y = x.conv2d(&weights, bias.as_ref(), [1, 1], [0, 0], [1, 1], 1);
    let size = y.size();
    let (n, h, wd) = (size[0], size[2] - 1, size[3] - 1);
    let out = Tensor::empty([n, o, h, 2, wd, 2], (kind, device));
    for a in 0..2 {
        for bb in 0..2 {
            let phase = y
                .narrow(1, (2 * a + bb) * o, o)
                .narrow(2, a, h)
                .narrow(3, bb, wd);
            out.select(5, bb).select(3, a).copy_(&phase);
        }
    }
    out.view([n, o, 2 * h, 2 * wd])
}

/// Output channels at or below which [`conv`] computes 2×2 output pixels per position.
const FEW_OUTPUTS: i64 = 4;

/// A stride-1 convolution without padding (`x` already padded). The last layer (9×9, 32 → 3)
/// has too few output channels to fill oneDNN's 16-wide vectors (about 20 GFLOP/s here, a
/// fifth of the others); computed on 2×2 blocks of pixels instead (pixel unshuffle, a
/// ⌈k/2⌉-wide convolution with 4× the channels on each side, pixel shuffle) it runs about twice
/// as fast, for 23% more multiply-adds.
pub fn conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
    let (size, k) = (x.size(), w.size()[2]);
    let even = size[2] % 2 == 0 && size[3] % 2 == 0;
    if w.size()[0] > FEW_OUTPUTS || k < 5 || !even {
        return x.conv2d(w, b, [1, 1], [0, 0], [1, 1], 1);
    }
    let bias = b.map(|b| b.repeat_interleave_self_int(4, 0, None));
    x.pixel_unshuffle(2)
        .conv2d(&block_weights(w), bias.as_ref(), [1, 1], [0, 0], [1, 1], 1)
        .pixel_shuffle(2)
}

/// [O, I, k, k] as the convolution on 2×2 blocks: [4·O, 4·I, m, m], m = (k + 1) / 2, output
/// channel 4·o + 2a + b (pixel shuffle's order), input channel 4·i + 2·sy + sx (unshuffle's).
/// Output pixel 2r + a reads input pixels 2r + a + d, d < k: block row r + ry, sub-row sy with
/// d = 2·ry + sy − a, so the kernel tap is (2·ry + sy − a) where that lies in 0…k−1, else 0.
fn block_weights(w: &Tensor) -> Tensor {
    let s = w.size();
    let (o, i, k) = (s[0], s[1], s[2]);
    let m = (k + 1) / 2;
    // One zero on each side: taps −1 and k read zeros.
    let padded = w.constant_pad_nd([1, 1, 1, 1]);
    let taps = |a: i64| -> Tensor {
        let idx: Vec<i64> = (0..2)
            .flat_map(|sy| (0..m).map(move |ry| 2 * ry + sy - a + 1))
            .collect();
        index(&idx, w)
    };
    let mut phases = Vec::with_capacity(4);
    for a in 0..2 {
        for b in 0..2 {
            let t = padded.index_select(2, &taps(a)).index_select(3, &taps(b));
            // [O, I, (sy, ry), (sx, rx)] → [O, (I, sy, sx), ry, rx]
            let t = t
                .view([o, i, 2, m, 2, m])
                .permute([0, 1, 2, 4, 3, 5])
                .reshape([o, 4 * i, m, m]);
            phases.push(t);
        }
    }
    Tensor::stack(&phases, 1).reshape([4 * o, 4 * i, m, m])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn blocks_of_pixels_equal_the_plain_convolution() {
        tch::manual_seed(2);
        let x = Tensor::randn([1, 6, 20, 14], (Kind::Double, Device::Cpu));
        let w = Tensor::randn([3, 6, 9, 9], (Kind::Double, Device::Cpu));
        let b = Tensor::randn([3], (Kind::Double, Device::Cpu));
        let reference = x.conv2d(&w, Some(&b), [1, 1], [0, 0], [1, 1], 1);
        let ours = conv(&x, &w, Some(&b));
        assert_eq!(ours.size(), reference.size());
        let diff = (&ours - &reference).abs().max().double_value(&[]);
        assert!(diff < 1e-10, "{diff}");
    }

    #[test]
    fn equals_upsampling_then_reflection_padding_then_convolution() {
        tch::manual_seed(1);
        let x = Tensor::randn([2, 5, 7, 6], (Kind::Double, Device::Cpu));
        let w = Tensor::randn([4, 5, 3, 3], (Kind::Double, Device::Cpu));
        let b = Tensor::randn([4], (Kind::Double, Device::Cpu));
        let reference = x
            .upsample_nearest2d([14, 12], 2.0, 2.0)
            .reflection_pad2d([1, 1, 1, 1])
            .conv2d(&w, Some(&b), [1, 1], [0, 0], [1, 1], 1);
        let ours = upsample_conv(&x, &w, Some(&b), [1; 4]);
        assert_eq!(ours.size(), reference.size());
        let diff = (&ours - &reference).abs().max().double_value(&[]);
        assert!(diff < 1e-10, "{diff}");
        // Without padding on the left and top, the first low-res row and column are halo.
        let inner = upsample_conv(&x, &w, Some(&b), [0, 1, 0, 1]);
        let cropped = reference.narrow(2, 2, 12).narrow(3, 2, 10);
        let diff = (&inner - &cropped).abs().max().double_value(&[]);
        assert!(diff < 1e-10, "{diff}");
    }
}
