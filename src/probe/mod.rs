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
mod upstream;

pub use upstream::lookup;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Url};

use crate::classify::{Reason, Verdict, classify_status};
use crate::config::{EndpointConfig, ProbeKind};

/// Everything one probe learned.
#[derive(Clone, Debug)]
pub struct Report {
    pub verdict: Verdict,
    pub status: Option<u16>,
    pub duration: Duration,
    /// Seconds until the model is loaded, when the server said so.
    pub loading_estimate: Option<f64>,
    /// The wait a 429 or 503 answer asked for in `Retry-After`: a breaker
    /// this probe leaves open stays open at least that long.
    pub retry_after: Option<Duration>,
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
    /// Own client when the endpoint has TLS or proxy options, else None and
    /// the daemon's shared client is used; Err if it could not be built.
    client: Option<Result<reqwest::Client, String>>,
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
        // The probe file knows the request; config already checked that the
        // probe fits the endpoint's kind.
        let spec = match ep.probe {
            ProbeKind::Health => health::spec(ep),
            ProbeKind::Generate => generate::spec(ep),
            ProbeKind::Chat => chat::spec(ep, false),
            ProbeKind::ChatStream => chat::spec(ep, true),
            ProbeKind::Embed => embed::spec(ep),
            ProbeKind::Models => models::spec(ep),
            ProbeKind::Status => status::spec(ep),
            ProbeKind::Get => get::spec(ep),
        };
        if spec.body.is_some() {
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        extra_headers(&mut headers, ep);
        let up = &ep.request.upstream;
        if up.insecure_skip_verify {
            tracing::warn!(
                endpoint = %ep.name,
                "tls.insecure_skip_verify: certificates of this endpoint are not verified"
            );
        }
        let mut url = spec.url;
        let client = (!up.is_default()).then(|| {
            let connect_to = up
                .server_name
                .as_ref()
                .and_then(|name| server_name_url(&mut url, name));
            upstream::client_for(up, connect_to)
        });
        Prepared {
            method: spec.method,
            url,
            client,
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

    /// The headers every request to this endpoint carries (token, extra
    /// headers, user agent), for the gateway; values are marked sensitive.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The client for this endpoint's TLS and proxy options, else `shared`.
    pub fn http_client<'a>(
        &'a self,
        shared: &'a reqwest::Client,
    ) -> Result<&'a reqwest::Client, LocalError> {
        match &self.client {
            None => Ok(shared),
            Some(Ok(c)) => Ok(c),
            Some(Err(e)) => Err(LocalError {
                detail: format!("no HTTP client for this endpoint: {e}"),
            }),
        }
    }

    /// Send the probe through the endpoint's own client if it has one, else
    /// through `shared`. Never panics and never outlives the timeout. An
    /// error is this process's own failure (no file descriptors, no
    /// memory, no local port, a client it could not build): it says
    /// nothing about the endpoint.
    pub async fn run(&self, shared: &reqwest::Client) -> Result<Report, LocalError> {
        let start = Instant::now();
        let client = match &self.client {
            None => shared,
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                return Err(LocalError {
                    detail: format!("no HTTP client for this endpoint: {e}"),
                });
            }
        };
        let outcome = tokio::time::timeout(self.timeout, self.exchange(client)).await;
        let duration = start.elapsed();
        let ((result, status, loading_estimate, detail), retry_after) = match outcome {
            Err(_) => (
                (
                    Err(Reason::Timeout),
                    None,
                    None,
                    format!("no answer within {:?}", self.timeout),
                ),
                None,
            ),
            Ok(x) => x?,
        };
        let verdict = Verdict::of(result, &self.ignore);
        Ok(Report {
            verdict,
            status,
            duration,
            loading_estimate,
            retry_after,
            detail,
        })
    }

    /// The exchange and the `Retry-After` of a 429 or 503 answer.
    async fn exchange(
        &self,
        client: &reqwest::Client,
    ) -> Result<(Exchange, Option<Duration>), LocalError> {
        // The request RequestBuilder would send (credentials in the URL
        // become basic auth, the configured headers replace it), but the
        // headers are moved in whole rather than merged one by one into an
        // empty map.
        let mut req = match client
            .request(self.method.clone(), self.url.clone())
            .build()
        {
            Ok(r) => r,
            Err(e) => return transport_failure(&e, None).map(|x| (x, None)),
        };
        if req.headers().is_empty() {
            *req.headers_mut() = self.headers.clone();
        } else {
            req.headers_mut().extend(self.headers.clone());
        }
        if let Some(b) = &self.body {
            *req.body_mut() = Some(b.clone().into());
        }
        let resp = match client.execute(req).await {
            Ok(r) => r,
            Err(e) => return transport_failure(&e, None).map(|x| (x, None)),
        };
        let status = resp.status();
        let code = Some(status.as_u16());
        let retry_after = crate::classify::retry_after_of(status.as_u16(), resp.headers());
        let body = match read_bounded(resp, self.max_body).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                let detail = format!("body larger than {} bytes", self.max_body);
                return Ok(((Err(Reason::BadResponse), code, None, detail), retry_after));
            }
            Err(BodyError::Transport(e)) => {
                return transport_failure(&e, code).map(|x| (x, retry_after));
            }
        };
        Ok((self.judge(status.as_u16(), &body), retry_after))
    }

    /// What an answer with this status and (bounded) body says about the
    /// endpoint: the result, the loading estimate, a line for the logs.
    pub fn judge(&self, status: u16, body: &[u8]) -> Exchange {
        if (200..300).contains(&status) {
            let checked = match &self.check {
                Check::AnyBody => Ok(()),
                Check::Generate => generate::check(body),
                Check::Chat => chat::check(body),
                Check::ChatStream => chat::check_stream(body),
                Check::Embed => embed::check(body),
                Check::Models(m) => models::check(body, m.as_deref()),
                Check::EndpointStatus => status::check(body),
            };
            let detail = match &checked {
                Ok(()) => http_detail(status),
                Err(e) => e.detail.clone(),
            };
            return (checked.map_err(|e| e.reason), Some(status), None, detail);
        }
        let (reason, estimate) = classify_status(status, body);
        (Err(reason), Some(status), estimate, http_detail(status))
    }
}

