//! Answers that are not usable HTTP count as `bad_response` failures: a 101,
//! a redirect to `file:`, a redirect loop, a malformed status line. (Before,
//! the first two were ignored client errors, so such an endpoint never
//! tripped, and the last two were reported as `connect`.)

use std::time::Duration;

use hfbreaker::classify::{Reason, Verdict};
use hfbreaker::probe::Prepared;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server that answers every request on every connection with `answer`
/// (with `{port}` replaced by its own port), then closes.
async fn raw_server(answer: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = answer.replace("{port}", &port.to_string());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

async fn verdict(answer: &'static str) -> (Verdict, String) {
    let port = raw_server(answer).await;
    let yaml = format!(
        "endpoints:\n  - {{name: e, kind: http, url: 'http://127.0.0.1:{port}/health', timeout: 3s}}\n"
    );
    let cfg = hfbreaker::config::parse(
        &yaml,
        "t.yml",
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap();
    let report = Prepared::new(&cfg.endpoints[0])
        .run(&hfbreaker::probe::client())
        .await
        .expect("no local failure");
    (report.verdict, report.detail)
}

#[tokio::test]
async fn switching_protocols_is_a_bad_response() {
    let (v, d) = verdict(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    )
    .await;
    assert_eq!(v, Verdict::Failure(Reason::BadResponse), "{d}");
}

#[tokio::test]
async fn redirect_to_file_is_a_bad_response() {
    let (v, d) =
        verdict("HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\n\r\n")
            .await;
    assert_eq!(v, Verdict::Failure(Reason::BadResponse), "{d}");
    assert!(!d.contains("passwd") || !d.contains("root:"), "{d}");
}

#[tokio::test]
async fn redirect_loop_is_a_bad_response() {
    let (v, d) = verdict(
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/health\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(v, Verdict::Failure(Reason::BadResponse), "{d}");
}

#[tokio::test]
async fn garbage_instead_of_http_is_a_bad_response() {
    let (v, d) = verdict("SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
    assert_eq!(v, Verdict::Failure(Reason::BadResponse), "{d}");
}

#[tokio::test]
async fn refused_is_still_connect() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let yaml =
        format!("endpoints:\n  - {{name: e, kind: http, url: 'http://127.0.0.1:{port}/'}}\n");
    let cfg = hfbreaker::config::parse(
        &yaml,
        "t.yml",
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap();
    let report = Prepared::new(&cfg.endpoints[0])
        .run(&hfbreaker::probe::client())
        .await
        .unwrap();
    assert_eq!(report.verdict, Verdict::Failure(Reason::Connect));
}
