//! The gateway against the real Python clients pinned in
//! tests/python/requirements.txt (`openai`, `huggingface_hub`): the real
//! binary (`hfbreaker simulate` with a primary and a fallback TGI, a TEI and an
//! hf-inference feature extraction, and a route with a cache;
//! the daemon with `--gateway.listen-address`), driven by
//! tests/python/test_gateway.py. `scripts/test` creates the virtual
//! environment; under CI a missing one fails.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const KEY: &str = "sk-gwpy-7d2e91c4";

fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("HFBREAKER_PYTHON").map(PathBuf::from),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/fidelity-venv/bin/python"
        ))),
    ];
    candidates.into_iter().flatten().find(|p| p.exists())
}

const SCENARIO: &str = "endpoints:
  - {name: primary, protocol: tgi, model: HuggingFaceH4/zephyr-7b-beta}
  - {name: fallback, protocol: tgi, model: HuggingFaceH4/zephyr-7b-beta}
  - {name: emb, protocol: tei, model: BAAI/bge-small-en-v1.5}
  - {name: hfemb, protocol: hf-inference, model: BAAI/bge-small-en-v1.5, embedding: true}
  - {name: cprimary, protocol: tgi, model: HuggingFaceH4/zephyr-7b-beta}
";

/// Probes are rare (every 20 s): the requests must trip the primary, and
/// its recovery comes from the requests' half-open trials.
fn config(sim: &str, keys: &std::path::Path) -> String {
    format!(
        "global:
  interval: 20s
  timeout: 1s
  confirm_interval: 40ms
  breaker:
    failure_threshold: 3
    open_duration: 1s
    max_open_duration: 2s
    success_threshold: 2
gateway:
  client_keys_file: {keys}
  timeout: 10s
  first_byte_timeout: 2s
endpoints:
  - {{name: primary, kind: tgi, url: '{sim}/primary', probe: health}}
  - {{name: fallback, kind: tgi, url: '{sim}/fallback', probe: health}}
  - {{name: emb, kind: tei, url: '{sim}/emb'}}
  - {{name: hfemb, kind: hf-inference, url: '{sim}/hfemb', model: BAAI/bge-small-en-v1.5, probe: embed}}
  - {{name: cprimary, kind: tgi, url: '{sim}/cprimary', probe: health}}
routes:
  - {{name: assistant, endpoints: [primary, fallback]}}
  - {{name: embeddings, endpoints: [emb]}}
  - {{name: hf-embeddings, endpoints: [hfemb]}}
  - {{name: cached, endpoints: [cprimary], cache: {{ttl: 1m, max_entries: 100, max_bytes: 1048576}}}}
",
        keys = keys.display()
    )
}

#[test]
fn real_clients_through_the_gateway() {
    let Some(py) = python() else {
        let msg = "no Python environment with the official clients: run scripts/test (it creates target/fidelity-venv)";
        assert!(std::env::var("CI").is_err(), "{msg}");
        eprintln!("SKIPPED real_clients_through_the_gateway: {msg}");
        return;
    };
    let dir = env!("CARGO_MANIFEST_DIR");
    let sim = testkit::binary!().simulate(SCENARIO);
    let (_keys, key_file) = testkit::key_file(&format!("# clients\n{KEY}"));
    let daemon = testkit::binary!().daemon(
        &config(&sim.base(), &key_file),
        &["--gateway.listen-address=127.0.0.1:0"],
        &[],
    );
    let gateway = daemon.gateway_base(Duration::from_secs(20));
    // Not `daemon.base()`: that is the first listening socket /proc shows,
    // which may be the gateway's once both listen.
    let web = format!(
        "http://{}",
        daemon.log_address("msg=listening", Duration::from_secs(20))
    );

    let start = Instant::now();
    let out = Command::new(&py)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            &format!("{dir}/tests/python/test_gateway.py"),
        ])
        .env("GATEWAY_URL", &gateway)
        .env("GATEWAY_KEY", KEY)
        .env("SIM_URL", sim.base())
        .env("DAEMON_URL", &web)
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "gateway client tests failed:\n{text}\n--- daemon log ---\n{}",
        daemon.stderr()
    );
    let (passed, summary) = testkit::pytest_passed(&text);
    assert!(
        passed >= 10 && !summary.contains("skipped"),
        "expected every gateway client test to run, got: {summary}"
    );
    assert!(elapsed < Duration::from_secs(90), "took {elapsed:?}");
}
