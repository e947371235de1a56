//! Classification: what an answer from an endpoint means for its breaker.
//!
//! The reasons, the verdict after an endpoint's `ignore` list, and the table
//! of non-2xx statuses live here, apart from the probes, so that the config
//! (which names reasons in `ignore`) and every caller that talks to an
//! endpoint (probes now, gateway requests later) classify the same way.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::label::label_enum;

label_enum! {
    /// Why a call did not succeed: the `reason` label.
    pub enum Reason {
        /// 2xx with a wrong or unparseable body, an SSE error event, or a body over the size bound.
        BadResponse = "bad_response",
        Timeout = "timeout",
        /// Refused, reset, DNS or TLS failure.
        Connect = "connect",
        Http5xx = "http_5xx",
        /// 503 "currently loading", or endpoint state initializing/pending/updating.
        ModelLoading = "model_loading",
        RateLimited = "rate_limited",
        /// 401/403: ignored by default, a token problem is not an outage.
        Auth = "auth",
        /// Other 4xx: ignored by default.
        ClientError = "client_error",
        /// Endpoint state scaledToZero: ignored, and never woken.
        ScaledToZero = "scaled_to_zero",
        /// Endpoint state paused: ignored.
        Paused = "paused",
        /// Endpoint state failed or updateFailed.
        EndpointFailed = "endpoint_failed",
    }
}

impl Reason {
    /// Reasons that are no health signal unless configured otherwise.
    pub fn ignored_by_default(self) -> bool {
        matches!(
            self,
            Reason::Auth | Reason::ClientError | Reason::ScaledToZero | Reason::Paused
        )
    }
}

/// The verdict on one call, after the endpoint's `ignore` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "reason")]
pub enum Verdict {
    Success,
    Failure(Reason),
    Ignored(Reason),
}

impl Verdict {
    /// A call's result, with reasons ignored by default or by `ignore`
    /// turned into [`Verdict::Ignored`].
    pub fn of(result: Result<(), Reason>, ignore: &BTreeSet<Reason>) -> Verdict {
        match result {
            Ok(()) => Verdict::Success,
            Err(r) if r.ignored_by_default() || ignore.contains(&r) => Verdict::Ignored(r),
            Err(r) => Verdict::Failure(r),
        }
    }

    pub fn reason(self) -> Option<Reason> {
        match self {
            Verdict::Success => None,
            Verdict::Failure(r) | Verdict::Ignored(r) => Some(r),
        }
    }
}

/// Non-2xx answers, per the classification table; a loading 503 also
/// returns the server's estimate of the seconds left, when it gave one.
pub fn classify_status(status: u16, body: &[u8]) -> (Reason, Option<f64>) {
    match status {
        401 | 403 => (Reason::Auth, None),
        429 => (Reason::RateLimited, None),
        503 => match loading_estimate(body) {
            Some(est) => (Reason::ModelLoading, est),
            None => (Reason::Http5xx, None),
        },
        500..=599 => (Reason::Http5xx, None),
        100..=199 | 300..=399 => (Reason::BadResponse, None),
        _ => (Reason::ClientError, None),
    }
}

/// The largest loading estimate believed: a day. Servers have sent 1e308.
pub const MAX_LOADING_ESTIMATE_SECONDS: f64 = 86_400.0;

/// `Some(estimate)` when a 503 body says the model is loading
/// (`{"error":"Model x is currently loading","estimated_time":20.0}`); the
/// estimate is dropped when it is not a non-negative number, and capped.
fn loading_estimate(body: &[u8]) -> Option<Option<f64>> {
    #[derive(Deserialize)]
    struct Loading {
        #[serde(default)]
        error: serde_json::Value,
        #[serde(default)]
        estimated_time: serde_json::Value,
    }
    let parsed: Loading = serde_json::from_slice(body).ok()?;
    let says_loading = parsed
        .error
        .as_str()
        .is_some_and(|e| e.contains("currently loading"));
    let estimate = parsed
        .estimated_time
        .as_f64()
        .filter(|t| *t >= 0.0)
        .map(|t| t.min(MAX_LOADING_ESTIMATE_SECONDS));
    (says_loading || estimate.is_some()).then_some(estimate)
}

/// The `Retry-After` of an answer, for probes and gateway requests alike:
/// only a 429 or 503 asks for a wait; other statuses carry none.
pub fn retry_after_of(
    status: u16,
    headers: &reqwest::header::HeaderMap,
) -> Option<std::time::Duration> {
    if !matches!(status, 429 | 503) {
        return None;
    }
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    retry_after(v, std::time::SystemTime::now())
}

