// c10d's NCCL backend for dist.cpp, in a file of its own: its headers need CUDA's and NCCL's,
// which only a CUDA build of libtorch brings (build.rs defines FASTSTYLE_NCCL then). Without
// them this file still defines the function, which then says why there is no NCCL.
#include <cstdint>

#ifdef FASTSTYLE_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>
#include <string>

namespace {
thread_local std::string last_error;
}

extern "C" const char *faststyle_dist_nccl_backend(void *store, int rank, int world, int device,
                                                   int64_t timeout_ms, void **backend) {
    try {
        auto &s = *static_cast<c10::intrusive_ptr<c10d::Store> *>(store);
        c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
        auto opts = c10d::ProcessGroupNCCL::Options::create();
        // Collectives that do not finish in time are aborted by NCCL's watchdog, which ends
        // the process with an error (TORCH_NCCL_ASYNC_ERROR_HANDLING's default).
        opts->timeout = std::chrono::milliseconds(timeout_ms);
        auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(s, rank, world, opts);
        nccl->setSequenceNumberForGroup();
        *backend = static_cast<c10d::Backend *>(nccl.release());
        return nullptr;
    } catch (const std::exception &e) {
        last_error = e.what();
        return last_error.c_str();
    }
}
#else
extern "C" const char *faststyle_dist_nccl_backend(void *, int, int, int, int64_t, void **) {
    return "this faststyle was built against a libtorch without CUDA, so it has no NCCL; "
           "distributed training runs on the CPU (--device cpu)";
}
#endif
