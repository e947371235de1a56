//! The latency baseline: what an endpoint's probes normally take, learned
//! from the probes themselves, and the slow-call threshold derived from it.
//!
//! Pure, like the breaker that owns it: no I/O, no tokio, no clock of its
//! own; every call takes `now`. The estimate is an exponentially weighted
//! mean of the log of the latency (a geometric mean: one 10x outlier moves it
//! as much as one 0.1x answer), with three guards:
//!
//! - **warm-up**: the first `warmup_calls` successes are kept and their
//!   median becomes the first estimate, so a cold first answer counts once;
//!   until then the fixed `slow_call_duration` applies;
//! - **winsorized samples**: a sample further than [`MAX_STEP`]x from the
//!   estimate counts as exactly that far, so one outlier moves the estimate by
//!   at most `ln(MAX_STEP)` times its weight;
//! - **weight by time, not by count**: a sample's weight is
//!   `1 - 2^(-dt / half_life)` where `dt` is the time since the previous
//!   sample, so the fast confirmation probes of a brownout do not speed up
//!   learning: minutes of brownout move a one-hour half-life by a few percent.
//!
//! The breaker feeds it only successes recorded while `closed`.

use std::time::{Duration, Instant};

/// A sample counts as at most this many times slower (or faster) than the
/// estimate; bounds what one outlier can teach.
pub const MAX_STEP: f64 = 2.0;

/// Most warm-up samples kept (the bound of `warmup_calls`).
pub const MAX_WARMUP: u32 = 100;

/// Knobs of `slow_call_duration: auto` (`breaker.adaptive` in the config).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveConfig {
    /// Threshold = `factor` x baseline, clamped to `[min, max]`.
    pub factor: f64,
    pub min: Duration,
    /// Never above the probe timeout (the config clamps it).
    pub max: Duration,
    /// Successes before the learned threshold replaces the fixed one.
    pub warmup_calls: u32,
    /// Time after which an old sample weighs half as much.
    pub half_life: Duration,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            factor: 2.0,
            min: Duration::from_millis(10),
            max: Duration::from_secs(10),
            warmup_calls: 20,
            half_life: Duration::from_secs(3600),
        }
    }
}

/// What a baseline holds, with times relative to the snapshot, so that it
/// survives a reload or a restart (see `breaker::Snapshot`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BaselineState {
    /// Successes seen, capped at [`MAX_WARMUP`].
    pub seen: u32,
    /// The learned log-latency (ln of seconds), once warmed up.
    pub log_seconds: Option<f64>,
    /// Warm-up samples (ln of seconds), in arrival order.
    pub warmup: Vec<f64>,
    /// How long ago the last sample was taken.
    pub last_ago: Option<Duration>,
}

#[derive(Clone, Debug, Default)]
pub struct Baseline {
    seen: u32,
    log_seconds: Option<f64>,
    warmup: Vec<f64>,
    last: Option<Instant>,
}

