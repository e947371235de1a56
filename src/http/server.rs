//! One hardened HTTP/1.1 listener, shared by every port the process serves.
//!
//! `axum::serve` has no connection limit and no timeouts, so a few hundred
//! idle sockets exhausted the file descriptors the probes need, and a client
//! sending headers slowly held SIGTERM forever. This accept loop bounds all
//! of it:
//! - at most `max_connections` at once; when full, the connection idle the
//!   longest is closed to make room, and when none is idle the new one is;
//! - a header-read timeout, which hyper arms whenever a connection waits
//!   for a request head, so it is also the idle keep-alive timeout and the
//!   bound on a slow-header (slowloris) client; TLS handshakes get the same;
//! - request heads of at most [`Limits::max_header_bytes`] (hyper answers
//!   431) and bodies of at most [`Limits::max_body_bytes`] (413);
//! - on shutdown: stop accepting, let in-flight requests finish, and drop
//!   every connection left after [`Limits::shutdown_timeout`];
//! - accept errors back off instead of spinning, are logged once per burst
//!   and reported through `on_accept_error`;
//! - TLS, basic auth and extra headers from `--web.config.file` (see
//!   [`super::web_config`]), re-read when its files change.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::web_config::{WebConfig, WebState};

/// Bounds of one listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once (see [`connection_budget`] for the cap that
    /// keeps file descriptors for the probes).
    pub max_connections: usize,
    /// Time to receive a whole request head, counted from when the
    /// connection starts waiting for it: also the idle keep-alive timeout.
    pub header_read_timeout: Duration,
    /// Request line and headers; hyper answers 431 above it.
    pub max_header_bytes: usize,
    /// Request bodies; 413 above it.
    pub max_body_bytes: usize,
    /// After shutdown starts, how long in-flight requests may take.
    pub shutdown_timeout: Duration,
}

pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Duration::from_secs(10),
            // hyper's smallest read buffer is 8 KiB; 16 KiB holds any real
            // client's head, cookies included.
            max_header_bytes: 16 * 1024,
            // The only bodies are admin and reload POSTs, which are empty.
            max_body_bytes: 64 * 1024,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// Decides, per request, that basic auth is checked elsewhere (the admin
/// API carries its own bearer token in the same `Authorization` header).
pub type AuthExempt = fn(&Method, &Uri, &HeaderMap) -> bool;

/// What a listener serves and how.
#[derive(Clone)]
pub struct Settings {
    pub limits: Limits,
    pub web: Arc<WebConfig>,
    /// Called on each accept failure that is the process's own (out of
    /// file descriptors, memory or buffers).
    pub on_accept_error: Arc<dyn Fn() + Send + Sync>,
    pub auth_exempt: Option<AuthExempt>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            web: WebConfig::none(),
            on_accept_error: Arc::new(|| {}),
            auth_exempt: None,
        }
    }
}

// ------------------------------------------------------- file descriptors

/// The RLIMIT_NOFILE soft limit before and after [`raise_fd_limit`], and
/// the hard limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimits {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raise the soft RLIMIT_NOFILE to the hard limit: the default soft limit
/// (often 1,024) is a historical select(2) bound this process does not have.
pub fn raise_fd_limit() -> std::io::Result<FdLimits> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let before = lim.rlim_cur;
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim = raised;
            }
        }
        // rlim_t is u64 on Linux but not on every unix.
        #[allow(clippy::unnecessary_cast)]
        Ok(FdLimits {
            soft_before: before as u64,
            soft: lim.rlim_cur as u64,
            hard: lim.rlim_max as u64,
        })
    }
    #[cfg(not(unix))]
    Err(std::io::Error::other("no RLIMIT_NOFILE here"))
}

