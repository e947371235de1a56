//! Finding external tools and ports.

use std::path::PathBuf;

/// A binary on PATH (the first of `names` found).
pub fn find_tool(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// The tool, or `None` with a message when it is missing outside CI.
/// Under `CI=true` a missing tool is a failure, never a silent skip.
pub fn require_tool(what: &str, names: &[&str]) -> Option<PathBuf> {
    match find_tool(names) {
        Some(p) => Some(p),
        None => {
            let msg = format!("{what} not found (looked for {names:?}); scripts/test installs it");
            assert!(std::env::var("CI").is_err(), "{msg}");
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

/// A free loopback port (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("loopback has free ports")
}
