//! The last hour in memory, for the status page and `/api/v1/status`:
//! bounded rings only, so the cost per endpoint is fixed whatever happens.
//!
//! - Per endpoint, one [`Mark`] per wall-clock **minute** (not per probe):
//!   an endpoint probes every `interval` but every `confirm_interval` while
//!   confirming (2 s by default, 1,800 probes an hour), so a ring of probes
//!   would cover anything from 8 minutes to hours. A minute ring always
//!   covers the last hour in 60 marks, fits a phone's width, and each mark
//!   keeps the counts by outcome, the worst and mean latency, the last
//!   failure reason and the worst state of its minute.
//! - Per endpoint, its last [`TRANSITIONS`] state changes.
//! - Per daemon, the last [`ACTIONS`] operator actions (see [`Board`]).
//!
//! Pure data: no clock, no lock, no I/O; callers pass the time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::breaker::{State, TripReason};
use crate::classify::Reason;

/// Marks per endpoint: one hour of minutes.
pub const MINUTES: usize = 60;
/// State changes kept per endpoint.
pub const TRANSITIONS: usize = 16;
/// Operator actions kept per daemon.
pub const ACTIONS: usize = 64;
/// Entries of the merged timeline served.
pub const TIMELINE: usize = 50;

/// A ring that drops its oldest entry when full.
#[derive(Clone, Debug)]
pub struct Ring<T> {
    items: VecDeque<T>,
    cap: usize,
}

impl<T> Ring<T> {
    /// An empty ring: it allocates its `cap` slots on the first push.
    pub const fn new(cap: usize) -> Self {
        Ring {
            items: VecDeque::new(),
            cap,
        }
    }

    pub fn push(&mut self, item: T) {
        if self.items.capacity() == 0 {
            self.items.reserve_exact(self.cap);
        }
        if self.items.len() == self.cap {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    pub fn last_mut(&mut self) -> Option<&mut T> {
        self.items.back_mut()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.items.iter()
    }

    /// Bytes on the heap (the slots, used or not).
    pub fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<T>()
    }
}

/// What one probe (or a rejection while open) came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(Reason),
    Ignored(Reason),
    /// Not sent: the circuit was open.
    Rejected,
}

/// One minute of one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Unix time of the minute's start, in minutes.
    pub minute: u32,
    pub success: u16,
    pub failure: u16,
    pub ignored: u16,
    pub rejected: u16,
    /// Slowest answered probe, in milliseconds.
    pub max_ms: u32,
    /// Sum of the answered probes' durations, in milliseconds.
    pub sum_ms: u32,
    /// The last failure's (else ignored answer's) reason.
    pub reason: Option<Reason>,
    /// The worst state the breaker was seen in during the minute.
    pub state: State,
}

impl Mark {
    fn new(minute: u32, state: State) -> Self {
        Mark {
            minute,
            success: 0,
            failure: 0,
            ignored: 0,
            rejected: 0,
            max_ms: 0,
            sum_ms: 0,
            reason: None,
            state,
        }
    }

    /// Answered probes (success, failure or ignored).
    pub fn answered(&self) -> u32 {
        u32::from(self.success) + u32::from(self.failure) + u32::from(self.ignored)
    }

    pub fn mean_ms(&self) -> Option<u32> {
        let n = self.answered();
        (n > 0).then(|| self.sum_ms / n)
    }

    /// Unix seconds of the minute's start.
    pub fn start(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(self.minute) * 60)
    }
}

/// Severity of a state for "the worst state of the minute".
fn severity(s: State) -> u8 {
    match s {
        State::Closed | State::ForcedClosed => 0,
        State::HalfOpen => 1,
        State::Open => 2,
        State::ForcedOpen => 3,
    }
}

/// One state change of one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub at: SystemTime,
    pub from: State,
    pub to: State,
    pub trip: Option<TripReason>,
}

fn unix_minute(t: SystemTime) -> u32 {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(secs / 60).unwrap_or(u32::MAX)
}

/// The history of one endpoint.
#[derive(Clone, Debug)]
pub struct EndpointHistory {
    marks: Ring<Mark>,
    changes: Ring<Change>,
}

impl Default for EndpointHistory {
    fn default() -> Self {
        EndpointHistory {
            marks: Ring::new(MINUTES),
            changes: Ring::new(TRANSITIONS),
        }
    }
}

impl EndpointHistory {
    /// The mark of the minute of `at`, opened if need be.
    fn mark(&mut self, at: SystemTime, state: State) -> &mut Mark {
        let minute = unix_minute(at);
        // A clock stepped back lands in the newest mark rather than reorder the ring.
        if self.marks.last_mut().is_none_or(|m| m.minute < minute) {
            self.marks.push(Mark::new(minute, state));
        }
        let m = self.marks.last_mut().expect("just pushed");
        if severity(state) > severity(m.state) {
            m.state = state;
        }
        m
    }

