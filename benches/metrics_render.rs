//! Rendering /metrics: the daemon's real metrics with 100, 1,000 and 10,000
//! endpoints (each with probes recorded, so every series exists). Baseline
//! in the same run: copying the rendered bytes once (the memory floor any
//! writer of that text pays).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hfbreaker::daemon::Daemon;

pub fn config(n: usize, url: &str) -> String {
    let mut y = String::from("endpoints:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - {{name: ep-{i:05}, kind: http, url: '{url}'}}\n"
        ));
    }
    y.push_str("routes:\n");
    for i in (0..n).step_by(2) {
        y.push_str(&format!(
            "  - {{name: r-{i:05}, endpoints: [ep-{i:05}, ep-{:05}]}}\n",
            (i + 1) % n
        ));
    }
    y
}

fn render(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics/render");
    g.sample_size(10);
    for n in [100usize, 1_000, 10_000] {
        let cfg = hfbreaker::config::parse(
            &config(n, "http://127.0.0.1:9/"),
            "bench",
            &HashMap::<String, String>::new(),
        )
        .unwrap();
        let d = Daemon::new(cfg, None, None);
        for ep in &d.topology().endpoints {
            ep.metrics.probe_done(
                hfbreaker::metrics::ProbeResult::Success,
                None,
                0.012,
                Some(200),
                None,
            );
        }
        let start = Instant::now();
        let size = d.render_metrics().len();
        eprintln!(
            "{n} endpoints: {size} bytes, first render {:?}",
            start.elapsed()
        );
        g.bench_function(format!("{n} endpoints"), |b| {
            b.iter(|| d.render_metrics().len())
        });
        let text = d.render_metrics();
        g.bench_function(
            format!("{n} endpoints, copy of the output (baseline)"),
            |b| b.iter(|| std::hint::black_box(text.clone()).len()),
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = render
}
criterion_main!(benches);
