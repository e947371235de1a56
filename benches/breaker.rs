//! The breaker's hot path: try_acquire + record, alone and with two threads
//! sharing one breaker behind a mutex (how the daemon holds it).
//! The pybreaker baseline runs in the same command: bench/breaker.

use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hfbreaker::breaker::{Breaker, BreakerConfig, Outcome};

const OK: Outcome = Outcome::Success {
    duration: Duration::from_millis(3),
};

fn uncontended(c: &mut Criterion) {
    let now = Instant::now();
    let mut b = Breaker::new(BreakerConfig::default(), now, 1);
    c.bench_function("breaker/admit+record", |bench| {
        bench.iter(|| {
            let (p, _) = b.try_acquire(black_box(now));
            black_box(b.record(p.unwrap(), black_box(OK), now))
        })
    });
    let shared = Mutex::new(Breaker::new(BreakerConfig::default(), now, 1));
    c.bench_function("breaker/admit+record, mutex, 1 thread", |bench| {
        bench.iter(|| {
            let mut b = shared.lock().unwrap();
            let (p, _) = b.try_acquire(black_box(now));
            black_box(b.record(p.unwrap(), black_box(OK), now))
        })
    });
}

/// Per-call time with `threads` threads hammering one mutex-guarded breaker.
fn per_call(threads: usize, iters: u64) -> Duration {
    let now = Instant::now();
    let shared = Arc::new(Mutex::new(Breaker::new(BreakerConfig::default(), now, 1)));
    let barrier = Arc::new(Barrier::new(threads));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let s = shared.clone();
            let bar = barrier.clone();
            std::thread::spawn(move || {
                bar.wait();
                let t = Instant::now();
                for _ in 0..iters {
                    let mut b = s.lock().unwrap();
                    let (p, _) = b.try_acquire(now);
                    black_box(b.record(p.unwrap(), OK, now));
                }
                t.elapsed()
            })
        })
        .collect();
    let worst = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap();
    let _ = start;
    worst / iters as u32
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker/contention");
    for threads in [1usize, 2] {
        g.bench_function(format!("{threads} thread(s), per call"), |bench| {
            bench.iter_custom(|iters| per_call(threads, iters.max(1)) * iters.max(1) as u32)
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = uncontended, contended
}
criterion_main!(benches);
