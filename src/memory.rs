//! Giving memory back. A probe reads an answer into a buffer of up to
//! `max_body_bytes`, so a storm of huge or hanging answers from thousands of
//! endpoints briefly needs hundreds of megabytes. glibc's allocator keeps
//! what such a storm freed: it raises its mmap threshold after the first
//! large free (so later large buffers come from the heap, where small
//! long-lived allocations pin them) and only returns the top of each heap.
//! The soak (`scripts/soak`) measured 62 → 271 MiB after 30 minutes of
//! storms, most of it free memory that `malloc_trim` released at once.
//!
//! Two remedies, both cheap: a fixed mmap threshold, so that every buffer of
//! [`MMAP_THRESHOLD`] or more is its own mapping, returned to the kernel
//! when freed; and [`trim`] every [`TRIM_INTERVAL`], which returns the free
//! pages inside the heaps too. Only on glibc; elsewhere both do nothing.

use std::time::Duration;

/// Allocations at least this large are mapped on their own. Probe and
/// gateway answers above it are rare and large, so the extra `mmap` call is
/// small next to reading them; everything smaller stays on the heap.
pub const MMAP_THRESHOLD: usize = 64 * 1024;

/// How often free heap pages are handed back: often enough that a storm's
/// memory is back within a scrape or two, rarely enough to cost nothing
/// (one trim of a 100 MB heap takes well under a millisecond).
pub const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Sets the allocator up to return large buffers; call once at start.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters (under the
    // allocator's lock); a rejected value leaves the defaults.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

/// Returns free heap memory to the kernel. Returns whether any was released.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim walks the allocator's own free lists under its
        // locks; any thread may call it at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// What the allocator holds, in bytes: the figures that tell a leak (in use
/// grows) from fragmentation (free grows while in use does not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocatorBytes {
    /// In chunks handed out from the heaps (all arenas).
    pub in_use: u64,
    /// Free inside the heaps, kept by the allocator (part of it may have
    /// been returned to the kernel by [`trim`] and is not resident).
    pub free: u64,
    /// Allocations of [`MMAP_THRESHOLD`] or more, each its own mapping.
    pub mapped: u64,
}

/// The allocator's figures now, summed over its arenas; None where the
/// allocator is not glibc's. Walks the free lists under the arenas' locks:
/// for a scrape, not a hot path.
pub fn allocator_bytes() -> Option<AllocatorBytes> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 fills and returns a struct by value; it only
        // reads the allocator's state under its locks.
        let m = unsafe { libc::mallinfo2() };
        Some(AllocatorBytes {
            in_use: m.uordblks as u64,
            free: m.fordblks as u64,
            mapped: m.hblkhd as u64,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Trims every [`TRIM_INTERVAL`] until the runtime stops. Inline on a
/// worker: a trim is short (see `docs/performance.md`, "Soak"), and a
/// blocking thread would come and go with every tick.
pub async fn trim_periodically() {
    let mut tick = tokio::time::interval(TRIM_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        trim();
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// in_use follows live heap allocations up and down (other tests'
    /// threads allocate meanwhile: hence the wide margins).
    #[test]
    fn in_use_follows_live_allocations() {
        const MIB: u64 = 1024 * 1024;
        let before = allocator_bytes().unwrap();
        // 64 MiB in 1 KiB pieces: all below the mmap threshold, on the heap.
        let live: Vec<Vec<u8>> = (0..64 * 1024).map(|i| vec![i as u8; 1024]).collect();
        let during = allocator_bytes().unwrap();
        assert!(
            during.in_use >= before.in_use + 56 * MIB,
            "{before:?} -> {during:?}"
        );
        // One large buffer is mapped on its own.
        tune_allocator();
        let big = vec![1u8; 8 * MIB as usize];
        let mapped = allocator_bytes().unwrap();
        assert!(mapped.mapped >= during.mapped + 8 * MIB, "{mapped:?}");
        drop(big);
        drop(live);
        let after = allocator_bytes().unwrap();
        assert!(
            after.in_use + 48 * MIB <= during.in_use,
            "{during:?} -> {after:?}"
        );
    }
}
