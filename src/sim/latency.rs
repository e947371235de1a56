//! Latency models: how long a virtual endpoint takes to answer, as a
//! function of time. Pure (no I/O, no clock): the simulator draws from one
//! at each request, the adaptive-threshold evaluation on a simulated clock.
//!
//! A model is a median latency shaped by, in order: a slow periodic drift
//! (`drift` = ratio of the highest to the lowest median over `drift_period`),
//! an optional brownout (a ramp to `peak` x, a hold, then back), lognormal
//! jitter (`jitter` = sigma of the log) and single outliers (`outliers` =
//! probability that one answer takes `outlier_factor` x).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::HumanDuration;

/// A brownout: from `start`, the median rises linearly to `peak` x over
/// `ramp`, stays there for `hold` (forever without one), then is back.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Brownout {
    pub start: HumanDuration,
    #[serde(default = "zero")]
    pub ramp: HumanDuration,
    pub peak: f64,
    #[serde(default)]
    pub hold: Option<HumanDuration>,
}

fn zero() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}

fn one() -> f64 {
    1.0
}

fn ten() -> f64 {
    10.0
}

fn day() -> HumanDuration {
    HumanDuration(Duration::from_secs(86_400))
}

/// See the module doc. In YAML: `{median: 300ms, jitter: 0.25, outliers: 0.01,
/// drift: 2, brownout: {start: 1h, ramp: 2m, peak: 5, hold: 1m}}`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    pub median: HumanDuration,
    #[serde(default)]
    pub jitter: f64,
    #[serde(default)]
    pub outliers: f64,
    #[serde(default = "ten")]
    pub outlier_factor: f64,
    #[serde(default = "one")]
    pub drift: f64,
    #[serde(default = "day")]
    pub drift_period: HumanDuration,
    #[serde(default)]
    pub brownout: Option<Brownout>,
}

impl Latency {
    /// A constant `median` (no jitter, no drift).
    pub fn constant(median: Duration) -> Self {
        Latency {
            median: HumanDuration(median),
            jitter: 0.0,
            outliers: 0.0,
            outlier_factor: 10.0,
            drift: 1.0,
            drift_period: day(),
            brownout: None,
        }
    }

