//! The allocator gives a storm's memory back (src/memory.rs). The storm is
//! the soak's pattern in miniature: on several threads at once, answers
//! read into buffers that grow to the probe's 256 KiB bound, between small
//! allocations that live on (log lines, label strings, pooled state).
//! With glibc's defaults most of it stays resident after it is freed.
//!
//! One test in its own binary: the allocator settings are process-wide.

use testkit::procfs::rss_bytes;

const THREADS: usize = 4;
const BUFFERS_PER_THREAD: usize = 150;
const BODY: usize = 256 * 1024;

fn rss_mib() -> f64 {
    rss_bytes(std::process::id()) as f64 / 1048576.0
}

/// Reads `BUFFERS_PER_THREAD` bodies the way `read_bounded` does (chunks
/// appended to a growing Vec), all alive at once, each followed by a small
/// allocation that outlives the storm. Returns the survivors.
fn storm_thread(seed: u8) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut survivors = Vec::new();
    for i in 0..BUFFERS_PER_THREAD {
        let mut body: Vec<u8> = Vec::new();
        while body.len() < BODY {
            body.extend_from_slice(&[seed.wrapping_add(i as u8); 16 * 1024]);
        }
        bodies.push(body);
        survivors.push(format!("survivor {seed} {i}"));
    }
    assert!(bodies.iter().all(|b| b.len() == BODY));
    drop(bodies);
    survivors
}

fn storm() -> Vec<String> {
    let handles: Vec<_> = (0..THREADS)
        .map(|t| std::thread::spawn(move || storm_thread(t as u8)))
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("storm thread"))
        .collect()
}

#[test]
fn a_storm_of_large_buffers_is_given_back() {
    hfbreaker::memory::tune_allocator();
    // Warm up the threads' arenas as the daemon's would be.
    let mut kept = storm();
    hfbreaker::memory::trim();
    let before = rss_mib();
    for _ in 0..3 {
        kept.extend(storm());
        hfbreaker::memory::trim();
    }
    let after = rss_mib();
    let peak = (THREADS * BUFFERS_PER_THREAD * BODY) as f64 / 1048576.0;
    eprintln!(
        "RSS before {before:.1} MiB, after three storms {after:.1} MiB (each storm held {peak:.0} MiB)"
    );
    assert_eq!(kept.len(), 4 * THREADS * BUFFERS_PER_THREAD);
    assert!(
        after - before < 10.0,
        "storms of {peak:.0} MiB left {:.1} MiB resident ({before:.1} → {after:.1} MiB)",
        after - before
    );
}
