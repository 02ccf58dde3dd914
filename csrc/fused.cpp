// libtorch's multi-tensor kernels that tch does not bind (it skips operators that take lists
// of tensors to update in place): the fused Adam update, the fp16 loss-scale check, and
// clearing gradients. One kernel launch for all parameters instead of a dozen per parameter.
// Each function returns NULL on success, else the exception's message (valid until the next
// call on the same thread).
#include <ATen/ATen.h>
#include <string>
#include <vector>

namespace {
thread_local std::string last_error;

std::vector<at::Tensor> list(void **tensors, int n) {
    std::vector<at::Tensor> out;
    out.reserve(n);
    for (int i = 0; i < n; i++) out.push_back(*static_cast<at::Tensor *>(tensors[i]));
    return out;
}

template <typename F> const char *guarded(F f) {
    try {
        f();
        return nullptr;
    } catch (const std::exception &e) {
        last_error = e.what();
        return last_error.c_str();
    }
}
}  // namespace

extern "C" {

// torch.optim.Adam(fused=True)'s update of n parameters; `step` is one float32 scalar tensor
// on the parameters' device holding the step number (already incremented).
const char *faststyle_fused_adam(void **params, void **grads, void **exp_avgs, void **exp_avg_sqs,
                                 int n, void *step, double lr, double beta1, double beta2,
                                 double eps) {
    return guarded([&] {
        at::Tensor s = *static_cast<at::Tensor *>(step);
        std::vector<at::Tensor> steps(n, s);
        at::_fused_adam_(list(params, n), list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n),
                         {}, steps, lr, beta1, beta2, 0.0, eps, false, false);
    });
}

// Multiplies every gradient by inv_scale and sets found_inf to 1 if any was not finite.
const char *faststyle_unscale_check(void **grads, int n, void *found_inf, void *inv_scale) {
    return guarded([&] {
        at::Tensor found = *static_cast<at::Tensor *>(found_inf);
        at::_amp_foreach_non_finite_check_and_unscale_(list(grads, n), found,
                                                      *static_cast<at::Tensor *>(inv_scale));
    });
}

// Drops the gradients (PyTorch's zero_grad(set_to_none=True)): backward allocates new ones.
const char *faststyle_clear_grads(void **params, int n) {
    return guarded([&] {
        for (int i = 0; i < n; i++) static_cast<at::Tensor *>(params[i])->mutable_grad().reset();
    });
}
}
