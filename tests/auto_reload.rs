//! `--config.auto-reload-interval`: an edited config file or a rotated
//! token file applies without a signal (as a Kubernetes ConfigMap or Secret
//! update does), a file that does not load is reported once and changes
//! nothing, and an unchanged file costs no reload.

use std::time::Duration;

use hfbreaker::daemon::AutoReload;
use hfbreaker::sim::{Protocol, VirtualSpec};
use testkit::*;

const KEY: &str = "hf_rotated-3f9c1a";

fn config(sim: &hfbreaker::sim::Sim, endpoints: &[&str], token_file: &str) -> String {
    let mut y = format!("{FAST_GLOBAL}endpoints:\n");
    for e in endpoints {
        y.push_str(&format!(
            "  - {{name: {e}, kind: tgi, url: {}, probe: health}}\n",
            sim.url("tgi")
        ));
    }
    y.push_str(&format!(
        "  - {{name: keyed, kind: tgi, url: {}, probe: chat, token_file: {token_file}}}\n",
        sim.url("keyed")
    ));
    y.push_str("routes:\n  - name: r\n    endpoints: [keyed]\n");
    y
}

/// A simulator with `tgi` and `keyed` (which wants [`KEY`]), and a folder
/// for the token file.
async fn keyed_sim() -> (hfbreaker::sim::Sim, tempfile::TempDir) {
    let mut keyed = VirtualSpec::new(Protocol::Tgi, "m");
    keyed.api_key = Some(KEY.into());
    let sim = sim(vec![
        ("tgi", VirtualSpec::new(Protocol::Tgi, "m")),
        ("keyed", keyed),
    ])
    .await;
    (sim, tempfile::tempdir().unwrap())
}

fn reload_timestamp(s: &Scrape) -> f64 {
    s.val(
        "hfbreaker_config_last_reload_success_timestamp_seconds",
        &[],
    )
}

/// The look itself, called by hand: what it returns, the metrics and the
/// running config after each kind of change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_look_reloads_only_on_a_change_and_reports_a_bad_file_once() {
    let (sim, tokdir) = keyed_sim().await;
    let token = tokdir.path().join("token");
    std::fs::write(&token, format!("{KEY}\n")).unwrap();
    let tok = token.display().to_string();
    let d = TestDaemon::start(&config(&sim, &["a"], &tok)).await;
    let mut failure = None;

    // Nothing changed: no reload, no new timestamp.
    let before = reload_timestamp(&d.scrape().await);
    assert_eq!(
        d.daemon.reload_if_changed(&mut failure).await,
        AutoReload::Unchanged
    );
    assert_eq!(reload_timestamp(&d.scrape().await), before);

    // A bad file: reported once, the running config kept.
    std::fs::write(&d.config_path, "global:\n  interval: 1s\n  bogus: 1\n").unwrap();
    assert_eq!(
        d.daemon.reload_if_changed(&mut failure).await,
        AutoReload::Failed
    );
    assert!(failure.as_deref().unwrap().contains("bogus"), "{failure:?}");
    for _ in 0..3 {
        assert_eq!(
            d.daemon.reload_if_changed(&mut failure).await,
            AutoReload::Unchanged,
            "the same error is not reported again"
        );
    }
    let s = d.scrape().await;
    assert_eq!(s.val("hfbreaker_config_last_reload_successful", &[]), 0.0);
    assert_eq!(d.daemon.topology().endpoints.len(), 2);

    // A different bad file is a new error: reported.
    std::fs::write(&d.config_path, "global:\n  interval: [\n").unwrap();
    assert_eq!(
        d.daemon.reload_if_changed(&mut failure).await,
        AutoReload::Failed
    );

    // Back to what runs: nothing to apply, but the failure is over.
    std::fs::write(&d.config_path, config(&sim, &["a"], &tok)).unwrap();
    assert_eq!(
        d.daemon.reload_if_changed(&mut failure).await,
        AutoReload::Reloaded
    );
    assert_eq!(failure, None);
    let s = d.scrape().await;
    assert_eq!(s.val("hfbreaker_config_last_reload_successful", &[]), 1.0);
    assert_eq!(
        d.daemon.reload_if_changed(&mut failure).await,
        AutoReload::Unchanged
    );

    // An edit: applied.
    std::fs::write(&d.config_path, config(&sim, &["a", "b"], &tok)).unwrap();
    assert_eq!(
        d.daemon.reload_if_changed(&mut failure).await,
        AutoReload::Reloaded
    );
    assert!(d.daemon.topology().endpoint("b").is_some());

    // Only the token file changed: that is a change too.
    std::fs::write(&token, "hf_another-token\n").unwrap();
    assert_eq!(
        d.daemon.reload_if_changed(&mut failure).await,
        AutoReload::Reloaded
    );
    assert_eq!(
        d.daemon.reload_if_changed(&mut failure).await,
        AutoReload::Unchanged
    );
}

