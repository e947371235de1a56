//! How the gateway sends an attempt upstream.
//!
//! Plain `http://` endpoints without a proxy, credentials in the URL or
//! upstream options go through the gateway's own HTTP/1 connections
//! ([`Origin`]): a connection is taken from the endpoint's idle list and
//! driven inside the request's own task, the way HAProxy relays in one
//! event loop. Through reqwest the request went to the pooled
//! connection's task over a channel and the response and its body came
//! back over two more, each a wake-up of another task (often on the other
//! worker thread: a futex and a context switch); that was most of the
//! gateway's CPU (docs/performance.md, "Gateway"). Everything else (TLS,
//! proxies, `server_name`) still goes through reqwest.
//!
//! An idle connection is polled before reuse (and every few seconds by a
//! reaper) so that one the upstream closed is dropped, not used; a request
//! the connection never wrote (it closed under us) is sent again once on a
//! new connection, as reqwest's pool does. A response that is not read to
//! its end drops its connection, which closes it: that is how a client
//! leaving cancels the upstream request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, Request, Uri, header};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use reqwest::Url;
use tokio::net::TcpStream;

use crate::classify::Reason;

/// An idle connection is closed after this long, as reqwest's pool does.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often the reaper looks for idle connections the upstream closed.
const REAP_EVERY: Duration = Duration::from_secs(5);
/// Idle connections kept per endpoint at most (the peak of concurrent
/// requests to it, in practice).
const MAX_IDLE: usize = 1024;

/// Why an attempt got no response.
#[derive(Debug)]
pub enum Failure {
    /// The endpoint's failure (counted by its breaker).
    Endpoint(Reason),
    /// This process's own (no descriptors, no local port): not counted.
    Local(String),
}

/// Whether the environment sets a proxy for `http://` URLs: then reqwest
/// (which honours it) sends everything.
static ENV_PROXY: LazyLock<bool> = LazyLock::new(|| {
    ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
});

type Conn = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// One HTTP/1 connection: the handle to send on and the connection itself,
/// which only makes progress while someone polls it.
struct Live {
    tx: http1::SendRequest<Full<Bytes>>,
    conn: Conn,
    idle_since: Instant,
}

impl Live {
    /// Poll the connection once without a waker: false when the upstream
    /// closed it (or it failed), or it cannot take a request.
    fn usable(&mut self) -> bool {
        if self.tx.is_closed() || self.idle_since.elapsed() >= IDLE_TIMEOUT {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self.conn).poll(&mut cx) {
            Poll::Ready(_) => false,
            Poll::Pending => self.tx.is_ready(),
        }
    }
}

/// The idle connections to one plain-HTTP endpoint (its host and port).
pub struct Origin {
    host: String,
    port: u16,
    authority: HeaderValue,
    /// Boxed: each moves out to a request and back (a pointer, not a
    /// connection's several hundred bytes).
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<Live>>>,
    reaper: std::sync::Once,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish()
    }
}

impl Origin {
    /// The gateway's own connections for `url`, or None when reqwest must
    /// send (not plain HTTP, credentials in the URL, a proxy in the environment).
    pub fn for_url(url: &Url) -> Option<Arc<Origin>> {
        if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        if *ENV_PROXY {
            return None;
        }
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        let authority = match url.port() {
            Some(p) => HeaderValue::from_str(&format!("{host}:{p}")).ok()?,
            None => HeaderValue::from_str(host).ok()?,
        };
        Some(Arc::new(Origin {
            // `[::1]` in a URL, `::1` to connect.
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            authority,
            idle: Mutex::new(Vec::new()),
            reaper: std::sync::Once::new(),
        }))
    }

    #[allow(clippy::vec_box)]
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Box<Live>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle connection that is still usable.
    fn take(&self) -> Option<Box<Live>> {
        loop {
            let mut live = self.idle().pop()?;
            if live.usable() {
                return Some(live);
            }
        }
    }

    fn put(self: &Arc<Self>, mut live: Box<Live>) {
        live.idle_since = Instant::now();
        {
            let mut idle = self.idle();
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push(live);
        }
        self.reaper.call_once(|| {
            let weak = Arc::downgrade(self);
            tokio::spawn(reap(weak));
        });
    }