    /// Values that make no sense, as (field, message) pairs; empty when
    /// the model is valid. Bounds: `median` above zero and at most 5m (the
    /// longest probe timeout), `jitter` 0 - 3, `outliers` 0 - 1,
    /// `outlier_factor` and `drift` 1 - 1000, `drift_period` at least 1s,
    /// the brownout's `peak` above zero and at most 1000.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut range = |field, v: f64, lo: f64, hi: f64| {
            if !(lo..=hi).contains(&v) {
                out.push((field, format!("{v} is out of range {lo} - {hi}")));
            }
        };
        range("jitter", self.jitter, 0.0, 3.0);
        range("outliers", self.outliers, 0.0, 1.0);
        range("outlier_factor", self.outlier_factor, 1.0, 1000.0);
        range("drift", self.drift, 1.0, 1000.0);
        if let Some(b) = &self.brownout
            && !(b.peak > 0.0 && b.peak <= 1000.0)
        {
            out.push((
                "brownout.peak",
                format!("{} is out of range (0, 1000]", b.peak),
            ));
        }
        let median = self.median.0;
        if median.is_zero() || median > Duration::from_secs(300) {
            out.push(("median", format!("{median:?} is out of range (0, 5m]")));
        }
        if self.drift_period.0 < Duration::from_secs(1) {
            out.push((
                "drift_period",
                format!("{:?} is below 1s", self.drift_period.0),
            ));
        }
        out
    }

    /// The brownout's factor at `t` (1 outside it).
    pub fn brownout_factor(&self, t: Duration) -> f64 {
        let Some(b) = &self.brownout else {
            return 1.0;
        };
        let Some(into) = t.checked_sub(b.start.0) else {
            return 1.0;
        };
        if let Some(hold) = b.hold
            && into >= b.ramp.0 + hold.0
        {
            return 1.0;
        }
        if into >= b.ramp.0 || b.ramp.0.is_zero() {
            return b.peak;
        }
        1.0 + (b.peak - 1.0) * into.as_secs_f64() / b.ramp.0.as_secs_f64()
    }

    /// The drift's factor at `t`: `drift^(sin(2 pi t / period) / 2)`, so the
    /// median swings between `median / sqrt(drift)` and `median x sqrt(drift)`.
    pub fn drift_factor(&self, t: Duration) -> f64 {
        if self.drift == 1.0 || self.drift_period.0.is_zero() {
            return 1.0;
        }
        let phase = t.as_secs_f64() / self.drift_period.0.as_secs_f64();
        self.drift.powf((std::f64::consts::TAU * phase).sin() / 2.0)
    }

    /// The median latency at `t` (drift and brownout, no jitter).
    pub fn median_at(&self, t: Duration) -> Duration {
        self.median
            .0
            .mul_f64(self.drift_factor(t) * self.brownout_factor(t))
    }

    /// One answer's latency at `t`.
    pub fn sample(&self, t: Duration, rng: &mut fastrand::Rng) -> Duration {
        let mut f = self.drift_factor(t) * self.brownout_factor(t);
        if self.jitter > 0.0 {
            f *= (self.jitter * normal(rng)).exp();
        }
        if self.outliers > 0.0 && rng.f64() < self.outliers {
            f *= self.outlier_factor;
        }
        Duration::from_secs_f64((self.median.0.as_secs_f64() * f).clamp(0.0, 1e6))
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn brownout_ramps_holds_and_ends() {
        let mut m = Latency::constant(Duration::from_millis(100));
        m.brownout = Some(Brownout {
            start: HumanDuration(s(60)),
            ramp: HumanDuration(s(120)),
            peak: 5.0,
            hold: Some(HumanDuration(s(60))),
        });
        assert_eq!(m.brownout_factor(s(0)), 1.0);
        assert_eq!(m.brownout_factor(s(60)), 1.0);
        assert!((m.brownout_factor(s(120)) - 3.0).abs() < 1e-9, "3x halfway");
        assert_eq!(m.brownout_factor(s(180)), 5.0);
        assert_eq!(m.brownout_factor(s(239)), 5.0);
        assert_eq!(m.brownout_factor(s(240)), 1.0);
        assert_eq!(m.median_at(s(120)), Duration::from_millis(300));
    }

    #[test]
    fn drift_swings_by_its_ratio_over_the_period() {
        let m = Latency {
            drift: 2.0,
            ..Latency::constant(Duration::from_millis(100))
        };
        let hi = m.drift_factor(s(86_400 / 4));
        let lo = m.drift_factor(s(3 * 86_400 / 4));
        assert!((hi / lo - 2.0).abs() < 1e-9);
        assert!((m.drift_factor(s(0)) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn jitter_is_lognormal_around_the_median_with_outliers() {
        let m = Latency {
            jitter: 0.25,
            outliers: 0.01,
            ..Latency::constant(Duration::from_millis(100))
        };
        let mut rng = fastrand::Rng::with_seed(1);
        let mut v: Vec<f64> = (0..20_000)
            .map(|_| m.sample(s(0), &mut rng).as_secs_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        assert!((median / 0.1 - 1.0).abs() < 0.03, "{median}");
        let outliers = v.iter().filter(|x| **x > 0.5).count();
        assert!((100..300).contains(&outliers), "{outliers}");
    }

    #[test]
    fn problems_name_each_bad_field() {
        assert!(
            Latency::constant(Duration::from_millis(1))
                .problems()
                .is_empty()
        );
        let mut m = Latency {
            jitter: -0.1,
            outliers: 1.5,
            outlier_factor: 0.5,
            drift: f64::NAN,
            drift_period: HumanDuration(Duration::from_millis(10)),
            ..Latency::constant(Duration::ZERO)
        };
        m.brownout = Some(Brownout {
            start: zero(),
            ramp: zero(),
            peak: 0.0,
            hold: None,
        });
        let fields: Vec<&str> = m.problems().iter().map(|(f, _)| *f).collect();
        assert_eq!(
            fields,
            [
                "jitter",
                "outliers",
                "outlier_factor",
                "drift",
                "brownout.peak",
                "median",
                "drift_period"
            ]
        );
        assert_eq!(m.problems()[0].1, "-0.1 is out of range 0 - 3");
    }

    #[test]
    fn parses_from_yaml() {
        let m: Latency = serde_saphyr::from_str(
            "{median: 300ms, jitter: 0.2, outliers: 0.01, drift: 2, brownout: {start: 1h, ramp: 2m, peak: 5}}",
        )
        .unwrap();
        assert_eq!(m.median.0, Duration::from_millis(300));
        assert_eq!(m.brownout.unwrap().hold, None);
        assert_eq!(m.drift_period.0, s(86_400));
    }
}