/// The wait a `Retry-After` value asks for (RFC 9110 §10.2.3), read the
/// same for probes and gateway requests: delay-seconds, or an HTTP-date
/// taken as the time left until it from `now` (a past date: no wait).
/// None when the value is neither. Callers take it from 429 and 503
/// answers only, and the breaker caps it at `max_open_duration`.
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<std::time::Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Beyond u64 seconds: any cap applies anyway.
        return Some(std::time::Duration::from_secs(
            v.parse().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        use std::time::{Duration, SystemTime};
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00 UTC
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        // A date already past: no wait.
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-5", "1.5", "soon", "12 s"] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn status_table() {
        assert_eq!(classify_status(401, b"").0, Reason::Auth);
        assert_eq!(classify_status(403, b"").0, Reason::Auth);
        assert_eq!(classify_status(429, b"{}").0, Reason::RateLimited);
        assert_eq!(classify_status(500, b"").0, Reason::Http5xx);
        assert_eq!(classify_status(502, b"").0, Reason::Http5xx);
        assert_eq!(
            classify_status(
                503,
                b"{\"error\":\"unhealthy\",\"error_type\":\"healthcheck\"}"
            )
            .0,
            Reason::Http5xx
        );
        assert_eq!(
            classify_status(
                503,
                br#"{"error":"Model x/y is currently loading","estimated_time":20.5}"#
            ),
            (Reason::ModelLoading, Some(20.5))
        );
        assert_eq!(
            classify_status(503, br#"{"error":"Model x/y is currently loading"}"#),
            (Reason::ModelLoading, None)
        );
        assert_eq!(classify_status(404, b"").0, Reason::ClientError);
        assert_eq!(classify_status(422, b"").0, Reason::ClientError);
    }

    #[test]
    fn informational_and_unfollowed_redirects_are_bad_responses() {
        // A final 101 or a 302 the client would not follow (to `file:`, or
        // past the redirect limit) is no answer to the probe: a failure,
        // not an ignored client error that can never trip the breaker.
        for status in [100, 101, 199, 300, 301, 302, 304, 307, 308, 399] {
            assert_eq!(
                classify_status(status, b"").0,
                Reason::BadResponse,
                "{status}"
            );
        }
    }

    #[test]
    fn loading_estimates_are_bounded() {
        let est = |body: &str| classify_status(503, body.as_bytes());
        assert_eq!(
            est(r#"{"error":"x is currently loading","estimated_time":1e308}"#),
            (Reason::ModelLoading, Some(MAX_LOADING_ESTIMATE_SECONDS))
        );
        assert_eq!(
            est(r#"{"error":"x is currently loading","estimated_time":-5}"#),
            (Reason::ModelLoading, None)
        );
        assert_eq!(
            est(r#"{"error":"x is currently loading","estimated_time":"soon"}"#),
            (Reason::ModelLoading, None)
        );
    }

    #[test]
    fn default_ignored_reasons() {
        let ignored: Vec<_> = Reason::ALL
            .into_iter()
            .filter(|r| r.ignored_by_default())
            .collect();
        assert_eq!(
            ignored,
            [
                Reason::Auth,
                Reason::ClientError,
                Reason::ScaledToZero,
                Reason::Paused
            ]
        );
    }

    #[test]
    fn verdict_applies_the_ignore_list() {
        let none = BTreeSet::new();
        let timeouts = BTreeSet::from([Reason::Timeout]);
        assert_eq!(Verdict::of(Ok(()), &timeouts), Verdict::Success);
        for r in Reason::ALL {
            let plain = Verdict::of(Err(r), &none);
            let expected = if r.ignored_by_default() {
                Verdict::Ignored(r)
            } else {
                Verdict::Failure(r)
            };
            assert_eq!(plain, expected, "{r}");
            assert_eq!(plain.reason(), Some(r));
        }
        assert_eq!(
            Verdict::of(Err(Reason::Timeout), &timeouts),
            Verdict::Ignored(Reason::Timeout)
        );
    }

    #[test]
    fn verdict_json_names_result_and_reason() {
        assert_eq!(
            serde_json::to_value(Verdict::Failure(Reason::Http5xx)).unwrap(),
            serde_json::json!({"result": "failure", "reason": "http_5xx"})
        );
        assert_eq!(
            serde_json::to_value(Verdict::Success).unwrap(),
            serde_json::json!({"result": "success"})
        );
    }
}
