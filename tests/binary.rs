//! The real binary: check-config, startup refusal on a bad config, SIGHUP
//! reload, SIGTERM shutdown, and no token anywhere it writes or serves.

use std::process::Command;
use std::time::{Duration, Instant};

use hfbreaker::sim::{Mode, Protocol, VirtualSpec};
use testkit::*;

/// The binary, for one-shot runs.
fn hfbreaker() -> Command {
    testkit::binary!().command()
}

const TOKEN: &str = "hf_TESTTOKENdoNotLeak8f3a2b";
const ADMIN: &str = "adm_TOKENdoNotLeak77c1";

#[test]
fn check_config_reports_every_error_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "endpoints:\n  - name: a\n    kind: tgi\n    url: http://127.0.0.1:1\n    token_env: HFB_SURELY_UNSET_VAR\n  - name: a\n    kind: tei\n    url: http://127.0.0.1:1\nroutes:\n  - name: r\n    endpoints: [a, ghost]\n",
    )
    .unwrap();
    let out = hfbreaker().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let path = bad.display().to_string();
    assert!(err.contains(&format!("{path}:5:16: endpoints[0].token_env: environment variable HFB_SURELY_UNSET_VAR is not set")), "{err}");
    assert!(
        err.contains(&format!("{path}:6:")) && err.contains("duplicate endpoint name"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{path}:11:"))
            && err.contains("routes[0].endpoints[1]: unknown endpoint \"ghost\""),
        "{err}"
    );

    let typo = dir.path().join("typo.yml");
    std::fs::write(&typo, "global:\n  intervall: 5s\n").unwrap();
    let out = hfbreaker()
        .args(["check-config"])
        .arg(&typo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2:3: intervall: unknown field `intervall`",
            typo.display()
        )),
        "{err}"
    );

    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "endpoints:\n  - {name: a, kind: tgi, url: 'http://127.0.0.1:1'}\n",
    )
    .unwrap();
    let out = hfbreaker().arg("check-config").arg(&good).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid (1 endpoints, 0 routes)"));

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hfbreaker.yml");
    let out = hfbreaker()
        .arg("check-config")
        .arg(example)
        .env("HF_TOKEN", "hf_x")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the shipped example is valid: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn daemon_refuses_to_start_on_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "global:\n  timeout: soon\n").unwrap();
    let out = hfbreaker()
        .arg(format!("--config.file={}", bad.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:2:", bad.display()))
            && err.contains("timeout")
            && err.contains("invalid duration"),
        "{err}"
    );
    assert!(!err.contains("listening"), "no port bound for a bad config");

    let out = hfbreaker()
        .arg(format!("--config.file={}", bad.display()))
        .arg("--log.format=json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let json_line = err
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("a JSON log line: {err}"));
    let v: serde_json::Value = serde_json::from_str(json_line).unwrap();
    assert_eq!(v["level"], "ERROR");
    assert_eq!(v["message"], "invalid configuration; not starting");
}

