//! Upstream options against real sockets: a CA of our own (ca_file), a
//! certificate name other than the URL's host (server_name), no verification
//! (insecure_skip_verify), extra headers, max_tokens and an explicit proxy.
//! Certificates come from the `openssl` CLI (no certificate crate to build;
//! skipped when openssl is missing, a failure under CI).

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

use hfbreaker::classify::{Reason, Verdict};
use hfbreaker::config::{self, EndpointConfig};
use hfbreaker::probe::{Prepared, Report};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

const KEY: &str = "sk-verysecretheadervalue";

/// What the test server saw: the request head (lower-cased) and the body.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA and a server certificate for `probe.test` and `localhost`.
    fn new() -> Option<Pki> {
        testkit::require_tool("openssl", &["openssl"])?;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ossl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        ossl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=hfbreaker test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        ossl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "srv.key",
                    "-out",
                    "srv.csr",
                    "-subj",
                    "/CN=probe.test",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=DNS:probe.test,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        ossl(&[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        Some(Pki { dir })
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<_> = CertificateDer::pem_file_iter(self.path("srv.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(self.path("srv.key")).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    }
}

/// Answer one HTTP/1.1 request with a TGI generate answer, recording it.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, seen: Seen) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let Ok(n) = s.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + len {
        let Ok(n) = s.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    seen.lock().unwrap().push((head, body));
    let answer = br#"{"generated_text":"x"}"#;
    let resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.write_all(answer).await;
    let _ = s.shutdown().await;
}

/// A server on 127.0.0.1, HTTPS when given an acceptor. Also serves as a
/// plain forward proxy: it answers absolute-form requests itself.
async fn server(tls: Option<tokio_rustls::TlsAcceptor>) -> (u16, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let (tls, seen) = (tls.clone(), s2.clone());
            tokio::spawn(async move {
                match tls {
                    Some(acc) => {
                        if let Ok(s) = acc.accept(sock).await {
                            answer(s, seen).await;
                        }
                    }
                    None => answer(sock, seen).await,
                }
            });
        }
    });
    (port, seen)
}

fn endpoint(yaml_fields: &str) -> EndpointConfig {
    let env = HashMap::from([("TEST_API_KEY".to_string(), KEY.to_string())]);
    let probe = if yaml_fields.contains("probe:") {
        ""
    } else {
        "    probe: generate\n"
    };
    let yaml = format!("endpoints:\n  - name: e\n    kind: tgi\n{probe}{yaml_fields}");
    let c = config::parse(&yaml, "u.yml", &env).unwrap_or_else(|e| panic!("{e}"));
    c.endpoints[0].clone()
}

async fn probe(ep: &EndpointConfig) -> Report {
    Prepared::new(ep)
        .run(&hfbreaker::probe::client())
        .await
        .expect("no local failure")
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_with_ca_file() {
    let Some(pki) = Pki::new() else { return };
    let (port, _) = server(Some(pki.acceptor())).await;
    let url = format!("    url: https://localhost:{port}\n");
    let r = probe(&endpoint(&url)).await;
    assert_eq!(r.verdict, Verdict::Failure(Reason::Connect), "{r:?}");
    let ep = endpoint(&format!(
        "{url}    tls: {{ca_file: '{}'}}\n",
        pki.path("ca.pem")
    ));
    let r = probe(&ep).await;
    assert_eq!(r.verdict, Verdict::Success, "{r:?}");
}

#[tokio::test]
async fn server_name_checks_the_certificate_against_another_name() {
    let Some(pki) = Pki::new() else { return };
    let (port, seen) = server(Some(pki.acceptor())).await;
    let base = format!(
        "    url: https://127.0.0.1:{port}\n    tls:\n      ca_file: '{}'\n",
        pki.path("ca.pem")
    );
    // The certificate names probe.test, not 127.0.0.1.
    let r = probe(&endpoint(&base)).await;
    assert_eq!(r.verdict, Verdict::Failure(Reason::Connect), "{r:?}");
    let ep = endpoint(&format!("{base}      server_name: probe.test\n"));
    let r = probe(&ep).await;
    assert_eq!(r.verdict, Verdict::Success, "{r:?}");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|(h, _)| h.contains(&format!("host: probe.test:{port}")))
    );
    // The endpoint is still labelled by the URL's host.
    assert_eq!(ep.host(), format!("127.0.0.1:{port}"));
}

#[tokio::test]
async fn insecure_skip_verify_connects_and_warns() {
    let Some(pki) = Pki::new() else { return };
    let (port, _) = server(Some(pki.acceptor())).await;
    let ep = endpoint(&format!(
        "    url: https://127.0.0.1:{port}\n    tls: {{insecure_skip_verify: true}}\n"
    ));
    let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let l2 = logs.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || Writer(l2.clone()))
        .with_ansi(false)
        .finish();
    let prepared = tracing::subscriber::with_default(sub, || Prepared::new(&ep));
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("WARN")
            && text.contains("insecure_skip_verify")
            && text.contains("endpoint=e"),
        "{text}"
    );
    let r = prepared
        .run(&hfbreaker::probe::client())
        .await
        .expect("no local failure");
    assert_eq!(r.verdict, Verdict::Success, "{r:?}");
}

