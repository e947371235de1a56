//! `rust-version` in Cargo.toml is the truth: the highest `rust-version` of
//! every crate the binary builds from, and never below 1.88 (the code uses
//! let chains). Clippy's `incompatible_msrv` lint, which CI runs with
//! `-D warnings`, checks our own use of the standard library against it.

use std::process::Command;

fn version(s: &str) -> Vec<u64> {
    s.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

#[test]
fn rust_version_is_the_highest_any_dependency_needs() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let host = String::from_utf8(
        Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .arg("-vV")
            .output()
            .expect("rustc runs")
            .stdout,
    )
    .unwrap()
    .lines()
    .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
    .expect("rustc names its host");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &host,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let package = |id: &str| packages.iter().find(|p| p["id"] == id).unwrap();
    let nodes = meta["resolve"]["nodes"].as_array().unwrap();
    let root = packages.iter().find(|p| p["name"] == "hfbreaker").unwrap();
    let declared = version(root["rust_version"].as_str().expect("rust-version is set"));

    // Every crate reachable through normal and build dependencies.
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![root["id"].as_str().unwrap().to_string()];
    while let Some(id) = stack.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let node = nodes.iter().find(|n| n["id"] == id.as_str()).unwrap();
        for dep in node["deps"].as_array().unwrap() {
            let runtime = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            if runtime {
                stack.push(dep["pkg"].as_str().unwrap().to_string());
            }
        }
    }
    assert!(seen.len() > 20, "too few crates found: {seen:?}");
    let (needed, by) = seen
        .iter()
        .filter(|id| !id.contains("hfbreaker"))
        .filter_map(|id| {
            let p = package(id);
            Some((version(p["rust_version"].as_str()?), p["name"].to_string()))
        })
        .chain([(vec![1, 88], "let chains".to_string())])
        .max()
        .unwrap();
    assert_eq!(
        declared, needed,
        "rust-version should be {needed:?}, which {by} needs"
    );
}
