//! The evaluation of learned slow-call thresholds (issue 11, the "Proof"),
//! fast: the real config loader, breaker and scheduling decision on a
//! simulated clock over every scenario and baseline, a few seeds, asserting
//! the criteria so that they cannot silently regress.
//! `scripts/bench adaptive` runs 100 seeds and prints the table recorded in
//! docs/performance.md.

use std::time::Duration;

use hfbreaker::breaker::TripReason;
use testkit::adaptive::{
    ONSET, Scenarios, Threshold, endpoint_config, evaluate, evaluate_config, run,
};

const SEEDS: [u64; 4] = [1, 2, 3, 4];
const BASES: [u64; 3] = [20, 300, 2000];

#[test]
fn learned_thresholds_meet_the_criteria_at_every_baseline() {
    for ms in BASES {
        let base = Duration::from_millis(ms);
        let row = evaluate(base, Threshold::Learned, &SEEDS);
        let ctx = format!("{ms} ms: {row:?}");
        assert_eq!(
            row.day_trips, 0,
            "24 h of jitter, outliers and drift: {ctx}"
        );
        assert_eq!(row.step_trips, 0, "a step to 1.5x: {ctx}");
        assert_eq!(row.early_trips, 0, "before the brownout: {ctx}");
        for t in &row.time_to_trip {
            let t = t.unwrap_or_else(|| panic!("the brownout did not trip: {ctx}"));
            assert!(t <= 30.0, "tripped {t:.1} s after reaching 3x: {ctx}");
        }
        // on the slow-call rule, not on timeouts or anything else
        for r in &row.trip_reason {
            assert_eq!(*r, Some(TripReason::SlowCalls), "{ctx}");
        }
        for m in &row.recovery_margin {
            let m = m.unwrap_or_else(|| panic!("not closed after the brownout: {ctx}"));
            assert!(m <= 5.0, "closed {m:.1} s after the open period: {ctx}");
        }
        assert!(row.brownout_baseline_shift <= 0.10, "{ctx}");
        assert!(row.day_baseline_error <= 0.25, "{ctx}");
    }
}

/// The comparison the table makes: the fixed default misses the fast
/// endpoints' brownouts, the hand-tuned threshold catches them; the learned
/// one does as well as the hand-tuned one without being told the latency.
#[test]
fn the_fixed_default_misses_fast_brownouts_that_hand_tuning_catches() {
    for ms in [20, 300] {
        let base = Duration::from_millis(ms);
        let default = evaluate(base, Threshold::FixedDefault, &SEEDS[..1]);
        assert_eq!(default.time_to_trip, [None], "{ms} ms: {default:?}");
        let tuned = evaluate(base, Threshold::HandTuned, &SEEDS[..1]);
        assert!(
            tuned.time_to_trip[0].is_some_and(|t| t <= 30.0),
            "{tuned:?}"
        );
        assert_eq!(tuned.trip_reason, [Some(TripReason::SlowCalls)]);
    }
}

fn worst(times: &[Option<f64>]) -> f64 {
    times
        .iter()
        .map(|t| t.expect("tripped"))
        .fold(f64::NEG_INFINITY, f64::max)
}

/// The table's claim, at every baseline: the learned threshold is the
/// hand-tuned one (2x the true median) without being told the latency, so
/// it catches every brownout as early (worst case within 5 s of it) and
/// never trips on the 1.5x step. Against the fixed default (5 s): at 20 and
/// 300 ms the default never trips (asserted above); at 2 s the default, 2.5x
/// the median, trips too, so what is asserted there is that the learned
/// threshold trips earlier on every seed and at least 10 s earlier in the
/// worst case (in the recorded run: -8 s against +7 s after reaching 3x).
#[test]
fn the_learned_threshold_matches_hand_tuning_and_beats_the_default() {
    for ms in BASES {
        let base = Duration::from_millis(ms);
        let learned = evaluate(base, Threshold::Learned, &SEEDS);
        let tuned = evaluate(base, Threshold::HandTuned, &SEEDS);
        let ctx = format!("{ms} ms:\n learned {learned:?}\n tuned {tuned:?}");
        for th in &learned.onset_threshold {
            let ratio = th.as_secs_f64() / (2.0 * base.as_secs_f64());
            assert!((ratio - 1.0).abs() <= 0.10, "{th:?} vs 2x {base:?}: {ctx}");
        }
        for r in learned.trip_reason.iter().chain(&tuned.trip_reason) {
            assert_eq!(*r, Some(TripReason::SlowCalls), "{ctx}");
        }
        let (wl, wt) = (worst(&learned.time_to_trip), worst(&tuned.time_to_trip));
        assert!(wl <= wt + 5.0, "worst {wl:.1} s against {wt:.1} s: {ctx}");
        assert_eq!(learned.step_trips, 0, "{ctx}");
    }
    let base = Duration::from_secs(2);
    let learned = evaluate(base, Threshold::Learned, &SEEDS);
    let default = evaluate(base, Threshold::FixedDefault, &SEEDS);
    let ctx = format!("learned {learned:?}\n default {default:?}");
    for (l, d) in learned.time_to_trip.iter().zip(&default.time_to_trip) {
        let (l, d) = (l.expect("learned trips"), d.expect("default trips"));
        assert!(l < d, "learned {l:.1} s, default {d:.1} s: {ctx}");
    }
    let (wl, wd) = (worst(&learned.time_to_trip), worst(&default.time_to_trip));
    assert!(wl <= wd - 10.0, "worst {wl:.1} s against {wd:.1} s: {ctx}");
}

/// Without the suspect rule (slow calls probed every `confirm_interval`),
/// detection waits for `min_calls` slow probes at the 15 s interval: the
/// evaluation notices. (A `confirm_interval` as long as the interval turns
/// the rule off.)
#[test]
fn without_fast_confirmation_of_slow_calls_the_criterion_fails() {
    let base = Duration::from_millis(300);
    let mut cfg = endpoint_config(base, Threshold::Learned);
    cfg.confirm_interval = cfg.interval;
    let row = evaluate_config(base, &cfg, &SEEDS[..1]);
    assert!(row.time_to_trip[0].is_none_or(|t| t > 30.0), "{row:?}");
}

/// The threshold is learned within 60 s at a 1 s interval.
#[test]
fn learned_within_a_minute_at_a_one_second_interval() {
    let base = Duration::from_millis(300);
    let mut cfg = endpoint_config(base, Threshold::Learned);
    cfg.interval = Duration::from_secs(1);
    let s = Scenarios::new(base);
    let t = run(
        &cfg,
        &s.step(),
        Duration::from_secs(61),
        &[Duration::from_secs(60)],
        1,
    );
    let (baseline, _) = t.checkpoint(Duration::from_secs(60));
    let b = baseline.expect("warmed up within 60 s").as_secs_f64();
    assert!((b / 0.3 - 1.0).abs() < 0.15, "{b}");
    let learned = t
        .log
        .iter()
        .find(|p| p.0 >= Duration::from_secs(59))
        .unwrap()
        .2;
    assert!(learned < Duration::from_secs(1), "{learned:?}");
    assert!(ONSET > Duration::from_secs(60));
}
