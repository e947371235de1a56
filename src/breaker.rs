//! The circuit breaker: a pure state machine.
//!
//! No I/O, no tokio, no clock of its own: every call takes `now`, so the
//! breaker can be tested exhaustively and benchmarked in nanoseconds. The
//! scheduler asks [`Breaker::try_acquire`] before sending a probe and reports
//! the probe's outcome with [`Breaker::record`]; the gateway does the same
//! for each request it sends, whose outcome counts as a success or a failure
//! only (see [`Outcome`]).

use std::time::{Duration, Instant};

use crate::baseline::{AdaptiveConfig, Baseline, BaselineState};
use crate::label::label_enum;

label_enum! {
    /// Breaker states, exported as the one-hot `state` label.
    pub enum State {
        Closed = "closed",
        Open = "open",
        HalfOpen = "half_open",
        ForcedOpen = "forced_open",
        ForcedClosed = "forced_closed",
    }
}

impl State {
    /// Whether an enforcing breaker in this state lets traffic through.
    pub fn admits_traffic(self) -> bool {
        matches!(self, State::Closed | State::HalfOpen | State::ForcedClosed)
    }
}

label_enum! {
    /// Why a breaker entered `open` (or `forced_open`).
    pub enum TripReason {
        ConsecutiveFailures = "consecutive_failures",
        FailureRate = "failure_rate",
        SlowCalls = "slow_calls",
        HalfOpenFailure = "half_open_failure",
        Manual = "manual",
    }
}

/// Thresholds of one breaker (already validated by `config`).
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub failure_rate_threshold: f64,
    pub window: u32,
    pub min_calls: u32,
    pub slow_call_duration: Duration,
    pub slow_call_rate_threshold: f64,
    pub open_duration: Duration,
    pub max_open_duration: Duration,
    pub success_threshold: u32,
    /// `slow_call_duration: auto`: the threshold is learned from the
    /// endpoint's latency; `slow_call_duration` applies during the warm-up.
    pub adaptive: Option<AdaptiveConfig>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            failure_rate_threshold: 0.5,
            window: 20,
            min_calls: 10,
            slow_call_duration: Duration::from_secs(5),
            slow_call_rate_threshold: 1.0,
            open_duration: Duration::from_secs(60),
            max_open_duration: Duration::from_secs(600),
            success_threshold: 2,
            adaptive: None,
        }
    }
}

/// What a finished call tells the breaker: a probe's outcome, or a gateway
/// request's. Only probes are timed: a request's duration depends on the
/// request (prompt, tokens, a stream), so it is neither a slow call nor a
/// sample of the endpoint's latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A probe that answered well, in `duration`.
    Success { duration: Duration },
    /// A probe that failed.
    Failure,
    /// Not a health signal (auth errors, client errors, scaled to zero, ...).
    Ignored,
    /// A gateway request that answered well: a success, untimed.
    RequestSuccess,
    /// A gateway request that failed: a failure like a probe's.
    RequestFailure,
}

impl Outcome {
    /// A probe's or a request's failure.
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Failure | Outcome::RequestFailure)
    }
}

/// Permission to send one probe. Carries the breaker's epoch so that a probe
/// which finishes after the state changed (a slow confirmation probe landing
/// after the trip) cannot move the new state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permit {
    epoch: u64,
    trial: bool,
}

impl Permit {
    pub fn is_trial(&self) -> bool {
        self.trial
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    /// Set on every entry into `open` or `forced_open`.
    pub trip: Option<TripReason>,
}

/// Fixed-size ring of the last `window` recorded calls.
#[derive(Clone, Debug)]
struct Window {
    /// bit 0: failure, bit 1: slow
    slots: Box<[u8]>,
    next: usize,
    len: u32,
    failures: u32,
    slow: u32,
}

const FAILED: u8 = 1;
const SLOW: u8 = 2;

/// A slow call among this many newest calls keeps the endpoint a suspect.
const SLOW_SUSPECT_CALLS: u32 = 3;

/// Highest backoff step: 2^31 times any open period is past every cap.
const MAX_STEP: u32 = 31;

impl Window {
    fn new(size: u32) -> Self {
        Window {
            slots: vec![0; size.max(1) as usize].into_boxed_slice(),
            next: 0,
            len: 0,
            failures: 0,
            slow: 0,
        }
    }

    fn push(&mut self, flags: u8) {
        if self.len as usize == self.slots.len() {
            let old = self.slots[self.next];
            self.failures -= u32::from(old & FAILED);
            self.slow -= u32::from((old & SLOW) >> 1);
        } else {
            self.len += 1;
        }
        self.slots[self.next] = flags;
        self.failures += u32::from(flags & FAILED);
        self.slow += u32::from((flags & SLOW) >> 1);
        self.next = (self.next + 1) % self.slots.len();
    }

    /// The recorded calls, oldest first.
    fn calls(&self) -> impl Iterator<Item = u8> + '_ {
        let size = self.slots.len();
        let start = (self.next + size - self.len as usize) % size;
        (0..self.len as usize).map(move |i| self.slots[(start + i) % size])
    }

    /// A window of `size` holding the newest of `calls` (oldest first).
    fn with_calls(size: u32, calls: impl IntoIterator<Item = u8>) -> Self {
        let mut w = Window::new(size);
        for c in calls {
            w.push(c & (FAILED | SLOW));
        }
        w
    }

    /// Whether any of the newest `n` calls has `flag`.
    fn recent(&self, n: u32, flag: u8) -> bool {
        let size = self.slots.len();
        (1..=n.min(self.len) as usize)
            .any(|i| self.slots[(self.next + size - i) % size] & flag != 0)
    }

    fn clear(&mut self) {
        self.next = 0;
        self.len = 0;
        self.failures = 0;
        self.slow = 0;
    }

    fn failure_ratio(&self) -> f64 {
        if self.len == 0 {
            0.0
        } else {
            f64::from(self.failures) / f64::from(self.len)
        }
    }

    fn slow_ratio(&self) -> f64 {
        if self.len == 0 {
            0.0
        } else {
            f64::from(self.slow) / f64::from(self.len)
        }
    }
}

/// One call in the window, as a snapshot lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Success,
    Slow,
    Failure,
}

impl Call {
    fn flags(self) -> u8 {
        match self {
            Call::Success => 0,
            Call::Slow => SLOW,
            Call::Failure => FAILED,
        }
    }

    fn of_flags(flags: u8) -> Call {
        if flags & FAILED != 0 {
            Call::Failure
        } else if flags & SLOW != 0 {
            Call::Slow
        } else {
            Call::Success
        }
    }
}

/// Everything a breaker holds, with its times relative to the moment the
/// snapshot was taken, so that it can be restored on another clock (after a
/// restart) or kept across a reload. [`Breaker::restore`] of a snapshot taken
/// at `now` and restored at `now` behaves exactly like the original.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub state: State,
    /// How long ago the state was entered.
    pub since_ago: Duration,
    /// While `open`: what is left of the open period (zero when it is over).
    pub open_remaining: Option<Duration>,
    /// Doublings of the next open period.
    pub backoff_step: u32,
    /// The current (or last) open period, jitter included.
    pub open_duration: Duration,
    pub consecutive_failures: u32,
    pub half_open_successes: u32,
    /// Half-open trials that succeeded slower than the threshold.
    pub half_open_slow: u32,
    /// The window's calls, oldest first.
    pub window: Vec<Call>,
    /// The last `window` probes, which the slow-call ratio is taken over,
    /// oldest first; `None` when they are the window's calls (no gateway
    /// request among them, or a snapshot from before requests were told
    /// apart).
    pub probe_window: Option<Vec<Call>>,
    /// The jitter generator, so that a restored breaker draws the same periods.
    pub rng: u64,
    /// Only meaningful in the same process: permits carry it. A store that
    /// outlives the process sets it to 0 and `trial_in_flight` to false.
    pub epoch: u64,
    pub trial_in_flight: bool,
    /// The learned latency baseline.
    pub baseline: BaselineState,
}

