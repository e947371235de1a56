//! The hardened listener against the real binary: a low file descriptor
//! limit and hundreds of idle connections, a slow-header client during
//! SIGTERM, a second SIGTERM, and the lifecycle API switch.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use hfbreaker::daemon::Daemon;
use hfbreaker::sim::{Protocol, Sim, VirtualSpec};
use testkit::*;
use tower::ServiceExt;

fn healthy_config(sim: &Sim) -> String {
    format!(
        "{FAST_GLOBAL}endpoints:
  - {{name: a, kind: tgi, url: {u}, probe: health}}
  - {{name: b, kind: tgi, url: {u}, probe: health}}
routes:
  - name: r
    endpoints: [a, b]
",
        u = sim.url("tgi")
    )
}

async fn tgi_sim() -> Sim {
    sim(vec![("tgi", VirtualSpec::new(Protocol::Tgi, "m"))]).await
}

/// One scrape with a short deadline: under attack, an answer must come fast.
async fn scrape(base: &str) -> Result<Scrape, String> {
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    if r.status() != 200 {
        return Err(format!("status {}", r.status()));
    }
    r.text().await.map(Scrape).map_err(|e| e.to_string())
}

async fn scrape_until(base: &str, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
    let start = Instant::now();
    loop {
        if let Ok(s) = scrape(base).await
            && cond(&s)
        {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn successes(s: &Scrape, e: &str) -> f64 {
    s.val(
        "hfbreaker_probes_total",
        &[("endpoint", e), ("result", "success")],
    )
}

/// Whether the server has closed `c` (EOF or reset), without waiting.
fn closed_by_server(mut c: &TcpStream) -> bool {
    c.set_nonblocking(true).unwrap();
    let mut b = [0u8; 64];
    let closed = match c.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    c.set_nonblocking(false).unwrap();
    closed
}

const IDLE: usize = 300;
const FD_LIMIT: libc::rlim_t = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_under_a_low_fd_limit_starve_neither_metrics_nor_probes() {
    let sim = tgi_sim().await;
    let p = binary!().daemon_with(&healthy_config(&sim), &[], &[], |cmd| {
        // Soft and hard: the daemon raises its soft limit to the hard one.
        // SAFETY: setrlimit is async-signal-safe; nothing else runs here.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: FD_LIMIT,
                    rlim_max: FD_LIMIT,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let limits = p.wait_stderr("file descriptor limits", Duration::from_secs(10));
    assert!(limits.contains("soft=256"), "{limits}");
    assert!(limits.contains("max_connections=64"), "{limits}");
    let base = p.base();
    let before = scrape_until(&base, "first probes", |s| {
        successes(s, "a") >= 1.0 && successes(s, "b") >= 1.0
    })
    .await;

    // Hundreds of idle connections: more than the descriptors the daemon has.
    let addr = p.addr;
    let opened = Instant::now();
    let idle: Vec<TcpStream> = tokio::task::spawn_blocking(move || {
        (0..IDLE)
            .map(|_| TcpStream::connect(addr).expect("the kernel accepts the connection"))
            .collect()
    })
    .await
    .unwrap();
    eprintln!("{IDLE} idle connections opened in {:?}", opened.elapsed());

    // For three seconds, /metrics answers every time and probes go on.
    let t = Instant::now();
    let mut scrapes = 0;
    let mut last = before.clone();
    while t.elapsed() < Duration::from_secs(3) {
        last = scrape(&base).await.unwrap_or_else(|e| {
            panic!(
                "/metrics failed under {IDLE} idle connections: {e}\n{}",
                p.stderr()
            )
        });
        scrapes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for e in ["a", "b"] {
        assert_eq!(
            last.state(e),
            Some("closed"),
            "{e}\n{}",
            last.hfbreaker_lines()
        );
        assert!(
            successes(&last, e) >= successes(&before, e) + 5.0,
            "{e} kept probing\n{}",
            last.hfbreaker_lines()
        );
        assert_eq!(
            last.sum(
                "hfbreaker_probes_total",
                &[("endpoint", e), ("result", "failure")]
            ),
            0.0
        );
        assert_eq!(
            last.sum("hfbreaker_circuit_trips_total", &[("endpoint", e)]),
            0.0
        );
    }
    assert_eq!(
        last.get("hfbreaker_local_errors_total", &[("operation", "accept")]),
        Some(0.0),
        "the connection limit kept accept away from EMFILE"
    );

    // The daemon held at most its budget; it closed the rest at once.
    let closed_early = idle.iter().filter(|c| closed_by_server(c)).count();
    eprintln!(
        "{scrapes} scrapes answered; {closed_early} of {IDLE} idle connections closed at once"
    );
    assert!(closed_early >= IDLE - 64, "closed at once: {closed_early}");

    // The header-read timeout (10 s) closes the ones it held.
    let t = Instant::now();
    while idle.iter().any(|c| !closed_by_server(c)) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "idle connections left open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "every idle connection closed {:?} after they were opened",
        opened.elapsed()
    );
    assert!(
        opened.elapsed() >= Duration::from_secs(8),
        "closed by the timeout, not at once"
    );
}

/// Sends a request head one line a second until `stop`.
fn slowloris(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut c) = TcpStream::connect(addr) else {
            return;
        };
        let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
        for i in 0..60 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
            if c.write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .is_err()
            {
                return;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_completes_within_the_deadline_while_a_client_sends_headers_slowly() {
    let sim = tgi_sim().await;
    let mut p = binary!().daemon(&healthy_config(&sim), &["--web.shutdown-timeout=2s"], &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3).map(|_| slowloris(p.addr, stop.clone())).collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = Instant::now();
    p.signal("TERM");
    let status = p.exit_within(Duration::from_secs(6));
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    eprintln!("exited {took:?} after SIGTERM with 3 slow-header clients");
    let status =
        status.unwrap_or_else(|| panic!("still running 6 s after SIGTERM\n{}", p.stderr()));
    assert!(status.success(), "{status:?}\n{}", p.stderr());
    assert!(took < Duration::from_secs(4), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_exits_at_once() {
    let sim = tgi_sim().await;
    let mut p = binary!().daemon(&healthy_config(&sim), &["--web.shutdown-timeout=60s"], &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let client = slowloris(p.addr, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.signal("TERM");
    p.wait_stderr("SIGTERM: shutting down", Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    p.signal("TERM");
    let status = p.exit_within(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let _ = client.join();
    let status = status.unwrap_or_else(|| panic!("a second SIGTERM did not exit\n{}", p.stderr()));
    eprintln!(
        "exited {:?} after the second SIGTERM: {status:?}",
        t.elapsed()
    );
    assert_eq!(status.code(), Some(hfbreaker::signal::FORCED_EXIT_CODE));
}

// ------------------------------------------------------------ lifecycle API

async fn post_reload(base: &str) -> (u16, String) {
    let r = client()
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_over_http_needs_enable_lifecycle_and_sighup_always_works() {
    let sim = tgi_sim().await;
    let yaml = healthy_config(&sim);
    let p = binary!().daemon(&yaml, &[], &[]);
    let base = p.base();
    assert_eq!(
        post_reload(&base).await,
        (403, "Lifecycle API is not enabled.\n".to_string())
    );
    // SIGHUP still reloads: the new route appears.
    std::fs::write(p.config_path(), yaml.replace("name: r\n", "name: r2\n")).unwrap();
    p.signal("HUP");
    scrape_until(&base, "SIGHUP applied the new route", |s| {
        s.get("hfbreaker_route_level", &[("route", "r2")]).is_some()
    })
    .await;

    let p = binary!().daemon(&yaml, &["--web.enable-lifecycle"], &[]);
    std::fs::write(p.config_path(), yaml.replace("name: r\n", "name: r3\n")).unwrap();
    let (code, body) = post_reload(&p.base()).await;
    assert_eq!((code, body.as_str()), (200, "Config reloaded.\n"));
    let s = scrape(&p.base()).await.unwrap();
    assert!(s.get("hfbreaker_route_level", &[("route", "r3")]).is_some());
}

#[tokio::test]
async fn the_in_process_app_refuses_reload_unless_lifecycle_is_enabled() {
    let cfg = hfbreaker::config::parse(
        "endpoints:\n  - {name: a, kind: http, url: http://127.0.0.1:9/}\n",
        "t.yml",
        &std::collections::HashMap::new(),
    )
    .unwrap();
    let d = Daemon::new(cfg, None, None);
    let call = |app: axum::Router, method: Method| async move {
        let r = app
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri("/-/reload")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        r.status()
    };
    let off = hfbreaker::http::app(d.clone());
    assert_eq!(call(off.clone(), Method::POST).await, StatusCode::FORBIDDEN);
    assert_eq!(call(off, Method::GET).await, StatusCode::METHOD_NOT_ALLOWED);
    let on = hfbreaker::http::app_with(
        d,
        hfbreaker::http::AppOptions {
            enable_lifecycle: true,
        },
    );
    assert_eq!(call(on, Method::POST).await, StatusCode::OK);
}
