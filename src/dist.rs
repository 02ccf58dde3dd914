//! PyTorch's distributed engine (c10d, inside the libtorch we link) from `csrc/dist.cpp`: the
//! TCPStore rendezvous, a process group (Gloo for CPU tensors, NCCL for CUDA ones) with the
//! collectives that data-parallel training needs, and DDP's gradient `Reducer`, which averages
//! gradients in buckets, each all-reduced while the backward pass goes on.
use anyhow::{anyhow, Result};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::time::Duration;
use tch::{Device, Tensor};

extern "C" {
    fn faststyle_dist_join(
        host: *const c_char,
        port: c_int,
        prefix: *const c_char,
        rank: c_int,
        world: c_int,
        serve: c_int,
        timeout_ms: i64,
        cuda_device: c_int,
        out: *mut *mut c_void,
    ) -> *const c_char;
    fn faststyle_dist_all_reduce(
        group: *mut c_void,
        tensor: *mut c_void,
        op: c_int,
    ) -> *const c_char;
    fn faststyle_dist_broadcast(
        group: *mut c_void,
        tensor: *mut c_void,
        root: c_int,
    ) -> *const c_char;
    fn faststyle_dist_store_set(
        group: *mut c_void,
        key: *const c_char,
        value: *const c_char,
    ) -> *const c_char;
    fn faststyle_dist_store_check(
        group: *mut c_void,
        key: *const c_char,
        found: *mut c_int,
        value: *mut *const c_char,
    ) -> *const c_char;
    fn faststyle_dist_reducer_new(
        group: *mut c_void,
        params: *mut *mut c_void,
        names: *const *const c_char,
        n: c_int,
        bucket_bytes: i64,
        first_bucket_bytes: i64,
        out: *mut *mut c_void,
    ) -> *const c_char;
    fn faststyle_dist_reducer_prepare(reducer: *mut c_void) -> *const c_char;
}

/// The first line of a C++ error (c10's messages go on with a backtrace).
fn check(message: *const c_char) -> Result<()> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null result is a NUL-terminated string owned by the C++ side.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    Err(anyhow!("{}", first_line(&text)))
}

/// The first non-empty line of a message.
pub fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("c10d error")
}

fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| anyhow!("`{s}` contains a NUL byte"))
}

/// Where and how a process meets the others.
#[derive(Clone, Debug)]
pub struct JoinOptions {
    /// Host of the TCPStore.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Prefix of every key this run sets in the store (empty: none).
    pub prefix: String,
    /// This process's rank, from 0.
    pub rank: usize,
    /// Processes in all.
    pub world: usize,
    /// Whether this process hosts the store (rank 0, unless a launcher's agent hosts it).
    pub serve: bool,
    /// Bound on the rendezvous and on every collective.
    pub timeout: Duration,
    /// This rank's device: a CUDA device adds NCCL for CUDA tensors.
    pub device: Device,
}

/// Reductions of [`Group::all_reduce`].
#[derive(Clone, Copy, Debug)]
pub enum ReduceOp {
    /// Sum over the ranks.
    Sum = 0,
    /// Maximum.
    Max = 1,
    /// Minimum.
    Min = 2,
}

/// This process's membership of a process group (c10d's `ProcessGroup` and its store).
///
/// It is never freed: the process leaves the group by exiting, so that an error can never hang
/// in the teardown of a group whose peers are gone.
pub struct Group {
    handle: *mut c_void,
    /// This process's rank.
    pub rank: usize,
    /// Processes in all.
    pub world: usize,
}

impl Group {
    /// Meets the other processes and sets up the group (waits for all of them, up to the
    /// timeout).
    pub fn join(o: &JoinOptions) -> Result<Self> {
        let host = c_string(&o.host)?;
        let prefix = c_string(&o.prefix)?;
        let cuda = match o.device {
            Device::Cuda(n) => n as c_int,
            _ => -1,
        };
        let mut handle = std::ptr::null_mut();
        // SAFETY: the strings live for the call; `handle` receives the new group.
        check(unsafe {
            faststyle_dist_join(
                host.as_ptr(),
                c_int::from(o.port),
                prefix.as_ptr(),
                o.rank as c_int,
                o.world as c_int,
                c_int::from(o.serve),
                o.timeout.as_millis() as i64,
                cuda,
                &mut handle,
            )
        })?;
        Ok(Self {
            handle,
            rank: o.rank,
            world: o.world,
        })
    }