/// `HTTP 200`: the log line of a success, without the formatting machinery
/// (it is built on every probe).
fn http_detail(status: u16) -> String {
    let mut s = String::with_capacity(8);
    s.push_str("HTTP ");
    if (100..1000).contains(&status) {
        for d in [status / 100, status / 10 % 10, status % 10] {
            s.push(char::from(b'0' + d as u8));
        }
    } else {
        s.push_str(&status.to_string());
    }
    s
}

/// What one exchange told: the result, the status, the loading estimate
/// and a line for the logs.
pub type Exchange = (Result<(), Reason>, Option<u16>, Option<f64>, String);

/// A probe this process could not send or finish for a reason of its own.
#[derive(Clone, Debug, thiserror::Error)]
#[error("local failure, not the endpoint's: {detail}")]
pub struct LocalError {
    pub detail: String,
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

/// A transport error: the endpoint's failure, or this process's own.
fn transport_failure(e: &reqwest::Error, code: Option<u16>) -> Result<Exchange, LocalError> {
    if let Some(io) = local_cause(e) {
        return Err(LocalError {
            detail: format!("{}: {io}", error_chain(e)),
        });
    }
    Ok((Err(transport_reason(e)), code, None, error_chain(e)))
}

/// A transport error of any request to an endpoint (the gateway's too): the
/// reason counted against it, or Err when it is this process's own failure.
pub fn transport_verdict(e: &reqwest::Error) -> Result<Reason, LocalError> {
    match local_cause(e) {
        Some(io) => Err(LocalError {
            detail: format!("{}: {io}", error_chain(e)),
        }),
        None => Ok(transport_reason(e)),
    }
}

fn transport_reason(e: &reqwest::Error) -> Reason {
    if e.is_timeout() {
        Reason::Timeout
    } else if e.is_redirect() || is_protocol_error(e) {
        // The endpoint answered, but not with usable HTTP: a redirect loop,
        // a malformed status line or headers.
        Reason::BadResponse
    } else {
        Reason::Connect
    }
}

/// hyper's parse errors: the peer spoke, but not valid HTTP/1.
fn is_protocol_error(e: &reqwest::Error) -> bool {
    use std::error::Error;
    let mut cur: Option<&(dyn Error + 'static)> = e.source();
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            return h.is_parse() || h.is_parse_status() || h.is_parse_too_large();
        }
        cur = c.source();
    }
    false
}

/// The OS error in `e`'s causes that says this process ran out of
/// something, if any.
fn local_cause(e: &reqwest::Error) -> Option<&std::io::Error> {
    use std::error::Error;
    let mut cur: Option<&(dyn Error + 'static)> = e.source();
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && is_local_exhaustion(io)
        {
            return Some(io);
        }
        cur = c.source();
    }
    None
}

