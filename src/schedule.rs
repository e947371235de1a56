//! One scheduler for all endpoints.
//!
//! A single task keeps a timer heap with one entry per endpoint. On every
//! wake it asks [`plan`] what to do: send a probe, count a rejection (open
//! circuit), or nothing, and when to wake next. Probes run in their own
//! tasks and wake the scheduler when they finish, so a hanging probe never
//! delays the next confirmation: while confirming, probes start every
//! `confirm_interval` whether or not the previous one has answered.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::breaker::{Breaker, Outcome, Permit, State, Transition, TripReason};
use crate::classify::{Reason, Verdict};
use crate::config::EndpointConfig;
use crate::history::{self, EndpointHistory};
use crate::metrics::{EndpointMetrics, ProbeResult};
use crate::probe::{LocalError, Prepared, Report};

/// What the last sent probe found, for the API and landing page.
#[derive(Clone, Debug)]
pub struct LastProbe {
    pub at: SystemTime,
    pub verdict: Verdict,
    pub status: Option<u16>,
    pub duration: Duration,
    pub detail: String,
}

/// Probe counts since the endpoint was (re)configured, for the API.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub success: u64,
    pub failure: u64,
    pub ignored: u64,
    pub rejected: u64,
    pub trips: u64,
    /// Why the breaker last tripped (the demo shows it).
    pub last_trip: Option<TripReason>,
}

/// Mutable state of one endpoint, behind its own lock.
pub struct EndpointState {
    pub cfg: Arc<EndpointConfig>,
    pub prepared: Arc<Prepared>,
    pub breaker: Breaker,
    pub since_wall: SystemTime,
    /// Last time a probe was sent or rejected.
    last_tick: Option<Instant>,
    in_flight: Vec<(u64, Instant)>,
    next_id: u64,
    /// The heap entry that is current for this endpoint.
    scheduled_at: Option<Instant>,
    pub next_probe: Option<Instant>,
    pub last: Option<LastProbe>,
    pub counts: Counts,
    /// The last hour, for the status page.
    pub history: EndpointHistory,
}

/// One endpoint as the daemon runs it.
pub struct Endpoint {
    pub name: String,
    pub state: std::sync::Mutex<EndpointState>,
    pub metrics: EndpointMetrics,
    /// Mirror of the breaker state for lock-free route evaluation.
    state_code: AtomicU8,
    enforce: AtomicBool,
    /// Index in the current scheduler, for wake-ups.
    slot: AtomicUsize,
}

/// What to do at a wake-up.
#[derive(Debug, PartialEq)]
pub enum Action {
    Nothing,
    Reject,
    Probe(Permit),
}