    /// Reduces `t` over the ranks, in place (CPU tensors go through Gloo, CUDA ones NCCL).
    pub fn all_reduce(&self, t: &Tensor, op: ReduceOp) -> Result<()> {
        // SAFETY: `t` is a live tensor handle for the duration of the call.
        check(unsafe {
            faststyle_dist_all_reduce(self.handle, t.as_ptr() as *mut c_void, op as c_int)
        })
    }

    /// Copies rank `root`'s `t` into every rank's, in place.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<()> {
        // SAFETY: as in `all_reduce`.
        check(unsafe {
            faststyle_dist_broadcast(self.handle, t.as_ptr() as *mut c_void, root as c_int)
        })
    }

    /// Sets `key` in the store that the ranks met through.
    pub fn store_set(&self, key: &str, value: &str) -> Result<()> {
        let (k, v) = (c_string(key)?, c_string(value)?);
        // SAFETY: the strings live for the call.
        check(unsafe { faststyle_dist_store_set(self.handle, k.as_ptr(), v.as_ptr()) })
    }

    /// The value of `key` in the store, if set (without waiting for it).
    pub fn store_get(&self, key: &str) -> Result<Option<String>> {
        let k = c_string(key)?;
        let mut found: c_int = 0;
        let mut value: *const c_char = std::ptr::null();
        // SAFETY: `found` and `value` receive the answer; `value` is a C++ thread-local string
        // read before the next call.
        check(unsafe {
            faststyle_dist_store_check(self.handle, k.as_ptr(), &mut found, &mut value)
        })?;
        if found == 0 || value.is_null() {
            return Ok(None);
        }
        // SAFETY: as above.
        Ok(Some(
            unsafe { CStr::from_ptr(value) }
                .to_string_lossy()
                .into_owned(),
        ))
    }
}

/// DDP's gradient reducer over a list of parameters (c10d's `Reducer`). Never freed, like
/// [`Group`]: its hooks stay on the parameters' gradient accumulators for the process's life.
pub struct Reducer {
    handle: *mut c_void,
}

/// DistributedDataParallel's bucket sizes: 25 MiB, the first (the last layers' gradients,
/// which arrive first) 1 MiB so that its all-reduce starts early.
pub const BUCKET_BYTES: i64 = 25 << 20;
/// The first bucket's size.
pub const FIRST_BUCKET_BYTES: i64 = 1 << 20;

impl Reducer {
    /// A reducer that averages the gradients of `params` over `group` in buckets of
    /// `bucket_bytes`.
    pub fn new(group: &Group, params: &[(String, Tensor)], bucket_bytes: i64) -> Result<Self> {
        let mut handles: Vec<*mut c_void> = params
            .iter()
            .map(|(_, p)| p.as_ptr() as *mut c_void)
            .collect();
        let names = params
            .iter()
            .map(|(n, _)| c_string(n))
            .collect::<Result<Vec<_>>>()?;
        let name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let mut handle = std::ptr::null_mut();
        // SAFETY: the tensor handles and names live for the call; the reducer keeps its own
        // references to the tensors.
        check(unsafe {
            faststyle_dist_reducer_new(
                group.handle,
                handles.as_mut_ptr(),
                name_ptrs.as_ptr(),
                handles.len() as c_int,
                bucket_bytes,
                FIRST_BUCKET_BYTES.min(bucket_bytes),
                &mut handle,
            )
        })?;
        Ok(Self { handle })
    }

    /// Arms the reducer for the next backward pass: its gradients come out averaged.
    pub fn prepare(&self) -> Result<()> {
        // SAFETY: the handle is a live reducer.
        check(unsafe { faststyle_dist_reducer_prepare(self.handle) })
    }
}