    /// Record a probe's outcome at `at`, `state` being the breaker's after it.
    pub fn record(&mut self, at: SystemTime, outcome: Outcome, took: Duration, state: State) {
        let m = self.mark(at, state);
        let ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
        let answered = match outcome {
            Outcome::Success => {
                m.success = m.success.saturating_add(1);
                true
            }
            Outcome::Failure(r) => {
                m.failure = m.failure.saturating_add(1);
                m.reason = Some(r);
                true
            }
            Outcome::Ignored(r) => {
                m.ignored = m.ignored.saturating_add(1);
                if m.failure == 0 {
                    m.reason = Some(r);
                }
                true
            }
            Outcome::Rejected => {
                m.rejected = m.rejected.saturating_add(1);
                false
            }
        };
        if answered {
            m.max_ms = m.max_ms.max(ms);
            m.sum_ms = m.sum_ms.saturating_add(ms);
        }
    }

    /// Record a state change (the minute's mark takes the new state too).
    pub fn change(&mut self, at: SystemTime, from: State, to: State, trip: Option<TripReason>) {
        self.changes.push(Change { at, from, to, trip });
        self.mark(at, to);
    }

    /// The marks of the last `minutes` (at most [`MINUTES`]) up to `now`,
    /// the current one included, oldest first.
    pub fn marks(&self, now: SystemTime, minutes: usize) -> impl Iterator<Item = &Mark> {
        let back = minutes.clamp(1, MINUTES) as u32 - 1;
        let first = unix_minute(now).saturating_sub(back);
        let none = minutes == 0;
        self.marks
            .iter()
            .filter(move |m| !none && m.minute >= first)
    }

    /// State changes, oldest first.
    pub fn changes(&self) -> impl DoubleEndedIterator<Item = &Change> {
        self.changes.iter()
    }

    /// Bytes this history holds: itself and its rings' slots.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.marks.heap_bytes() + self.changes.heap_bytes()
    }
}

/// An operator action, for the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub at: SystemTime,
    pub endpoint: String,
    /// `force-open`, `force-closed` or `reset`.
    pub action: &'static str,
    /// The state the breaker was left in.
    pub state: State,
}

/// Per key (a route), its counters (one per tier).
pub type Counters = Vec<(String, Vec<u64>)>;

/// Requests per second from monotonic counters, sampled when asked.
#[derive(Debug)]
pub struct Rates {
    /// (when, the counters); at least [`Rates::SPACING`] apart.
    samples: Ring<(Instant, Counters)>,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            samples: Ring::new(Self::SAMPLES),
        }
    }
}

impl Rates {
    const SAMPLES: usize = 8;
    const SPACING: Duration = Duration::from_secs(2);

    /// Take the counters at `now`; returns per key the rate per second of
    /// each counter since the oldest sample kept (about 15 s ago), or
    /// nothing for a key not seen then (or on the first call).
    pub fn sample(&mut self, now: Instant, current: Counters) -> Vec<(String, Option<Vec<f64>>)> {
        let rates = match self.samples.iter().next() {
            Some((then, old)) if now > *then => {
                let dt = now.duration_since(*then).as_secs_f64();
                current
                    .iter()
                    .map(|(k, v)| {
                        let before = old.iter().find(|(ok, _)| ok == k).map(|(_, o)| o);
                        let r = before.filter(|o| o.len() == v.len()).map(|o| {
                            v.iter()
                                .zip(o)
                                .map(|(n, b)| n.saturating_sub(*b) as f64 / dt)
                                .collect()
                        });
                        (k.clone(), r)
                    })
                    .collect()
            }
            _ => current.iter().map(|(k, _)| (k.clone(), None)).collect(),
        };
        let spaced = self
            .samples
            .iter()
            .next_back()
            .is_none_or(|(t, _)| now >= *t + Self::SPACING);
        if spaced {
            self.samples.push((now, current));
        }
        rates
    }
}

/// What the daemon keeps besides the endpoints' own histories.
#[derive(Debug)]
pub struct Board {
    pub actions: Mutex<Ring<Action>>,
    pub rates: Mutex<Rates>,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            actions: Mutex::new(Ring::new(ACTIONS)),
            rates: Mutex::new(Rates::default()),
        }
    }
}

impl Board {
    pub fn action(&self, action: Action) {
        self.actions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(action);
    }

