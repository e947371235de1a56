//! One request down its route's chain: admission through each breaker,
//! one attempt per endpoint, the outcome recorded as probes record theirs,
//! failover while no byte has reached the client, and the last level.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::Gateway;
use super::client::{self, Answer, Failure};
use super::errors::error_response;
use super::stream::{Finish, Relay};
use super::table::{Hop, RouteEntry};
use super::upstream::{self, Op};
use crate::breaker::{Outcome, Permit, State};
use crate::classify::{Reason, Verdict, classify_status};
use crate::metrics::LocalOperation;
use crate::metrics::gateway::{AttemptResult, Tier};
use crate::schedule::Host;

/// Largest non-streamed answer buffered (to check it before the client
/// sees a byte, and to fail over when it is broken).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Error bodies are read this far, for the loading estimate and the client.
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// A client honours `Retry-After` this long at most before giving up on
/// it (the openai client sleeps up to 120 s, twice); above it the 503
/// says `x-should-retry: false` so the application hears of it at once.
const MAX_CLIENT_RETRY_WAIT: u64 = 20;

/// One client request.
pub struct Call {
    pub op: Op,
    pub route: Arc<RouteEntry>,
    pub body: Bytes,
    /// Where `model` is in `body` (feature extraction may have none).
    pub model_span: Option<(usize, usize)>,
    pub model: String,
    pub stream: bool,
    pub started: Instant,
    pub deadline: Instant,
    pub first_byte_timeout: Duration,
}

/// How one attempt ended.
enum Attempt {
    /// An answer for the client (success, or an error the breaker ignores).
    Answer(Response),
    /// Counted against the endpoint (or this process's own failure): try the next.
    Failed,
}

/// Decrements the route's in-flight gauge when the request (or its stream) ends.
pub struct InFlight(pub crate::metrics::gateway::GatewayRoute);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight(-1);
    }
}

/// An attempt's permit while the attempt runs: when the attempt is dropped
/// before it recorded an outcome (its client went away), the permit goes
/// back without a verdict, so that a half-open trial is not held forever
/// (no other request, nor probe, would be admitted again).
struct Unrecorded<'a> {
    gateway: &'a Gateway,
    hop: &'a Hop,
    permit: Option<Permit>,
}

impl Unrecorded<'_> {
    /// The attempt ended: it recorded its outcome, or handed the permit to
    /// the stream it relays.
    fn disarm(mut self) {
        self.permit = None;
    }
}

impl Drop for Unrecorded<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            tracing::debug!(endpoint = %self.hop.ep.name, "client left before the answer; upstream request cancelled");
            self.gateway
                .record(self.hop, Some(p), Outcome::Ignored, None);
        }
    }
}

