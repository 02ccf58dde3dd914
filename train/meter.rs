//! Loss sums between logs, kept on the device so that a step never waits for a read-back.
use crate::ranks::Ranks;
use anyhow::{bail, Context, Result};
use faststyle::loss::Losses;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Mean losses over the iterations since the previous log.
#[derive(Clone, Copy, Debug)]
pub struct LossMeans {
    pub content: f64,
    pub style: f64,
    pub tv: f64,
    pub total: f64,
    pub stability: f64,
    pub temporal: f64,
}

/// What a log reports: [`Meter::totals`].
pub struct Totals {
    /// Mean losses.
    pub means: LossMeans,
    /// Each trained style's mean style loss, for the styles trained since the last log.
    pub per_style: Vec<(usize, f64)>,
    /// Photos trained per second, by all processes together.
    pub images_per_sec: f64,
}

/// The sums since the last log.
pub struct Meter {
    /// content, style, tv, total, stability, temporal.
    sums: Tensor,
    /// Style loss sums of each trained style.
    style_sums: Tensor,
    /// Batches of each trained style.
    style_counts: Vec<u64>,
    steps: u64,
    images: u64,
    clock: Instant,
}

impl Meter {
    /// A meter for a run training `styles` styles on `device`.
    pub fn new(styles: usize, device: Device) -> Self {
        Self {
            sums: Tensor::zeros([6], (Kind::Float, device)),
            style_sums: Tensor::zeros([styles as i64], (Kind::Float, device)),
            style_counts: vec![0; styles],
            steps: 0,
            images: 0,
            clock: Instant::now(),
        }
    }

    /// Adds one step's losses (trained style `k`, `images` photos).
    pub fn add(&mut self, losses: &Losses, k: usize, images: u64) {
        let _ = self
            .style_sums
            .get(k as i64)
            .g_add_(&losses.style.detach().to_kind(Kind::Float));
        self.style_counts[k] += 1;
        let all = [
            &losses.content,
            &losses.style,
            &losses.tv,
            &losses.total,
            &losses.stability,
            &losses.temporal,
        ];
        let _ = self
            .sums
            .g_add_(&Tensor::stack(&all, 0).detach().to_kind(Kind::Float));
        self.steps += 1;
        self.images += images;
    }

    /// The means since the last log over every process, each style's mean style loss (of
    /// those it trained) and the images per second. A NaN or infinite loss stops the run (at
    /// `step`, keeping the last good checkpoint `model`) on every rank alike, since they all
    /// read the same sums.
    pub fn totals(&self, step: u64, model: &Path, ranks: &Ranks) -> Result<Totals> {
        let images = Tensor::from(self.images as f32).to_device(self.sums.device());
        let all = Tensor::cat(&[&self.sums, &self.style_sums, &images.view([1])], 0);
        ranks.sum(&all)?;
        let v = Vec::<f64>::try_from(&all.to_kind(Kind::Double).to_device(Device::Cpu))
            .context("cannot read losses")?;
        // Each rank's losses are weighted so that their mean is the global batch's.
        let per_rank = ranks.world() as f64;
        let steps = self.steps.max(1) as f64;
        let means: Vec<f64> = v[..6].iter().map(|s| s / per_rank / steps).collect();
        if means.iter().any(|l| !l.is_finite()) {
            bail!(
                "the loss became {} by step {step}; stopped without saving (the last good checkpoint, if any, is {}). Try a lower --lr or other loss weights",
                if means.iter().any(|l| l.is_nan()) { "NaN" } else { "infinite" },
                model.display()
            );
        }
        let style_sums = &v[6..6 + self.style_counts.len()];
        let images = v[v.len() - 1];
        Ok(Totals {
            means: LossMeans {
                content: means[0],
                style: means[1],
                tv: means[2],
                total: means[3],
                stability: means[4],
                temporal: means[5],
            },
            per_style: self
                .style_counts
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(k, &n)| (k, style_sums[k] / per_rank / n as f64))
                .collect(),
            images_per_sec: images / self.clock.elapsed().as_secs_f64().max(1e-9),
        })
    }

    /// Starts the next interval.
    pub fn reset(&mut self) {
        let _ = self.sums.zero_();
        let _ = self.style_sums.zero_();
        self.style_counts.iter_mut().for_each(|n| *n = 0);
        self.steps = 0;
        self.images = 0;
        self.clock = Instant::now();
    }
}
