//! Adam, written out so that its moments can be saved and a run resumed exactly
//! (tch's optimizer keeps its state out of reach). Same update as `torch.optim.Adam`, by
//! default through libtorch's fused kernel (`fused=True`): one call for all parameters.
use crate::{checkpoint, fused};
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
    /// The step number on the parameters' device, as the fused kernel reads it.
    step_on_device: Tensor,
    /// Whether updates go through the fused kernel (else one small operation at a time).
    pub fused: bool,
}

impl Adam {
    /// Adam over `params` with PyTorch's defaults (β = 0.9, 0.999; ε = 1e-8).
    pub fn new(params: Vec<(String, Tensor)>, lr: f64) -> Self {
        let zeros = |p: &Tensor| p.zeros_like().to_kind(Kind::Float);
        let exp_avg = params.iter().map(|(_, p)| zeros(p)).collect();
        let exp_avg_sq = params.iter().map(|(_, p)| zeros(p)).collect();
        let device = params.first().map_or(tch::Device::Cpu, |(_, p)| p.device());
        Self {
            step_on_device: Tensor::zeros([], (Kind::Float, device)),
            fused: true,
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

    /// Sets β₁ and β₂ (PyTorch's defaults are 0.9 and 0.999).
    pub fn set_betas(&mut self, [beta1, beta2]: [f64; 2]) {
        self.beta1 = beta1;
        self.beta2 = beta2;
    }

    /// Drops the parameters' gradients (backward allocates them anew, which costs less than
    /// zeroing them one by one).
    pub fn zero_grad(&mut self) -> Result<()> {
        fused::clear_grads(self.params.iter().map(|(_, p)| p))
    }

    /// The parameters' gradients, those that have one.
    pub fn grads(&self) -> Vec<Tensor> {
        self.params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(|g| g.defined())
            .collect()
    }

    /// Multiplies every gradient by `factor` (to undo a loss scale) and tells whether they are
    /// all finite: one kernel over all of them and one read-back.
    pub fn unscale_grads(&mut self, factor: f64) -> Result<bool> {
        let grads = self.grads();
        let Some(first) = grads.first() else {
            return Ok(true);
        };
        let options = (Kind::Float, first.device());
        let found_inf = Tensor::zeros([], options);
        let inv_scale = Tensor::full([], factor, options);
        fused::unscale_and_check(&grads, &found_inf, &inv_scale)?;
        Ok(found_inf.double_value(&[]) == 0.0)
    }

    /// One Adam update from the current gradients.
    pub fn step(&mut self) -> Result<()> {
        self.step += 1;
        let all_have_grads = self.params.iter().all(|(_, p)| p.grad().defined());
        if self.fused && all_have_grads {
            let _ = self.step_on_device.fill_(self.step as f64);
            let args = fused::AdamArgs {
                exp_avgs: &self.exp_avg,
                exp_avg_sqs: &self.exp_avg_sq,
                step: &self.step_on_device,
                lr: self.lr,
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
            };
            return fused::adam(self.params.iter().map(|(_, p)| p), &self.grads(), &args);
        }
        self.step_one_by_one();
        Ok(())
    }

    /// The same update written out parameter by parameter (`torch.optim.Adam`'s for-loop).
    fn step_one_by_one(&mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameters (one of them channels-last, as training lays out convolution weights) with
    /// the gradients of a fixed loss.
    fn setup(seed: i64) -> Vec<(String, Tensor)> {
        // From arange, not libtorch's global generator, which parallel tests share.
        let values = |n: i64, shift: f64| {
            (Tensor::arange(n, tch::kind::FLOAT_CPU) * 0.37 + shift + seed as f64).sin()
        };
        let w = crate::device::channels_last(&values(108, 0.0).view([4, 3, 3, 3]))
            .set_requires_grad(true);
        let b = values(4, 1.0).set_requires_grad(true);
        vec![("w".into(), w), ("b".into(), b)]
    }

    fn handles(params: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
        params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect()
    }

    fn backward(params: &[(String, Tensor)], k: f64) {
        let loss =
            (&params[0].1 * k).sin().sum(Kind::Float) + (&params[1].1 * k).exp().sum(Kind::Float);
        loss.backward();
    }

    #[test]
    fn fused_update_equals_the_one_by_one_update() {
        let (a, b) = (setup(3), setup(3));
        let mut fused = Adam::new(handles(&a), 1e-2);
        let mut plain = Adam::new(handles(&b), 1e-2);
        plain.fused = false;
        for step in 0..5 {
            for (params, adam) in [(&a, &mut fused), (&b, &mut plain)] {
                adam.zero_grad().unwrap();
                backward(params, 1.0 + step as f64);
                adam.step().unwrap();
            }
        }
        for ((_, x), (_, y)) in a.iter().zip(&b) {
            let diff = (x - y).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "fused and one-by-one Adam differ by {diff}");
            assert!(x.grad().defined());
        }
        assert_eq!(fused.step, 5);
        let moved = (&a[1].1 - &setup(3)[1].1).abs().max().double_value(&[]);
        assert!(moved > 1e-3, "the parameters did not move");
    }

    #[test]
    fn unscaling_divides_and_detects_overflow() {
        let params = setup(5);
        let mut adam = Adam::new(handles(&params), 1e-3);
        backward(&params, 2.0);
        let g = params[1].1.grad().copy();
        assert!(adam.unscale_grads(0.25).unwrap());
        let diff = (params[1].1.grad() - &g * 0.25)
            .abs()
            .max()
            .double_value(&[]);
        assert_eq!(diff, 0.0);
        let mut grad = params[0].1.grad();
        let _ = grad.fill_(f64::INFINITY);
        assert!(!adam.unscale_grads(1.0).unwrap());
    }
}
