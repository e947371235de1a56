//! Learned slow-call thresholds against fixed ones (issue 11): the real
//! config loader, breaker and scheduling decision on a simulated clock
//! (`testkit::adaptive`), 100 seeds of every scenario at three baseline
//! latencies. Prints the table recorded in docs/performance.md; the same
//! criteria are asserted on a few seeds by tests/adaptive_eval.rs.

use std::time::{Duration, Instant};

use testkit::adaptive::{Row, Threshold, evaluate};
use testkit::bench::{guard, median};

const SEEDS: u64 = 100;

fn cell_time(v: &[Option<f64>]) -> String {
    let hit: Vec<f64> = v.iter().flatten().copied().collect();
    if hit.is_empty() {
        return "never".into();
    }
    let max = hit.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let missed = v.len() - hit.len();
    let mut s = format!("{:.0} s (max {:.0} s)", median(hit.clone()), max);
    if missed > 0 {
        s.push_str(&format!(", {missed} never"));
    }
    s
}

fn row_text(ms: u64, t: Threshold, r: &Row) -> String {
    let late = r
        .time_to_trip
        .iter()
        .flatten()
        .filter(|x| **x > 30.0)
        .count();
    let rec = r.recovery_margin.iter().flatten().copied();
    let rec_max = rec.fold(f64::NEG_INFINITY, f64::max);
    let rec = if rec_max.is_finite() {
        format!("{rec_max:+.0} s")
    } else {
        "–".into()
    };
    let learned = t == Threshold::Learned;
    format!(
        "| {ms} ms | {} | {} | {} | {} | {late} | {rec} | {} | {} |",
        t.label(),
        r.day_trips,
        r.step_trips,
        cell_time(&r.time_to_trip),
        if learned {
            format!("{:.0}%", r.day_baseline_error * 100.0)
        } else {
            "–".into()
        },
        if learned {
            format!("{:.1}%", r.brownout_baseline_shift * 100.0)
        } else {
            "–".into()
        },
    )
}

fn main() {
    if !guard("adaptive", "see scripts/bench") {
        return;
    }
    let started = Instant::now();
    let seeds: Vec<u64> = (1..=SEEDS).collect();
    println!(
        "\nLearned slow-call thresholds, {SEEDS} seeds per cell, defaults (15 s interval, 1 s confirmations, window 20, min_calls 10, slow_call_rate_threshold 0.5)"
    );
    println!(
        "| baseline | threshold | false trips, 24 h drift | trips, 1.5x step | 3x to trip: median (max) | trips > 30 s after 3x | worst recovery vs open period | baseline error over 24 h (max) | baseline moved by the brownout (max) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for ms in [20, 300, 2000] {
        for t in Threshold::ALL {
            let r = evaluate(Duration::from_millis(ms), t, &seeds);
            println!("{}", row_text(ms, t, &r));
        }
    }
    // Per seed and cell: 24 h + 3 h (step) + 1 h 13 min (brownout).
    let days = SEEDS as f64 * 9.0 * (24.0 + 3.0 + 73.0 / 60.0) / 24.0;
    println!(
        "({days:.0} simulated endpoint-days in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
}