/// Spreads nearby seeds (endpoint 1, 2, 3...) over the whole state space.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Clone, Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: State,
    since: Instant,
    epoch: u64,
    open_until: Option<Instant>,
    /// Doublings of the next open period: it lasts `open_duration * 2^step`
    /// (capped). A step, not a duration, so that new thresholds rescale it.
    backoff_step: u32,
    /// Actual length of the current (or last) open period, jitter included.
    current_open: Duration,
    consecutive_failures: u32,
    half_open_successes: u32,
    half_open_slow: u32,
    trial_in_flight: bool,
    /// Every call, probes and gateway requests: the failure rate.
    window: Window,
    /// The last `window` probes: the slow-call ratio. Gateway requests are
    /// not timed (their duration depends on the request), so they must not
    /// dilute it; without requests it holds what `window` holds.
    probes: Window,
    rng: u64,
    baseline: Baseline,
}

/// How the baseline learns when the threshold is fixed: it is still shown,
/// and ready should the endpoint switch to `auto`.
const LEARNING: AdaptiveConfig = AdaptiveConfig {
    factor: 2.0,
    min: Duration::from_millis(10),
    max: Duration::from_secs(10),
    warmup_calls: 20,
    half_life: Duration::from_secs(3600),
};

impl Breaker {
    /// `seed` drives the ±10% backoff jitter; give each endpoint its own.
    pub fn new(cfg: BreakerConfig, now: Instant, seed: u64) -> Self {
        let window = Window::new(cfg.window);
        Breaker {
            backoff_step: 0,
            current_open: cfg.open_duration,
            cfg,
            state: State::Closed,
            since: now,
            epoch: 0,
            open_until: None,
            consecutive_failures: 0,
            half_open_successes: 0,
            half_open_slow: 0,
            trial_in_flight: false,
            probes: window.clone(),
            window,
            rng: splitmix64(seed) | 1,
            baseline: Baseline::new(),
        }
    }

    /// Take new thresholds without losing state. Nothing trips here: a
    /// state the new thresholds would have tripped trips at the next recorded
    /// call. A smaller window keeps the newest calls; the backoff step is
    /// kept and rescaled by the new open durations; a running open period
    /// keeps its end, unless that is further away than the longest period
    /// the new config allows (an operator who lowers `max_open_duration`
    /// wants no circuit open longer than that), as [`Breaker::restore`] does.
    pub fn reconfigure(&mut self, cfg: BreakerConfig, now: Instant) {
        if self.window.slots.len() != cfg.window.max(1) as usize {
            let calls: Vec<u8> = self.window.calls().collect();
            self.window = Window::with_calls(cfg.window, calls);
            let calls: Vec<u8> = self.probes.calls().collect();
            self.probes = Window::with_calls(cfg.window, calls);
        }
        let cap = cfg.max_open_duration.max(cfg.open_duration);
        if let Some(until) = self.open_until
            && until.saturating_duration_since(now) > cap
        {
            self.open_until = Some(now.checked_add(cap).unwrap_or(now));
        }
        self.cfg = cfg;
    }