impl Endpoint {
    pub fn new(cfg: EndpointConfig, metrics: EndpointMetrics, now: Instant, seed: u64) -> Self {
        let breaker = Breaker::new(cfg.breaker.clone(), now, seed);
        metrics.set_state(State::Closed, unix(SystemTime::now()));
        metrics.breaker_stats(0, 0.0, breaker.open_duration().as_secs_f64());
        Endpoint {
            name: cfg.name.clone(),
            enforce: AtomicBool::new(cfg.enforce),
            state: std::sync::Mutex::new(EndpointState {
                prepared: Arc::new(Prepared::new(&cfg)),
                cfg: Arc::new(cfg),
                breaker,
                since_wall: SystemTime::now(),
                last_tick: None,
                in_flight: Vec::new(),
                next_id: 0,
                scheduled_at: None,
                next_probe: None,
                last: None,
                counts: Counts::default(),
                history: EndpointHistory::default(),
            }),
            metrics,
            state_code: AtomicU8::new(State::Closed as u8),
            slot: AtomicUsize::new(usize::MAX),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, EndpointState> {
        // A panic elsewhere must not take the prober down with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn breaker_state(&self) -> State {
        State::ALL[self.state_code.load(Ordering::Relaxed) as usize]
    }

    /// Index in the current scheduler, for [`Host::wake`].
    pub fn slot(&self) -> usize {
        self.slot.load(Ordering::Relaxed)
    }

    /// Whether routes may send traffic here now.
    pub fn admits_traffic(&self) -> bool {
        !self.enforce.load(Ordering::Relaxed) || self.breaker_state().admits_traffic()
    }

    /// Swap in a new config of the same endpoint (same identity, same
    /// exported thresholds): the breaker keeps its state and takes the new
    /// thresholds; intervals apply from the next wake-up.
    pub fn replace_config(&self, cfg: EndpointConfig) {
        let mut st = self.lock();
        st.breaker.reconfigure(cfg.breaker.clone(), Instant::now());
        self.enforce.store(cfg.enforce, Ordering::Relaxed);
        self.metrics.configured(&cfg);
        st.prepared = Arc::new(Prepared::new(&cfg));
        st.cfg = Arc::new(cfg);
        self.refresh_stats(&st);
    }

    /// Put a breaker in place (restored from storage, or carried over from
    /// the endpoint this one replaces), with metrics and mirrors to match.
    pub fn adopt(&self, breaker: Breaker, since_wall: SystemTime) {
        let mut st = self.lock();
        let state = breaker.state();
        st.breaker = breaker;
        st.since_wall = since_wall;
        self.state_code.store(state as u8, Ordering::Relaxed);
        self.metrics.set_state(state, unix(since_wall));
        self.refresh_stats(&st);
    }

    /// Record a state change in metrics and the lock-free mirror.
    /// Call with the endpoint lock held so mirrors follow transitions in order.
    pub fn apply(&self, st: &mut EndpointState, t: Transition) {
        st.since_wall = SystemTime::now();
        self.state_code.store(t.to as u8, Ordering::Relaxed);
        self.metrics.transition(t.from, t.to);
        self.metrics.set_state(t.to, unix(st.since_wall));
        let at = st.since_wall;
        st.history.change(at, t.from, t.to, t.trip);
        if let Some(reason) = t.trip {
            self.metrics.trip(reason);
            st.counts.trips += 1;
            st.counts.last_trip = Some(reason);
        }
        self.refresh_stats(st);
        match t.trip {
            Some(reason) => {
                tracing::warn!(endpoint = %self.name, from = t.from.as_str(), to = t.to.as_str(), reason = reason.as_str(), open_for = ?st.breaker.open_duration(), "circuit opened")
            }
            None => {
                tracing::info!(endpoint = %self.name, from = t.from.as_str(), to = t.to.as_str(), "circuit state changed")
            }
        }
    }

    pub fn refresh_stats(&self, st: &EndpointState) {
        self.metrics.breaker_stats(
            st.breaker.consecutive_failures(),
            st.breaker.failure_ratio(),
            st.breaker.open_duration().as_secs_f64(),
        );
        self.metrics.latency(
            st.breaker.slow_call_threshold().as_secs_f64(),
            st.breaker.latency_baseline().map(|d| d.as_secs_f64()),
        );
    }
}

impl EndpointState {
    /// A probe planned by [`plan`] was sent at `now`: it is in flight until
    /// [`EndpointState::probe_answered`]. Returns its id.
    pub fn probe_sent(&mut self, now: Instant) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.push((id, now));
        id
    }

    /// The probe `id` finished (answered, timed out or not sent).
    pub fn probe_answered(&mut self, id: u64) {
        self.in_flight.retain(|(i, _)| *i != id);
    }

    /// Whether enough probes to decide are out: the scheduler sends no more.
    fn saturated(&self) -> bool {
        self.in_flight.len() >= self.cfg.breaker.failure_threshold.max(1) as usize
    }
}

pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Decide what to do for one endpoint at `now`, and when to look again.
/// Pure apart from the endpoint state it is given.
pub fn plan(st: &mut EndpointState, now: Instant) -> (Action, Option<Transition>, Instant) {
    let interval = st.cfg.interval;
    let confirm = st.cfg.confirm_interval;
    let due = |period: Duration, last: Option<Instant>| last.is_none_or(|l| now >= l + period);
    match st.breaker.state() {
        State::Open => {
            let until = st.breaker.open_until().unwrap_or(now);
            if now >= until {
                let (permit, t) = st.breaker.try_acquire(now);
                if let Some(p) = permit {
                    st.last_tick = Some(now);
                    return (Action::Probe(p), t, now + confirm);
                }
                (Action::Nothing, t, now + confirm)
            } else if due(interval, st.last_tick) {
                st.last_tick = Some(now);
                (Action::Reject, None, (now + interval).min(until))
            } else {
                let next = st.last_tick.map_or(now, |l| l + interval);
                (Action::Nothing, None, next.min(until))
            }
        }
        State::ForcedOpen => {
            if due(interval, st.last_tick) {
                st.last_tick = Some(now);
                (Action::Reject, None, now + interval)
            } else {
                (
                    Action::Nothing,
                    None,
                    st.last_tick.map_or(now, |l| l + interval),
                )
            }
        }
        State::HalfOpen => {
            if st.breaker.trial_in_flight() {
                // The trial's completion wakes us; this is a safety net.
                (Action::Nothing, None, now + st.cfg.timeout)
            } else if due(confirm, st.last_tick) {
                match st.breaker.try_acquire(now) {
                    (Some(p), t) => {
                        st.last_tick = Some(now);
                        (Action::Probe(p), t, now + confirm)
                    }
                    (None, t) => (Action::Nothing, t, now + confirm),
                }
            } else {
                (
                    Action::Nothing,
                    None,
                    st.last_tick.map_or(now, |l| l + confirm),
                )
            }
        }
        State::Closed | State::ForcedClosed => {
            // A probe still unanswered after `confirm` is a suspect: confirm now.
            let suspect = st
                .in_flight
                .first()
                .is_some_and(|(_, s)| now >= *s + confirm);
            let period = if st.breaker.confirming() || suspect {
                confirm
            } else {
                interval
            };
            // Enough probes to decide are already out (all hanging, say): wait
            // for one to finish instead of piling up more.
            let (action, t) = if due(period, st.last_tick) && !st.saturated() {
                let (permit, t) = st.breaker.try_acquire(now);
                match permit {
                    Some(p) => {
                        st.last_tick = Some(now);
                        (Action::Probe(p), t)
                    }
                    None => (Action::Nothing, t),
                }
            } else {
                (Action::Nothing, None)
            };
            let last = st.last_tick.unwrap_or(now);
            let mut next = last
                + if st.breaker.confirming() || suspect {
                    confirm
                } else {
                    interval
                };
            // A probe still out after `confirm` wakes us itself (see `Scheduler::wake`).
            if action == Action::Nothing && next <= now {
                next = now + confirm;
            }
            (action, t, next)
        }
    }
}

fn history_outcome(v: Verdict) -> history::Outcome {
    match v {
        Verdict::Success => history::Outcome::Success,
        Verdict::Failure(r) => history::Outcome::Failure(r),
        Verdict::Ignored(r) => history::Outcome::Ignored(r),
    }
}

/// Map a probe verdict to what the breaker records.
pub fn outcome(report: &Report) -> Outcome {
    match report.verdict {
        Verdict::Success => Outcome::Success {
            duration: report.duration,
        },
        Verdict::Failure(_) => Outcome::Failure,
        Verdict::Ignored(_) => Outcome::Ignored,
    }
}

/// What the scheduler needs from the daemon.
pub trait Host: Send + Sync + 'static {
    fn client(&self) -> &reqwest::Client;
    /// A breaker changed state: re-evaluate routes.
    fn state_changed(&self);
    /// Wake the scheduler for the endpoint in `slot`.
    fn wake(&self, slot: usize);
    /// How late a scheduled probe (or rejection) started, in seconds.
    fn lateness(&self, _seconds: f64) {}
    /// A probe failed for a reason of this process (no file descriptors...).
    fn local_error(&self) {}
    /// A recorded outcome changed a breaker's counters (not its state):
    /// worth saving, but not urgently.
    fn counters_changed(&self) {}
}

