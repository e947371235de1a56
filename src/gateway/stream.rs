//! A committed stream, relayed event by event (a chunk is held only until
//! its event's blank line arrives, so an error event never lands inside
//! another event). It is committed once its first bytes show SSE. No
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
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};

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
                self.gateway
                    .record(hop, self.permit, Outcome::RequestSuccess, None);
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
    /// Bytes of an event not yet complete: relayed once its blank line
    /// arrives, so that an error event never lands inside another event.
    pending: bytes::BytesMut,
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
            pending: bytes::BytesMut::from(&first[..]),
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

/// What an SSE stream starts with: a field or a comment.
const SSE_STARTS: [&[u8]; 5] = [b"data:", b":", b"event:", b"id:", b"retry:"];
/// Leading bytes read at most before deciding that a stream is SSE.
const MAX_UNDECIDED: usize = 64;

/// The stream's first bytes once they show it is SSE (a field or comment
/// may come split over chunks, even one byte at a time), each chunk
/// within `idle` and all before `deadline`: committed from there on.
pub async fn first_chunk(
    upstream: &mut BoxStream<'static, Result<Bytes, Reason>>,
    idle: Duration,
    deadline: Instant,
) -> Result<Bytes, Reason> {
    let mut buf = bytes::BytesMut::new();
    loop {
        let limit = idle.min(deadline.saturating_duration_since(Instant::now()));
        let chunk = match tokio::time::timeout(limit, upstream.next()).await {
            Err(_) => return Err(Reason::Timeout),
            Ok(None) => return Err(Reason::BadResponse),
            Ok(Some(Err(reason))) => return Err(reason),
            Ok(Some(Ok(chunk))) => chunk,
        };
        buf.extend_from_slice(&chunk);
        let t = buf.trim_ascii_start();
        if SSE_STARTS.iter().any(|p| t.starts_with(p)) {
            return Ok(buf.freeze());
        }
        let may_become = t.is_empty() || SSE_STARTS.iter().any(|p| p.starts_with(t));
        if !may_become || buf.len() > MAX_UNDECIDED {
            return Err(Reason::BadResponse);
        }
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
        loop {
            if let Some(events) = complete_events(&mut this.pending) {
                return Poll::Ready(Some(Ok(events)));
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.saw_error_event |= has_error_event(&chunk);
                    let wake = next_wake(this.idle, this.deadline);
                    this.timer.as_mut().reset(wake.into());
                    this.pending.extend_from_slice(&chunk);
                }
                Poll::Ready(None) => {
                    let failure = this.saw_error_event.then_some(Reason::BadResponse);
                    // The upstream's own error event already told the client.
                    this.end(failure);
                    let rest = this.pending.split().freeze();
                    return Poll::Ready((!rest.is_empty()).then_some(Ok(rest)));
                }
                Poll::Ready(Some(Err(reason))) => {
                    return Poll::Ready(this.end(Some(reason)).map(Ok));
                }
                Poll::Pending => {
                    return match this.timer.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(this.end(Some(Reason::Timeout)).map(Ok)),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

/// An incomplete event is held at most this long before it is relayed
/// as it is (an upstream that never ends its events is still relayed).
const MAX_PENDING: usize = 1024 * 1024;

/// The complete events at the head of `pending` (up to its last blank
/// line), taken out of it; None when there is none yet.
fn complete_events(pending: &mut bytes::BytesMut) -> Option<Bytes> {
    let end = (0..pending.len()).rev().find_map(|i| {
        let rest = &pending[i..];
        if rest.starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if rest.starts_with(b"\n\n") || rest.starts_with(b"\r\r") {
            Some(i + 2)
        } else {
            None
        }
    });
    match end {
        Some(end) => Some(pending.split_to(end).freeze()),
        None if pending.len() > MAX_PENDING => Some(pending.split().freeze()),
        None => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static str]) -> BoxStream<'static, Result<Bytes, Reason>> {
        let v: Vec<Result<Bytes, Reason>> = parts.iter().map(|p| Ok(Bytes::from(*p))).collect();
        futures_util::stream::iter(v).boxed()
    }

    #[test]
    fn only_complete_events_are_relayed() {
        let mut p = bytes::BytesMut::from(&b"data: 1\n\ndata: 2\n\ndata: {\"ob"[..]);
        assert_eq!(
            &complete_events(&mut p).unwrap()[..],
            b"data: 1\n\ndata: 2\n\n"
        );
        assert_eq!(&p[..], b"data: {\"ob");
        assert!(complete_events(&mut p).is_none());
        let mut p = bytes::BytesMut::from(&b"data: 3\r\n\r\n"[..]);
        assert_eq!(&complete_events(&mut p).unwrap()[..], b"data: 3\r\n\r\n");
        assert!(p.is_empty());
    }

    #[tokio::test]
    async fn first_chunk_waits_for_a_split_field() {
        let far = Instant::now() + Duration::from_secs(5);
        let idle = Duration::from_secs(1);
        let mut s = chunks(&["\n", "d", "at", "a: {}\n\n"]);
        assert_eq!(
            &first_chunk(&mut s, idle, far).await.unwrap()[..],
            b"\ndata: {}\n\n"
        );
        let mut s = chunks(&[":", " keep-alive\n"]);
        assert_eq!(&first_chunk(&mut s, idle, far).await.unwrap()[..], b":");
        for bad in [&["<html>"][..], &["d", "x"], &["da"], &["{\"error\":1}"]] {
            let mut s = chunks(bad);
            assert_eq!(
                first_chunk(&mut s, idle, far).await,
                Err(Reason::BadResponse),
                "{bad:?}"
            );
        }
    }
}
