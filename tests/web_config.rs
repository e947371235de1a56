//! `--web.config.file` against the real binary: TLS, basic auth, extra
//! headers, mutual TLS, reloads of the file, refusal to start on a bad one,
//! and the real Prometheus scraping over TLS with basic auth.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hfbreaker::sim::{Protocol, Sim, VirtualSpec};
use testkit::*;

const USER: &str = "prometheus";
const PASSWORD: &str = "scr4pe-Pa55word";

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client
/// certificate, all PEM files in one folder.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "hfbreaker test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.crt", ca_cert.pem());
        for (name, sans) in [
            (
                "server",
                vec!["127.0.0.1".to_string(), "localhost".to_string()],
            ),
            ("client", vec!["client.test".to_string()]),
        ] {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(sans)
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            write(&format!("{name}.crt"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    /// Write `web.yml` (paths in it are relative to this folder).
    fn web_config(&self, yaml: &str) -> PathBuf {
        let p = self.path("web.yml");
        std::fs::write(&p, yaml).unwrap();
        p
    }

    /// An HTTPS client trusting only the test CA.
    fn client(&self, identity: bool) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.read("ca.crt")).unwrap())
            .timeout(Duration::from_secs(10));
        if identity {
            let mut pem = self.read("client.crt");
            pem.extend(self.read("client.key"));
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    }
}

/// `basic_auth_users` with `user: password` pairs (cost 4: fast tests).
fn users(pairs: &[(&str, &str)]) -> String {
    let mut y = "basic_auth_users:\n".to_string();
    for (u, p) in pairs {
        y.push_str(&format!("  {u}: '{}'\n", bcrypt::hash(p, 4).unwrap()));
    }
    y
}

const TLS: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

fn healthy_config(sim: &Sim) -> String {
    format!(
        "{FAST_GLOBAL}endpoints:\n  - {{name: a, kind: tgi, url: {}, probe: health}}\n",
        sim.url("tgi")
    )
}

async fn tgi_sim() -> Sim {
    sim(vec![("tgi", VirtualSpec::new(Protocol::Tgi, "m"))]).await
}

async fn get(
    c: &reqwest::Client,
    url: &str,
    auth: Option<(&str, &str)>,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut r = c.get(url);
    if let Some((u, p)) = auth {
        r = r.basic_auth(u, Some(p));
    }
    r.send().await
}

async fn status(c: &reqwest::Client, url: &str, auth: Option<(&str, &str)>) -> u16 {
    get(c, url, auth).await.unwrap().status().as_u16()
}