pub struct Scheduler {
    endpoints: Vec<Arc<Endpoint>>,
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Scheduler {
    /// Register the endpoints; each gets a jittered first probe within its interval.
    pub fn new(endpoints: Vec<Arc<Endpoint>>, now: Instant) -> Self {
        let mut heap = BinaryHeap::with_capacity(endpoints.len() * 2);
        for (i, ep) in endpoints.iter().enumerate() {
            ep.slot.store(i, Ordering::Relaxed);
            let mut st = ep.lock();
            let first = match st.last_tick {
                // Carried over from a reload: continue where it was.
                Some(_) => now,
                None => now + st.cfg.interval.mul_f64(fastrand::f64()),
            };
            st.scheduled_at = Some(first);
            st.next_probe = Some(first);
            heap.push(Reverse((first, i)));
        }
        Scheduler { endpoints, heap }
    }

    pub async fn run<H: Host>(
        mut self,
        host: Arc<H>,
        mut wakes: mpsc::UnboundedReceiver<usize>,
        mut stop: watch::Receiver<bool>,
    ) {
        let far = Duration::from_secs(3600);
        loop {
            let deadline = self
                .heap
                .peek()
                .map(|Reverse((t, _))| *t)
                .unwrap_or_else(|| Instant::now() + far);
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    while let Some(Reverse((t, i))) = self.heap.peek().copied() {
                        if t > now {
                            break;
                        }
                        self.heap.pop();
                        self.wake(&host, i, t, now);
                    }
                }
                w = wakes.recv() => match w {
                    Some(i) => {
                        let now = Instant::now();
                        self.wake(&host, i, now, now);
                        while let Ok(i) = wakes.try_recv() {
                            self.wake(&host, i, now, now);
                        }
                    }
                    None => return,
                },
                _ = stop.changed() => return,
            }
        }
    }

    /// `entry` is the heap time that fired, or `now` for an explicit wake.
    fn wake<H: Host>(&mut self, host: &Arc<H>, i: usize, entry: Instant, now: Instant) {
        let Some(ep) = self.endpoints.get(i).cloned() else {
            return;
        };
        let mut st = ep.lock();
        let from_heap = entry != now;
        if from_heap && st.scheduled_at != Some(entry) {
            return; // superseded by an earlier entry
        }
        if from_heap {
            st.scheduled_at = None;
        }
        let (action, transition, next) = plan(&mut st, now);
        let mut changed = false;
        if let Some(t) = transition {
            ep.apply(&mut st, t);
            changed = true;
        }
        if from_heap && action != Action::Nothing {
            host.lateness(now.saturating_duration_since(entry).as_secs_f64());
        }
        match action {
            Action::Nothing => {}
            Action::Reject => {
                st.counts.rejected += 1;
                ep.metrics.probe(ProbeResult::Rejected);
                let state = st.breaker.state();
                st.history.record(
                    SystemTime::now(),
                    history::Outcome::Rejected,
                    Duration::ZERO,
                    state,
                );
            }
            Action::Probe(permit) => {
                let id = st.probe_sent(now);
                let prepared = st.prepared.clone();
                let confirm = st.cfg.confirm_interval;
                let ep2 = ep.clone();
                let host2 = host.clone();
                tokio::spawn(async move {
                    let run = prepared.run(host2.client());
                    tokio::pin!(run);
                    // Unanswered after `confirm`: a suspect. Wake the scheduler so it
                    // starts confirming now instead of at the next interval.
                    let report = tokio::select! {
                        r = &mut run => r,
                        _ = tokio::time::sleep(confirm) => {
                            host2.wake(ep2.slot.load(Ordering::Relaxed));
                            run.await
                        }
                    };
                    match report {
                        Ok(report) => finish(&*host2, &ep2, id, permit, report),
                        Err(local) => finish_local(&*host2, &ep2, id, permit, &local),
                    }
                });
            }
        }
        // Keep the earliest pending entry; a later one would be superseded anyway.
        let keep = st.scheduled_at.is_some_and(|s| s <= next && s > now);
        if !keep {
            st.scheduled_at = Some(next);
            self.heap.push(Reverse((next, i)));
        }
        st.next_probe = st.scheduled_at;
        drop(st);
        if changed {
            host.state_changed();
        }
    }
}

