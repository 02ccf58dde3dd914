//! libtorch's multi-tensor kernels that tch does not bind, from `csrc/fused.cpp`: the fused
//! Adam update, the fp16 unscale-and-check, and dropping gradients. Each is one call for all
//! parameters instead of a dozen small operations per parameter, which on CUDA is what a
//! training step of this small network spends most of its time launching.
use anyhow::{anyhow, Result};
use std::ffi::{c_char, c_int, c_void, CStr};
use tch::Tensor;

extern "C" {
    fn faststyle_fused_adam(
        params: *mut *mut c_void,
        grads: *mut *mut c_void,
        exp_avgs: *mut *mut c_void,
        exp_avg_sqs: *mut *mut c_void,
        n: c_int,
        step: *mut c_void,
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
    ) -> *const c_char;
    fn faststyle_unscale_check(
        grads: *mut *mut c_void,
        n: c_int,
        found_inf: *mut c_void,
        inv_scale: *mut c_void,
    ) -> *const c_char;
    fn faststyle_clear_grads(params: *mut *mut c_void, n: c_int) -> *const c_char;
}

/// The C++ side's handles (`at::Tensor*`); the kernels change the data, never the handles.
fn handles<'a>(tensors: impl IntoIterator<Item = &'a Tensor>) -> Vec<*mut c_void> {
    tensors
        .into_iter()
        .map(|t| t.as_ptr() as *mut c_void)
        .collect()
}

fn check(message: *const c_char) -> Result<()> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null result is a NUL-terminated string owned by the C++ side.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    Err(anyhow!(
        "{}",
        text.lines().next().unwrap_or("libtorch error")
    ))
}

/// Adam's moments and hyper-parameters for [`adam`].
pub struct AdamArgs<'a> {
    /// First moments, one per parameter, laid out as the parameter.
    pub exp_avgs: &'a [Tensor],
    /// Second moments, likewise.
    pub exp_avg_sqs: &'a [Tensor],
    /// The step number (after this update) as a float32 scalar on the parameters' device.
    pub step: &'a Tensor,
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Denominator term.
    pub eps: f64,
}

/// `torch.optim.Adam(fused=True)`'s update of `params` from `grads`, in place.
pub fn adam<'a>(
    params: impl IntoIterator<Item = &'a Tensor>,
    grads: &[Tensor],
    a: &AdamArgs,
) -> Result<()> {
    let (mut p, mut g) = (handles(params), handles(grads));
    let n = p.len();
    if g.len() != n || a.exp_avgs.len() != n || a.exp_avg_sqs.len() != n {
        return Err(anyhow!("fused Adam: lists of different lengths"));
    }
    let (mut m, mut v) = (handles(a.exp_avgs), handles(a.exp_avg_sqs));
    // SAFETY: every pointer is a live tensor handle for the duration of the call.
    check(unsafe {
        faststyle_fused_adam(
            p.as_mut_ptr(),
            g.as_mut_ptr(),
            m.as_mut_ptr(),
            v.as_mut_ptr(),
            n as c_int,
            a.step.as_ptr() as *mut c_void,
            a.lr,
            a.beta1,
            a.beta2,
            a.eps,
        )
    })
}

/// Multiplies every gradient by `inv_scale` (a float32 scalar tensor on their device) and
/// sets `found_inf` (likewise) to 1 when any value is not finite: one kernel for all.
pub fn unscale_and_check(grads: &[Tensor], found_inf: &Tensor, inv_scale: &Tensor) -> Result<()> {
    let mut g = handles(grads);
    // SAFETY: as in `adam`.
    check(unsafe {
        faststyle_unscale_check(
            g.as_mut_ptr(),
            g.len() as c_int,
            found_inf.as_ptr() as *mut c_void,
            inv_scale.as_ptr() as *mut c_void,
        )
    })
}

/// Drops the parameters' gradients (PyTorch's `zero_grad(set_to_none=True)`); the next
/// backward pass allocates them again, laid out as the parameters.
pub fn clear_grads<'a>(params: impl IntoIterator<Item = &'a Tensor>) -> Result<()> {
    let mut p = handles(params);
    // SAFETY: as in `adam`.
    check(unsafe { faststyle_clear_grads(p.as_mut_ptr(), p.len() as c_int) })
}
