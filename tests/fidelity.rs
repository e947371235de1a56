//! The simulator against the official Python clients (huggingface_hub,
//! text-generation, openai), pinned in tests/python/requirements.txt.
//! `scripts/test` creates the virtual environment; under CI a missing one fails.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

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

#[test]
fn official_clients_accept_the_simulator() {
    let Some(py) = python() else {
        let msg = "no Python environment with the official clients: run scripts/test (it creates target/fidelity-venv)";
        assert!(std::env::var("CI").is_err(), "{msg}");
        eprintln!("SKIPPED official_clients_accept_the_simulator: {msg}");
        return;
    };
    let dir = env!("CARGO_MANIFEST_DIR");
    let scenario = std::fs::read_to_string(format!("{dir}/tests/python/scenario.yml")).unwrap();
    let sim = testkit::binary!().simulate(&scenario);
    let base = sim.base();

    let start = Instant::now();
    let out = Command::new(&py)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            &format!("{dir}/tests/python"),
        ])
        .env("SIM_URL", &base)
        .output()
        .unwrap();
    drop(sim);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "client fidelity tests failed:\n{text}"
    );
    let (passed, summary) = testkit::pytest_passed(&text);
    assert!(
        passed >= 50,
        "expected every client test to run, got: {summary}"
    );
    assert!(start.elapsed() < Duration::from_secs(300));
}