/// A probe this process could not send: release its permit without a
/// verdict (a trial slot frees up, nothing counts against the endpoint),
/// and report the local failure.
pub fn finish_local<H: Host + ?Sized>(
    host: &H,
    ep: &Endpoint,
    id: u64,
    permit: Permit,
    local: &LocalError,
) {
    host.local_error();
    let mut st = ep.lock();
    st.probe_answered(id);
    if let Some(t) = st.breaker.record(permit, Outcome::Ignored, Instant::now()) {
        // Ignored never moves a breaker; keep the bookkeeping honest anyway.
        ep.apply(&mut st, t);
    }
    tracing::error!(endpoint = %ep.name, error = %local, "probe not sent: this process is out of a resource; not counted against the endpoint");
}

/// Record a finished probe: breaker, metrics, log, and wake the scheduler.
pub fn finish<H: Host + ?Sized>(host: &H, ep: &Endpoint, id: u64, permit: Permit, report: Report) {
    let now = Instant::now();
    let result = match report.verdict {
        Verdict::Success => ProbeResult::Success,
        Verdict::Failure(_) => ProbeResult::Failure,
        Verdict::Ignored(_) => ProbeResult::Ignored,
    };
    ep.metrics.probe_done(
        result,
        report.verdict.reason(),
        report.duration.as_secs_f64(),
        report.status,
        report.loading_estimate,
    );
    let (changed, wake) = {
        let mut st = ep.lock();
        let saturated = st.saturated();
        st.probe_answered(id);
        let t = st.breaker.record(permit, outcome(&report), now);
        // A failure that leaves the breaker open: the server's Retry-After
        // (429, 503) makes the open period at least that long.
        let held = result == ProbeResult::Failure
            && report
                .retry_after
                .is_some_and(|d| st.breaker.hold_open_at_least(d, now));
        match result {
            ProbeResult::Success => st.counts.success += 1,
            ProbeResult::Failure => st.counts.failure += 1,
            _ => st.counts.ignored += 1,
        }
        log_probe(&ep.name, &report);
        let at = SystemTime::now();
        st.last = Some(LastProbe {
            at,
            verdict: report.verdict,
            status: report.status,
            duration: report.duration,
            detail: report.detail,
        });
        let changed = match t {
            Some(t) => {
                ep.apply(&mut st, t);
                true
            }
            None => {
                ep.refresh_stats(&st);
                false
            }
        };
        let state = st.breaker.state();
        st.history
            .record(at, history_outcome(report.verdict), report.duration, state);
        // A healthy answer in the steady state changes no schedule: the next
        // wake-up is already in the heap. Anything else may bring it forward.
        let wake = changed
            || held
            || result == ProbeResult::Failure
            || permit.is_trial()
            || saturated
            || st.breaker.confirming();
        (changed, wake)
    };
    if changed {
        host.state_changed();
    } else if result != ProbeResult::Ignored {
        host.counters_changed();
    }
    if wake {
        host.wake(ep.slot.load(Ordering::Relaxed));
    }
}

