// PyTorch's distributed engine (c10d, inside libtorch_cpu) for data-parallel training, which
// tch does not bind: the TCPStore rendezvous, a process group (Gloo for CPU tensors, plus NCCL
// for CUDA ones, see dist_nccl.cpp), the collectives that training needs, and DDP's gradient
// Reducer, which all-reduces gradients in buckets while the backward pass is still running.
// Every function returns NULL on success, else the exception's message (valid until the next
// call on the same thread).
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <c10/util/Logging.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

// From dist_nccl.cpp: an NCCL backend bound to CUDA device `device`, returned with one
// reference (NULL and a message when this build or machine has no NCCL).
extern "C" const char *faststyle_dist_nccl_backend(void *store, int rank, int world, int device,
                                                   int64_t timeout_ms, void **backend);

namespace {
thread_local std::string last_error;
thread_local std::string last_value;

template <typename F> const char *guarded(F f) {
    try {
        f();
        return nullptr;
    } catch (const std::exception &e) {
        last_error = e.what();
        return last_error.c_str();
    }
}

// One process's membership of the job: the store it met the others through, and the group.
struct Group {
    c10::intrusive_ptr<c10d::Store> store;
    c10::intrusive_ptr<c10d::ProcessGroup> pg;
    std::chrono::milliseconds timeout;
};

Group *group(void *g) { return static_cast<Group *>(g); }
at::Tensor &tensor(void *t) { return *static_cast<at::Tensor *>(t); }

std::string first_line(const char *text) {
    std::string s(text);
    return s.substr(0, s.find('\n'));
}

// c10's log levels: c10d logs each failed try and warning with a backtrace; the error that
// ends the attempt reaches the caller as an exception anyway.
constexpr int kLogError = 2, kLogFatal = 3;

// Waits for a collective: on the CPU for its result (bounded by the group's timeout); on CUDA
// only makes the current stream wait for it (NCCL's watchdog bounds it), as torch does.
void wait(const c10::intrusive_ptr<c10d::Work> &work, const at::Tensor &t,
          std::chrono::milliseconds timeout) {
    work->wait(t.is_cuda() ? kNoTimeout : timeout);
}

// The process group over `store`: Gloo for CPU tensors, NCCL too for CUDA ones.
void join_group(const c10::intrusive_ptr<c10d::Store> &store, int rank, int world,
                std::chrono::milliseconds timeout, int cuda_device, void **out) {
    // The group's keys and its backends' under prefixes of their own, as torch lays them out.
    auto pg = c10::make_intrusive<c10d::ProcessGroup>(
        c10::make_intrusive<c10d::PrefixStore>("default_pg/", store), rank, world);

    // One device per rank: NCCL's communicator and the group's barriers use this one.
    if (cuda_device >= 0) pg->setBoundDeviceId(at::Device(at::kCUDA, cuda_device));
    auto gloo_opts = c10d::ProcessGroupGloo::Options::create_default(timeout);
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("default_pg/cpu/", store), rank, world,
        gloo_opts);
    gloo->setSequenceNumberForGroup();
    pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
    pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    if (cuda_device >= 0) {
        c10::intrusive_ptr<c10d::Store> nccl_store =
            c10::make_intrusive<c10d::PrefixStore>("default_pg/cuda/", store);
        void *raw = nullptr;
        const char *err = faststyle_dist_nccl_backend(&nccl_store, rank, world, cuda_device,
                                                      timeout.count(), &raw);
        if (err != nullptr) throw std::runtime_error(err);
        auto nccl = c10::intrusive_ptr<c10d::Backend>::reclaim(
            static_cast<c10d::Backend *>(raw));
        pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
        pg->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
    }
    *out = new Group{store, pg, timeout};
}
}  // namespace

