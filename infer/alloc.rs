//! glibc's allocator set for libtorch's large, short-lived tensors. By default every block
//! over a few megabytes is a fresh mmap, returned to the kernel when freed, so each layer's
//! output pays for page faults and zeroing again: measured here, 2.5 of 6.7 CPU seconds of a
//! 1024² photo were in the kernel. Served from the heap and kept there, they cost 0.6 s, for
//! about 10% more peak memory.
/// Large blocks from the heap, and freed memory kept for the next layer (Linux, glibc).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    // From glibc's malloc.h.
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_MAX: i32 = -4;
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        mallopt(M_MMAP_MAX, 0);
        mallopt(M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Elsewhere the system allocator's defaults stay.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}
