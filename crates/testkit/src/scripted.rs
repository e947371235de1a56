//! A scripted HTTP/1 upstream on an ephemeral loopback port, for tests that
//! must see what the gateway sent: it records every request (method, path,
//! headers, body) and answers each as the test's script says: an answer
//! at once, an answer held until a [`Gate`] opens, a TCP reset, or an SSE
//! stream cut by a reset once a [`Gate`] opens. It counts the held requests
//! whose connection the peer closed before the answer (the gateway
//! cancelled them).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The whole head as sent, to search for what must not be there.
    pub head: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (Null when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Head and body as text.
    pub fn text(&self) -> String {
        format!(
            "{}\r\n\r\n{}",
            self.head,
            String::from_utf8_lossy(&self.body)
        )
    }
}

/// A gate requests wait at; once opened it stays open.
#[derive(Clone)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Self {
        Gate(Arc::new(watch::channel(false).0))
    }
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}

/// What the upstream does with one request.
#[derive(Clone)]
pub enum Reply {
    /// Status, extra headers and a body (`Content-Length`, keep-alive).
    Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Wait for the gate, then reply; the connection closing first counts
    /// in [`Scripted::dropped`].
    Held(Gate, Box<Reply>),
    /// Close the connection with a TCP RST after reading the request.
    Reset,
    /// 200 `text/event-stream` (chunked), these events 30 ms apart, then,
    /// once the gate opens (the test has seen the events arrive), a TCP RST
    /// in the middle of the body. The peer closing first ends it too.
    SseThenReset(Vec<String>, Gate),
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply::Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
        }
    }

    /// A bare 200 with no body (what probes of `GET /health` get).
    pub fn empty() -> Reply {
        Reply::Answer {
            status: 200,
            headers: vec![],
            body: String::new(),
        }
    }

    /// This answer with one more header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Answer { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }
}

type Script = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

/// The upstream; it serves until the runtime ends.
pub struct Scripted {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    dropped: Arc<AtomicUsize>,
}

impl Scripted {
    /// Serve on 127.0.0.1 with `script` deciding each reply.
    pub async fn start(script: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback binds");
        let addr = l.local_addr().expect("bound");
        let received = Arc::new(Mutex::new(Vec::new()));
        let dropped = Arc::new(AtomicUsize::new(0));
        let script: Script = Arc::new(script);
        let (r, d) = (received.clone(), dropped.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(serve(s, script.clone(), r.clone(), d.clone()));
            }
        });
        Scripted {
            addr,
            received,
            dropped,
        }
    }

    /// One upstream for two endpoints, a primary under `/p` and a backup
    /// under `/b`: the primary's POSTs get what `primary` holds at the time,
    /// the backup's `backup`; every GET (the probes) a bare 200.
    pub async fn primary_and_backup(primary: Arc<Mutex<Reply>>, backup: Reply) -> Scripted {
        Scripted::start(move |r| {
            if r.method != "POST" {
                Reply::empty()
            } else if r.path.starts_with("/p/") {
                primary.lock().unwrap_or_else(|p| p.into_inner()).clone()
            } else {
                backup.clone()
            }
        })
        .await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far (probes included).
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The POSTs so far (the gateway's requests; probes here are GETs
    /// unless the endpoint's probe posts).
    pub fn posts(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }

    /// Held requests whose connection the peer closed before the answer.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// One request from `s`: its head and `Content-Length` body; None when the
/// peer closed.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Received> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.lines();
            let mut line = lines.next().unwrap_or("").split(' ');
            let method = line.next().unwrap_or("").to_string();
            let path = line.next().unwrap_or("").to_string();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                return Some(Received {
                    method,
                    path,
                    headers,
                    body,
                    head,
                });
            }
        }
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn serve(
    mut s: TcpStream,
    script: Script,
    received: Arc<Mutex<Vec<Received>>>,
    dropped: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut s, &mut buf).await {
        let mut reply = script(&req);
        received.lock().unwrap_or_else(|p| p.into_inner()).push(req);
        while let Reply::Held(gate, then) = reply {
            let mut probe = [0u8; 1];
            tokio::select! {
                _ = gate.wait() => reply = *then,
                // Nothing more comes on this connection before the answer:
                // a read that ends is the peer closing it.
                _ = s.read(&mut probe) => {
                    dropped.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
        match reply {
            Reply::Answer {
                status,
                headers,
                body,
            } => {
                let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
                if s.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
            }
            Reply::Reset => return reset(s),
            Reply::SseThenReset(events, gate) => return sse_then_reset(s, events, gate).await,
            Reply::Held(..) => unreachable!("unwrapped above"),
        }
    }
}

fn reason(status: u16) -> &'static str {
    axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Status")
}

/// Close with a TCP RST (a zero linger does not block on drop).
#[allow(deprecated)]
fn reset(s: TcpStream) {
    let _ = s.set_linger(Some(Duration::ZERO));
    drop(s);
}

async fn sse_then_reset(mut s: TcpStream, events: Vec<String>, gate: Gate) {
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    if s.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for e in events {
        let chunk = format!("{:x}\r\n{e}\r\n", e.len());
        if s.write_all(chunk.as_bytes()).await.is_err() {
            return;
        }
        let _ = s.flush().await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // The reset only once the test saw the events relayed (nothing may be
    // in flight when it comes); a peer that closes first ends it as well.
    let mut probe = [0u8; 1];
    tokio::select! {
        _ = gate.wait() => {}
        _ = s.read(&mut probe) => {}
    }
    reset(s);
}