/// Connections a listener may hold: `requested`, but at most a quarter of
/// the descriptors, so that probes, the listening sockets and the files
/// the process opens always find one.
pub fn connection_budget(requested: usize, soft_fd_limit: u64) -> usize {
    let quarter = usize::try_from(soft_fd_limit / 4).unwrap_or(usize::MAX);
    requested.min(quarter).max(1)
}

// ----------------------------------------------------------- connections

/// One held connection, as the eviction policy sees it.
struct Slot {
    /// Requests being answered; a busy connection is never evicted.
    busy: AtomicUsize,
    /// Milliseconds since [`Slots::epoch`] at which it last became idle.
    idle_since: AtomicU64,
    evict: Notify,
}

/// The connections of one listener.
struct Slots {
    max: usize,
    epoch: Instant,
    inner: Mutex<SlotTable>,
}

#[derive(Default)]
struct SlotTable {
    next: u64,
    held: HashMap<u64, Arc<Slot>>,
}

/// Frees its slot when the connection's task ends.
struct SlotGuard {
    id: u64,
    slot: Arc<Slot>,
    slots: Arc<Slots>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.table().held.remove(&self.id);
    }
}

/// What admitting a new connection did.
enum Admission {
    Held(SlotGuard),
    /// Held after closing the connection idle the longest.
    Evicted(SlotGuard),
    /// Every connection is busy: the new one is closed.
    Full,
}

impl Slots {
    fn table(&self) -> std::sync::MutexGuard<'_, SlotTable> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn admit(self: &Arc<Self>) -> Admission {
        let now = self.now_ms();
        let mut t = self.table();
        let mut evicted = false;
        if t.held.len() >= self.max {
            let oldest = t
                .held
                .iter()
                .filter(|(_, s)| s.busy.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, s)| s.idle_since.load(Ordering::Acquire))
                .map(|(&id, _)| id);
            let Some(id) = oldest else {
                return Admission::Full;
            };
            if let Some(s) = t.held.remove(&id) {
                // notify_one keeps a permit if the task is not waiting yet.
                s.evict.notify_one();
            }
            evicted = true;
        }
        let id = t.next;
        t.next += 1;
        let slot = Arc::new(Slot {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(now),
            evict: Notify::new(),
        });
        t.held.insert(id, slot.clone());
        let guard = SlotGuard {
            id,
            slot,
            slots: self.clone(),
        };
        if evicted {
            Admission::Evicted(guard)
        } else {
            Admission::Held(guard)
        }
    }
}

/// Marks a connection busy while one request is answered.
struct Busy {
    slot: Arc<Slot>,
    slots: Arc<Slots>,
}

impl Busy {
    fn new(slot: Arc<Slot>, slots: Arc<Slots>) -> Self {
        slot.busy.fetch_add(1, Ordering::AcqRel);
        Busy { slot, slots }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.slot
            .idle_since
            .store(self.slots.now_ms(), Ordering::Release);
        self.slot.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

// ------------------------------------------------------------ accept loop

/// State shared by the accept loop and its connections.
struct Shared {
    settings: Settings,
    router: Router,
    slots: Arc<Slots>,
}

/// Serve `router` on `listener` until `shutdown` resolves, then drain (see
/// the module documentation). Errors only if the listener itself fails.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let slots = Arc::new(Slots {
        max: settings.limits.max_connections.max(1),
        epoch: Instant::now(),
        inner: Mutex::new(SlotTable::default()),
    });
    let router = router.layer(axum::middleware::from_fn_with_state(
        Arc::new(settings.clone()),
        guard,
    ));
    let shared = Arc::new(Shared {
        settings,
        router,
        slots,
    });
    let (closing_tx, closing) = watch::channel(false);
    let mut conns = JoinSet::new();
    accept_loop(&listener, &shared, &closing, &mut conns, shutdown).await;
    // Stop accepting: the kernel refuses new connections from here on.
    drop(listener);
    let _ = closing_tx.send(true);
    drain(conns, shared.settings.limits.shutdown_timeout, local).await;
    Ok(())
}

async fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    closing: &watch::Receiver<bool>,
    conns: &mut JoinSet<()>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut failing = AcceptBackoff::default();
    let mut full_logged = false;
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => return,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    failing.reset();
                    match shared.slots.admit() {
                        Admission::Held(slot) => {
                            full_logged = false;
                            conns.spawn(connection(stream, peer, shared.clone(), slot, closing.clone()));
                        }
                        Admission::Evicted(slot) => {
                            if !std::mem::replace(&mut full_logged, true) {
                                tracing::warn!(limit = shared.slots.max, "connection limit reached: closing the connections idle the longest");
                            }
                            conns.spawn(connection(stream, peer, shared.clone(), slot, closing.clone()));
                        }
                        Admission::Full => {
                            if !std::mem::replace(&mut full_logged, true) {
                                tracing::warn!(limit = shared.slots.max, "connection limit reached and every connection busy: closing new connections");
                            }
                            drop(stream);
                        }
                    }
                }
                Err(e) => failing.failed(&e, &shared.settings.on_accept_error).await,
            },
        }
    }
}

/// Backoff after accept errors, so that running out of descriptors does
/// not turn the accept loop into a busy loop.
#[derive(Default)]
struct AcceptBackoff {
    /// Errors in the current burst.
    errors: u64,
}

impl AcceptBackoff {
    fn reset(&mut self) {
        if self.errors > 0 {
            tracing::info!(errors = self.errors, "accepting connections again");
        }
        self.errors = 0;
    }

    async fn failed(&mut self, e: &std::io::Error, on_local: &Arc<dyn Fn() + Send + Sync>) {
        let local = is_local_resource_error(e);
        if local {
            on_local();
        }
        if self.errors == 0 {
            tracing::error!(error = %e, local, "accept failed; backing off");
        }
        self.errors += 1;
        // 10 ms doubling to 1 s: quick to recover, never a busy loop.
        let ms = 10u64 << self.errors.min(7);
        tokio::time::sleep(Duration::from_millis(ms.min(1000))).await;
    }
}

/// Out of descriptors, memory or buffers: the process's own problem.
pub fn is_local_resource_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
    )
}

/// Let connections finish for `deadline`, then drop the rest.
async fn drain(mut conns: JoinSet<()>, deadline: Duration, local: SocketAddr) {
    let left = conns.len();
    let finished = tokio::time::timeout(deadline, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            address = %local,
            connections = conns.len(),
            of = left,
            deadline = ?deadline,
            "shutdown deadline passed: closing the remaining connections"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

// ------------------------------------------------------------ connections

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    slot: SlotGuard,
    mut closing: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let web = shared.settings.web.current();
    let Some(tls) = web.tls.clone() else {
        serve_io(TokioIo::new(stream), peer, &shared, &slot, closing).await;
        return;
    };
    // A handshake is bounded like a request head, and evictable.
    let handshake = tokio::time::timeout(
        shared.settings.limits.header_read_timeout,
        tls.accept(stream),
    );
    let stream = tokio::select! {
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = slot.slot.evict.notified() => return,
        _ = closing.wait_for(|c| *c) => return,
    };
    serve_io(TokioIo::new(stream), peer, &shared, &slot, closing).await;
}

async fn serve_io<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    slot: &SlotGuard,
    mut closing: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &shared.settings.limits;
    let tower = TowerToHyperService::new(shared.router.clone());
    let (s, slots) = (slot.slot.clone(), shared.slots.clone());
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        // Handlers that audit (the admin API) name the client.
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let busy = Busy::new(s.clone(), slots.clone());
        let fut = hyper::service::Service::call(&tower, req);
        async move {
            let r = fut.await;
            drop(busy);
            r
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(100)
        .keep_alive(true);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        // Evicted while idle: nothing is lost by dropping it.
        _ = slot.slot.evict.notified() => return,
        _ = closing.wait_for(|c| *c) => {}
    }
    // Shutdown: idle connections close now, busy ones after their answer.
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

// ------------------------------------------------------ request middleware

/// Per request: the body bound, basic auth and the extra headers of the
/// web config, on every route of every listener.
async fn guard(State(settings): State<Arc<Settings>>, req: Request, next: Next) -> Response {
    let web = settings.web.current();
    let max = settings.limits.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Decided before any await: a `&Request` is not `Send`.
    let credentials = needs_auth(&web, &settings, &req).then(|| {
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(parse_basic)
    });
    let authorized = match credentials {
        None => true,
        Some(None) => false,
        Some(Some((user, password))) => web.clone().verify(user, password).await,
    };
    let mut resp = if declared.is_some_and(|n| n > max as u64) {
        (StatusCode::PAYLOAD_TOO_LARGE, "Request body too large.\n").into_response()
    } else if !authorized {
        unauthorized()
    } else {
        let req = req.map(|b| Body::new(http_body_util::Limited::new(b, max)));
        next.run(req).await
    };
    for (k, v) in web.headers() {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

fn needs_auth(web: &WebState, settings: &Settings, req: &Request) -> bool {
    web.requires_auth()
        && !settings
            .auth_exempt
            .is_some_and(|f| f(req.method(), req.uri(), req.headers()))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"hfbreaker\""),
        )],
        "Unauthorized.\n",
    )
        .into_response()
}

