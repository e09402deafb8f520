//! glibc's allocator keeps memory the process freed: blocks up to its dynamic mmap threshold (which
//! grows to 32 MiB as large blocks are freed) come from arenas, one per core and more, and an arena
//! gives memory back only when its top 128 KiB+ is free. Turumba's bursts (100,000-recipient sends,
//! imports) allocate and free many mid-sized buffers on several threads: measured, the single SQLite
//! process peaked at 126–127 MiB during the 100,000-recipient send, and at 93 MiB with both
//! thresholds fixed at 128 KiB (`GLIBC_TUNABLES=glibc.malloc.trim_threshold=131072:
//! glibc.malloc.mmap_threshold=131072`), in the same time (BENCHMARKS.md). [`keep_heap_small`] sets
//! the same from inside the process, unless the operator set either through the environment.
//!
//! Holds one of the application's two `unsafe` crates: the `mallopt` calls.

/// Blocks from this size on get their own mapping, returned to the system when freed.
pub const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Free memory at the top of the heap beyond this is returned to the system.
pub const TRIM_THRESHOLD: i32 = 128 * 1024;

/// What [`keep_heap_small`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Tuned {
    Set,
    /// The environment already says how (`GLIBC_TUNABLES` or `MALLOC_*_THRESHOLD_`).
    LeftToEnvironment,
    /// Not glibc: nothing to set.
    NotGlibc,
    /// glibc refused a value.
    Refused,
}

/// Fixes glibc's mmap and trim thresholds at [`MMAP_THRESHOLD`] and [`TRIM_THRESHOLD`]. Call it first
/// thing in `main`, before other threads allocate.
pub fn keep_heap_small() -> Tuned {
    let set_by_operator = ["GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if set_by_operator {
        return Tuned::LeftToEnvironment;
    }
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> Tuned {
    // SAFETY: `mallopt` takes two integers and changes the allocator's parameters under its own lock.
    let ok = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    };
    if ok { Tuned::Set } else { Tuned::Refused }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> Tuned {
    Tuned::NotGlibc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_takes_the_thresholds() {
        if cfg!(all(target_os = "linux", target_env = "gnu")) && std::env::var_os("GLIBC_TUNABLES").is_none() {
            assert_eq!(set_thresholds(), Tuned::Set);
        }
    }
}
