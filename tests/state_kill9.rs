//! kill -9 at random moments during a storm of transitions (flapping
//! endpoints, short intervals) and admin actions: after every restart, each
//! admin action that was answered 200 is still in force, and the storage
//! file always parses.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hfbreaker::config::HumanDuration;
use hfbreaker::sim::{Mode, Protocol, VirtualSpec};
use testkit::*;

const ADMIN: &str = "adm_kill9";
const TRIALS: usize = 8;
const TARGETS: [&str; 3] = ["flap1", "flap2", "steady"];
const ACTIONS: [&str; 3] = ["force-open", "force-closed", "reset"];

/// What an action leaves: the forced state, or None for "not forced".
fn leaves(action: &str) -> Option<&'static str> {
    match action {
        "force-open" => Some("forced_open"),
        "force-closed" => Some("forced_closed"),
        _ => None,
    }
}

fn forced(state: &str) -> Option<&'static str> {
    match state {
        "forced_open" => Some("forced_open"),
        "forced_closed" => Some("forced_closed"),
        _ => None,
    }
}

fn flapping(period_ms: u64) -> VirtualSpec {
    VirtualSpec {
        mode: Mode::Flapping {
            period: HumanDuration(Duration::from_millis(period_ms)),
            fault: Box::new(Mode::Status(503)),
        },
        ..VirtualSpec::new(Protocol::Tgi, "m")
    }
}

#[test]
fn kill_9_never_loses_an_acknowledged_admin_action() {
    let budget = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(sim(vec![
        ("flap1", flapping(300)),
        ("flap2", flapping(170)),
        ("ok", VirtualSpec::new(Protocol::Tgi, "m")),
    ]));
    let yaml = format!(
        "global:
  interval: 100ms
  timeout: 300ms
  confirm_interval: 15ms
  breaker:
    failure_threshold: 2
    open_duration: 100ms
    max_open_duration: 400ms
    success_threshold: 1
endpoints:
  - {{name: flap1, kind: tgi, url: {f1}, probe: health}}
  - {{name: flap2, kind: tgi, url: {f2}, probe: health}}
  - {{name: steady, kind: tgi, url: {ok}, probe: health}}
routes:
  - name: r
    endpoints: [flap1, flap2, steady]
",
        f1 = sim.url("flap1"),
        f2 = sim.url("flap2"),
        ok = sim.url("ok"),
    );
    let dir = tempfile::tempdir().unwrap();
    let admin_file = dir.path().join("admin");
    std::fs::write(&admin_file, ADMIN).unwrap();
    let storage = dir.path().join("data");
    let args = [
        format!("--storage.path={}", storage.display()),
        format!("--web.admin-token-file={}", admin_file.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let http = rt.block_on(async {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    });

    // Per endpoint, the states allowed after the next restart: the outcome
    // of the last acknowledged action, or of the one in flight at the kill.
    let mut allowed: HashMap<&str, Vec<Option<&str>>> = HashMap::new();
    let (mut acked_total, mut latencies) = (0usize, Vec::new());
    for trial in 0..TRIALS {
        let mut p = testkit::binary!().daemon(&yaml, &args, &[]);
        let states = rt.block_on(async {
            let body = http
                .get(format!("{}/api/v1/breakers", p.base()))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["breakers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    let name = b["name"].as_str().unwrap().to_string();
                    (name, b["state"].as_str().unwrap().to_string())
                })
                .collect::<HashMap<_, _>>()
        });
        for (ep, ok) in &allowed {
            let got = forced(&states[*ep]);
            assert!(
                ok.contains(&got),
                "trial {trial}: {ep} is {} after the restart, expected one of {ok:?}\n{}",
                states[*ep],
                p.stderr()
            );
        }
        allowed.clear();

        // Admin actions until a random kill -9.
        let kill_at = Instant::now() + Duration::from_millis(fastrand::u64(150..900));
        let mut last_acked: HashMap<&str, Option<&str>> = HashMap::new();
        let mut in_flight = None;
        rt.block_on(async {
            loop {
                let ep = TARGETS[fastrand::usize(..TARGETS.len())];
                let action = ACTIONS[fastrand::usize(..ACTIONS.len())];
                in_flight = Some((ep, action));
                let sent = Instant::now();
                let req = http
                    .post(format!("{}/api/v1/breakers/{ep}/{action}", p.base()))
                    .bearer_auth(ADMIN)
                    .send();
                let left = kill_at.saturating_duration_since(Instant::now());
                tokio::select! {
                    r = req => {
                        let r = r.expect("answers while alive");
                        assert_eq!(r.status().as_u16(), 200, "trial {trial}: {ep} {action}");
                        latencies.push(sent.elapsed());
                        last_acked.insert(ep, leaves(action));
                        in_flight = None;
                        acked_total += 1;
                    }
                    // Kill with the request possibly applied but unanswered.
                    _ = tokio::time::sleep(left) => break,
                }
                if Instant::now() >= kill_at {
                    break;
                }
            }
        });
        p.signal("KILL");
        p.exit_within(Duration::from_secs(5)).expect("killed");

        let file = storage.join("breakers.json");
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                    panic!("trial {trial}: the file does not parse: {e}\n{text}")
                });
                assert_eq!(v["format"], "hfbreaker-breakers");
                assert_eq!(v["version"], 1);
            }
            Err(e) => assert!(
                last_acked.is_empty() && trial == 0,
                "trial {trial}: no file after acknowledged actions: {e}"
            ),
        }
        for (ep, outcome) in last_acked {
            allowed.entry(ep).or_default().push(outcome);
        }
        if let Some((ep, action)) = in_flight {
            let e = allowed.entry(ep).or_default();
            if e.is_empty() {
                // Nothing acknowledged in this trial: the state before it
                // (forced or not) is allowed as well.
                e.push(forced(&states[ep]));
            }
            e.push(leaves(action));
        }
        // Untouched in this trial: as it was.
        for ep in TARGETS {
            allowed
                .entry(ep)
                .or_insert_with(|| vec![forced(&states[ep])]);
        }
    }
    latencies.sort();
    let median = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    let worst = latencies.last().copied().unwrap_or_default();
    println!(
        "{TRIALS} kill -9 trials, {acked_total} acknowledged admin actions, admin latency (durable write included) median {median:?}, max {worst:?}, {:?} in all",
        budget.elapsed()
    );
    assert!(acked_total >= TRIALS, "too few actions to mean anything");
    assert!(budget.elapsed() < Duration::from_secs(60));
}
