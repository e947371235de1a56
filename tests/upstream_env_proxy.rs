//! The standard proxy variables are honoured by the shared client (its own
//! test binary: the environment is process-wide).

use std::sync::{Arc, Mutex};

use hfbreaker::classify::Verdict;
use hfbreaker::probe::Prepared;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A one-line-per-request server: records each request line, answers 200.
async fn recorder() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = s2.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                seen.lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or("").to_string());
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (port, seen)
}

#[test]
fn http_proxy_and_no_proxy_from_the_environment() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ((proxy, via_proxy), (direct, direct_seen)) =
        rt.block_on(async { (recorder().await, recorder().await) });
    // SAFETY: set before any client is built; this binary has no other test
    // and its runtime runs on this thread.
    unsafe {
        std::env::set_var("HTTP_PROXY", format!("http://127.0.0.1:{proxy}"));
        std::env::set_var("NO_PROXY", "localhost");
    }
    let env = std::collections::HashMap::<String, String>::new();
    let yaml = format!(
        "endpoints:\n  - {{name: far, kind: http, url: 'http://upstream.invalid/health'}}\n  \
         - {{name: near, kind: http, url: 'http://localhost:{direct}/health'}}\n"
    );
    let cfg = hfbreaker::config::parse(&yaml, "p.yml", &env).unwrap();
    let client = hfbreaker::probe::client();
    rt.block_on(async {
        for ep in &cfg.endpoints {
            let r = Prepared::new(ep)
                .run(&client)
                .await
                .expect("no local failure");
            assert_eq!(r.verdict, Verdict::Success, "{}: {r:?}", ep.name);
        }
    });
    assert_eq!(
        *via_proxy.lock().unwrap(),
        ["GET http://upstream.invalid/health HTTP/1.1"]
    );
    assert_eq!(*direct_seen.lock().unwrap(), ["GET /health HTTP/1.1"]);
}
