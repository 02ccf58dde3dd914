//! A whole low-resolution map (the residual trunk, 128 channels at a quarter of each side)
//! kept in host memory in half precision, cell by cell: each cell is stored centred and
//! scaled by its own per-channel mean and deviation, so that half precision's 11 bits go to
//! the variation that matters, not to a large offset.
use tch::{Device, Kind, Tensor};

/// Per-channel centre and scale of one cell being encoded (1×C×1×1, float32, on the CPU).
struct Coding {
    centre: Tensor,
    scale: Tensor,
}

/// A 1×C×H×W map in cells of `cell`×`cell` (the tiles' grid).
pub struct Map {
    data: Tensor,
    cell: i64,
    /// Every cell's centre and scale (cells × C, float32), allocated once with the map: kept
    /// as a small tensor per cell, they would be long-lived blocks scattered among the
    /// tiles' large transient ones, and the heap would grow with the photo.
    centres: Tensor,
    scales: Tensor,
    written: Vec<bool>,
    grid_cols: i64,
}

/// One cell's values, encoded and ready to commit.
pub struct Encoded {
    index: (i64, i64),
    data: Tensor,
    coding: Coding,
}

impl Map {
    /// An empty map of `channels` × `rows` × `cols` in cells of `cell`.
    pub fn new(channels: i64, rows: i64, cols: i64, cell: i64) -> Self {
        let grid_rows = (rows + cell - 1) / cell;
        let grid_cols = (cols + cell - 1) / cell;
        let cells = grid_rows * grid_cols;
        let codings = || Tensor::zeros([cells, channels], (Kind::Float, Device::Cpu));
        Self {
            data: Tensor::zeros([1, channels, rows, cols], (Kind::Half, Device::Cpu)),
            cell,
            centres: codings(),
            scales: codings(),
            written: vec![false; cells as usize],
            grid_cols,
        }
    }

    /// Rows and columns of the whole map.
    pub fn size(&self) -> (i64, i64) {
        let s = self.data.size();
        (s[2], s[3])
    }

    /// Rows `[r0, r1)` and columns `[c0, c1)` of cell (i, j).
    pub fn cell(&self, (i, j): (i64, i64)) -> ((i64, i64), (i64, i64)) {
        let (rows, cols) = self.size();
        let c = self.cell;
        (
            (i * c, ((i + 1) * c).min(rows)),
            (j * c, ((j + 1) * c).min(cols)),
        )
    }

    /// Cells down and across.
    pub fn grid(&self) -> (i64, i64) {
        (self.written.len() as i64 / self.grid_cols, self.grid_cols)
    }

    /// Encodes cell (i, j)'s new values `t` (1×C×h×w, any device and kind).
    pub fn encode(&self, index: (i64, i64), t: &Tensor) -> Encoded {
        let t = t.to_device(Device::Cpu).to_kind(Kind::Float);
        let (spread, centre) = t.var_mean_correction([2, 3].as_slice(), 0, true);
        // A flat channel keeps scale 1: dividing by ~0 would amplify rounding.
        let scale = spread.sqrt().clamp_min(1e-3);
        let mut centred = &t - &centre;
        centred /= &scale;
        let data = centred.to_kind(Kind::Half);
        Encoded {
            index,
            data,
            coding: Coding { centre, scale },
        }
    }

    /// Writes an encoded cell into the map.
    pub fn commit(&mut self, e: Encoded) {
        let ((r0, r1), (c0, c1)) = self.cell(e.index);
        self.data
            .narrow(2, r0, r1 - r0)
            .narrow(3, c0, c1 - c0)
            .copy_(&e.data);
        let k = e.index.0 * self.grid_cols + e.index.1;
        let channels = self.centres.size()[1];
        self.centres
            .get(k)
            .copy_(&e.coding.centre.reshape([channels]));
        self.scales
            .get(k)
            .copy_(&e.coding.scale.reshape([channels]));
        self.written[k as usize] = true;
    }

    /// Stores cell (i, j)'s new values.
    pub fn store(&mut self, index: (i64, i64), t: &Tensor) {
        let e = self.encode(index, t);
        self.commit(e);
    }

    /// Rows `[r0, r1)` and columns `[c0, c1)`, decoded to float32 on the CPU.
    pub fn fetch(&self, (r0, r1): (i64, i64), (c0, c1): (i64, i64)) -> Tensor {
        let c = self.cell;
        let mut strips = Vec::new();
        for i in r0 / c..=(r1 - 1) / c {
            let (a0, a1) = ((i * c).max(r0), ((i + 1) * c).min(r1));
            let mut pieces = Vec::new();
            for j in c0 / c..=(c1 - 1) / c {
                let (b0, b1) = ((j * c).max(c0), ((j + 1) * c).min(c1));
                let k = i * self.grid_cols + j;
                assert!(
                    self.written[k as usize],
                    "a cell is read before it was written"
                );
                let channels = self.centres.size()[1];
                let scale = self.scales.get(k).view([1, channels, 1, 1]);
                let centre = self.centres.get(k).view([1, channels, 1, 1]);
                let piece = self.data.narrow(2, a0, a1 - a0).narrow(3, b0, b1 - b0);
                let mut piece = piece.to_kind(Kind::Float);
                piece *= scale;
                piece += centre;
                pieces.push(piece);
            }
            strips.push(if pieces.len() == 1 {
                pieces.pop().expect("one piece")
            } else {
                Tensor::cat(&pieces, 3)
            });
        }
        if strips.len() == 1 {
            strips.pop().expect("one strip")
        } else {
            Tensor::cat(&strips, 2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_round_trip_within_half_precision_of_their_spread() {
        tch::manual_seed(0);
        let mut map = Map::new(4, 10, 7, 4);
        assert_eq!(map.grid(), (3, 2));
        // A large offset with a small spread: stored raw in half precision it would lose it.
        let values = Tensor::randn([1, 4, 10, 7], (Kind::Float, Device::Cpu)) * 0.01 + 1000.0;
        for i in 0..3 {
            for j in 0..2 {
                let ((r0, r1), (c0, c1)) = map.cell((i, j));
                let t = values.narrow(2, r0, r1 - r0).narrow(3, c0, c1 - c0);
                map.store((i, j), &t);
            }
        }
        let back = map.fetch((1, 9), (2, 7));
        let want = values.narrow(2, 1, 8).narrow(3, 2, 5);
        let err = (&back - &want).abs().max().double_value(&[]);
        assert!(err < 1e-5, "{err}");
    }
}