fn scrape_sync(rt: &tokio::runtime::Runtime, url: &str) -> (u16, String) {
    rt.block_on(async {
        let r = client().get(url).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

#[test]
fn secrets_never_leak_and_signals_work() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut keyed = VirtualSpec::new(Protocol::Tgi, "HuggingFaceH4/zephyr-7b-beta");
    keyed.api_key = Some(TOKEN.into());
    let mut router = VirtualSpec::new(Protocol::Router, "HuggingFaceH4/zephyr-7b-beta");
    router.api_key = Some("another-key".into());
    let sim = rt.block_on(sim(vec![
        ("keyed", keyed),
        ("router", router),
        (
            "status",
            VirtualSpec {
                mode: Mode::ScaledToZero,
                ..VirtualSpec::new(Protocol::EndpointsApi, "m")
            },
        ),
        (
            "broken",
            VirtualSpec {
                mode: Mode::Status(500),
                ..VirtualSpec::new(Protocol::Tgi, "m")
            },
        ),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let tokfile = dir.path().join("token");
    std::fs::write(&tokfile, format!("{TOKEN}\n")).unwrap();
    let adminfile = dir.path().join("admin");
    std::fs::write(&adminfile, ADMIN).unwrap();
    let yaml = format!(
        "{FAST_GLOBAL}endpoints:
  - {{name: keyed, kind: tgi, url: {k}, probe: generate, token_env: HFB_TEST_TOKEN}}
  - {{name: router, kind: openai, url: {r}/v1, model: HuggingFaceH4/zephyr-7b-beta, probe: chat, token_file: {t}}}
  - {{name: status, kind: endpoint-status, url: {s}, namespace: org, endpoint_name: e, token_env: HFB_TEST_TOKEN}}
  - {{name: broken, kind: tgi, url: {b}, probe: generate, token_env: HFB_TEST_TOKEN}}
routes:
  - name: assistant
    endpoints: [broken, keyed, router]
",
        k = sim.url("keyed"),
        r = sim.url("router"),
        s = sim.url("status"),
        b = sim.url("broken"),
        t = tokfile.display()
    );
    let mut p = testkit::binary!().daemon(
        &yaml,
        &[
            &format!("--web.admin-token-file={}", adminfile.display()),
            "--log.level=debug",
            "--web.enable-lifecycle",
        ],
        &[("HFB_TEST_TOKEN", TOKEN)],
    );
    let cfg = p.config_path().to_path_buf();
    let line = p.wait_stderr("msg=listening", Duration::from_secs(10));
    let addr = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("address="))
        .expect("address in the listening line")
        .to_string();
    let base = format!("http://{addr}");

    // Wait for failures, an auth rejection and a trip so the logs have something to say.
    let start = Instant::now();
    loop {
        let (_, m) = scrape_sync(&rt, &format!("{base}/metrics"));
        let s = Scrape(m);
        if s.state("broken") == Some("open")
            && s.get(
                "hfbreaker_probe_failures_total",
                &[("endpoint", "router"), ("reason", "auth")],
            ) >= Some(1.0)
            && s.get(
                "hfbreaker_probes_total",
                &[("endpoint", "keyed"), ("result", "success")],
            ) >= Some(1.0)
        {
            assert_eq!(
                s.val(
                    "hfbreaker_route_serving",
                    &[("route", "assistant"), ("endpoint", "keyed")]
                ),
                1.0
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "daemon did not reach the expected state:\n{}",
            s.hfbreaker_lines()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut served = String::new();
    for path in [
        "/metrics",
        "/api/v1/breakers",
        "/api/v1/routes",
        "/",
        "/-/ready",
        "/-/healthy",
    ] {
        let (code, body) = scrape_sync(&rt, &format!("{base}{path}"));
        assert_eq!(code, 200, "{path}");
        served.push_str(&body);
    }
    assert!(served.contains("keyed") && served.contains("hfbreaker_circuit_state"));
    // Admin calls with a wrong token, and a reload that fails on the token variable.
    let wrong = rt.block_on(async {
        let r = client()
            .post(format!("{base}/api/v1/breakers/keyed/force-open"))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(wrong.0, 401);
    served.push_str(&wrong.1);
    let bad_yaml = yaml.replace(
        "token_env: HFB_TEST_TOKEN}\n  - {name: broken",
        "token_env: HFB_UNSET_VAR}\n  - {name: broken",
    );
    assert_ne!(bad_yaml, yaml);
    std::fs::write(&cfg, bad_yaml).unwrap();
    let bad_reload = rt.block_on(async {
        let r = client()
            .post(format!("{base}/-/reload"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(bad_reload.0, 500, "{}", bad_reload.1);
    assert!(
        bad_reload.1.contains("HFB_UNSET_VAR is not set"),
        "{}",
        bad_reload.1
    );
    served.push_str(&bad_reload.1);
    for secret in [TOKEN, ADMIN] {
        assert!(!served.contains(secret), "a token was served over HTTP");
    }

    // SIGHUP with a good file: reload succeeds.
    std::fs::write(&cfg, yaml.replace("name: assistant", "name: assistant2")).unwrap();
    p.signal("HUP");
    let start = Instant::now();
    loop {
        let (_, m) = scrape_sync(&rt, &format!("{base}/metrics"));
        let s = Scrape(m);
        if s.get("hfbreaker_config_last_reload_successful", &[]) == Some(1.0)
            && s.get("hfbreaker_route_level", &[("route", "assistant2")])
                .is_some()
        {
            assert!(
                s.get("hfbreaker_route_level", &[("route", "assistant")])
                    .is_none()
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "SIGHUP reload did not apply"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // SIGTERM: clean exit.
    p.signal("TERM");
    let status = p
        .exit_within(Duration::from_secs(10))
        .expect("no exit after SIGTERM");
    assert_eq!(status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(100));
    let log = p.stderr();
    assert!(
        log.contains("msg=\"circuit opened\""),
        "logs say something: {log}"
    );
    assert!(log.contains("msg=\"probe failed\""));
    assert!(
        log.contains("check the token"),
        "auth rejections are logged"
    );
    assert!(log.contains("config reload failed"));
    assert!(log.contains("msg=stopped"));
    for secret in [TOKEN, ADMIN] {
        assert!(!log.contains(secret), "a token was logged");
    }
    rt.block_on(sim.shutdown());
}