    async fn connect(&self) -> Result<Box<Live>, Failure> {
        // `localhost` without /etc/hosts too (a FROM scratch image).
        let addrs = crate::probe::lookup(self.host.clone(), self.port)
            .await
            .map_err(|e| io_failure(&e))?;
        let mut last: Option<std::io::Error> = None;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(stream) = stream else {
            return Err(last.map_or(Failure::Endpoint(Reason::Connect), |e| io_failure(&e)));
        };
        let _ = stream.set_nodelay(true);
        let (tx, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| hyper_failure(&e))?;
        // Boxed: a connection is large, and moves between the idle list
        // and the requests that use it.
        Ok(Box::new(Live {
            tx,
            conn,
            idle_since: Instant::now(),
        }))
    }

    /// POST `body` to `url` (of this origin) with `headers`; the response
    /// once its head arrived, its body still to read.
    pub async fn post(
        self: &Arc<Self>,
        url: &Url,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Answer, Failure> {
        let uri =
            origin_form(url).ok_or_else(|| Failure::Local("request path not usable".into()))?;
        let mut req = Request::new(Full::new(body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        *h = headers.clone();
        h.insert(header::HOST, self.authority.clone());
        if !h.contains_key(header::ACCEPT) {
            h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        }
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let (mut live, mut reused) = match self.take() {
            Some(l) => (l, true),
            None => (self.connect().await?, false),
        };
        loop {
            let mut sent = std::pin::pin!(live.tx.try_send_request(req));
            let mut conn_done = false;
            let res = std::future::poll_fn(|cx| {
                // The connection writes the request and reads the answer
                // while this task polls it: no other task is woken.
                if !conn_done && Pin::new(&mut live.conn).poll(cx).is_ready() {
                    conn_done = true;
                }
                // Only the connection's poll just above completes `sent`,
                // so it needs no waker of this task: a waker would wake the
                // running task itself (an extra poll, and a wake-up of an
                // idle worker to maybe take it).
                match sent.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                    Poll::Pending if conn_done => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(r) => Poll::Ready(Some(r)),
                }
            })
            .await;
            match res {
                Some(Ok(resp)) => {
                    let (parts, body) = resp.into_parts();
                    return Ok(Answer::Direct(Direct {
                        status: parts.status.as_u16(),
                        headers: parts.headers,
                        body: DirectBody {
                            live: Some(live),
                            conn_done,
                            origin: self.clone(),
                            body,
                        },
                    }));
                }
                // Never written: the idle connection closed under us.
                Some(Err(mut e)) if reused && e.message().is_some() => {
                    req = e.take_message().expect("checked above");
                    live = self.connect().await?;
                    reused = false;
                }
                Some(Err(e)) => return Err(hyper_failure(e.error())),
                None => return Err(Failure::Endpoint(Reason::Connect)),
            }
        }
    }
}

/// The request target of `url`: its path and query.
fn origin_form(url: &Url) -> Option<Uri> {
    match url.query() {
        None => url.path().parse().ok(),
        Some(q) => format!("{}?{q}", url.path()).parse().ok(),
    }
}

/// Every few seconds, drop idle connections the upstream closed or that
/// idled too long, until the origin is gone.
async fn reap(origin: Weak<Origin>) {
    loop {
        tokio::time::sleep(REAP_EVERY).await;
        let Some(o) = origin.upgrade() else { return };
        let mut idle = o.idle();
        idle.retain_mut(|l| l.usable());
    }
}

/// A response whose body is read through its connection; the connection
/// goes back to the idle list once the body ended.
pub struct DirectBody {
    live: Option<Box<Live>>,
    /// The connection finished (closed or failed): not polled again.
    conn_done: bool,
    origin: Arc<Origin>,
    body: Incoming,
}

impl DirectBody {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Reason>>> {
        loop {
            if let Some(live) = &mut self.live
                && !self.conn_done
            {
                self.conn_done = Pin::new(&mut live.conn).poll(cx).is_ready();
            }
            // As for the head: only the connection's poll above feeds the body.
            let mut fed = Context::from_waker(Waker::noop());
            match Pin::new(&mut self.body).poll_frame(&mut fed) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(d) if !d.is_empty() => return Poll::Ready(Some(Ok(d))),
                    // Trailers and empty chunks.
                    _ => continue,
                },
                Poll::Ready(Some(Err(e))) => {
                    self.live = None;
                    return Poll::Ready(Some(Err(body_reason(&e))));
                }
                Poll::Ready(None) => {
                    if let Some(live) = self.live.take()
                        && !self.conn_done
                    {
                        self.release(live);
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending if self.conn_done || self.live.is_none() => {
                    // The connection ended and the body never will.
                    self.live = None;
                    return Poll::Ready(Some(Err(Reason::Connect)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn release(&self, mut live: Box<Live>) {
        // Let the connection finish the exchange and register no waker of
        // this task: an idle connection belongs to no request.
        let mut cx = Context::from_waker(Waker::noop());
        if Pin::new(&mut live.conn).poll(&mut cx).is_pending() && !live.tx.is_closed() {
            self.origin.put(live);
        }
    }
}

impl futures_util::Stream for DirectBody {
    type Item = Result<Bytes, Reason>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_chunk(cx)
    }
}

/// A response of the gateway's own connection.
pub struct Direct {
    status: u16,
    headers: HeaderMap,
    body: DirectBody,
}

/// An upstream response, whichever client got it.
pub enum Answer {
    Reqwest(reqwest::Response),
    Direct(Direct),
}

impl Answer {
    pub fn status(&self) -> u16 {
        match self {
            Answer::Reqwest(r) => r.status().as_u16(),
            Answer::Direct(d) => d.status,
        }
    }

    pub fn headers(&self) -> &HeaderMap {
        match self {
            Answer::Reqwest(r) => r.headers(),
            Answer::Direct(d) => &d.headers,
        }
    }

    /// The body's length when the upstream declared it.
    pub fn content_length(&self) -> Option<u64> {
        match self {
            Answer::Reqwest(r) => r.content_length(),
            Answer::Direct(d) => d.body.body.size_hint().exact(),
        }
    }

    /// The next piece of the body; None at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Reason> {
        match self {
            Answer::Reqwest(r) => r.chunk().await.map_err(|e| reqwest_body_reason(&e)),
            Answer::Direct(d) => d.body.next().await.transpose(),
        }
    }

    /// The body as a stream of pieces.
    pub fn into_stream(self) -> BoxStream<'static, Result<Bytes, Reason>> {
        match self {
            Answer::Reqwest(r) => futures_util::stream::unfold(r, |mut r| async move {
                match r.chunk().await {
                    Ok(Some(c)) => Some((Ok(c), r)),
                    Ok(None) => None,
                    Err(e) => Some((Err(reqwest_body_reason(&e)), r)),
                }
            })
            .boxed(),
            Answer::Direct(d) => d.body.boxed(),
        }
    }
}

/// POST through the endpoint's own connections when it has them, else
/// through reqwest.
pub async fn post(
    direct: Option<&Arc<Origin>>,
    client: &reqwest::Client,
    url: Url,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Answer, Failure> {
    match direct {
        Some(o) => o.post(&url, headers, body).await,
        None => post_reqwest(client, url, headers, body).await,
    }
}

/// Send through reqwest (TLS, proxies, upstream options).
async fn post_reqwest(
    client: &reqwest::Client,
    url: Url,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Answer, Failure> {
    match client
        .post(url)
        .headers(headers.clone())
        .body(body)
        .send()
        .await
    {
        Ok(r) => Ok(Answer::Reqwest(r)),
        Err(e) => Err(match crate::probe::transport_verdict(&e) {
            Ok(reason) => Failure::Endpoint(reason),
            Err(local) => Failure::Local(local.detail),
        }),
    }
}

fn reqwest_body_reason(e: &reqwest::Error) -> Reason {
    crate::probe::transport_verdict(e).unwrap_or(Reason::Connect)
}

fn io_failure(e: &std::io::Error) -> Failure {
    if crate::probe::is_local_exhaustion(e) {
        Failure::Local(format!("connect error: {e}"))
    } else {
        Failure::Endpoint(Reason::Connect)
    }
}

/// The peer spoke, but not HTTP/1: a bad response; else a transport
/// failure, or this process's own when the OS ran out of something.
fn hyper_failure(e: &hyper::Error) -> Failure {
    if let Some(io) = io_cause(e)
        && crate::probe::is_local_exhaustion(io)
    {
        return Failure::Local(format!("request error: {e}: {io}"));
    }
    Failure::Endpoint(body_reason(e))
}

fn body_reason(e: &hyper::Error) -> Reason {
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        Reason::BadResponse
    } else if e.is_timeout() {
        Reason::Timeout
    } else {
        Reason::Connect
    }
}

fn io_cause(e: &hyper::Error) -> Option<&std::io::Error> {
    use std::error::Error;
    let mut cur: Option<&(dyn Error + 'static)> = e.source();
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = c.source();
    }
    None
}
