//! The breaker's hot path, admit + record of a healthy probe: alone (with a
//! fixed and with a learned slow-call threshold), and with one and two
//! threads sharing one breaker behind a Mutex, as the daemon holds it. The pybreaker baseline runs in the same command:
//! scripts/bench/breaker.

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
}

/// The same with `slow_call_duration: auto`, warmed up: each success also
/// computes the learned threshold (one exp) and teaches the baseline (one
/// ln, one exp).
fn learned(c: &mut Criterion) {
    let t0 = Instant::now();
    let cfg = BreakerConfig {
        slow_call_rate_threshold: 0.5,
        adaptive: Some(hfbreaker::baseline::AdaptiveConfig::default()),
        ..BreakerConfig::default()
    };
    let mut b = Breaker::new(cfg, t0, 1);
    for k in 0..20 {
        let now = t0 + Duration::from_secs(k);
        let (p, _) = b.try_acquire(now);
        b.record(p.unwrap(), OK, now);
    }
    assert!(b.latency_baseline().is_some(), "warmed up");
    let now = t0 + Duration::from_secs(20);
    c.bench_function("breaker/admit+record_auto", |bench| {
        bench.iter(|| {
            let (p, _) = b.try_acquire(black_box(now));
            black_box(b.record(p.unwrap(), black_box(OK), now))
        })
    });
}

/// Mean time per call for one of `threads` threads running `iters` calls at once.
fn per_call(threads: usize, iters: u64, call: Arc<dyn Fn() + Send + Sync>) -> Duration {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let bar = barrier.clone();
            let call = call.clone();
            std::thread::spawn(move || {
                bar.wait();
                let t = Instant::now();
                for _ in 0..iters {
                    call();
                }
                t.elapsed()
            })
        })
        .collect();
    let total: Duration = handles.into_iter().map(|h| h.join().unwrap()).sum();
    total / threads as u32
}

fn contended(c: &mut Criterion) {
    let now = Instant::now();
    let naive = Arc::new(Mutex::new(Breaker::new(BreakerConfig::default(), now, 1)));
    let mut g = c.benchmark_group("breaker/shared");
    for threads in [1usize, 2] {
        let m = naive.clone();
        let call: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            let mut b = m.lock().unwrap();
            let (p, _) = b.try_acquire(now);
            black_box(b.record(p.unwrap(), OK, now));
        });
        g.bench_function(format!("Mutex<Breaker>, {threads} thread(s)"), |bench| {
            bench.iter_custom(|iters| per_call(threads, iters, call.clone()))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = uncontended, learned, contended
}
criterion_main!(benches);