fn log_probe(name: &str, r: &Report) {
    let ms = r.duration.as_secs_f64() * 1000.0;
    match r.verdict {
        Verdict::Success => {
            tracing::debug!(endpoint = %name, duration_ms = ms, status = r.status, "probe succeeded")
        }
        Verdict::Failure(reason) => {
            tracing::info!(endpoint = %name, reason = reason.as_str(), duration_ms = ms, status = r.status, detail = %r.detail, "probe failed")
        }
        Verdict::Ignored(reason) => {
            if reason == Reason::Auth {
                tracing::warn!(endpoint = %name, reason = reason.as_str(), status = r.status, "probe rejected by the server's auth: check the token");
            } else {
                tracing::debug!(endpoint = %name, reason = reason.as_str(), status = r.status, detail = %r.detail, "probe ignored");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Kind, ProbeKind};
    use crate::metrics::Metrics;

    fn endpoint() -> Endpoint {
        let cfg = EndpointConfig {
            name: "e".into(),
            kind: Kind::Http,
            url: reqwest::Url::parse("http://127.0.0.1:9/").unwrap(),
            probe: ProbeKind::Get,
            model: None,
            namespace: None,
            endpoint_name: None,
            token: None,
            token_source: None,
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(10),
            confirm_interval: Duration::from_secs(2),
            max_body_bytes: 1024,
            request: Default::default(),
            breaker: crate::breaker::BreakerConfig {
                failure_threshold: 3,
                open_duration: Duration::from_secs(60),
                ..Default::default()
            },
            enforce: true,
            ignore: Default::default(),
            max_in_flight: None,
        };
        let m = Metrics::new();
        let em = m.endpoint(&cfg);
        Endpoint::new(cfg, em, Instant::now(), 1)
    }

    fn probe(st: &mut EndpointState, now: Instant) -> Permit {
        match plan(st, now) {
            (Action::Probe(p), _, _) => {
                st.in_flight.push((st.next_id, now));
                st.next_id += 1;
                p
            }
            other => panic!("expected a probe at {now:?}, got {other:?}"),
        }
    }

    fn done(st: &mut EndpointState, p: Permit, o: Outcome, now: Instant) -> Option<Transition> {
        st.in_flight.remove(0);
        st.breaker.record(p, o, now)
    }

    const OK: Outcome = Outcome::Success {
        duration: Duration::from_millis(5),
    };

    #[test]
    fn steady_state_probes_at_interval() {
        let ep = endpoint();
        let mut st = ep.lock();
        let t0 = Instant::now();
        let p = probe(&mut st, t0);
        done(&mut st, p, OK, t0 + Duration::from_millis(5));
        let (a, _, next) = plan(&mut st, t0 + Duration::from_millis(5));
        assert_eq!(a, Action::Nothing);
        assert_eq!(next, t0 + Duration::from_secs(15));
    }

    #[test]
    fn failure_switches_to_confirm_interval_and_hang_does_not_delay() {
        let ep = endpoint();
        let mut st = ep.lock();
        let t0 = Instant::now();
        let p = probe(&mut st, t0);
        done(
            &mut st,
            p,
            Outcome::Failure,
            t0 + Duration::from_millis(100),
        );
        // confirming: next at last + 2s
        let (a, _, next) = plan(&mut st, t0 + Duration::from_millis(100));
        assert_eq!(a, Action::Nothing);
        assert_eq!(next, t0 + Duration::from_secs(2));
        // this one hangs; the next confirmation still starts 2 s later
        let _hanging = probe(&mut st, t0 + Duration::from_secs(2));
        let (a, _, next) = plan(&mut st, t0 + Duration::from_secs(2));
        assert_eq!(a, Action::Nothing);
        assert_eq!(next, t0 + Duration::from_secs(4));
        let _second = probe(&mut st, t0 + Duration::from_secs(4));
    }

    #[test]
    fn a_slow_call_makes_a_suspect_probed_every_confirm_interval() {
        let ep = endpoint();
        let mut st = ep.lock();
        let mut cfg = (*st.cfg).clone();
        cfg.breaker.slow_call_rate_threshold = 0.5;
        cfg.breaker.slow_call_duration = Duration::from_millis(100);
        st.breaker.reconfigure(cfg.breaker.clone(), Instant::now());
        st.cfg = Arc::new(cfg);
        let t0 = Instant::now();
        let p = probe(&mut st, t0);
        let slow = Outcome::Success {
            duration: Duration::from_millis(400),
        };
        done(&mut st, p, slow, t0 + Duration::from_millis(400));
        let (a, _, next) = plan(&mut st, t0 + Duration::from_millis(400));
        assert_eq!(a, Action::Nothing);
        assert_eq!(
            next,
            t0 + Duration::from_secs(2),
            "confirm_interval, not 15 s"
        );
        let p = probe(&mut st, t0 + Duration::from_secs(2));
        // fast answers end the suspicion: three in a row, and the slow call
        // below half the slow-call rate threshold (1 of 5 < 0.25)
        let mut now = t0 + Duration::from_secs(2);
        done(&mut st, p, OK, now);
        for _ in 0..3 {
            now += Duration::from_secs(2);
            let p = probe(&mut st, now);
            done(&mut st, p, OK, now);
        }
        let (_, _, next) = plan(&mut st, now);
        assert_eq!(next, now + Duration::from_secs(15));
    }

    #[test]
    fn unanswered_probe_starts_confirmation() {
        let ep = endpoint();
        let mut st = ep.lock();
        let t0 = Instant::now();
        let _hang = probe(&mut st, t0);
        // no failure recorded yet, but the probe is unanswered after 2 s
        let _p2 = probe(&mut st, t0 + Duration::from_secs(2));
        let _p3 = probe(&mut st, t0 + Duration::from_secs(4));
        // failure_threshold (3) probes are out: no fourth until one finishes
        let (a, _, _) = plan(&mut st, t0 + Duration::from_secs(6));
        assert_eq!(a, Action::Nothing);
        st.in_flight.remove(0);
        let _p4 = probe(&mut st, t0 + Duration::from_secs(6));
    }

    #[test]
    fn open_rejects_at_interval_then_trials_at_period_end() {
        let ep = endpoint();
        let mut st = ep.lock();
        let t0 = Instant::now();
        let mut now = t0;
        for _ in 0..3 {
            let p = probe(&mut st, now);
            done(&mut st, p, Outcome::Failure, now);
            now += Duration::from_secs(2);
        }
        assert_eq!(st.breaker.state(), State::Open);
        let until = st.breaker.open_until().unwrap();
        // the regular schedule continues while open, but its probes are rejected
        let first_reject = t0 + Duration::from_secs(4 + 15);
        let (a, _, next) = plan(&mut st, now);
        assert_eq!(a, Action::Nothing);
        assert_eq!(next, first_reject.min(until));
        let (a, _, next) = plan(&mut st, first_reject);
        assert_eq!(a, Action::Reject);
        assert_eq!(next, (first_reject + Duration::from_secs(15)).min(until));
        let (a, _, _) = plan(&mut st, first_reject + Duration::from_secs(1));
        assert_eq!(a, Action::Nothing, "one rejection per interval");
        let (a, t, _) = plan(&mut st, until);
        assert!(matches!(a, Action::Probe(p) if p.is_trial()));
        assert_eq!(t.unwrap().to, State::HalfOpen);
        // no second trial while the first is in flight
        let (a, _, _) = plan(&mut st, until + Duration::from_secs(3));
        assert_eq!(a, Action::Nothing);
    }
}
