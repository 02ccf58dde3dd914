//! Adam, written out so that its moments can be saved and a run resumed exactly
//! (tch's optimizer keeps its state out of reach). Same update as `torch.optim.Adam`.
use crate::checkpoint;
use anyhow::{anyhow, Result};
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// Adam's state for a list of named parameters.
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// Number of updates done.
    pub step: u64,
    params: Vec<(String, Tensor)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
}

impl Adam {
    /// Adam over `params` with PyTorch's defaults (β = 0.9, 0.999; ε = 1e-8).
    pub fn new(params: Vec<(String, Tensor)>, lr: f64) -> Self {
        let zeros = |p: &Tensor| p.zeros_like().to_kind(Kind::Float);
        let exp_avg = params.iter().map(|(_, p)| zeros(p)).collect();
        let exp_avg_sq = params.iter().map(|(_, p)| zeros(p)).collect();
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            params,
            exp_avg,
            exp_avg_sq,
        }
    }

    /// Clears the parameters' gradients.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Whether every gradient is finite (used to skip steps under fp16 loss scaling).
    /// One check on the device and one read-back, not one per parameter.
    pub fn grads_finite(&self) -> bool {
        let flags: Vec<Tensor> = self
            .params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(|g| g.defined())
            .map(|g| g.isfinite().all())
            .collect();
        flags.is_empty() || Tensor::stack(&flags, 0).all().int64_value(&[]) != 0
    }

    /// Multiplies every gradient by `factor` (to undo a loss scale).
    pub fn scale_grads(&mut self, factor: f64) {
        tch::no_grad(|| {
            for (_, p) in &self.params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.g_mul_scalar_(factor);
                }
            }
        });
    }

    /// One Adam update from the current gradients.
    pub fn step(&mut self) {
        self.step += 1;
        let t = self.step as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2_sqrt = (1.0 - self.beta2.powi(t)).sqrt();
        let step_size = self.lr / bias1;
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter_mut().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let m = &mut self.exp_avg[i];
                let v = &mut self.exp_avg_sq[i];
                let _ = m.g_mul_scalar_(self.beta1);
                let _ = m.g_add_(&(&g * (1.0 - self.beta1)));
                let _ = v.g_mul_scalar_(self.beta2);
                let _ = v.g_add_(&(&g * (1.0 - self.beta2) * &g));
                let denom = v.sqrt() / bias2_sqrt + self.eps;
                let _ = p.g_sub_(&(&*m / &denom * step_size));
            }
        });
    }

    /// The moments and step count as named tensors, for the training state file.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        // float32 holds step counts exactly up to 2^24, far beyond any run.
        let mut out = vec![("adam.step".to_string(), Tensor::from(self.step as f32))];
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((
                format!("adam.exp_avg.{name}"),
                self.exp_avg[i].shallow_clone(),
            ));
            out.push((
                format!("adam.exp_avg_sq.{name}"),
                self.exp_avg_sq[i].shallow_clone(),
            ));
        }
        out
    }

    /// Restores the moments and step count saved by [`Adam::state_tensors`].
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let step = tensors
            .get("adam.step")
            .ok_or_else(|| anyhow!("missing tensor `adam.step`"))?
            .double_value(&[]);
        for (i, (name, _)) in self.params.iter().enumerate() {
            for (prefix, dst) in [
                ("adam.exp_avg.", &mut self.exp_avg[i]),
                ("adam.exp_avg_sq.", &mut self.exp_avg_sq[i]),
            ] {
                checkpoint::copy_named(tensors, &format!("{prefix}{name}"), dst)?;
            }
        }
        self.step = step as u64;
        Ok(())
    }
}
