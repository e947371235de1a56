//! Probes: build the cheapest real request of each kind, send it with a
//! deadline, read a bounded body and classify the answer.
//!
//! One file per probe kind knows the request and what a healthy answer looks
//! like; this module owns transport, bounds and the classification table.

mod chat;
mod embed;
mod generate;
mod get;
mod health;
mod models;
mod status;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::config::{EndpointConfig, ProbeKind};

/// Why a probe did not succeed: the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// 2xx with a wrong or unparseable body, an SSE error event, or a body over the size bound.
    BadResponse,
    Timeout,
    /// Refused, reset, DNS or TLS failure.
    Connect,
    Http5xx,
    /// 503 "currently loading", or endpoint state initializing/pending/updating.
    ModelLoading,
    RateLimited,
    /// 401/403: ignored by default, a token problem is not an outage.
    Auth,
    /// Other 4xx: ignored by default.
    ClientError,
    /// Endpoint state scaledToZero: ignored, and never woken.
    ScaledToZero,
    /// Endpoint state paused: ignored.
    Paused,
    /// Endpoint state failed or updateFailed.
    EndpointFailed,
}

impl Reason {
    pub const ALL: [Reason; 11] = [
        Reason::BadResponse,
        Reason::Timeout,
        Reason::Connect,
        Reason::Http5xx,
        Reason::ModelLoading,
        Reason::RateLimited,
        Reason::Auth,
        Reason::ClientError,
        Reason::ScaledToZero,
        Reason::Paused,
        Reason::EndpointFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadResponse => "bad_response",
            Reason::Timeout => "timeout",
            Reason::Connect => "connect",
            Reason::Http5xx => "http_5xx",
            Reason::ModelLoading => "model_loading",
            Reason::RateLimited => "rate_limited",
            Reason::Auth => "auth",
            Reason::ClientError => "client_error",
            Reason::ScaledToZero => "scaled_to_zero",
            Reason::Paused => "paused",
            Reason::EndpointFailed => "endpoint_failed",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Reasons that are no health signal unless configured otherwise.
    pub fn ignored_by_default(self) -> bool {
        matches!(
            self,
            Reason::Auth | Reason::ClientError | Reason::ScaledToZero | Reason::Paused
        )
    }
}

/// The probe's verdict, after the endpoint's `ignore` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "reason")]
pub enum Verdict {
    Success,
    Failure(Reason),
    Ignored(Reason),
}

impl Verdict {
    pub fn reason(self) -> Option<Reason> {
        match self {
            Verdict::Success => None,
            Verdict::Failure(r) | Verdict::Ignored(r) => Some(r),
        }
    }
}

/// Everything one probe learned.
#[derive(Clone, Debug)]
pub struct Report {
    pub verdict: Verdict,
    pub status: Option<u16>,
    pub duration: Duration,
    /// Seconds until the model is loaded, when the server said so.
    pub loading_estimate: Option<f64>,
    /// One line for logs; never contains a token or a body over a few bytes.
    pub detail: String,
}

/// A request prepared once per endpoint configuration, sent on every probe.
#[derive(Clone, Debug)]
pub struct Prepared {
    method: Method,
    url: Url,
    body: Option<Bytes>,
    headers: HeaderMap,
    check: Check,
    timeout: Duration,
    max_body: usize,
    ignore: BTreeSet<Reason>,
}

/// What a 2xx body must look like.
#[derive(Clone, Debug)]
enum Check {
    AnyBody,
    Generate,
    Chat,
    ChatStream,
    Embed,
    Models(Option<String>),
    EndpointStatus,
}

const PROMPT: &str = "ping";

/// `base` with `path` appended, whatever trailing slash `base` has.
fn join(base: &Url, path: &str) -> Url {
    let mut s = base.as_str().trim_end_matches('/').to_string();
    s.push_str(path);
    Url::parse(&s).unwrap_or_else(|_| base.clone())
}

impl Prepared {
    pub fn new(ep: &EndpointConfig) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_static(concat!("hfbreaker/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(tok) = &ep.token
            && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", tok.expose()))
        {
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let spec = match (ep.kind, ep.probe) {
            (_, ProbeKind::Health) => health::spec(ep),
            (_, ProbeKind::Generate) => generate::spec(ep),
            (_, ProbeKind::Chat) => chat::spec(ep, false),
            (_, ProbeKind::ChatStream) => chat::spec(ep, true),
            (_, ProbeKind::Embed) => embed::spec(ep),
            (_, ProbeKind::Models) => models::spec(ep),
            (_, ProbeKind::Status) => status::spec(ep),
            (_, ProbeKind::Get) => get::spec(ep),
        };
        if spec.body.is_some() {
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        Prepared {
            method: spec.method,
            url: spec.url,
            body: spec.body,
            headers,
            check: spec.check,
            timeout: ep.timeout,
            max_body: ep.max_body_bytes as usize,
            ignore: ep.ignore.clone(),
        }
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Send the probe. Never panics and never outlives the timeout.
    pub async fn run(&self, client: &reqwest::Client) -> Report {
        let start = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, self.exchange(client)).await;
        let duration = start.elapsed();
        let (result, status, loading_estimate, detail) = match outcome {
            Err(_) => (
                Err(Reason::Timeout),
                None,
                None,
                format!("no answer within {:?}", self.timeout),
            ),
            Ok(x) => x,
        };
        let verdict = match result {
            Ok(()) => Verdict::Success,
            Err(r) if r.ignored_by_default() || self.ignore.contains(&r) => Verdict::Ignored(r),
            Err(r) => Verdict::Failure(r),
        };
        Report {
            verdict,
            status,
            duration,
            loading_estimate,
            detail,
        }
    }

    async fn exchange(
        &self,
        client: &reqwest::Client,
    ) -> (Result<(), Reason>, Option<u16>, Option<f64>, String) {
        let mut req = client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        if let Some(b) = &self.body {
            req = req.body(b.clone());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return (Err(transport_reason(&e)), None, None, error_chain(&e)),
        };
        let status = resp.status();
        let code = Some(status.as_u16());
        let body = match read_bounded(resp, self.max_body).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return (
                    Err(Reason::BadResponse),
                    code,
                    None,
                    format!("body larger than {} bytes", self.max_body),
                );
            }
            Err(BodyError::Transport(e)) => {
                return (Err(transport_reason(&e)), code, None, error_chain(&e));
            }
        };
        if status.is_success() {
            let checked = match &self.check {
                Check::AnyBody => Ok(()),
                Check::Generate => generate::check(&body),
                Check::Chat => chat::check(&body),
                Check::ChatStream => chat::check_stream(&body),
                Check::Embed => embed::check(&body),
                Check::Models(m) => models::check(&body, m.as_deref()),
                Check::EndpointStatus => status::check(&body),
            };
            let detail = match &checked {
                Ok(()) => format!("HTTP {}", status.as_u16()),
                Err(e) => e.detail.clone(),
            };
            return (checked.map_err(|e| e.reason), code, None, detail);
        }
        let (reason, estimate) = classify_status(status, &body);
        (
            Err(reason),
            code,
            estimate,
            format!("HTTP {}", status.as_u16()),
        )
    }
}

/// A body check that failed, with a short reason for logs.
pub(crate) struct CheckError {
    reason: Reason,
    detail: String,
}

pub(crate) fn bad(detail: impl Into<String>) -> CheckError {
    CheckError {
        reason: Reason::BadResponse,
        detail: detail.into(),
    }
}

/// Request and body check of one probe kind.
pub(crate) struct Spec {
    method: Method,
    url: Url,
    body: Option<Bytes>,
    check: Check,
}

fn transport_reason(e: &reqwest::Error) -> Reason {
    if e.is_timeout() {
        Reason::Timeout
    } else {
        Reason::Connect
    }
}

/// The error and its causes, without the URL (it may carry a query).
fn error_chain(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut out = String::new();
    let mut cur: Option<&dyn Error> = e.source();
    out.push_str(if e.is_connect() {
        "connect error"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else {
        "request error"
    });
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

async fn read_bounded(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n as usize > max) {
        return Err(BodyError::TooLarge);
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if buf.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Non-2xx answers, per the classification table.
fn classify_status(status: StatusCode, body: &[u8]) -> (Reason, Option<f64>) {
    match status.as_u16() {
        401 | 403 => (Reason::Auth, None),
        429 => (Reason::RateLimited, None),
        503 => match loading_estimate(body) {
            Some(est) => (Reason::ModelLoading, est),
            None => (Reason::Http5xx, None),
        },
        500..=599 => (Reason::Http5xx, None),
        _ => (Reason::ClientError, None),
    }
}

/// `Some(estimate)` when a 503 body says the model is loading
/// (`{"error":"Model x is currently loading","estimated_time":20.0}`).
fn loading_estimate(body: &[u8]) -> Option<Option<f64>> {
    #[derive(Deserialize)]
    struct Loading {
        #[serde(default)]
        error: serde_json::Value,
        estimated_time: Option<f64>,
    }
    let parsed: Loading = serde_json::from_slice(body).ok()?;
    let says_loading = parsed
        .error
        .as_str()
        .is_some_and(|e| e.contains("currently loading"));
    (says_loading || parsed.estimated_time.is_some()).then_some(parsed.estimated_time)
}

/// The HTTP client all probes share: rustls, no cookies, a few redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(32)
        .tcp_nodelay(true)
        .build()
        .expect("static client configuration is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let s = |c| StatusCode::from_u16(c).unwrap();
        assert_eq!(classify_status(s(401), b"").0, Reason::Auth);
        assert_eq!(classify_status(s(403), b"").0, Reason::Auth);
        assert_eq!(classify_status(s(429), b"{}").0, Reason::RateLimited);
        assert_eq!(classify_status(s(500), b"").0, Reason::Http5xx);
        assert_eq!(classify_status(s(502), b"").0, Reason::Http5xx);
        assert_eq!(
            classify_status(
                s(503),
                b"{\"error\":\"unhealthy\",\"error_type\":\"healthcheck\"}"
            )
            .0,
            Reason::Http5xx
        );
        assert_eq!(
            classify_status(
                s(503),
                br#"{"error":"Model x/y is currently loading","estimated_time":20.5}"#
            ),
            (Reason::ModelLoading, Some(20.5))
        );
        assert_eq!(classify_status(s(404), b"").0, Reason::ClientError);
        assert_eq!(classify_status(s(422), b"").0, Reason::ClientError);
    }

    #[test]
    fn default_ignored_reasons() {
        let ignored: Vec<_> = Reason::ALL
            .iter()
            .filter(|r| r.ignored_by_default())
            .map(|r| r.as_str())
            .collect();
        assert_eq!(
            ignored,
            ["auth", "client_error", "scaled_to_zero", "paused"]
        );
    }

    #[test]
    fn join_handles_slashes() {
        let u = Url::parse("http://h:1/v1/").unwrap();
        assert_eq!(join(&u, "/models").as_str(), "http://h:1/v1/models");
        let u = Url::parse("http://h:1").unwrap();
        assert_eq!(join(&u, "/health").as_str(), "http://h:1/health");
    }
}