    /// The operator actions, oldest first.
    pub fn actions(&self) -> Vec<Action> {
        let a = self.actions.lock().unwrap_or_else(|p| p.into_inner());
        a.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: u64, sec: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 / 60 * 60 + minute * 60 + sec)
    }

    #[test]
    fn a_ring_keeps_the_newest_and_never_grows_past_its_capacity() {
        let mut r = Ring::new(3);
        assert_eq!(r.heap_bytes(), 0, "nothing allocated before the first push");
        for i in 0..10 {
            r.push(i);
        }
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), [7, 8, 9]);
        assert_eq!(r.heap_bytes(), 3 * std::mem::size_of::<i32>());
    }

    #[test]
    fn one_mark_per_minute_with_counts_latency_reason_and_worst_state() {
        let mut h = EndpointHistory::default();
        let ms = Duration::from_millis;
        h.record(at(0, 1), Outcome::Success, ms(10), State::Closed);
        h.record(at(0, 30), Outcome::Success, ms(30), State::Closed);
        h.record(
            at(0, 59),
            Outcome::Failure(Reason::Timeout),
            ms(1000),
            State::Closed,
        );
        h.change(at(1, 2), State::Closed, State::Open, None);
        h.record(at(1, 3), Outcome::Rejected, ms(0), State::Open);
        h.change(at(1, 40), State::Open, State::HalfOpen, None);
        h.record(at(1, 41), Outcome::Success, ms(20), State::HalfOpen);
        let marks: Vec<_> = h.marks(at(1, 50), MINUTES).copied().collect();
        assert_eq!(marks.len(), 2);
        let m = marks[0];
        assert_eq!((m.success, m.failure, m.max_ms), (2, 1, 1000));
        assert_eq!(
            (m.mean_ms(), m.reason, m.state),
            (Some(346), Some(Reason::Timeout), State::Closed)
        );
        let m = marks[1];
        assert_eq!((m.success, m.rejected, m.state), (1, 1, State::Open));
        assert_eq!(m.mean_ms(), Some(20), "rejections carry no latency");
        assert_eq!(h.changes().count(), 2);
    }

    #[test]
    fn the_history_is_bounded_to_an_hour_and_sixteen_changes() {
        let mut h = EndpointHistory::default();
        // Three hours of a probe every 2 s and a flap every minute.
        for s in (0..3 * 3600).step_by(2) {
            let t = at(0, s);
            h.record(t, Outcome::Success, Duration::from_millis(5), State::Closed);
            if s % 60 == 0 {
                h.change(t, State::Closed, State::Open, Some(TripReason::Manual));
            }
        }
        let now = at(0, 3 * 3600 - 1);
        assert_eq!(h.marks(now, MINUTES).count(), MINUTES);
        assert_eq!(h.marks(now, MINUTES).map(|m| m.success).max(), Some(30));
        assert_eq!(h.changes().count(), TRANSITIONS);
        // The page's frequent poll asks for the current minute only.
        assert_eq!(h.marks(now, 1).count(), 1);
        assert_eq!(h.marks(now, 5).count(), 5);
        assert_eq!(h.marks(now, 0).count(), 0);
        assert_eq!(h.marks(now, 1000).count(), MINUTES);
        // An hour later nothing is left to show.
        assert_eq!(h.marks(at(0, 5 * 3600), MINUTES).count(), 0);
        let full = h.bytes();
        assert_eq!(
            full,
            std::mem::size_of::<EndpointHistory>()
                + MINUTES * std::mem::size_of::<Mark>()
                + TRANSITIONS * std::mem::size_of::<Change>()
        );
        assert!(full <= 2048, "{full} bytes per endpoint");
        println!(
            "history per endpoint: {full} bytes ({} per mark, {} per change); at 10,000 endpoints: {:.1} MiB",
            std::mem::size_of::<Mark>(),
            std::mem::size_of::<Change>(),
            (full * 10_000) as f64 / (1024.0 * 1024.0)
        );
    }

    #[test]
    fn an_unprobed_endpoint_allocates_nothing() {
        let h = EndpointHistory::default();
        assert_eq!(h.bytes(), std::mem::size_of::<EndpointHistory>());
    }

    #[test]
    fn a_clock_stepped_back_adds_to_the_newest_mark() {
        let mut h = EndpointHistory::default();
        h.record(at(5, 0), Outcome::Success, Duration::ZERO, State::Closed);
        h.record(at(3, 0), Outcome::Success, Duration::ZERO, State::Closed);
        let marks: Vec<_> = h.marks(at(5, 1), MINUTES).collect();
        assert_eq!((marks.len(), marks[0].success), (1, 2));
    }

    #[test]
    fn actions_are_bounded() {
        let b = Board::default();
        for i in 0..ACTIONS + 5 {
            b.action(Action {
                at: at(0, i as u64),
                endpoint: format!("e{i}"),
                action: "reset",
                state: State::Closed,
            });
        }
        let a = b.actions();
        assert_eq!(a.len(), ACTIONS);
        assert_eq!(a[0].endpoint, "e5");
    }

    #[test]
    fn rates_come_from_the_oldest_sample_kept() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        let key = |n: u64| vec![("r".to_string(), vec![n, 0])];
        assert_eq!(r.sample(t0, key(100)), [("r".to_string(), None)]);
        let got = r.sample(t0 + Duration::from_secs(4), key(120));
        assert_eq!(got, [("r".to_string(), Some(vec![5.0, 0.0]))]);
        // Close samples are not kept, and never more than SAMPLES.
        for i in 0..100 {
            r.sample(t0 + Duration::from_millis(4000 + i * 500), key(120));
        }
        assert!(r.samples.len() <= Rates::SAMPLES);
        // A route seen for the first time has no rate yet.
        let got = r.sample(t0 + Duration::from_secs(60), vec![("new".into(), vec![1])]);
        assert_eq!(got, [("new".to_string(), None)]);
    }
}