/// Holds one slot of an endpoint's `max_in_flight`.
pub struct Slot(Option<Arc<super::table::Traffic>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Gateway {
    pub(super) async fn run(self: &Arc<Self>, call: Call) -> Response {
        call.route.metrics.in_flight(1);
        let guard = InFlight(call.route.metrics.clone());
        let mut failed: Option<usize> = None;
        for hop in &call.route.chain {
            if Instant::now() >= call.deadline {
                break;
            }
            let Some(mapping) = hop.target.for_op(call.op) else {
                continue;
            };
            let Some(slot) = take_slot(hop) else {
                call.route
                    .metrics
                    .attempt(hop.pos, AttemptResult::Shed, None);
                continue;
            };
            let Ok(permit) = self.admit(hop) else {
                continue;
            };
            if let Some(from) = failed {
                call.route.metrics.failover(from, hop.pos);
            }
            let url = mapping.url.clone();
            let unrecorded = Unrecorded {
                gateway: self,
                hop,
                permit,
            };
            let outcome = self
                .attempt(&call, hop, url, mapping.translate, permit, slot, &guard)
                .await;
            unrecorded.disarm();
            match outcome {
                Attempt::Answer(r) => return r,
                Attempt::Failed => failed = Some(hop.pos),
            }
        }
        if let Some(r) = super::cache::answer(&call) {
            return r;
        }
        let r = self.exhausted(&call.route);
        call.route.metrics.request(
            None,
            Tier::Exhausted,
            503,
            call.started.elapsed().as_secs_f64(),
        );
        r
    }

    /// Ask the endpoint's breaker, under its lock as the scheduler does. Err:
    /// it admits nothing now (open, forced open, or its half-open trial is
    /// out). Ok(None): an observe-only breaker that would not have admitted.
    fn admit(&self, hop: &Hop) -> Result<Option<Permit>, ()> {
        let now = Instant::now();
        let (permit, changed, enforce) = {
            let mut st = hop.ep.lock();
            let (permit, t) = st.breaker.try_acquire_request(now);
            if let Some(t) = t {
                hop.ep.apply(&mut st, t);
            }
            (permit, t.is_some(), st.cfg.enforce)
        };
        if changed {
            self.daemon.state_changed();
            self.daemon.wake(hop.ep.slot());
        }
        match permit {
            Some(p) => Ok(Some(p)),
            None if !enforce => Ok(None),
            None => Err(()),
        }
    }

    /// Record an attempt's outcome in the breaker, as a probe's would be;
    /// a transition reaches metrics, routes and storage as probe-driven ones do.
    pub(super) fn record(
        &self,
        hop: &Hop,
        permit: Option<Permit>,
        outcome: Outcome,
        retry_after: Option<Duration>,
    ) {
        let Some(permit) = permit else {
            return;
        };
        let now = Instant::now();
        let changed = {
            let mut st = hop.ep.lock();
            let t = st.breaker.record(permit, outcome, now);
            let held = retry_after.is_some_and(|d| st.breaker.hold_open_at_least(d, now));
            match t {
                Some(t) => {
                    hop.ep.apply(&mut st, t);
                    true
                }
                None => {
                    if held || outcome.is_failure() {
                        hop.ep.refresh_stats(&st);
                    }
                    false
                }
            }
        };
        if changed {
            self.daemon.state_changed();
            self.daemon.wake(hop.ep.slot());
        } else if outcome.is_failure() {
            self.daemon.counters_changed();
        }
    }

    /// A failed attempt: breaker, metrics, last reason.
    pub(super) fn failed(
        &self,
        route: &RouteEntry,
        hop: &Hop,
        permit: Option<Permit>,
        reason: Reason,
        retry_after: Option<Duration>,
    ) {
        self.record(hop, permit, Outcome::RequestFailure, retry_after);
        route
            .metrics
            .attempt(hop.pos, AttemptResult::Failure, Some(reason));
        hop.traffic
            .last_failure
            .store(reason.index() as u8 + 1, Ordering::Relaxed);
        tracing::debug!(route = %route.name, endpoint = %hop.ep.name, reason = reason.as_str(), "gateway attempt failed");
    }

    /// Not sent or not finished for a reason of this process: no verdict.
    pub(super) fn local(
        &self,
        route: &RouteEntry,
        hop: &Hop,
        permit: Option<Permit>,
        detail: &str,
    ) {
        self.record(hop, permit, Outcome::Ignored, None);
        self.daemon.metrics.local_error(LocalOperation::Gateway);
        route
            .metrics
            .attempt(hop.pos, AttemptResult::LocalError, None);
        tracing::error!(endpoint = %hop.ep.name, error = detail, "gateway request not sent: this process is out of a resource; not counted against the endpoint");
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        self: &Arc<Self>,
        call: &Call,
        hop: &Hop,
        url: reqwest::Url,
        translate: upstream::Translate,
        permit: Option<Permit>,
        slot: Slot,
        guard: &InFlight,
    ) -> Attempt {
        let route = &call.route;
        let client = match &hop.client {
            Ok(c) => c,
            Err(e) => {
                self.local(route, hop, permit, e);
                return Attempt::Failed;
            }
        };
        let prepared = upstream::prepare(
            translate,
            &call.body,
            call.model_span,
            hop.target.model_json.as_ref(),
            &call.model,
        );
        let (body, answer) = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.record(hop, permit, Outcome::Ignored, None);
                return Attempt::Answer(e.into_response());
            }
        };
        let limit = call
            .first_byte_timeout
            .min(call.deadline.saturating_duration_since(Instant::now()));
        let send = client::post(hop.direct.as_ref(), client, url, &hop.headers, body);
        let resp = match tokio::time::timeout(limit, send).await {
            Err(_) => {
                self.failed(route, hop, permit, Reason::Timeout, None);
                return Attempt::Failed;
            }
            Ok(Err(Failure::Endpoint(reason))) => {
                self.failed(route, hop, permit, reason, None);
                return Attempt::Failed;
            }
            Ok(Err(Failure::Local(detail))) => {
                self.local(route, hop, permit, &detail);
                return Attempt::Failed;
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if !(200..300).contains(&status) {
            return self.not_ok(call, hop, permit, resp).await;
        }
        if call.stream {
            return self.stream(call, hop, permit, resp, slot, guard).await;
        }
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let read = read_bounded(resp, MAX_RESPONSE_BYTES, call.deadline).await;
        let body = match read {
            Ok(b) => b,
            Err(reason) => {
                self.failed(route, hop, permit, reason, None);
                return Attempt::Failed;
            }
        };
        let Some(body) = answer.body(body, &call.model) else {
            self.failed(route, hop, permit, Reason::BadResponse, None);
            return Attempt::Failed;
        };
        self.record(hop, permit, Outcome::RequestSuccess, None);
        route.metrics.attempt(hop.pos, AttemptResult::Success, None);
        let tier = tier_of(hop);
        route.metrics.request(
            Some(hop.pos),
            tier,
            status,
            call.started.elapsed().as_secs_f64(),
        );
        let ct = content_type
            .filter(|_| answer.keeps_content_type())
            .unwrap_or(HeaderValue::from_static("application/json"));
        super::cache::store(call, hop, status, &body, Some(&ct));
        let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
        Attempt::Answer(with_headers(r, route, hop, tier))
    }

    /// A non-2xx answer: counted and failed over, or returned as it is.
    async fn not_ok(
        &self,
        call: &Call,
        hop: &Hop,
        permit: Option<Permit>,
        resp: Answer,
    ) -> Attempt {
        let status = resp.status();
        let retry_after = crate::classify::retry_after_of(status, resp.headers());
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let body = read_bounded(resp, MAX_ERROR_BYTES, call.deadline)
            .await
            .unwrap_or_default();
        let (reason, _) = classify_status(status, &body);
        match Verdict::of(Err(reason), &hop.ignore) {
            Verdict::Failure(r) => {
                self.failed(&call.route, hop, permit, r, retry_after);
                Attempt::Failed
            }
            _ => {
                self.record(hop, permit, Outcome::Ignored, None);
                call.route
                    .metrics
                    .attempt(hop.pos, AttemptResult::Ignored, Some(reason));
                let tier = tier_of(hop);
                call.route.metrics.request(
                    Some(hop.pos),
                    tier,
                    status,
                    call.started.elapsed().as_secs_f64(),
                );
                let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut r = (code, body).into_response();
                if let Some(ct) = content_type {
                    r.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                Attempt::Answer(with_headers(r, &call.route, hop, tier))
            }
        }
    }

    /// A 2xx stream: committed once its first chunk looks like SSE; from
    /// then on no failover (see [`Relay`]).
    async fn stream(
        self: &Arc<Self>,
        call: &Call,
        hop: &Hop,
        permit: Option<Permit>,
        resp: Answer,
        slot: Slot,
        guard: &InFlight,
    ) -> Attempt {
        let mut upstream = resp.into_stream();
        let first =
            super::stream::first_chunk(&mut upstream, call.first_byte_timeout, call.deadline);
        let first = match first.await {
            Ok(c) => c,
            Err(reason) => {
                self.failed(&call.route, hop, permit, reason, None);
                return Attempt::Failed;
            }
        };
        call.route
            .metrics
            .first_token(call.started.elapsed().as_secs_f64());
        let tier = tier_of(hop);
        let finish = Finish {
            gateway: self.clone(),
            route: call.route.clone(),
            hop: hop.pos,
            permit,
            started: call.started,
            _slot: slot,
            _in_flight: InFlight(guard.0.clone()),
        };
        // The stream holds its own in-flight count from here.
        guard.0.in_flight(1);
        let relay = Relay::new(
            upstream,
            first,
            finish,
            call.first_byte_timeout,
            call.deadline,
        );
        let mut r = Response::new(Body::from_stream(relay));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Attempt::Answer(with_headers(r, &call.route, hop, tier))
    }

    /// The last level: no endpoint answered. Names each endpoint's state and
    /// last failure; `Retry-After` is the soonest half-open trial.
    fn exhausted(&self, route: &RouteEntry) -> Response {
        let now = Instant::now();
        let mut soonest: Option<Duration> = None;
        let mut parts = Vec::with_capacity(route.chain.len());
        for hop in &route.chain {
            let st = hop.ep.lock();
            let state = st.breaker.state();
            if state == State::Open
                && let Some(until) = st.breaker.open_until()
            {
                let left = until.saturating_duration_since(now);
                soonest = Some(soonest.map_or(left, |s| s.min(left)));
            }
            let reason = match hop.traffic.last_failure.load(Ordering::Relaxed) {
                0 => st.last.as_ref().and_then(|l| l.verdict.reason()),
                n => Reason::ALL.get(n as usize - 1).copied(),
            };
            let carries = if hop.target.chat.is_some() || hop.target.embeddings.is_some() {
                ""
            } else {
                ", carries no traffic"
            };
            parts.push(format!(
                "{}: {}{carries}, last failure {}",
                hop.ep.name,
                state.as_str(),
                reason.map_or("none", Reason::as_str)
            ));
        }
        let wait = soonest
            .map_or(1, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .max(1);
        let message = format!(
            "No endpoint of route {:?} can serve this request now ({}). Retry in {wait} s.",
            route.name,
            parts.join("; ")
        );
        let mut r = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &message,
            "server_error",
            "route_exhausted",
        );
        let h = r.headers_mut();
        h.insert(header::RETRY_AFTER, HeaderValue::from(wait));
        h.insert(
            "x-should-retry",
            HeaderValue::from_static(if wait <= MAX_CLIENT_RETRY_WAIT {
                "true"
            } else {
                "false"
            }),
        );
        h.insert("x-hfbreaker-route", route.header.clone());
        h.insert("x-hfbreaker-endpoint", HeaderValue::from_static("none"));
        h.insert("x-hfbreaker-tier", HeaderValue::from_static("exhausted"));
        r
    }
}

/// A slot under `max_in_flight`, or None when the endpoint is full.
fn take_slot(hop: &Hop) -> Option<Slot> {
    let Some(max) = hop.max_in_flight else {
        return Some(Slot(None));
    };
    let t = &hop.traffic.in_flight;
    t.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
        (n < max).then_some(n + 1)
    })
    .ok()
    .map(|_| Slot(Some(hop.traffic.clone())))
}