extern "C" {

// Meets the other processes through the TCPStore at host:port (hosted here when `serve`), then
// sets up the group: Gloo for CPU tensors and, when cuda_device >= 0, NCCL on that device for
// CUDA tensors. `timeout_ms` bounds the rendezvous and every later collective. Every key goes
// under `prefix` (an elastic restart's attempt, so that none meets the keys of the last one,
// which torchrun's agent store keeps). A failure's
// message starts with `store: ` (the store cannot be reached or hosted) or `peers: ` (not
// every rank arrived in time).
const char *faststyle_dist_join(const char *host, int port, const char *prefix, int rank,
                                int world, int serve, int64_t timeout_ms, int cuda_device,
                                void **out) {
    FLAGS_caffe2_log_level = kLogFatal;
    const char *err = guarded([&] {
        auto timeout = std::chrono::milliseconds(timeout_ms);
        c10d::TCPStoreOptions opts;
        opts.port = static_cast<uint16_t>(port);
        opts.isServer = serve != 0;
        opts.numWorkers = world;
        opts.waitWorkers = false;
        opts.timeout = timeout;
        opts.multiTenant = true;
        c10::intrusive_ptr<c10d::Store> store;
        try {
            store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
        } catch (const std::exception &e) {
            throw std::runtime_error("store: " + first_line(e.what()));
        }
        if (*prefix != 0) store = c10::make_intrusive<c10d::PrefixStore>(prefix, store);
        try {
            join_group(store, rank, world, timeout, cuda_device, out);
        } catch (const std::exception &e) {
            throw std::runtime_error("peers: " + first_line(e.what()));
        }
    });
    FLAGS_caffe2_log_level = kLogError;
    return err;
}


// op: 0 sum, 1 max, 2 min. In place; waits for the result.
const char *faststyle_dist_all_reduce(void *g, void *t, int op) {
    return guarded([&] {
        static const c10d::ReduceOp::RedOpType ops[] = {
            c10d::ReduceOp::SUM, c10d::ReduceOp::MAX, c10d::ReduceOp::MIN};
        c10d::AllreduceOptions opts;
        opts.reduceOp = c10d::ReduceOp(ops[op]);
        opts.timeout = group(g)->timeout;
        std::vector<at::Tensor> tensors{tensor(t)};
        wait(group(g)->pg->allreduce(tensors, opts), tensor(t), group(g)->timeout);
    });
}

// Copies rank `root`'s tensor into everyone's, in place; waits for it.
const char *faststyle_dist_broadcast(void *g, void *t, int root) {
    return guarded([&] {
        c10d::BroadcastOptions opts;
        opts.rootRank = root;
        opts.timeout = group(g)->timeout;
        std::vector<at::Tensor> tensors{tensor(t)};
        wait(group(g)->pg->broadcast(tensors, opts), tensor(t), group(g)->timeout);
    });
}

// Sets a key of the store (under this program's prefix).
const char *faststyle_dist_store_set(void *g, const char *key, const char *value) {
    return guarded([&] {
        std::string v(value);
        group(g)->store->set(std::string("faststyle/") + key,
                             std::vector<uint8_t>(v.begin(), v.end()));
    });
}

// The value of a key, or *found = 0 when it is not set (never waits for it).
const char *faststyle_dist_store_check(void *g, const char *key, int *found,
                                       const char **value) {
    return guarded([&] {
        std::string k = std::string("faststyle/") + key;
        *found = group(g)->store->check({k}) ? 1 : 0;
        if (*found) {
            auto bytes = group(g)->store->get(k);
            last_value.assign(bytes.begin(), bytes.end());
            *value = last_value.c_str();
        }
    });
}

// DDP's Reducer over n parameters: from the next backward pass on, after each
// faststyle_dist_reducer_prepare, their gradients are averaged over the group in buckets of at
// most bucket_bytes (the first of first_bucket_bytes), each all-reduced as soon as all of its
// gradients exist. The first pass uses one bucket and records the order in which gradients
// arrive; the buckets are then rebuilt in that order, as DistributedDataParallel does.
const char *faststyle_dist_reducer_new(void *g, void **params, const char **names, int n,
                                       int64_t bucket_bytes, int64_t first_bucket_bytes,
                                       void **out) {
    return guarded([&] {
        std::vector<at::Tensor> ps;
        std::unordered_map<size_t, std::string> by_index;
        std::vector<size_t> all;
        for (int i = 0; i < n; i++) {
            ps.push_back(tensor(params[i]));
            by_index[i] = names[i];
            all.push_back(i);
        }
        *out = new c10d::Reducer(ps, {all}, group(g)->pg, std::vector<bool>(n, false),
                                 bucket_bytes, /*find_unused_parameters=*/false,
                                 /*gradient_as_bucket_view=*/false, by_index, first_bucket_bytes,
                                 /*skip_all_reduce_unused_params=*/false,
                                 /*use_python_reducer=*/false, {});
    });
}

// Before each backward pass whose gradients are to be averaged (the fp16 retry of a batch is
// another pass). Rebuilds the buckets once, after the first pass, on every rank alike.
const char *faststyle_dist_reducer_prepare(void *r) {
    return guarded([&] {
        auto reducer = static_cast<c10d::Reducer *>(r);
        reducer->rebuild_buckets();
        reducer->prepare_for_forward();
        reducer->prepare_for_backward({});
    });
}
}
