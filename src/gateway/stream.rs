//! A committed stream, relayed chunk by chunk without buffering. No
//! failover from here: an upstream that fails, stalls past
//! `first_byte_timeout` between chunks, or outlives the request's
//! `timeout` ends the stream with an SSE error event and counts as a
//! failure. A client that goes away drops the relay, which drops the
//! upstream request (cancelling it) and releases the breaker permit
//! without a verdict.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;

use super::Gateway;
use super::failover::{InFlight, Slot, tier_of};
use crate::breaker::{Outcome, Permit};
use crate::classify::Reason;
use crate::metrics::gateway::AttemptResult;

/// What the end of a stream must record.
pub struct Finish {
    pub gateway: Arc<Gateway>,
    pub route: Arc<super::table::RouteEntry>,
    /// Position of the endpoint in the chain.
    pub hop: usize,
    pub permit: Option<Permit>,
    pub started: Instant,
    pub _slot: Slot,
    pub _in_flight: InFlight,
}

impl Finish {
    /// `None`: the stream ended well (or the client left); else the reason.
    fn done(self, failure: Option<Reason>, client_left: bool) {
        let Some(hop) = self.route.chain.iter().find(|h| h.pos == self.hop) else {
            return;
        };
        match failure {
            Some(reason) => self
                .gateway
                .failed(&self.route, hop, self.permit, reason, None),
            None if client_left => self
                .gateway
                .record(hop, self.permit, Outcome::Ignored, None),
            None => {
                self.gateway.record(
                    hop,
                    self.permit,
                    Outcome::Success {
                        duration: Duration::ZERO,
                    },
                    None,
                );
                self.route
                    .metrics
                    .attempt(hop.pos, AttemptResult::Success, None);
            }
        }
        self.route.metrics.request(
            Some(hop.pos),
            tier_of(hop),
            200,
            self.started.elapsed().as_secs_f64(),
        );
    }
}

pub struct Relay {
    upstream: BoxStream<'static, Result<Bytes, Reason>>,
    first: Option<Bytes>,
    finish: Option<Finish>,
    idle: Duration,
    deadline: Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// TGI reports failures inside a 200 stream (`data: {"error": ...}`).
    saw_error_event: bool,
}

impl Relay {
    pub fn new(
        upstream: BoxStream<'static, Result<Bytes, Reason>>,
        first: Bytes,
        finish: Finish,
        idle: Duration,
        deadline: Instant,
    ) -> Self {
        let saw_error_event = has_error_event(&first);
        Relay {
            upstream,
            first: Some(first),
            finish: Some(finish),
            idle,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(next_wake(idle, deadline).into())),
            saw_error_event,
        }
    }

    fn end(&mut self, failure: Option<Reason>) -> Option<Bytes> {
        if let Some(f) = self.finish.take() {
            f.done(failure, false);
        }
        failure.map(error_event)
    }
}

fn next_wake(idle: Duration, deadline: Instant) -> Instant {
    Instant::now()
        .checked_add(idle)
        .map_or(deadline, |t| t.min(deadline))
}

fn has_error_event(chunk: &[u8]) -> bool {
    chunk.windows(9).any(|w| w == b"{\"error\":")
}

/// The SSE event that ends a failed stream; the openai client raises an
/// `APIError` with this message.
fn error_event(reason: Reason) -> Bytes {
    let body = serde_json::json!({"error": {
        "message": format!("the upstream stream failed ({}); the answer is incomplete", reason.as_str()),
        "type": "upstream_error", "param": null, "code": reason.as_str(),
    }});
    Bytes::from(format!("data: {body}\n\n"))
}

impl Stream for Relay {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finish.is_none() {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        match this.upstream.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.saw_error_event |= has_error_event(&chunk);
                let wake = next_wake(this.idle, this.deadline);
                this.timer.as_mut().reset(wake.into());
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                let failure = this.saw_error_event.then_some(Reason::BadResponse);
                // The upstream's own error event already told the client.
                this.end(failure);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(reason))) => Poll::Ready(this.end(Some(reason)).map(Ok)),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(this.end(Some(Reason::Timeout)).map(Ok)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Dropped before the end: the client went away. Dropping `upstream`
        // closes the upstream connection, which cancels the generation.
        if let Some(f) = self.finish.take() {
            tracing::debug!(route = %f.route.name, "client left a stream; upstream request cancelled");
            f.done(None, true);
        }
    }
}

use std::future::Future as _;