/// Out of file descriptors, memory, buffers or local ports.
pub fn is_local_exhaustion(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::OutOfMemory
        || matches!(
            io.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS | libc::EADDRNOTAVAIL)
        )
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

/// The HTTP client probes share unless they have upstream options: rustls
/// with the system's and the bundled roots, the standard proxy variables,
/// no cookies, a few redirects.
pub fn client() -> reqwest::Client {
    upstream::build(upstream::base_builder)
        .or_else(|_| {
            upstream::base_builder()
                .tls_built_in_root_certs(false)
                .build()
        })
        // Nothing configurable is left in this builder: it fails only if
        // the TLS backend itself cannot start, as before.
        .expect("static client configuration is valid")
}

/// Configured headers, after the defaults so that e.g. `User-Agent` can be
/// replaced. Marked sensitive: they may be API keys.
fn extra_headers(headers: &mut HeaderMap, ep: &EndpointConfig) {
    for (name, value) in &ep.request.headers {
        // Both were checked at load; a failure here cannot happen, and skipping is safe.
        let (Ok(n), Ok(mut v)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value.expose()),
        ) else {
            continue;
        };
        v.set_sensitive(true);
        headers.insert(n, v);
    }
}

/// Point `url` at `name` (so SNI, certificate check and Host use it) and
/// return where to really connect: the URL's own host and port.
fn server_name_url(url: &mut Url, name: &str) -> Option<upstream::ConnectTo> {
    // `[::1]` in a URL, `::1` for the resolver.
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_or_known_default()?;
    url.set_host(Some(name)).ok()?;
    Some(upstream::ConnectTo { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request head one probe of `url` sends, with `headers` configured.
    async fn head_sent(url: &str, headers: Vec<(String, crate::secret::Secret)>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                n += s.read(&mut buf[n..]).await.unwrap();
            }
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&buf[..n]).to_lowercase()
        });
        let cfg = EndpointConfig {
            name: "e".into(),
            kind: crate::config::Kind::Http,
            url: Url::parse(&url.replace("PORT", &port.to_string())).unwrap(),
            probe: ProbeKind::Get,
            model: None,
            namespace: None,
            endpoint_name: None,
            token: None,
            token_source: None,
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(5),
            confirm_interval: Duration::from_secs(2),
            max_body_bytes: 1024,
            max_in_flight: None,
            request: crate::config::RequestOptions {
                headers,
                ..Default::default()
            },
            breaker: Default::default(),
            enforce: true,
            ignore: Default::default(),
        };
        let report = Prepared::new(&cfg).run(&client()).await.unwrap();
        assert_eq!(report.verdict, Verdict::Success);
        assert_eq!(report.detail, "HTTP 200");
        server.await.unwrap()
    }

    /// As RequestBuilder does: credentials in the URL are sent as basic
    /// auth (and not in the request line); a configured header replaces it.
    #[tokio::test]
    async fn url_credentials_and_configured_headers_are_sent_as_before() {
        let head = head_sent("http://u:p%40ss@127.0.0.1:PORT/x", Vec::new()).await;
        assert!(head.starts_with("get /x http/1.1\r\n"), "{head}");
        // base64("u:p@ss")
        assert!(head.contains("authorization: basic dtpwqhnz\r\n"), "{head}");
        assert!(head.contains("user-agent: hfbreaker/"), "{head}");
        let mine = vec![(
            "Authorization".to_string(),
            crate::secret::Secret::new("Bearer abc"),
        )];
        let head = head_sent("http://u:p@127.0.0.1:PORT/x", mine).await;
        assert!(head.contains("authorization: bearer abc\r\n"), "{head}");
        assert_eq!(head.matches("authorization:").count(), 1, "{head}");
        let head = head_sent("http://127.0.0.1:PORT/x", Vec::new()).await;
        assert!(!head.contains("authorization:"), "{head}");
    }

    #[test]
    fn http_detail_is_the_formatted_status() {
        for status in [0, 7, 99, 100, 200, 204, 299, 503, 999, 1000, u16::MAX] {
            assert_eq!(http_detail(status), format!("HTTP {status}"));
        }
    }

    #[test]
    fn join_handles_slashes() {
        let u = Url::parse("http://h:1/v1/").unwrap();
        assert_eq!(join(&u, "/models").as_str(), "http://h:1/v1/models");
        let u = Url::parse("http://h:1").unwrap();
        assert_eq!(join(&u, "/health").as_str(), "http://h:1/health");
    }
}
