//! Loss sums between logs, kept on the device so that a step never waits for a read-back.
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

    /// The means since the last log; a NaN or infinite loss stops the run (at `step`,
    /// keeping the last good checkpoint `model`).
    pub fn means(&self, step: u64, model: &Path) -> Result<LossMeans> {
        let v = Vec::<f64>::try_from(
            &(&self.sums / self.steps.max(1) as f64)
                .to_kind(Kind::Double)
                .to_device(Device::Cpu),
        )
        .context("cannot read losses")?;
        if v.iter().any(|l| !l.is_finite()) {
            bail!(
                "the loss became {} by step {step}; stopped without saving (the last good checkpoint, if any, is {}). Try a lower --lr or other loss weights",
                if v.iter().any(|l| l.is_nan()) { "NaN" } else { "infinite" },
                model.display()
            );
        }
        Ok(LossMeans {
            content: v[0],
            style: v[1],
            tv: v[2],
            total: v[3],
            stability: v[4],
            temporal: v[5],
        })
    }

    /// Images per second since the last log.
    pub fn rate(&self) -> f64 {
        self.images as f64 / self.clock.elapsed().as_secs_f64().max(1e-9)
    }

    /// Each trained style's mean style loss since the last log, for those it trained.
    pub fn per_style(&self) -> Result<Vec<(usize, f64)>> {
        let sums =
            Vec::<f64>::try_from(&self.style_sums.to_kind(Kind::Double).to_device(Device::Cpu))
                .context("cannot read losses")?;
        Ok(self
            .style_counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(k, &n)| (k, sums[k] / n as f64))
            .collect())
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
