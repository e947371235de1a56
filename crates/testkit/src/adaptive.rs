//! The evaluation of learned slow-call thresholds (issue 11): the real
//! breaker and the real scheduling decision ([`schedule::plan`]) on a
//! simulated clock, probing a [`Latency`] model, for hours of simulated time
//! in milliseconds. `benches/adaptive.rs` prints the table (many seeds);
//! `tests/adaptive_eval.rs` asserts the criteria (a few seeds).
//!
//! The event loop mirrors `schedule::Scheduler`: one timer entry per
//! endpoint (a superseded entry is skipped), a probe's answer and a probe
//! still unanswered after `confirm_interval` wake the scheduler, which asks
//! `plan` again. (The daemon skips that wake-up after a healthy answer that
//! leaves nothing to confirm; `plan` then decides nothing new, so waking
//! always changes no decision.)

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use hfbreaker::breaker::{Outcome, Permit, State, TripReason};
use hfbreaker::config::{self, EndpointConfig, HumanDuration};
use hfbreaker::metrics::Metrics;
use hfbreaker::schedule::{Action, Endpoint, EndpointState, plan};
use hfbreaker::sim::latency::{Brownout, Latency};

/// Which slow-call threshold a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    /// `slow_call_duration: auto` with the shipped defaults.
    Learned,
    /// The default `slow_call_duration` (5 s), slow-call rule on at 0.5.
    FixedDefault,
    /// 2 x the scenario's true median (the learned factor), as an operator
    /// who measured the endpoint would set it.
    HandTuned,
}

impl Threshold {
    pub const ALL: [Threshold; 3] = [
        Threshold::Learned,
        Threshold::HandTuned,
        Threshold::FixedDefault,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Threshold::Learned => "learned (auto)",
            Threshold::FixedDefault => "fixed default 5 s",
            Threshold::HandTuned => "hand-tuned 2x median",
        }
    }
}

/// The probe timeout for a baseline: the default 10 s, or 15x a slow
/// endpoint's latency (a 2 s model needs room for its 10x outliers).
pub fn timeout_for(base: Duration) -> Duration {
    (base * 15).max(Duration::from_secs(10))
}

/// The endpoint as the real config loader makes it: every other setting at
/// its default (15 s interval, 1 s confirmations, window 20, min_calls 10).
pub fn endpoint_config(base: Duration, threshold: Threshold) -> EndpointConfig {
    endpoint_config_with(base, threshold, "")
}

/// [`endpoint_config`] with more lines under `global.breaker` (indented by
/// four spaces), to try other knobs.
pub fn endpoint_config_with(base: Duration, threshold: Threshold, extra: &str) -> EndpointConfig {
    let slow = match threshold {
        Threshold::Learned => "auto".to_string(),
        Threshold::FixedDefault => "5s".to_string(),
        Threshold::HandTuned => format!("{}ms", (base.as_secs_f64() * 2000.0).round()),
    };
    let rate = match threshold {
        Threshold::Learned => String::new(),
        _ => "\n    slow_call_rate_threshold: 0.5".to_string(),
    };
    let yaml = format!(
        "global:\n  timeout: {}ms\n  breaker:\n    slow_call_duration: {slow}{rate}\n{extra}\
         endpoints:\n  - {{name: e, kind: http, url: 'http://127.0.0.1:9/'}}\n",
        timeout_for(base).as_millis()
    );
    let cfg = config::parse(&yaml, "eval.yml", &std::collections::HashMap::new())
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    cfg.endpoints.into_iter().next().unwrap()
}

/// What one run saw; times since the start of the run.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub trips: Vec<(Duration, TripReason)>,
    pub closes: Vec<Duration>,
    /// At each checkpoint: the learned baseline and the open period in force.
    pub checkpoints: Vec<(Duration, Option<Duration>, Duration)>,
    pub probes: u64,
    /// Every probe: when it was sent, its latency, the threshold then.
    pub log: Vec<(Duration, Duration, Duration)>,
}

impl Trace {
    pub fn trips_in(&self, from: Duration, to: Duration) -> usize {
        self.trips
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .count()
    }

    pub fn checkpoint(&self, at: Duration) -> (Option<Duration>, Duration) {
        let c = self
            .checkpoints
            .iter()
            .find(|c| c.0 == at)
            .expect("a checkpoint at that time");
        (c.1, c.2)
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// A timer entry of the scheduler.
    Plan,
    /// A probe unanswered after `confirm_interval` wakes the scheduler.
    Wake,
    /// A probe's answer: (id, index of its permit and outcome).
    Done(u64, usize),
}

struct Run<'a> {
    st: std::sync::MutexGuard<'a, EndpointState>,
    t0: Instant,
    heap: BinaryHeap<Reverse<(Instant, u64, Ev)>>,
    seq: u64,
    scheduled: Option<Instant>,
    pending: Vec<(Permit, Outcome)>,
    trace: Trace,
}