    /// The whole state at `now`; see [`Snapshot`].
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        Snapshot {
            state: self.state,
            since_ago: now.saturating_duration_since(self.since),
            open_remaining: self.open_until.map(|u| u.saturating_duration_since(now)),
            backoff_step: self.backoff_step,
            open_duration: self.current_open,
            consecutive_failures: self.consecutive_failures,
            half_open_successes: self.half_open_successes,
            half_open_slow: self.half_open_slow,
            window: self.window.calls().map(Call::of_flags).collect(),
            probe_window: (!self.probes.calls().eq(self.window.calls()))
                .then(|| self.probes.calls().map(Call::of_flags).collect()),
            rng: self.rng,
            epoch: self.epoch,
            trial_in_flight: self.trial_in_flight,
            baseline: self.baseline.snapshot(now),
        }
    }

    /// A breaker with `cfg` in the state of `snap`, at `now`. Total: any
    /// snapshot (a stored one may come from an older config or a damaged
    /// file) gives a consistent breaker. An `open` one without a remaining
    /// period is due for its half-open trial; a remaining period is never
    /// longer than the longest period `cfg` allows.
    pub fn restore(cfg: BreakerConfig, snap: &Snapshot, now: Instant) -> Breaker {
        let cap = cfg.max_open_duration.max(cfg.open_duration);
        let open_until = (snap.state == State::Open).then(|| {
            let left = snap.open_remaining.unwrap_or_default().min(cap);
            now.checked_add(left).unwrap_or(now)
        });
        let window = Window::with_calls(cfg.window, snap.window.iter().map(|c| c.flags()));
        let probes = match &snap.probe_window {
            Some(p) => Window::with_calls(cfg.window, p.iter().map(|c| c.flags())),
            None => window.clone(),
        };
        Breaker {
            state: snap.state,
            since: now.checked_sub(snap.since_ago).unwrap_or(now),
            epoch: snap.epoch,
            open_until,
            backoff_step: snap.backoff_step.min(MAX_STEP),
            current_open: snap.open_duration,
            consecutive_failures: snap.consecutive_failures,
            half_open_successes: if snap.state == State::HalfOpen {
                snap.half_open_successes
            } else {
                0
            },
            half_open_slow: if snap.state == State::HalfOpen {
                snap.half_open_slow
            } else {
                0
            },
            trial_in_flight: snap.state == State::HalfOpen && snap.trial_in_flight,
            window,
            probes,
            // xorshift never leaves a non-zero state, but 0 would stick there.
            rng: if snap.rng == 0 { 1 } else { snap.rng },
            baseline: Baseline::restore(&snap.baseline, now),
            cfg,
        }
    }

    /// Doublings of the next open period (0 after a close or a reset).
    pub fn backoff_step(&self) -> u32 {
        self.backoff_step
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.cfg
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// When the current state was entered.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// End of the current open period, while `open`.
    pub fn open_until(&self) -> Option<Instant> {
        self.open_until
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Share of failures among the calls in the window (0 when empty).
    pub fn failure_ratio(&self) -> f64 {
        self.window.failure_ratio()
    }

    /// Share of slow calls among the last `window` probes (0 when none).
    pub fn slow_call_ratio(&self) -> f64 {
        self.probes.slow_ratio()
    }

    /// Above this a successful probe is a slow call: the fixed
    /// `slow_call_duration`, or with `auto` the learned threshold once warm.
    pub fn slow_call_threshold(&self) -> Duration {
        match &self.cfg.adaptive {
            Some(a) => self.baseline.threshold(a, self.cfg.slow_call_duration),
            None => self.cfg.slow_call_duration,
        }
    }

    /// The endpoint's learned probe latency, once warmed up.
    pub fn latency_baseline(&self) -> Option<Duration> {
        self.baseline.value()
    }

    /// Whether the slow-call rule can trip at all.
    fn slow_rule(&self) -> bool {
        self.cfg.slow_call_rate_threshold < 1.0
    }

    /// A slow call is confirmed like a failure: while one of the newest
    /// [`SLOW_SUSPECT_CALLS`] calls was slow, or slow calls fill half of what
    /// trips (so that a fast answer or two amid a brownout's slow ones do not
    /// end the confirmation).
    fn slow_suspect(&self) -> bool {
        self.slow_rule()
            && (self.probes.recent(SLOW_SUSPECT_CALLS, SLOW)
                || (self.probes.slow > 0
                    && self.probes.slow_ratio() >= self.cfg.slow_call_rate_threshold / 2.0))
    }

    pub fn window_len(&self) -> u32 {
        self.window.len
    }

    /// The current open period (jitter included); the backoff.
    pub fn open_duration(&self) -> Duration {
        self.current_open
    }

    pub fn trial_in_flight(&self) -> bool {
        self.trial_in_flight
    }

    /// Whether a failure is being confirmed: the scheduler probes faster then.
    pub fn confirming(&self) -> bool {
        match self.state {
            State::Closed | State::ForcedClosed => {
                self.consecutive_failures > 0 || self.slow_suspect()
            }
            State::HalfOpen => true,
            State::Open | State::ForcedOpen => false,
        }
    }

    /// Ask to send one probe. An `open` breaker whose period has ended moves
    /// to `half_open` here and grants the trial.
    pub fn try_acquire(&mut self, now: Instant) -> (Option<Permit>, Option<Transition>) {
        match self.state {
            State::Closed | State::ForcedClosed => (Some(self.permit(false)), None),
            State::ForcedOpen => (None, None),
            State::Open => match self.open_until {
                Some(until) if now >= until => {
                    let t = self.enter(State::HalfOpen, now, None);
                    self.trial_in_flight = true;
                    (Some(self.permit(true)), Some(t))
                }
                _ => (None, None),
            },
            State::HalfOpen => {
                if self.trial_in_flight {
                    (None, None)
                } else {
                    self.trial_in_flight = true;
                    (Some(self.permit(true)), None)
                }
            }
        }
    }

    /// Ask to send one gateway request. As [`Breaker::try_acquire`], except
    /// that with the slow-call rule on a request never takes a half-open
    /// trial: a request's duration depends on the request, so only a probe can
    /// tell whether the brownout is over. Requests that took the trials would
    /// close a breaker tripped on `slow_calls` while it is still slow.
    pub fn try_acquire_request(&mut self, now: Instant) -> (Option<Permit>, Option<Transition>) {
        let trial_next = match self.state {
            State::HalfOpen => true,
            State::Open => self.open_until.is_some_and(|until| now >= until),
            _ => false,
        };
        if trial_next && self.slow_rule() {
            return (None, None);
        }
        self.try_acquire(now)
    }

    fn permit(&self, trial: bool) -> Permit {
        Permit {
            epoch: self.epoch,
            trial,
        }
    }

    /// Report the outcome of a probe sent under `permit`. Outcomes of probes
    /// granted before the last state change are stale and change nothing.
    pub fn record(&mut self, permit: Permit, outcome: Outcome, now: Instant) -> Option<Transition> {
        if permit.epoch != self.epoch {
            return None;
        }
        match self.state {
            State::Closed | State::ForcedClosed => self.record_closed(outcome, now),
            State::HalfOpen => {
                self.trial_in_flight = false;
                match outcome {
                    Outcome::Ignored => None,
                    // A trial slower than the threshold does not count towards
                    // closing; `success_threshold` of them reopen: the brownout
                    // goes on. One slow outlier costs one more trial.
                    Outcome::Success { duration }
                        if self.slow_rule() && duration > self.slow_call_threshold() =>
                    {
                        self.half_open_slow += 1;
                        if self.half_open_slow >= self.cfg.success_threshold {
                            self.backoff_step = (self.backoff_step + 1).min(MAX_STEP);
                            Some(self.trip(TripReason::SlowCalls, now))
                        } else {
                            None
                        }
                    }
                    Outcome::Success { .. } | Outcome::RequestSuccess => {
                        self.half_open_successes += 1;
                        if self.half_open_successes >= self.cfg.success_threshold {
                            self.backoff_step = 0;
                            Some(self.enter(State::Closed, now, None))
                        } else {
                            None
                        }
                    }
                    Outcome::Failure | Outcome::RequestFailure => {
                        // Capped so that the doubling cannot overflow.
                        self.backoff_step = (self.backoff_step + 1).min(MAX_STEP);
                        Some(self.trip(TripReason::HalfOpenFailure, now))
                    }
                }
            }
            State::Open | State::ForcedOpen => None,
        }
    }

    fn record_closed(&mut self, outcome: Outcome, now: Instant) -> Option<Transition> {
        match outcome {
            Outcome::Ignored => return None,
            Outcome::Success { duration } => {
                self.consecutive_failures = 0;
                let flags = if duration > self.slow_call_threshold() {
                    SLOW
                } else {
                    0
                };
                self.window.push(flags);
                self.probes.push(flags);
                // Learn only what `closed` sees: not a forced state, not a trial.
                if self.state == State::Closed {
                    let learning = self.cfg.adaptive.as_ref().unwrap_or(&LEARNING);
                    self.baseline.observe(learning, duration, now);
                }
            }
            Outcome::Failure => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.window.push(FAILED);
                self.probes.push(FAILED);
            }
            // Requests: the failure rate and the consecutive failures only.
            Outcome::RequestSuccess => {
                self.consecutive_failures = 0;
                self.window.push(0);
            }
            Outcome::RequestFailure => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.window.push(FAILED);
            }
        }
        if self.state == State::ForcedClosed {
            return None;
        }
        let reason = self.trip_reason()?;
        Some(self.trip(reason, now))
    }

    fn trip_reason(&self) -> Option<TripReason> {
        if self.consecutive_failures >= self.cfg.failure_threshold {
            return Some(TripReason::ConsecutiveFailures);
        }
        if self.window.len >= self.cfg.min_calls {
            if self.window.failures > 0
                && self.window.failure_ratio() >= self.cfg.failure_rate_threshold
            {
                return Some(TripReason::FailureRate);
            }
            // Over the probes only; without requests the same calls.
            if self.slow_rule()
                && self.probes.len >= self.cfg.min_calls
                && self.probes.slow > 0
                && self.probes.slow_ratio() >= self.cfg.slow_call_rate_threshold
            {
                return Some(TripReason::SlowCalls);
            }
        }
        None
    }

    /// Nominal (un-jittered) length of the next open period.
    fn backoff(&self) -> Duration {
        if self.backoff_step == 0 {
            return self.cfg.open_duration;
        }
        let factor = 1u32 << self.backoff_step.min(MAX_STEP);
        self.cfg
            .open_duration
            .checked_mul(factor)
            .map_or(self.cfg.max_open_duration, |d| {
                d.min(self.cfg.max_open_duration)
            })
    }

    fn trip(&mut self, reason: TripReason, now: Instant) -> Transition {
        self.current_open = self.jittered(self.backoff());
        let t = self.enter(State::Open, now, Some(reason));
        self.open_until = Some(now + self.current_open);
        t
    }

    /// ±10% jitter so that breakers tripped together do not retry together;
    /// never past the configured cap.
    fn jittered(&mut self, nominal: Duration) -> Duration {
        // xorshift64*: deterministic per seed, no dependency, no I/O.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        let unit = r as f64 / (1u64 << 53) as f64; // [0, 1)
        let factor = 0.9 + 0.2 * unit;
        nominal
            .mul_f64(factor)
            .min(self.cfg.max_open_duration.max(self.cfg.open_duration))
    }

    fn enter(&mut self, to: State, now: Instant, trip: Option<TripReason>) -> Transition {
        let from = self.state;
        self.state = to;
        self.since = now;
        // Wrapping: only equality matters, and a restored epoch may be any value.
        self.epoch = self.epoch.wrapping_add(1);
        self.trial_in_flight = false;
        self.half_open_successes = 0;
        self.half_open_slow = 0;
        if to != State::Open {
            self.open_until = None;
        }
        if matches!(to, State::Closed | State::ForcedClosed) {
            self.consecutive_failures = 0;
            self.window.clear();
            self.probes.clear();
        }
        Transition { from, to, trip }
    }

    /// The server asked for `wait` before the next call (`Retry-After` on a
    /// 429 or 503): while `open`, the open period lasts at least that long
    /// from `now`, never past `max_open_duration` from `now`, and never
    /// shorter than it already was. Returns whether the end moved.
    pub fn hold_open_at_least(&mut self, wait: Duration, now: Instant) -> bool {
        let Some(until) = self.open_until.filter(|_| self.state == State::Open) else {
            return false;
        };
        let cap = self.cfg.max_open_duration.max(self.cfg.open_duration);
        let Some(wanted) = now.checked_add(wait.min(cap)) else {
            return false;
        };
        if wanted <= until {
            return false;
        }
        self.open_until = Some(wanted);
        self.current_open = wanted.saturating_duration_since(self.since);
        true
    }

    /// Admin action: hold the breaker open until reset.
    pub fn force_open(&mut self, now: Instant) -> Option<Transition> {
        (self.state != State::ForcedOpen)
            .then(|| self.enter(State::ForcedOpen, now, Some(TripReason::Manual)))
    }

    /// Admin action: hold the breaker closed (never trips) until reset.
    pub fn force_closed(&mut self, now: Instant) -> Option<Transition> {
        (self.state != State::ForcedClosed).then(|| self.enter(State::ForcedClosed, now, None))
    }

    /// Admin action: back to `closed` with counters and backoff cleared.
    pub fn reset(&mut self, now: Instant) -> Option<Transition> {
        self.backoff_step = 0;
        self.current_open = self.cfg.open_duration;
        self.consecutive_failures = 0;
        self.window.clear();
        self.probes.clear();
        (self.state != State::Closed).then(|| self.enter(State::Closed, now, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_lengthens_an_open_period_within_the_cap() {
        let cfg = BreakerConfig {
            failure_threshold: 1,
            open_duration: Duration::from_secs(1),
            max_open_duration: Duration::from_secs(30),
            ..Default::default()
        };
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg, t0, 7);
        // Not open: nothing to lengthen.
        assert!(!b.hold_open_at_least(Duration::from_secs(10), t0));
        let (p, _) = b.try_acquire(t0);
        b.record(p.unwrap(), Outcome::Failure, t0);
        assert_eq!(b.state(), State::Open);
        let before = b.open_until().unwrap();
        // Shorter than the period: unchanged.
        assert!(!b.hold_open_at_least(Duration::from_millis(10), t0));
        assert_eq!(b.open_until(), Some(before));
        assert!(b.hold_open_at_least(Duration::from_secs(10), t0));
        assert_eq!(b.open_until(), Some(t0 + Duration::from_secs(10)));
        // Bounded by max_open_duration.
        assert!(b.hold_open_at_least(Duration::from_secs(3600), t0));
        assert_eq!(b.open_until(), Some(t0 + Duration::from_secs(30)));
        // No trial before the new end, one after it.
        assert_eq!(b.try_acquire(t0 + Duration::from_secs(29)).0, None);
        assert!(b.try_acquire(t0 + Duration::from_secs(30)).0.is_some());
        // Any other state: no effect.
        assert!(!b.hold_open_at_least(Duration::from_secs(10), t0));
    }

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            failure_rate_threshold: 0.5,
            window: 10,
            min_calls: 6,
            slow_call_duration: Duration::from_millis(500),
            slow_call_rate_threshold: 0.8,
            open_duration: Duration::from_secs(10),
            max_open_duration: Duration::from_secs(60),
            success_threshold: 2,
            adaptive: None,
        }
    }

    const OK: Outcome = Outcome::Success {
        duration: Duration::from_millis(10),
    };
    const SLOW_OK: Outcome = Outcome::Success {
        duration: Duration::from_secs(1),
    };

    fn call(b: &mut Breaker, o: Outcome, now: Instant) -> Option<Transition> {
        let (p, _) = b.try_acquire(now);
        b.record(p.expect("permitted"), o, now)
    }

    fn trip(b: &mut Breaker, now: Instant) -> Transition {
        for _ in 0..2 {
            assert_eq!(call(b, Outcome::Failure, now), None);
        }
        call(b, Outcome::Failure, now).expect("trips on the third failure")
    }

    fn auto() -> BreakerConfig {
        BreakerConfig {
            slow_call_rate_threshold: 0.5,
            adaptive: Some(AdaptiveConfig {
                warmup_calls: 3,
                ..AdaptiveConfig::default()
            }),
            ..cfg()
        }
    }

    fn ok_in(ms: u64) -> Outcome {
        Outcome::Success {
            duration: Duration::from_millis(ms),
        }
    }

    #[test]
    fn auto_threshold_is_fixed_until_warm_then_learned_and_trips_slow_calls() {
        let t0 = Instant::now();
        let mut b = Breaker::new(auto(), t0, 1);
        assert_eq!(b.slow_call_threshold(), Duration::from_millis(500));
        assert_eq!(b.latency_baseline(), None);
        let mut now = t0;
        for _ in 0..3 {
            now += Duration::from_secs(15);
            assert_eq!(call(&mut b, ok_in(100), now), None);
        }
        assert_eq!(b.latency_baseline(), Some(Duration::from_millis(100)));
        assert_eq!(b.slow_call_threshold(), Duration::from_millis(200));
        // 250 ms was fast under the fixed 500 ms; now it is slow
        let mut trip = None;
        while trip.is_none() && b.window_len() < 10 {
            now += Duration::from_secs(1);
            trip = call(&mut b, ok_in(250), now);
        }
        assert_eq!(trip.and_then(|t| t.trip), Some(TripReason::SlowCalls));
        assert_eq!(b.window_len(), 6, "min_calls");
        // nothing is learned while open, half-open or forced closed
        let before = b.latency_baseline();
        b.force_closed(now);
        call(&mut b, ok_in(5000), now + Duration::from_secs(3600));
        assert_eq!(b.latency_baseline(), before);
    }

    #[test]
    fn fixed_threshold_still_learns_the_baseline_for_display() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0, 1);
        for i in 0..20 {
            call(&mut b, ok_in(40), t0 + Duration::from_secs(i));
        }
        assert_eq!(b.latency_baseline(), Some(Duration::from_millis(40)));
        assert_eq!(b.slow_call_threshold(), Duration::from_millis(500));
    }

    #[test]
    fn a_slow_call_makes_a_suspect_until_three_fast_ones() {
        let t0 = Instant::now();
        let mut b = Breaker::new(auto(), t0, 1);
        call(&mut b, OK, t0);
        assert!(!b.confirming());
        call(&mut b, SLOW_OK, t0);
        assert!(b.confirming(), "a slow call is confirmed like a failure");
        for i in 0..3 {
            assert!(b.confirming(), "{i}");
            call(&mut b, OK, t0);
        }
        // the window holds 1 slow of 5 (< half of 0.5): no longer a suspect
        assert!(!b.confirming());
        // the slow-call rule off (rate 1.0): slow calls are not confirmed
        let mut off = Breaker::new(cfg_rate(1.0), t0, 1);
        call(&mut off, SLOW_OK, t0);
        assert!(!off.confirming());
    }

    fn cfg_rate(rate: f64) -> BreakerConfig {
        BreakerConfig {
            slow_call_rate_threshold: rate,
            ..cfg()
        }
    }

    #[test]
    fn slow_trials_do_not_close_and_enough_of_them_reopen() {
        let t0 = Instant::now();
        let mut b = Breaker::new(auto(), t0, 1);
        trip(&mut b, t0);
        let until = b.open_until().unwrap();
        // one slow trial (an outlier) is inconclusive: half-open, another trial
        assert_eq!(call(&mut b, SLOW_OK, until), None);
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(call(&mut b, OK, until), None);
        assert_eq!(call(&mut b, OK, until).map(|t| t.to), Some(State::Closed));
        // success_threshold (2) slow trials: the brownout goes on
        trip(&mut b, until);
        let until = b.open_until().unwrap();
        call(&mut b, SLOW_OK, until);
        let t = call(&mut b, SLOW_OK, until).expect("reopens");
        assert_eq!((t.to, t.trip), (State::Open, Some(TripReason::SlowCalls)));
        assert_eq!(b.backoff_step(), 1);
    }

    /// A probe under a fresh permit.
    fn probe(b: &mut Breaker, o: Outcome, now: Instant) -> Option<Transition> {
        call(b, o, now)
    }

    /// `n` gateway requests that answered well.
    fn requests_ok(b: &mut Breaker, n: usize, now: Instant) {
        for _ in 0..n {
            assert_eq!(call(b, Outcome::RequestSuccess, now), None);
        }
    }

    #[test]
    fn gateway_successes_neither_teach_the_baseline_nor_hide_a_brownout() {
        let t0 = Instant::now();
        let mut b = Breaker::new(auto(), t0, 1);
        let mut now = t0;
        for _ in 0..3 {
            now += Duration::from_secs(15);
            probe(&mut b, ok_in(100), now);
        }
        assert_eq!(b.latency_baseline(), Some(Duration::from_millis(100)));
        // An hour of traffic: 10 requests a second, a probe every 15 s.
        for i in 1..=36_000 {
            now += Duration::from_millis(100);
            requests_ok(&mut b, 1, now);
            if i % 150 == 0 {
                assert_eq!(probe(&mut b, ok_in(100), now), None);
            }
        }
        let v = b.latency_baseline().unwrap().as_secs_f64();
        assert!((v / 0.1 - 1.0).abs() < 1e-9, "requests moved it: {v}");
        assert_eq!(b.slow_call_threshold(), Duration::from_millis(200));
        assert_eq!(b.slow_call_ratio(), 0.0);
        // A brownout of the probes amid the same traffic: slow_calls trips
        // once half the last `window` probes are slow, as without traffic.
        let mut trip = None;
        let mut slow_probes = 0;
        while trip.is_none() && slow_probes < 10 {
            for _ in 0..10 {
                now += Duration::from_millis(100);
                requests_ok(&mut b, 1, now);
            }
            slow_probes += 1;
            trip = probe(&mut b, ok_in(250), now);
        }
        assert_eq!(trip.and_then(|t| t.trip), Some(TripReason::SlowCalls));
        assert_eq!(slow_probes, 5, "5 of the last 10 probes slow");
    }

    #[test]
    fn gateway_successes_do_not_complete_the_warm_up() {
        let t0 = Instant::now();
        let mut b = Breaker::new(auto(), t0, 1);
        let mut now = t0;
        for _ in 0..2 {
            now += Duration::from_secs(15);
            probe(&mut b, ok_in(100), now);
            requests_ok(&mut b, 1000, now);
        }
        assert_eq!(b.latency_baseline(), None, "still warming up");
        assert_eq!(b.slow_call_threshold(), Duration::from_millis(500));
        now += Duration::from_secs(15);
        probe(&mut b, ok_in(120), now);
        // the median of the three probes, not of zeros
        assert_eq!(b.latency_baseline(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn gateway_calls_do_not_dilute_the_slow_call_ratio_of_a_fixed_threshold() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0, 1);
        let mut trip = None;
        let mut slow_probes = 0;
        // a request failure now and then: counted, but no failure-rate trip
        while trip.is_none() && slow_probes < 10 {
            slow_probes += 1;
            trip = probe(&mut b, SLOW_OK, t0);
            if trip.is_none() {
                requests_ok(&mut b, 1, t0);
                assert_eq!(call(&mut b, Outcome::RequestFailure, t0), None);
                requests_ok(&mut b, 1, t0);
            }
        }
        assert_eq!(trip.and_then(|t| t.trip), Some(TripReason::SlowCalls));
        assert_eq!(slow_probes, 6, "min_calls slow probes");
    }

    #[test]
    fn with_the_slow_call_rule_on_only_probes_take_half_open_trials() {
        let t0 = Instant::now();
        // Slow rule off: a request may take the trial and close the breaker.
        let off = BreakerConfig {
            slow_call_rate_threshold: 1.0,
            ..cfg()
        };
        let mut b = Breaker::new(off, t0, 1);
        trip(&mut b, t0);
        let until = b.open_until().unwrap();
        assert_eq!(
            b.try_acquire_request(until - Duration::from_millis(1)).0,
            None
        );
        for _ in 0..2 {
            let (p, _) = b.try_acquire_request(until);
            assert!(p.expect("a request takes the trial").is_trial());
            b.record(p.unwrap(), Outcome::RequestSuccess, until);
        }
        assert_eq!(b.state(), State::Closed);
        assert!(b.try_acquire_request(until).0.is_some(), "closed admits");

        // Slow rule on: requests never take a trial, so a breaker tripped on
        // slow calls closes only on fast probes.
        let mut b = Breaker::new(auto(), t0, 1);
        trip(&mut b, t0);
        let until = b.open_until().unwrap();
        assert_eq!(b.try_acquire_request(until), (None, None), "still open");
        assert_eq!(b.state(), State::Open);
        let (p, t) = b.try_acquire(until);
        assert_eq!(t.map(|t| t.to), Some(State::HalfOpen));
        assert_eq!(b.try_acquire_request(until), (None, None), "trial is out");
        b.record(p.unwrap(), OK, until);
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(
            b.try_acquire_request(until),
            (None, None),
            "no trial for requests"
        );
        let (p, _) = b.try_acquire(until);
        b.record(p.expect("a probe takes the trial"), OK, until);
        assert_eq!(b.state(), State::Closed);
        assert!(b.try_acquire_request(until).0.is_some(), "closed admits");
    }

    #[test]
    fn gateway_outcomes_count_as_successes_and_failures() {
        let t0 = Instant::now();
        // consecutive failures
        let mut b = Breaker::new(cfg(), t0, 1);
        call(&mut b, Outcome::RequestFailure, t0);
        call(&mut b, Outcome::Failure, t0);
        let t = call(&mut b, Outcome::RequestFailure, t0).expect("trips");
        assert_eq!(t.trip, Some(TripReason::ConsecutiveFailures));
        // a request's success resets the count; the failure rate counts both
        let mut b = Breaker::new(cfg(), t0, 1);
        for o in [
            Outcome::RequestFailure,
            Outcome::RequestSuccess,
            Outcome::Failure,
            OK,
            Outcome::RequestFailure,
        ] {
            assert_eq!(call(&mut b, o, t0), None);
            assert!(b.consecutive_failures() <= 1);
        }
        let t = call(&mut b, Outcome::RequestSuccess, t0).expect("3/6 failed");
        assert_eq!(t.trip, Some(TripReason::FailureRate));
        // half-open: requests close and reopen like probes
        let until = b.open_until().unwrap();
        call(&mut b, Outcome::RequestSuccess, until);
        let t = call(&mut b, Outcome::RequestSuccess, until).expect("closes");
        assert_eq!(t.to, State::Closed);
        trip(&mut b, until);
        let until = b.open_until().unwrap();
        let t = call(&mut b, Outcome::RequestFailure, until).expect("reopens");
        assert_eq!(t.trip, Some(TripReason::HalfOpenFailure));
    }

    #[test]
    fn the_probe_window_survives_snapshot_restore_and_reconfigure() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0, 1);
        for _ in 0..4 {
            probe(&mut b, SLOW_OK, t0);
            requests_ok(&mut b, 3, t0);
        }
        assert_eq!(b.slow_call_ratio(), 1.0);
        let snap = b.snapshot(t0);
        let mut r = Breaker::restore(cfg(), &snap, t0);
        assert_eq!(r.snapshot(t0), snap);
        b.reconfigure(cfg(), t0);
        for x in [&mut b, &mut r] {
            assert_eq!(x.slow_call_ratio(), 1.0);
            probe(x, SLOW_OK, t0);
            let t = probe(x, SLOW_OK, t0).expect("6 slow probes");
            assert_eq!(t.trip, Some(TripReason::SlowCalls));
        }
        // a snapshot without a probe window (an older file): the window's calls
        let mut b = Breaker::new(cfg(), t0, 1);
        probe(&mut b, SLOW_OK, t0);
        probe(&mut b, OK, t0);
        let snap = b.snapshot(t0);
        assert_eq!(snap.probe_window, None, "the same as the window");
        let r = Breaker::restore(cfg(), &snap, t0);
        assert_eq!(r.slow_call_ratio(), 0.5);
    }

    #[test]
    fn the_baseline_survives_snapshot_restore_and_reconfigure() {
        let t0 = Instant::now();
        let mut b = Breaker::new(auto(), t0, 1);
        for i in 0..3 {
            call(&mut b, ok_in(80), t0 + Duration::from_secs(i));
        }
        let now = t0 + Duration::from_secs(10);
        let r = Breaker::restore(cfg(), &b.snapshot(now), now);
        assert_eq!(r.latency_baseline(), Some(Duration::from_millis(80)));
        b.reconfigure(cfg(), now);
        assert_eq!(b.latency_baseline(), Some(Duration::from_millis(80)));
        assert_eq!(
            b.slow_call_threshold(),
            Duration::from_millis(500),
            "fixed again"
        );
        b.reset(now);
        assert_eq!(
            b.latency_baseline(),
            Some(Duration::from_millis(80)),
            "reset keeps it"
        );
    }

    #[test]
    fn trips_on_consecutive_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0, 7);
        let t = trip(&mut b, t0);
        assert_eq!(
            t,
            Transition {
                from: State::Closed,
                to: State::Open,
                trip: Some(TripReason::ConsecutiveFailures)
            }
        );
        assert_eq!(b.state(), State::Open);
        assert!(b.open_until().unwrap() >= t0 + Duration::from_secs(9));
        assert!(b.open_until().unwrap() <= t0 + Duration::from_secs(11));
    }

    #[test]
    fn success_resets_consecutive_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0, 7);
        call(&mut b, Outcome::Failure, t0);
        call(&mut b, Outcome::Failure, t0);
        call(&mut b, OK, t0);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(call(&mut b, Outcome::Failure, t0), None);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn transition_table() {
        // (setup, action, expected state, expected trip)
        type Setup = fn(&mut Breaker, Instant);
        type Action = Box<dyn Fn(&mut Breaker) -> Option<Transition>>;
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(61);
        let cases: Vec<(&str, Setup, Action, State, Option<TripReason>)> = vec![
            (
                "closed+success",
                |_, _| {},
                Box::new(move |b| call(b, OK, t0)),
                State::Closed,
                None,
            ),
            (
                "closed+ignored",
                |_, _| {},
                Box::new(move |b| call(b, Outcome::Ignored, t0)),
                State::Closed,
                None,
            ),
            (
                "open rejects before period end",
                |b, t| {
                    trip(b, t);
                },
                Box::new(move |b| {
                    assert!(b.try_acquire(t0 + Duration::from_secs(5)).0.is_none());
                    None
                }),
                State::Open,
                None,
            ),
            (
                "open->half_open at period end",
                |b, t| {
                    trip(b, t);
                },
                Box::new(move |b| b.try_acquire(later).1),
                State::HalfOpen,
                None,
            ),
            (
                "half_open+success stays until threshold",
                |b, t| {
                    trip(b, t);
                },
                Box::new(move |b| call(b, OK, later)),
                State::HalfOpen,
                None,
            ),
            (
                "half_open+2 successes closes",
                |b, t| {
                    trip(b, t);
                    call(b, OK, t + Duration::from_secs(61));
                },
                Box::new(move |b| call(b, OK, later)),
                State::Closed,
                None,
            ),
            (
                "half_open+failure reopens",
                |b, t| {
                    trip(b, t);
                },
                Box::new(move |b| call(b, Outcome::Failure, later)),
                State::Open,
                Some(TripReason::HalfOpenFailure),
            ),
            (
                "half_open+ignored stays",
                |b, t| {
                    trip(b, t);
                },
                Box::new(move |b| call(b, Outcome::Ignored, later)),
                State::HalfOpen,
                None,
            ),
            (
                "closed->forced_open",
                |_, _| {},
                Box::new(move |b| b.force_open(t0)),
                State::ForcedOpen,
                Some(TripReason::Manual),
            ),
            (
                "open->forced_open",
                |b, t| {
                    trip(b, t);
                },
                Box::new(move |b| b.force_open(t0)),
                State::ForcedOpen,
                Some(TripReason::Manual),
            ),
            (
                "closed->forced_closed",
                |_, _| {},
                Box::new(move |b| b.force_closed(t0)),
                State::ForcedClosed,
                None,
            ),
            (
                "open->forced_closed",
                |b, t| {
                    trip(b, t);
                },
                Box::new(move |b| b.force_closed(t0)),
                State::ForcedClosed,
                None,
            ),
            (
                "forced_open->reset",
                |b, t| {
                    b.force_open(t);
                },
                Box::new(move |b| b.reset(t0)),
                State::Closed,
                None,
            ),
            (
                "forced_closed->reset",
                |b, t| {
                    b.force_closed(t);
                },
                Box::new(move |b| b.reset(t0)),
                State::Closed,
                None,
            ),
            (
                "open->reset",
                |b, t| {
                    trip(b, t);
                },
                Box::new(move |b| b.reset(t0)),
                State::Closed,
                None,
            ),
            (
                "half_open->reset",
                |b, t| {
                    trip(b, t);
                    b.try_acquire(t + Duration::from_secs(61));
                },
                Box::new(move |b| b.reset(later)),
                State::Closed,
                None,
            ),
            (
                "forced_closed never trips",
                |b, t| {
                    b.force_closed(t);
                },
                Box::new(move |b| {
                    for _ in 0..20 {
                        call(b, Outcome::Failure, t0);
                    }
                    None
                }),
                State::ForcedClosed,
                None,
            ),
            (
                "forced_open rejects after any time",
                |b, t| {
                    b.force_open(t);
                },
                Box::new(move |b| {
                    assert!(b.try_acquire(later + Duration::from_secs(9999)).0.is_none());
                    None
                }),
                State::ForcedOpen,
                None,
            ),
            (
                "forced_open->forced_closed",
                |b, t| {
                    b.force_open(t);
                },
                Box::new(move |b| b.force_closed(t0)),
                State::ForcedClosed,
                None,
            ),
        ];
        for (name, setup, action, want_state, want_trip) in cases {
            let mut b = Breaker::new(cfg(), t0, 42);
            setup(&mut b, t0);
            let t = action(&mut b);
            assert_eq!(b.state(), want_state, "{name}: state");
            assert_eq!(t.and_then(|t| t.trip), want_trip, "{name}: trip");
            if let Some(t) = t {
                assert_eq!(t.to, want_state, "{name}: transition target");
            }
        }
    }

    #[test]
    fn half_open_allows_one_trial_at_a_time() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0, 1);
        trip(&mut b, t0);
        let at = t0 + Duration::from_secs(20);
        let (p, t) = b.try_acquire(at);
        assert!(p.unwrap().is_trial());
        assert_eq!(t.unwrap().to, State::HalfOpen);
        assert!(
            b.try_acquire(at).0.is_none(),
            "second trial while one is in flight"
        );
        b.record(p.unwrap(), OK, at);
        assert!(
            b.try_acquire(at).0.is_some(),
            "next trial after the first finished"
        );
    }

    #[test]
    fn trips_on_failure_rate_once_min_calls_reached() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0, 1);
        // F S F S F -> 5 calls, below min_calls 6
        for o in [Outcome::Failure, OK, Outcome::Failure, OK, Outcome::Failure] {
            assert_eq!(call(&mut b, o, t0), None);
        }
        let t = call(&mut b, OK, t0).expect("3/6 failed >= 0.5");
        assert_eq!(t.trip, Some(TripReason::FailureRate));
    }

    #[test]
    fn trips_on_slow_call_rate() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0, 1);
        for _ in 0..4 {
            assert_eq!(call(&mut b, SLOW_OK, t0), None);
        }
        assert_eq!(call(&mut b, OK, t0), None);
        // 5 of 6 slow = 0.83 >= 0.8
        let t = call(&mut b, SLOW_OK, t0).expect("slow calls trip");
        assert_eq!(t.trip, Some(TripReason::SlowCalls));
    }

    #[test]
    fn slow_rate_threshold_of_one_is_off() {
        let t0 = Instant::now();
        let mut b = Breaker::new(
            BreakerConfig {
                slow_call_rate_threshold: 1.0,
                ..cfg()
            },
            t0,
            1,
        );
        for _ in 0..30 {
            assert_eq!(call(&mut b, SLOW_OK, t0), None);
        }
        assert_eq!(b.slow_call_ratio(), 1.0);
    }

    #[test]
    fn window_forgets_old_calls() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0, 1);
        call(&mut b, Outcome::Failure, t0);
        call(&mut b, Outcome::Failure, t0);
        for _ in 0..10 {
            call(&mut b, OK, t0);
        }
        assert_eq!(b.window_len(), 10);
        assert_eq!(b.failure_ratio(), 0.0);
    }

    #[test]
    fn backoff_doubles_per_reopen_and_caps_and_resets_on_close() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0, 99);
        trip(&mut b, t0);
        let mut now;
        let mut seen = vec![b.open_duration()];
        for _ in 0..5 {
            now = b.open_until().unwrap();
            call(&mut b, Outcome::Failure, now).unwrap();
            seen.push(b.open_duration());
        }
        let nominal = [10.0, 20.0, 40.0, 60.0, 60.0, 60.0];
        for (got, want) in seen.iter().zip(nominal) {
            let got = got.as_secs_f64();
            assert!(
                got >= want * 0.9 - 1e-9 && got <= (want * 1.1).min(60.0),
                "{got} vs {want}"
            );
        }
        // recover: two trial successes close and reset the backoff
        now = b.open_until().unwrap();
        call(&mut b, OK, now);
        call(&mut b, OK, now);
        assert_eq!(b.state(), State::Closed);
        trip(&mut b, now);
        let d = b.open_duration().as_secs_f64();
        assert!((9.0..=11.0).contains(&d), "backoff reset, got {d}");
    }

    #[test]
    fn stale_outcome_from_before_a_trip_changes_nothing() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0, 1);
        let (slow_permit, _) = b.try_acquire(t0);
        trip(&mut b, t0);
        assert_eq!(b.record(slow_permit.unwrap(), OK, t0), None);
        assert_eq!(b.state(), State::Open);
        // after half-open, the old permit still cannot close it
        let later = b.open_until().unwrap();
        let (trial, _) = b.try_acquire(later);
        assert_eq!(b.record(slow_permit.unwrap(), OK, later), None);
        assert!(b.trial_in_flight());
        b.record(trial.unwrap(), OK, later);
        assert_eq!(b.state(), State::HalfOpen);
    }

    #[test]
    fn jitter_differs_by_seed_and_is_bounded() {
        let t0 = Instant::now();
        let mut durations = std::collections::HashSet::new();
        for seed in 0..20 {
            let mut b = Breaker::new(cfg(), t0, seed);
            trip(&mut b, t0);
            let d = b.open_duration();
            assert!(d >= Duration::from_secs(9) && d <= Duration::from_secs(11));
            durations.insert(d);
        }
        assert!(durations.len() > 10, "jitter spreads open periods");
    }

    fn big() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 100,
            min_calls: 100,
            ..cfg()
        }
    }

    #[test]
    fn reconfigure_to_a_smaller_window_keeps_the_newest_calls() {
        let t0 = Instant::now();
        let mut b = Breaker::new(big(), t0, 1);
        for o in [Outcome::Failure, Outcome::Failure, OK, SLOW_OK, OK] {
            call(&mut b, o, t0);
        }
        b.reconfigure(BreakerConfig { window: 3, ..big() }, t0);
        assert_eq!(b.window_len(), 3);
        assert_eq!(b.failure_ratio(), 0.0);
        assert!((b.slow_call_ratio() - 1.0 / 3.0).abs() < 1e-9);
        // and the ring keeps working at the new size
        call(&mut b, Outcome::Failure, t0);
        assert_eq!(b.window_len(), 3);
        assert!((b.failure_ratio() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(
            b.snapshot(t0).window,
            vec![Call::Slow, Call::Success, Call::Failure]
        );
        // a larger window keeps them all
        b.reconfigure(
            BreakerConfig {
                window: 50,
                ..big()
            },
            t0,
        );
        assert_eq!(b.window_len(), 3);
        assert_eq!(b.consecutive_failures(), 1);
    }

    #[test]
    fn reconfigure_trips_at_the_next_call_not_retroactively() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0, 1);
        call(&mut b, Outcome::Failure, t0);
        call(&mut b, Outcome::Failure, t0);
        b.reconfigure(
            BreakerConfig {
                failure_threshold: 2,
                ..cfg()
            },
            t0,
        );
        assert_eq!(b.state(), State::Closed, "no retroactive trip");
        assert_eq!(b.consecutive_failures(), 2);
        let t = call(&mut b, Outcome::Failure, t0).expect("trips on the next call");
        assert_eq!(t.trip, Some(TripReason::ConsecutiveFailures));

        // the same for the rate: 2 of 4 failed, below min_calls 6
        let mut b = Breaker::new(cfg(), t0, 1);
        for o in [Outcome::Failure, OK, Outcome::Failure, OK] {
            call(&mut b, o, t0);
        }
        b.reconfigure(
            BreakerConfig {
                min_calls: 3,
                failure_rate_threshold: 0.4,
                ..cfg()
            },
            t0,
        );
        assert_eq!(b.state(), State::Closed);
        let t = call(&mut b, OK, t0).expect("2/5 >= 0.4 trips");
        assert_eq!(b.state(), State::Open);
        assert_eq!(t.trip, Some(TripReason::FailureRate));
    }

    #[test]
    fn reconfigure_keeps_open_period_and_rescales_backoff() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0, 3);
        trip(&mut b, t0);
        let now = b.open_until().unwrap();
        call(&mut b, Outcome::Failure, now).expect("reopens");
        assert_eq!(b.backoff_step(), 1);
        let until = b.open_until().unwrap();
        let period = b.open_duration();
        b.reconfigure(
            BreakerConfig {
                open_duration: Duration::from_secs(100),
                max_open_duration: Duration::from_secs(1000),
                ..cfg()
            },
            now,
        );
        assert_eq!(b.state(), State::Open);
        assert_eq!(
            b.open_until(),
            Some(until),
            "the running period keeps its end"
        );
        assert_eq!(b.open_duration(), period);
        assert!(b.try_acquire(until - Duration::from_millis(1)).0.is_none());
        call(&mut b, Outcome::Failure, until).expect("reopens");
        assert_eq!(b.backoff_step(), 2);
        let d = b.open_duration().as_secs_f64();
        assert!((360.0..=440.0).contains(&d), "100 s * 2^2 ± 10%, got {d}");
    }

    #[test]
    fn reconfigure_to_a_shorter_max_open_shortens_a_longer_open_period() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0, 3);
        trip(&mut b, t0);
        let until = b.open_until().unwrap();
        assert!(until - t0 > Duration::from_secs(5));
        b.reconfigure(
            BreakerConfig {
                open_duration: Duration::from_secs(1),
                max_open_duration: Duration::from_secs(2),
                ..cfg()
            },
            t0,
        );
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.open_until(), Some(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn reconfigure_keeps_forced_and_half_open_states() {
        let t0 = Instant::now();
        for (force, want) in [
            (
                Breaker::force_open as fn(&mut Breaker, Instant) -> _,
                State::ForcedOpen,
            ),
            (Breaker::force_closed, State::ForcedClosed),
        ] {
            let mut b = Breaker::new(cfg(), t0, 1);
            force(&mut b, t0);
            b.reconfigure(
                BreakerConfig {
                    failure_threshold: 1,
                    window: 2,
                    ..cfg()
                },
                t0,
            );
            assert_eq!(b.state(), want);
            assert_eq!(b.since(), t0);
        }
        let mut b = Breaker::new(
            BreakerConfig {
                success_threshold: 3,
                ..cfg()
            },
            t0,
            1,
        );
        trip(&mut b, t0);
        let later = b.open_until().unwrap();
        call(&mut b, OK, later);
        assert_eq!(b.state(), State::HalfOpen);
        b.reconfigure(
            BreakerConfig {
                success_threshold: 2,
                ..cfg()
            },
            t0,
        );
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(call(&mut b, OK, later).map(|t| t.to), Some(State::Closed));
    }

    #[test]
    fn restore_is_total_and_bounded() {
        let t0 = Instant::now();
        let snap = Snapshot {
            state: State::Open,
            since_ago: Duration::MAX,
            open_remaining: Some(Duration::MAX),
            backoff_step: u32::MAX,
            open_duration: Duration::from_secs(5),
            consecutive_failures: u32::MAX,
            half_open_successes: u32::MAX,
            half_open_slow: u32::MAX,
            window: vec![Call::Failure; 1000],
            probe_window: None,
            rng: 0,
            epoch: u64::MAX,
            trial_in_flight: true,
            baseline: Default::default(),
        };
        let mut b = Breaker::restore(cfg(), &snap, t0);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.since(), t0);
        assert_eq!(b.window_len(), 10);
        assert!(!b.trial_in_flight());
        let until = b.open_until().unwrap();
        assert!(
            until <= t0 + Duration::from_secs(60),
            "capped by max_open_duration"
        );
        let (p, t) = b.try_acquire(until);
        assert!(p.unwrap().is_trial());
        assert_eq!(t.unwrap().to, State::HalfOpen);
        b.record(p.unwrap(), Outcome::Failure, until);
        assert_eq!(b.state(), State::Open);
        assert!(b.open_duration() <= Duration::from_secs(60));

        // open without a remaining period: the trial is due now
        let snap = Snapshot {
            open_remaining: None,
            ..snap
        };
        let mut b = Breaker::restore(cfg(), &snap, t0);
        assert_eq!(b.open_until(), Some(t0));
        assert!(b.try_acquire(t0).0.unwrap().is_trial());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Advance(u64),
        Probe(Outcome),
        /// acquire now, record after `n` later ops (models overlapping probes)
        Overlap(Outcome),
        ForceOpen,
        ForceClosed,
        Reset,
    }

    fn op() -> impl Strategy<Value = Op> {
        let outcome = prop_oneof![
            Just(Outcome::Failure),
            Just(Outcome::Ignored),
            (0u64..2000).prop_map(|ms| Outcome::Success {
                duration: Duration::from_millis(ms)
            }),
            Just(Outcome::RequestSuccess),
            Just(Outcome::RequestFailure),
        ];
        prop_oneof![
            6 => (0u64..30_000).prop_map(Op::Advance),
            10 => outcome.clone().prop_map(Op::Probe),
            3 => outcome.prop_map(Op::Overlap),
            1 => Just(Op::ForceOpen),
            1 => Just(Op::ForceClosed),
            1 => Just(Op::Reset),
        ]
    }

    fn config() -> impl Strategy<Value = BreakerConfig> {
        (1u32..6, 0.1f64..1.0, 1u32..20, 1u32..20, 1u32..4, 1u64..30).prop_map(
            |(ft, rate, window, min_calls, st, open)| BreakerConfig {
                failure_threshold: ft,
                failure_rate_threshold: rate,
                window,
                min_calls,
                slow_call_duration: Duration::from_millis(800),
                slow_call_rate_threshold: 0.9,
                open_duration: Duration::from_secs(open),
                max_open_duration: Duration::from_secs(open * 8),
                success_threshold: st,
                adaptive: (open % 2 == 0).then(|| AdaptiveConfig {
                    warmup_calls: 3,
                    min: Duration::from_millis(50),
                    ..AdaptiveConfig::default()
                }),
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn invariants_hold(cfg in config(), ops in proptest::collection::vec(op(), 1..200), seed in any::<u64>()) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut b = Breaker::new(cfg.clone(), t0, seed);
            let mut pending: Vec<(Permit, Outcome)> = Vec::new();
            for op in ops {
                let before = b.state();
                let failures_before = b.consecutive_failures();
                let window_before = b.window_len();
                let transition = match op {
                    Op::Advance(ms) => { now += Duration::from_millis(ms); None }
                    Op::Probe(o) | Op::Overlap(o) => {
                        let open_until = b.open_until();
                        let (permit, t) = b.try_acquire(now);
                        match permit {
                            None => {
                                // rejected: never counted as a failure, never before the period ends
                                prop_assert_eq!(b.consecutive_failures(), failures_before);
                                prop_assert_eq!(b.window_len(), window_before);
                                prop_assert!(t.is_none());
                                None
                            }
                            Some(p) => {
                                if before == State::Open {
                                    prop_assert!(now >= open_until.unwrap(), "probe admitted while open before the period ended");
                                }
                                prop_assert!(!matches!(before, State::ForcedOpen));
                                if matches!(op, Op::Overlap(_)) { pending.push((p, o)); t }
                                else {
                                    let t2 = b.record(p, o, now);
                                    t2.or(t)
                                }
                            }
                        }
                    }
                    Op::ForceOpen => b.force_open(now),
                    Op::ForceClosed => b.force_closed(now),
                    Op::Reset => b.reset(now),
                };
                // finish the oldest overlapping probe now and then
                if pending.len() > 2 {
                    let (p, o) = pending.remove(0);
                    b.record(p, o, now);
                }
                if let Some(t) = transition {
                    prop_assert!(t.from != t.to || t.trip.is_some());
                    prop_assert_eq!(t.trip.is_some(), matches!(t.to, State::Open | State::ForcedOpen));
                }
                // exactly one state, and its derived fields agree with it
                let s = b.state();
                prop_assert_eq!(State::ALL.iter().filter(|x| **x == s).count(), 1);
                prop_assert_eq!(b.open_until().is_some(), s == State::Open);
                if s == State::Open {
                    let d = b.open_duration();
                    prop_assert!(d <= cfg.max_open_duration);
                    prop_assert!(d >= cfg.open_duration.mul_f64(0.9) - Duration::from_nanos(1));
                }
                prop_assert!(b.failure_ratio() >= 0.0 && b.failure_ratio() <= 1.0);
                prop_assert!(b.window_len() <= cfg.window);
                if s == State::Closed {
                    prop_assert!(b.consecutive_failures() < cfg.failure_threshold);
                }
            }
        }
    }

    /// One op on `b`, and everything it shows afterwards. Open-period ends
    /// already past at `floor` are shown as `floor`: a restored breaker only
    /// knows that the period is over.
    fn step(
        b: &mut Breaker,
        op: &Op,
        now: &mut Instant,
        pending: &mut Vec<(Permit, Outcome)>,
        floor: Instant,
    ) -> String {
        let out = match op {
            Op::Advance(ms) => {
                *now += Duration::from_millis(*ms);
                format!("{:?}", ())
            }
            Op::Probe(o) | Op::Overlap(o) => {
                let (permit, t) = b.try_acquire(*now);
                let t2 = match permit {
                    Some(p) if matches!(op, Op::Overlap(_)) => {
                        pending.push((p, *o));
                        None
                    }
                    Some(p) => b.record(p, *o, *now),
                    None => None,
                };
                format!("{:?} {t:?} {t2:?}", permit.map(|p| p.is_trial()))
            }
            Op::ForceOpen => format!("{:?}", b.force_open(*now)),
            Op::ForceClosed => format!("{:?}", b.force_closed(*now)),
            Op::Reset => format!("{:?}", b.reset(*now)),
        };
        let finished = if pending.len() > 2 {
            let (p, o) = pending.remove(0);
            format!("{:?}", b.record(p, o, *now))
        } else {
            String::new()
        };
        format!(
            "{out} {finished} {:?} {:?} {:?} {} {} {} {} {:?} {} {} {:?} {:?} {}",
            b.state(),
            b.since(),
            b.open_until().map(|u| u.max(floor)),
            b.consecutive_failures(),
            b.failure_ratio(),
            b.slow_call_ratio(),
            b.window_len(),
            b.open_duration(),
            b.trial_in_flight(),
            b.backoff_step(),
            b.slow_call_threshold(),
            b.latency_baseline(),
            b.confirming(),
        )
    }

    fn run_split(
        cfg: &BreakerConfig,
        seed: u64,
        ops: &[Op],
        split: usize,
    ) -> (Breaker, Instant, Vec<(Permit, Outcome)>) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut b = Breaker::new(cfg.clone(), t0, seed);
        let mut pending = Vec::new();
        for op in &ops[..split.min(ops.len())] {
            step(&mut b, op, &mut now, &mut pending, t0);
        }
        (b, now, pending)
    }

    /// Run `rest` on both; every step must show the same.
    fn same_behaviour(
        a: &mut Breaker,
        b: &mut Breaker,
        rest: &[Op],
        now: Instant,
        pending: &[(Permit, Outcome)],
    ) -> Result<(), TestCaseError> {
        let (mut na, mut nb) = (now, now);
        let (mut pa, mut pb) = (pending.to_vec(), pending.to_vec());
        for (i, op) in rest.iter().enumerate() {
            let sa = step(a, op, &mut na, &mut pa, now);
            let sb = step(b, op, &mut nb, &mut pb, now);
            prop_assert_eq!(sa, sb, "op {} {:?}", i, op);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn restore_of_a_snapshot_behaves_like_the_original(
            cfg in config(),
            ops in proptest::collection::vec(op(), 1..150),
            split in 0usize..150,
            seed in any::<u64>(),
        ) {
            let (mut b, now, pending) = run_split(&cfg, seed, &ops, split);
            let mut r = Breaker::restore(cfg.clone(), &b.snapshot(now), now);
            prop_assert_eq!(r.snapshot(now), b.snapshot(now));
            same_behaviour(&mut b, &mut r, ops.get(split..).unwrap_or(&[]), now, &pending)?;
        }

        #[test]
        fn reconfigure_keeps_state_and_equals_a_restore_with_the_new_config(
            cfg in config(),
            new in config(),
            ops in proptest::collection::vec(op(), 1..150),
            split in 0usize..150,
            seed in any::<u64>(),
        ) {
            let (mut b, now, pending) = run_split(&cfg, seed, &ops, split);
            let before = b.snapshot(now);
            let mut r = Breaker::restore(new.clone(), &before, now);
            b.reconfigure(new.clone(), now);
            let after = b.snapshot(now);
            prop_assert_eq!(after.state, before.state);
            prop_assert_eq!(after.since_ago, before.since_ago);
            let cap = new.max_open_duration.max(new.open_duration);
            prop_assert_eq!(after.open_remaining, before.open_remaining.map(|r| r.min(cap)));
            prop_assert_eq!(after.consecutive_failures, before.consecutive_failures);
            prop_assert_eq!(after.backoff_step, before.backoff_step);
            let keep = before.window.len().min(new.window as usize);
            prop_assert_eq!(&after.window[..], &before.window[before.window.len() - keep..]);
            prop_assert_eq!(b.config(), &new);
            same_behaviour(&mut b, &mut r, ops.get(split..).unwrap_or(&[]), now, &pending)?;
        }

        #[test]
        fn reconfigure_to_the_same_config_changes_nothing(
            cfg in config(),
            ops in proptest::collection::vec(op(), 1..150),
            split in 0usize..150,
            seed in any::<u64>(),
        ) {
            let (mut b, now, pending) = run_split(&cfg, seed, &ops, split);
            let mut r = b.clone();
            r.reconfigure(cfg.clone(), now);
            same_behaviour(&mut b, &mut r, ops.get(split..).unwrap_or(&[]), now, &pending)?;
        }
    }
}
