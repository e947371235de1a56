//! Shared by the benchmarks that run whole processes.

use std::process::Command;
use std::time::{Duration, Instant};

/// Whether this is a `cargo bench` run; under `cargo test` a benchmark only
/// says how to run it (`how`: where to look, e.g. "see scripts/bench").
pub fn guard(name: &str, how: &str) -> bool {
    if std::env::args().any(|a| a == "--bench") {
        return true;
    }
    println!("{name}: run with `cargo bench --bench {name}` ({how})");
    false
}

/// The median; NaN for no values.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A config with `n` HTTP endpoints `ep-00000`… all probing `url`.
pub fn endpoints_config(n: usize, url: &str, interval: &str, extra_global: &str) -> String {
    let mut y = format!("global:\n  interval: {interval}\n{extra_global}endpoints:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - {{name: ep-{i:05}, kind: http, url: '{url}'}}\n"
        ));
    }
    y
}

/// GET with curl: the body and how long it took.
pub fn curl(url: &str) -> (String, Duration) {
    let start = Instant::now();
    let out = Command::new("curl")
        .args(["-s", "--max-time", "30", url])
        .output()
        .expect("curl runs");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        start.elapsed(),
    )
}