impl Run<'_> {
    fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, ev)));
    }

    fn note(&mut self, t: Option<hfbreaker::breaker::Transition>, now: Instant) {
        let Some(t) = t else { return };
        let at = now - self.t0;
        if let Some(reason) = t.trip {
            self.trace.trips.push((at, reason));
        }
        if t.to == State::Closed {
            self.trace.closes.push(at);
        }
    }

    /// What `Scheduler::wake` does, with the probe's answer drawn from `model`.
    fn wake(&mut self, now: Instant, model: &Latency, rng: &mut fastrand::Rng) {
        let (action, t, next) = plan(&mut self.st, now);
        self.note(t, now);
        if let Action::Probe(permit) = action {
            let id = self.st.probe_sent(now);
            self.trace.probes += 1;
            let latency = model.sample(now - self.t0, rng);
            let threshold = self.st.breaker.slow_call_threshold();
            self.trace.log.push((now - self.t0, latency, threshold));
            let (timeout, confirm) = (self.st.cfg.timeout, self.st.cfg.confirm_interval);
            let (after, outcome) = if latency >= timeout {
                (timeout, Outcome::Failure)
            } else {
                (latency, Outcome::Success { duration: latency })
            };
            self.pending.push((permit, outcome));
            self.push(now + after, Ev::Done(id, self.pending.len() - 1));
            if after > confirm {
                self.push(now + confirm, Ev::Wake);
            }
        }
        let keep = self.scheduled.is_some_and(|s| s <= next && s > now);
        if !keep {
            self.scheduled = Some(next);
            self.push(next, Ev::Plan);
        }
    }
}

/// Probe `model` with `cfg` for `horizon` of simulated time; note the
/// baseline and the open period at each of `checkpoints`.
pub fn run(
    cfg: &EndpointConfig,
    model: &Latency,
    horizon: Duration,
    checkpoints: &[Duration],
    seed: u64,
) -> Trace {
    let t0 = Instant::now();
    let metrics = Metrics::new();
    let ep = Endpoint::new(cfg.clone(), metrics.endpoint(cfg), t0, seed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut r = Run {
        st: ep.lock(),
        t0,
        heap: BinaryHeap::new(),
        seq: 0,
        scheduled: None,
        pending: Vec::new(),
        trace: Trace::default(),
    };
    let first = t0 + cfg.interval.mul_f64(rng.f64());
    r.scheduled = Some(first);
    r.push(first, Ev::Plan);
    let mut marks = checkpoints.to_vec();
    marks.sort();
    let mut marks = marks.into_iter().peekable();
    while let Some(Reverse((now, _, ev))) = r.heap.pop() {
        while let Some(m) = marks.next_if(|m| t0 + *m <= now) {
            let b = &r.st.breaker;
            let c = (m, b.latency_baseline(), b.open_duration());
            r.trace.checkpoints.push(c);
        }
        if now - t0 > horizon {
            break;
        }
        match ev {
            Ev::Plan if r.scheduled != Some(now) => continue,
            Ev::Plan => r.scheduled = None,
            Ev::Wake => {}
            Ev::Done(id, i) => {
                r.st.probe_answered(id);
                let (permit, outcome) = r.pending[i];
                let t = r.st.breaker.record(permit, outcome, now);
                r.note(t, now);
            }
        }
        r.wake(now, model, &mut rng);
    }
    r.trace
}

/// The scenarios of the issue, for one baseline latency.
pub struct Scenarios {
    pub base: Duration,
    /// Lognormal sigma of the jitter.
    pub jitter: f64,
    /// Share of single 10x outliers.
    pub outliers: f64,
}

/// When the brownout and the step start: after an hour of learning.
pub const ONSET: Duration = Duration::from_secs(3600);
/// The brownout: to 5x over 2 minutes (3x after 60 s), held 1 minute.
pub const RAMP: Duration = Duration::from_secs(120);
pub const HOLD: Duration = Duration::from_secs(60);

impl Scenarios {
    pub fn new(base: Duration) -> Self {
        Scenarios {
            base,
            jitter: 0.25,
            outliers: 0.01,
        }
    }

    fn model(&self) -> Latency {
        Latency {
            jitter: self.jitter,
            outliers: self.outliers,
            ..Latency::constant(self.base)
        }
    }

    /// 24 h with a 2x daily drift.
    pub fn day(&self) -> Latency {
        Latency {
            drift: 2.0,
            ..self.model()
        }
    }

    /// A lasting step to 1.5x at [`ONSET`].
    pub fn step(&self) -> Latency {
        let mut m = self.model();
        m.brownout = Some(Brownout {
            start: HumanDuration(ONSET),
            ramp: HumanDuration(Duration::ZERO),
            peak: 1.5,
            hold: None,
        });
        m
    }

    /// The brownout: a ramp to 5x over [`RAMP`] at [`ONSET`], held [`HOLD`].
    pub fn brownout(&self) -> Latency {
        let mut m = self.model();
        m.brownout = Some(Brownout {
            start: HumanDuration(ONSET),
            ramp: HumanDuration(RAMP),
            peak: 5.0,
            hold: Some(HumanDuration(HOLD)),
        });
        m
    }
}

/// One row of the table: a baseline and a threshold over every scenario.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// Trips over the 24 h with drift, and after the 1.5x step.
    pub day_trips: usize,
    pub step_trips: usize,
    /// Trips before the brownout started.
    pub early_trips: usize,
    /// From reaching 3x to the first trip, per seed (None: no trip).
    pub time_to_trip: Vec<Option<f64>>,
    /// The reason of that first trip, per seed.
    pub trip_reason: Vec<Option<TripReason>>,
    /// The slow-call threshold of the last probe before the brownout, per seed.
    pub onset_threshold: Vec<Duration>,
    /// Brownout end to closed, minus the open period in force then (s).
    pub recovery_margin: Vec<Option<f64>>,
    /// Largest |learned / true median - 1| over the day, after the warm-up.
    pub day_baseline_error: f64,
    /// |baseline 10 min after the brownout / before it - 1|.
    pub brownout_baseline_shift: f64,
}