/// `Basic base64(user:password)` → (user, password).
pub(crate) fn parse_basic(v: &HeaderValue) -> Option<(String, Vec<u8>)> {
    use base64::Engine;
    let s = v.to_str().ok()?;
    let (scheme, rest) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let colon = raw.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(raw[..colon].to_vec()).ok()?;
    Some((user, raw[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_keeps_three_quarters_of_the_descriptors() {
        assert_eq!(connection_budget(512, 1024), 256);
        assert_eq!(connection_budget(512, 1 << 20), 512);
        assert_eq!(connection_budget(100, 256), 64);
        assert_eq!(connection_budget(512, 2), 1);
    }

    #[test]
    fn resource_errors_are_local() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS] {
            assert!(is_local_resource_error(&std::io::Error::from_raw_os_error(
                code
            )));
        }
        assert!(!is_local_resource_error(
            &std::io::Error::from_raw_os_error(libc::ECONNABORTED)
        ));
    }

    #[test]
    fn basic_credentials_parse() {
        let v = HeaderValue::from_static("Basic YWxpY2U6czNjcjp0");
        assert_eq!(parse_basic(&v), Some(("alice".into(), b"s3cr:t".to_vec())));
        for bad in [
            "Bearer YWxpY2U6cw==",
            "Basic !!!",
            "Basic YWxpY2U=",
            "Basic",
        ] {
            assert_eq!(parse_basic(&HeaderValue::from_static(bad)), None, "{bad}");
        }
    }

    fn slots(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            epoch: Instant::now(),
            inner: Mutex::new(SlotTable::default()),
        })
    }

    #[test]
    fn a_full_table_evicts_the_longest_idle_and_never_a_busy_one() {
        let s = slots(2);
        let Admission::Held(a) = s.admit() else {
            panic!()
        };
        let Admission::Held(b) = s.admit() else {
            panic!()
        };
        a.slot.idle_since.store(5, Ordering::Release);
        b.slot.idle_since.store(1, Ordering::Release);
        let Admission::Evicted(c) = s.admit() else {
            panic!("full table evicts")
        };
        assert!(!s.table().held.contains_key(&b.id), "b idled longest");
        let _busy_a = Busy::new(a.slot.clone(), s.clone());
        let _busy_c = Busy::new(c.slot.clone(), s.clone());
        assert!(matches!(s.admit(), Admission::Full));
        drop(a);
        assert!(matches!(s.admit(), Admission::Held(_)));
    }
}