struct Writer(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn headers_and_max_tokens_reach_the_server_and_values_stay_secret() {
    let (port, seen) = server(None).await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("team");
    std::fs::write(&f, "infra\n").unwrap();
    let ep = endpoint(&format!(
        "    url: http://127.0.0.1:{port}\n    max_tokens: 16\n    headers:\n      \
         X-Api-Key: {{value_env: TEST_API_KEY}}\n      X-Team: {{value_file: '{}'}}\n      \
         User-Agent: custom/1\n",
        f.display()
    ));
    let r = probe(&ep).await;
    assert_eq!(r.verdict, Verdict::Success, "{r:?}");
    let (head, body) = seen.lock().unwrap()[0].clone();
    assert!(
        head.contains(&format!("x-api-key: {}", KEY.to_lowercase())),
        "{head}"
    );
    assert!(
        head.contains("x-team: infra") && head.contains("user-agent: custom/1"),
        "{head}"
    );
    assert!(body.contains(r#""max_new_tokens":16"#), "{body}");
    assert!(!format!("{ep:?} {r:?}").contains("verysecret"));
    let chat = endpoint(&format!(
        "    url: http://127.0.0.1:{port}\n    probe: chat\n    max_tokens: 32\n"
    ));
    let _ = probe(&chat).await;
    let bodies: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b.clone())
        .collect();
    assert!(
        bodies.iter().any(|b| b.contains(r#""max_tokens":32"#)),
        "{bodies:?}"
    );
}

#[test]
fn bad_upstream_options_are_refused_without_echoing_secrets() {
    let env = HashMap::from([("K".to_string(), "bad\nvalue-secret".to_string())]);
    let yaml = "endpoints:\n  - name: e\n    kind: tgi\n    url: http://h\n    probe: health\n    \
                max_tokens: 8\n    proxy_url: 'socks5://user:hunter2@p:1080'\n    \
                headers: {Host: x, X-K: {value_env: K}, 'Bad Name': z1, X-Missing: {value_env: NOPE}}\n    \
                tls: {ca_file: /dev/null, server_name: 'not a name'}\n";
    let e = config::parse(yaml, "u.yml", &env).unwrap_err().to_string();
    for want in [
        "u.yml:6:17: endpoints[0].max_tokens: probe health generates no tokens",
        "u.yml:7:16: endpoints[0].proxy_url: scheme must be http or https",
        "endpoints[0].headers.Host: set by hfbreaker itself",
        "endpoints[0].headers.X-K: value must be 1 to 4096 printable ASCII characters",
        "endpoints[0].headers.Bad Name: not a valid header name",
        "endpoints[0].headers.X-Missing: environment variable NOPE is not set",
        "endpoints[0].tls.ca_file: /dev/null: not a regular file (a character device)",
        "endpoints[0].tls.server_name: must be a DNS name",
    ] {
        assert!(e.contains(want), "missing {want:?} in\n{e}");
    }
    assert!(!e.contains("hunter2") && !e.contains("value-secret"), "{e}");
    let e = config::parse(
        "endpoints:\n  - {name: e, kind: tgi, url: 'http://h', token_env: K, headers: {authorization: x}}\n",
        "u.yml",
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("an Authorization header and a token are exclusive"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = config::parse(
        &format!(
            "endpoints:\n  - {{name: e, kind: http, url: 'https://h', tls: {{ca_file: '{}'}}}}\n",
            junk.display()
        ),
        "u.yml",
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no usable PEM certificate"), "{e}");
}

#[tokio::test]
async fn proxy_url_is_used_and_its_credentials_stay_out_of_logs() {
    let (port, seen) = server(None).await;
    // The upstream host does not exist: only the proxy can answer.
    let ep = endpoint(&format!(
        "    url: http://upstream.invalid:8080\n    proxy_url: 'http://user:hunter2@127.0.0.1:{port}'\n"
    ));
    let r = probe(&ep).await;
    assert_eq!(r.verdict, Verdict::Success, "{r:?}");
    let (head, _) = seen.lock().unwrap()[0].clone();
    assert!(
        head.starts_with("post http://upstream.invalid:8080/generate http/1.1"),
        "{head}"
    );
    // user:hunter2 as Basic credentials.
    assert!(
        head.contains("proxy-authorization: basic dxnlcjpodw50zxiy"),
        "{head}"
    );
    assert!(!format!("{ep:?} {r:?}").contains("hunter2"));
}

#[tokio::test]
async fn endpoints_with_equal_options_share_a_client() {
    // Equal options are one cache key, so one client and pool serve both.
    let (port, seen) = server(None).await;
    let proxy = format!("    proxy_url: 'http://127.0.0.1:{port}'\n");
    let a = endpoint(&format!("    url: http://a.invalid\n{proxy}"));
    let b = endpoint(&format!("    url: http://b.invalid\n{proxy}"));
    assert_eq!(a.request.upstream, b.request.upstream);
    for ep in [&a, &b] {
        assert_eq!(probe(ep).await.verdict, Verdict::Success);
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
}