const DAY: Duration = Duration::from_secs(86_400);

/// Every scenario of one baseline and threshold, over `seeds`.
pub fn evaluate(base: Duration, threshold: Threshold, seeds: &[u64]) -> Row {
    evaluate_config(base, &endpoint_config(base, threshold), seeds)
}

/// Every scenario of one baseline with `cfg`, over `seeds`.
pub fn evaluate_config(base: Duration, cfg: &EndpointConfig, seeds: &[u64]) -> Row {
    let s = Scenarios::new(base);
    let mut row = Row::default();
    let every_10_min: Vec<Duration> = (6..=144).map(|i| Duration::from_secs(600 * i)).collect();
    let three_x = ONSET + RAMP / 2;
    let end = ONSET + RAMP + HOLD;
    let after = end + Duration::from_secs(600);
    for &seed in seeds {
        let day = s.day();
        let t = run(cfg, &day, DAY, &every_10_min, seed);
        row.day_trips += t.trips.len();
        for (at, learned, _) in &t.checkpoints {
            let truth = day.median_at(*at).as_secs_f64();
            if let Some(l) = learned {
                let e = (l.as_secs_f64() / truth - 1.0).abs();
                row.day_baseline_error = row.day_baseline_error.max(e);
            }
        }
        let t = run(cfg, &s.step(), ONSET * 3, &[], seed);
        row.step_trips += t.trips.len();
        let t = run(cfg, &s.brownout(), after, &[ONSET, end, after], seed);
        row.early_trips += t.trips_in(Duration::ZERO, ONSET);
        let first = t.trips.iter().find(|(at, _)| *at >= ONSET);
        row.time_to_trip
            .push(first.map(|(at, _)| at.as_secs_f64() - three_x.as_secs_f64()));
        row.trip_reason.push(first.map(|(_, reason)| *reason));
        let before = t.log.iter().take_while(|p| p.0 < ONSET).last();
        row.onset_threshold
            .push(before.map_or(Duration::ZERO, |p| p.2));
        let closed = t.closes.iter().find(|c| **c >= end);
        let (_, open_at_end) = t.checkpoint(end);
        row.recovery_margin.push(match (first, closed) {
            (Some(_), Some(c)) => Some((*c - end).as_secs_f64() - open_at_end.as_secs_f64()),
            _ => None,
        });
        if let (Some(b0), Some(b1)) = (t.checkpoint(ONSET).0, t.checkpoint(after).0) {
            let shift = (b1.as_secs_f64() / b0.as_secs_f64() - 1.0).abs();
            row.brownout_baseline_shift = row.brownout_baseline_shift.max(shift);
        }
    }
    row
}