/// ln of a duration in seconds; a zero duration counts as 1 µs.
fn ln_seconds(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-6).ln()
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Baseline {
    pub fn new() -> Self {
        Baseline::default()
    }

    /// Learn from one successful probe of `latency`, finished at `now`.
    pub fn observe(&mut self, cfg: &AdaptiveConfig, latency: Duration, now: Instant) {
        let x = ln_seconds(latency);
        let dt = self.last.map(|l| now.saturating_duration_since(l));
        self.last = Some(now);
        self.seen = self.seen.saturating_add(1).min(MAX_WARMUP);
        let Some(mean) = self.log_seconds else {
            self.warmup.push(x);
            if self.warmup.len() >= cfg.warmup_calls.clamp(1, MAX_WARMUP) as usize {
                self.log_seconds = Some(median(&self.warmup));
                self.warmup = Vec::new();
            }
            return;
        };
        let step = MAX_STEP.ln();
        let x = x.clamp(mean - step, mean + step);
        let half_life = cfg.half_life.as_secs_f64().max(1e-3);
        let dt = dt.unwrap_or_default().as_secs_f64();
        // Weight of the new sample: the share of the old estimate's weight
        // that has decayed since the previous sample; at most one half.
        let w = (1.0 - (-dt / half_life * std::f64::consts::LN_2).exp()).min(0.5);
        self.log_seconds = Some(mean + w * (x - mean));
    }

    /// The learned baseline, once warmed up.
    pub fn value(&self) -> Option<Duration> {
        self.log_seconds
            .map(|l| Duration::from_secs_f64(l.exp().min(1e9)))
    }

    /// Whether the learned threshold is in force.
    pub fn warmed_up(&self) -> bool {
        self.log_seconds.is_some()
    }

    /// The slow-call threshold: `fixed` while warming up, else `factor` x
    /// the baseline within `[min, max]`. Never above `max` (the probe
    /// timeout at most), even with a `min` above it (the config refuses
    /// that): above the timeout the slow-call rule could never fire.
    pub fn threshold(&self, cfg: &AdaptiveConfig, fixed: Duration) -> Duration {
        match self.log_seconds {
            None => fixed,
            Some(l) => {
                let secs = (l.exp() * cfg.factor).min(1e9);
                let min = cfg.min.min(cfg.max);
                Duration::from_secs_f64(secs).clamp(min, cfg.max)
            }
        }
    }

    pub fn snapshot(&self, now: Instant) -> BaselineState {
        BaselineState {
            seen: self.seen,
            log_seconds: self.log_seconds,
            warmup: self.warmup.clone(),
            last_ago: self.last.map(|l| now.saturating_duration_since(l)),
        }
    }

    /// Total: a damaged or foreign state gives a consistent baseline
    /// (non-finite values are dropped, the warm-up list is bounded).
    pub fn restore(s: &BaselineState, now: Instant) -> Baseline {
        let finite = |x: &f64| x.is_finite() && x.abs() < 50.0;
        let mut warmup: Vec<f64> = s.warmup.iter().copied().filter(finite).collect();
        warmup.truncate(MAX_WARMUP as usize);
        Baseline {
            seen: s.seen.min(MAX_WARMUP),
            log_seconds: s.log_seconds.filter(finite),
            warmup,
            last: s.last_ago.and_then(|a| now.checked_sub(a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn warm(
        b: &mut Baseline,
        cfg: &AdaptiveConfig,
        lat: Duration,
        t: &mut Instant,
        every: Duration,
    ) {
        for _ in 0..cfg.warmup_calls {
            b.observe(cfg, lat, *t);
            *t += every;
        }
    }

    #[test]
    fn fixed_threshold_until_warm_then_factor_times_the_median() {
        let cfg = AdaptiveConfig::default();
        let mut b = Baseline::new();
        let mut t = Instant::now();
        assert_eq!(b.threshold(&cfg, ms(5000)), ms(5000));
        assert_eq!(b.value(), None);
        // a cold first answer and one outlier among the warm-up samples
        b.observe(&cfg, ms(3000), t);
        for i in 1..cfg.warmup_calls - 1 {
            t += Duration::from_secs(1);
            assert!(!b.warmed_up(), "after {i} samples");
            b.observe(&cfg, ms(100), t);
            assert_eq!(b.threshold(&cfg, ms(5000)), ms(5000));
        }
        t += Duration::from_secs(1);
        b.observe(&cfg, ms(1), t);
        assert!(b.warmed_up());
        let v = b.value().unwrap().as_secs_f64();
        assert!((v - 0.1).abs() < 1e-9, "the median, not the mean: {v}");
        let th = b.threshold(&cfg, ms(5000)).as_secs_f64();
        assert!((th - 0.2).abs() < 1e-9, "{th}");
    }

    #[test]
    fn learned_within_60_s_at_a_1_s_interval() {
        let cfg = AdaptiveConfig::default();
        let mut b = Baseline::new();
        let t0 = Instant::now();
        for s in 0..60 {
            b.observe(&cfg, ms(300), t0 + Duration::from_secs(s));
        }
        assert!(b.warmed_up());
        assert!(cfg.warmup_calls <= 60);
    }

    #[test]
    fn threshold_is_clamped_to_min_and_max() {
        let cfg = AdaptiveConfig {
            min: ms(50),
            max: ms(2000),
            warmup_calls: 1,
            ..Default::default()
        };
        let t = Instant::now();
        let mut fast = Baseline::new();
        fast.observe(&cfg, ms(1), t);
        assert_eq!(fast.threshold(&cfg, ms(5000)), ms(50));
        let mut slow = Baseline::new();
        slow.observe(&cfg, ms(4000), t);
        assert_eq!(slow.threshold(&cfg, ms(5000)), ms(2000));
        // a zero latency and an absurd one stay finite
        let mut z = Baseline::new();
        z.observe(&cfg, Duration::ZERO, t);
        assert_eq!(z.threshold(&cfg, ms(5000)), ms(50));
        let mut huge = Baseline::new();
        huge.observe(&cfg, Duration::MAX, t);
        assert_eq!(huge.threshold(&cfg, ms(5000)), ms(2000));
    }

    #[test]
    fn threshold_never_exceeds_max_even_with_min_above_it() {
        // `max` is the probe timeout at most: a threshold above it would turn
        // the slow-call rule off. The config refuses such a `min`; the
        // threshold holds on its own too.
        let cfg = AdaptiveConfig {
            min: ms(3000),
            max: ms(2000),
            warmup_calls: 1,
            ..Default::default()
        };
        for lat in [ms(1), ms(100), ms(1500), Duration::MAX] {
            let mut b = Baseline::new();
            b.observe(&cfg, lat, Instant::now());
            assert_eq!(b.threshold(&cfg, ms(5000)), ms(2000), "{lat:?}");
        }
    }

    #[test]
    fn a_single_outlier_moves_it_by_at_most_the_winsorized_step() {
        let cfg = AdaptiveConfig::default();
        let mut b = Baseline::new();
        let mut t = Instant::now();
        warm(&mut b, &cfg, ms(100), &mut t, Duration::from_secs(15));
        // even after a long silence (weight capped at one half)
        t += Duration::from_secs(30 * 86_400);
        b.observe(&cfg, Duration::from_secs(1000), t);
        let v = b.value().unwrap().as_secs_f64();
        assert!(v <= 0.1 * MAX_STEP.sqrt() + 1e-9, "{v}");
        // at the usual interval: under 1%
        let mut b = Baseline::new();
        let mut t = Instant::now();
        warm(&mut b, &cfg, ms(100), &mut t, Duration::from_secs(15));
        b.observe(&cfg, Duration::from_secs(1000), t);
        let v = b.value().unwrap().as_secs_f64();
        assert!(v < 0.101, "{v}");
    }

    #[test]
    fn confirmation_bursts_do_not_speed_up_learning() {
        let cfg = AdaptiveConfig::default();
        let mut b = Baseline::new();
        let mut t = Instant::now();
        warm(&mut b, &cfg, ms(100), &mut t, Duration::from_secs(15));
        // five minutes of 5x answers every 100 ms (3000 samples)
        for _ in 0..3000 {
            t += ms(100);
            b.observe(&cfg, ms(500), t);
        }
        let v = b.value().unwrap().as_secs_f64();
        // 2^(-300/3600) of the old weight stays: the estimate moves about
        // 6% of the way to the winsorized 2x, under 5%
        assert!(v < 0.1 * 1.05, "{v}");
    }

    #[test]
    fn follows_a_lasting_change_within_a_few_half_lives() {
        let cfg = AdaptiveConfig::default();
        let mut b = Baseline::new();
        let mut t = Instant::now();
        warm(&mut b, &cfg, ms(100), &mut t, Duration::from_secs(15));
        for _ in 0..(4 * 3600 / 15) {
            t += Duration::from_secs(15);
            b.observe(&cfg, ms(150), t);
        }
        let v = b.value().unwrap().as_secs_f64();
        assert!((v / 0.15 - 1.0).abs() < 0.05, "{v}");
    }

    #[test]
    fn snapshot_and_restore_round_trip_and_are_total() {
        let cfg = AdaptiveConfig::default();
        let t0 = Instant::now();
        let mut b = Baseline::new();
        b.observe(&cfg, ms(100), t0);
        let later = t0 + Duration::from_secs(7);
        let s = b.snapshot(later);
        assert_eq!(s.last_ago, Some(Duration::from_secs(7)));
        let r = Baseline::restore(&s, later);
        assert_eq!(r.snapshot(later), s);
        let bad = BaselineState {
            seen: u32::MAX,
            log_seconds: Some(f64::NAN),
            warmup: vec![f64::INFINITY; 500],
            last_ago: Some(Duration::MAX),
        };
        let r = Baseline::restore(&bad, t0);
        assert!(!r.warmed_up());
        assert!(r.warmup.is_empty());
        assert_eq!(r.seen, MAX_WARMUP);
        assert_eq!(r.threshold(&cfg, ms(5000)), ms(5000));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> impl Strategy<Value = AdaptiveConfig> {
        (
            1.1f64..10.0,
            1u64..100,
            100u64..60_000,
            1u32..50,
            60u64..86_400,
        )
            .prop_map(
                |(factor, min, max, warmup_calls, half_life)| AdaptiveConfig {
                    factor,
                    min: Duration::from_millis(min),
                    max: Duration::from_millis(max),
                    warmup_calls,
                    half_life: Duration::from_secs(half_life),
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever it sees: the threshold stays within [min, max] once warm,
        /// the estimate stays within the range of the samples, and one step
        /// moves it by at most ln(MAX_STEP) / 2.
        #[test]
        fn bounded_and_within_the_samples(
            cfg in cfg(),
            samples in proptest::collection::vec((0u64..120_000, 0u64..600_000), 1..300),
        ) {
            let mut b = Baseline::new();
            let mut t = Instant::now();
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for (gap, lat) in samples {
                t += Duration::from_millis(gap);
                let lat = Duration::from_millis(lat);
                let before = b.log_seconds;
                b.observe(&cfg, lat, t);
                let x = ln_seconds(lat);
                lo = lo.min(x);
                hi = hi.max(x);
                if let Some(l) = b.log_seconds {
                    prop_assert!(l >= lo - 1e-9 && l <= hi + 1e-9);
                    let th = b.threshold(&cfg, Duration::from_secs(5));
                    prop_assert!(th >= cfg.min.min(cfg.max) && th <= cfg.max);
                    if let Some(p) = before {
                        prop_assert!((l - p).abs() <= MAX_STEP.ln() / 2.0 + 1e-9);
                    }
                } else {
                    prop_assert_eq!(b.threshold(&cfg, Duration::from_secs(5)), Duration::from_secs(5));
                }
                let r = Baseline::restore(&b.snapshot(t), t);
                prop_assert_eq!(r.snapshot(t), b.snapshot(t));
            }
        }

        /// However slow a brownout, the estimate rises no faster than the
        /// half-life allows: after `d` of it, by at most
        /// `ln 2 x d / half_life x ln(MAX_STEP)` (each sample weighs at most
        /// `ln 2 x dt / half_life` and counts at most `MAX_STEP` x away).
        #[test]
        fn a_brownout_is_learned_no_faster_than_the_half_life(
            cfg in cfg(),
            gaps in proptest::collection::vec(1u64..20_000, 1..400),
        ) {
            let mut b = Baseline::new();
            let mut t = Instant::now();
            for _ in 0..cfg.warmup_calls {
                t += Duration::from_secs(1);
                b.observe(&cfg, Duration::from_millis(100), t);
            }
            let start = t;
            let l0 = b.log_seconds.unwrap();
            for g in gaps {
                t += Duration::from_millis(g);
                b.observe(&cfg, Duration::from_secs(100), t);
            }
            let d = (t - start).as_secs_f64();
            let bound = d / cfg.half_life.as_secs_f64() * std::f64::consts::LN_2 * MAX_STEP.ln();
            // the one-half cap on a single step only lowers the weight
            prop_assert!(b.log_seconds.unwrap() - l0 <= bound * 1.0000001 + 1e-12,
                "{} > {}", b.log_seconds.unwrap() - l0, bound);
        }
    }
}