pub fn tier_of(hop: &Hop) -> Tier {
    if hop.pos == 0 {
        Tier::Primary
    } else {
        Tier::Fallback
    }
}

pub fn with_headers(mut r: Response, route: &RouteEntry, hop: &Hop, tier: Tier) -> Response {
    let h = r.headers_mut();
    h.insert("x-hfbreaker-route", route.header.clone());
    h.insert("x-hfbreaker-endpoint", hop.name.clone());
    h.insert("x-hfbreaker-tier", HeaderValue::from_static(tier.as_str()));
    r
}

/// The whole body, up to `max`, before `deadline`.
async fn read_bounded(resp: Answer, max: usize, deadline: Instant) -> Result<Bytes, Reason> {
    if resp.content_length().is_some_and(|n| n as usize > max) {
        return Err(Reason::BadResponse);
    }
    let read = async {
        let mut resp = resp;
        // A body in one piece (the usual small answer) is not copied.
        let mut one: Option<Bytes> = None;
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = resp.chunk().await? {
            let len = buf.len() + one.as_ref().map_or(0, Bytes::len);
            if len + chunk.len() > max {
                return Err(Reason::BadResponse);
            }
            if len == 0 {
                one = Some(chunk);
                continue;
            }
            if let Some(first) = one.take() {
                buf.extend_from_slice(&first);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(one.unwrap_or_else(|| buf.freeze()))
    };
    tokio::time::timeout_at(deadline.into(), read)
        .await
        .unwrap_or(Err(Reason::Timeout))
}