/// The loop as the flag runs it: an operator force-opens an endpoint, a new
/// endpoint is added to the file and the token is rotated; within a few looks
/// the new endpoint is probed, probes use the new token, and the forced
/// state stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_rotated_tokens_apply_without_a_signal() {
    let (sim, tokdir) = keyed_sim().await;
    let token = tokdir.path().join("token");
    // Start with a stale token: the keyed endpoint's probes are refused.
    std::fs::write(&token, "hf_stale-token\n").unwrap();
    let tok = token.display().to_string();
    let d = TestDaemon::start_with_admin(&config(&sim, &["a"], &tok), Some("admin-tok-9")).await;
    let lim = Duration::from_secs(10);
    d.until(lim, "the stale token is refused", |s| {
        s.get(
            "hfbreaker_probe_failures_total",
            &[("endpoint", "keyed"), ("reason", "auth")],
        ) >= Some(1.0)
    })
    .await;
    let (code, _) = d
        .post("/api/v1/breakers/a/force-open", Some("admin-tok-9"))
        .await;
    assert_eq!(code, 200);
    tokio::spawn(hfbreaker::daemon::auto_reload(
        d.daemon.clone(),
        Duration::from_millis(200),
    ));

    std::fs::write(&token, format!("{KEY}\n")).unwrap();
    std::fs::write(&d.config_path, config(&sim, &["a", "b"], &tok)).unwrap();
    d.until(lim, "b probed and the new token accepted", |s| {
        s.get(
            "hfbreaker_probes_total",
            &[("endpoint", "b"), ("result", "success")],
        ) >= Some(1.0)
            && s.get(
                "hfbreaker_probes_total",
                &[("endpoint", "keyed"), ("result", "success")],
            ) >= Some(1.0)
    })
    .await;
    let s = d.scrape().await;
    assert_eq!(
        s.val(
            "hfbreaker_circuit_state",
            &[("endpoint", "a"), ("state", "forced_open")]
        ),
        1.0,
        "the operator's override survives the reload"
    );
    assert_eq!(s.val("hfbreaker_config_last_reload_successful", &[]), 1.0);
}

/// The flag wired in the binary: an edit applies with no signal sent.
#[test]
fn the_binary_reloads_an_edited_file_on_its_own() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(sim(vec![("tgi", VirtualSpec::new(Protocol::Tgi, "m"))]));
    let one = |names: &[&str]| {
        let mut y = format!("{FAST_GLOBAL}endpoints:\n");
        for n in names {
            y.push_str(&format!(
                "  - {{name: {n}, kind: tgi, url: {}, probe: health}}\n",
                sim.url("tgi")
            ));
        }
        y
    };
    let p = binary!().daemon(&one(&["a"]), &["--config.auto-reload-interval=1s"], &[]);
    std::fs::write(p.config_path(), one(&["a", "added"])).unwrap();
    let start = std::time::Instant::now();
    loop {
        let s = scrape_blocking(&rt, &p.base());
        if s.get(
            "hfbreaker_probes_total",
            &[("endpoint", "added"), ("result", "success")],
        ) >= Some(1.0)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the edit was not applied:\n{}",
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        p.stderr().contains("config file changed: reloaded"),
        "{}",
        p.stderr()
    );
}