/// Poll until `url` answers `want` with `auth`; the file is re-read at
/// most once a second.
async fn until_status(c: &reqwest::Client, url: &str, auth: (&str, &str), want: u16) {
    let start = Instant::now();
    loop {
        if get(c, url, Some(auth))
            .await
            .is_ok_and(|r| r.status().as_u16() == want)
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{url} never answered {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_basic_auth_and_headers_apply_to_every_path_and_follow_the_file() {
    let sim = tgi_sim().await;
    let pki = Pki::new();
    let web = pki.web_config(&format!(
        "{TLS}http_server_config:\n  headers:\n    X-Frame-Options: deny\n{}",
        users(&[(USER, PASSWORD)])
    ));
    let p = binary!().daemon(
        &healthy_config(&sim),
        &[
            &format!("--web.config.file={}", web.display()),
            "--web.enable-lifecycle",
        ],
        &[],
    );
    let base = format!("https://{}", p.addr);
    let c = pki.client(false);
    let metrics = format!("{base}/metrics");

    let ok = get(&c, &metrics, Some((USER, PASSWORD))).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-frame-options"], "deny");
    assert!(ok.text().await.unwrap().contains("hfbreaker_build_info"));
    for auth in [None, Some((USER, "wrong")), Some(("nobody", PASSWORD))] {
        let r = get(&c, &metrics, auth).await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"hfbreaker\"");
        assert_eq!(r.headers()["x-frame-options"], "deny");
    }
    for path in ["/", "/-/healthy", "/api/v1/breakers"] {
        assert_eq!(
            status(&c, &format!("{base}{path}"), None).await,
            401,
            "{path}"
        );
    }
    let reload = c
        .post(format!("{base}/-/reload"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    // Admin writes carry their own bearer token; the handler judges it.
    let admin = c
        .post(format!("{base}/api/v1/breakers/a/force-open"))
        .bearer_auth("some-token")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 403);
    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/metrics", p.addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() == 400);

    // A new password in the file applies without a restart.
    let rotated = "n3w-Pa55word";
    pki.web_config(&format!("{TLS}{}", users(&[(USER, rotated)])));
    until_status(&c, &metrics, (USER, rotated), 200).await;
    assert_eq!(status(&c, &metrics, Some((USER, PASSWORD))).await, 401);
    // A bad file keeps the running settings.
    pki.web_config(&format!("{TLS}  bogus: 1\n"));
    let start = Instant::now();
    while !p.stderr().contains("web config reload failed") {
        // The files are looked at when connections and requests come.
        assert_eq!(status(&c, &metrics, Some((USER, rotated))).await, 200);
        assert!(start.elapsed() < Duration::from_secs(10), "{}", p.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status(&c, &metrics, Some((USER, rotated))).await, 200);

    let log = p.stderr();
    assert!(log.contains("web.yml:4:3"), "{log}");
    for secret in [PASSWORD, rotated, "$2b$04$"] {
        assert!(!log.contains(secret), "the log holds {secret:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let sim = tgi_sim().await;
    let pki = Pki::new();
    let web = pki.web_config(&format!(
        "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS13\n"
    ));
    let p = binary!().daemon(
        &healthy_config(&sim),
        &[&format!("--web.config.file={}", web.display())],
        &[],
    );
    let url = format!("https://{}/metrics", p.addr);
    assert_eq!(status(&pki.client(true), &url, None).await, 200);
    assert!(
        get(&pki.client(false), &url, None).await.is_err(),
        "no client certificate, no connection"
    );
}

#[test]
fn a_bad_web_config_refuses_to_start_with_file_line_and_column() {
    let pki = Pki::new();
    let web = pki.web_config(&format!("{TLS}  client_auth_type: Sometimes\n"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hfbreaker.yml");
    std::fs::write(
        &cfg,
        "endpoints:\n  - {name: a, kind: http, url: http://127.0.0.1:9/}\n",
    )
    .unwrap();
    let out = binary!()
        .command()
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--web.config.file={}", web.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}:4:21: client_auth_type", web.display())),
        "{err}"
    );
    assert!(!err.contains("msg=listening"), "{err}");
}

fn prometheus_config(pki: &Pki, target: &str, password_file: &Path) -> String {
    let job = |name: &str, scheme: &str, auth: &str| {
        format!(
            "  - job_name: {name}
    scheme: {scheme}
    tls_config:
      ca_file: {ca}
    {auth}
    static_configs:
      - targets: ['{target}']
",
            ca = pki.path("ca.crt").display()
        )
    };
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n{}{}{}",
        job(
            "hfb-tls",
            "https",
            &format!(
                "basic_auth: {{username: {USER}, password_file: {}}}",
                password_file.display()
            )
        ),
        job(
            "hfb-wrong-password",
            "https",
            &format!("basic_auth: {{username: {USER}, password: wrong}}")
        ),
        job("hfb-plain-http", "http", "")
    )
}

async fn up(prom: &str, job: &str) -> Option<f64> {
    let r = query(prom, &format!("up{{job=\"{job}\"}}")).await.ok()?;
    r.first()?["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_over_tls_with_basic_auth_and_a_wrong_password_is_refused() {
    let Some(prom_bin) = require_tool("prometheus", &["prometheus"]) else {
        return;
    };
    let sim = tgi_sim().await;
    let pki = Pki::new();
    let web = pki.web_config(&format!("{TLS}{}", users(&[(USER, PASSWORD)])));
    let d = binary!().daemon(
        &healthy_config(&sim),
        &[&format!("--web.config.file={}", web.display())],
        &[],
    );
    let pw = pki.path("password");
    std::fs::write(&pw, PASSWORD).unwrap();
    let prom = start_prometheus(
        &prom_bin,
        &prometheus_config(&pki, &d.addr.to_string(), &pw),
        &[],
    )
    .expect("prometheus starts");
    let p = prom.base();
    assert!(
        wait_http_ok(&format!("{p}/-/ready"), Duration::from_secs(30)).await,
        "prometheus ready"
    );
    let start = Instant::now();
    loop {
        let got = (
            up(&p, "hfb-tls").await,
            up(&p, "hfb-wrong-password").await,
            up(&p, "hfb-plain-http").await,
        );
        if got == (Some(1.0), Some(0.0), Some(0.0)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "up by job (tls, wrong password, plain http): {got:?}\n{}",
            prom.stderr()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let scraped = query(
        &p,
        r#"hfbreaker_circuit_state{job="hfb-tls",endpoint="a",state="closed"} == 1"#,
    )
    .await
    .unwrap();
    assert_eq!(scraped.len(), 1, "the TLS job scraped the breaker states");
    let targets = reqwest::get(format!("{p}/api/v1/targets"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let targets: serde_json::Value = serde_json::from_slice(&targets).unwrap();
    let wrong = targets["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["labels"]["job"] == "hfb-wrong-password")
        .unwrap();
    let err = wrong["lastError"].as_str().unwrap_or_default();
    assert!(err.contains("401"), "{err}");
}
