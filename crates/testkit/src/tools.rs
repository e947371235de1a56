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

/// `promtool check metrics` on an exposition: `Err` with promtool's output
/// when it finds a parse error or a lint problem (a clean run prints
/// nothing), or `None` when promtool is missing outside CI.
pub fn promtool_check_metrics(text: &str) -> Option<Result<(), String>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let promtool = require_tool("promtool", &["promtool"])?;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    // promtool reads all of stdin before it answers, so one write is safe.
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("promtool reads its input");
    let out = child.wait_with_output().expect("promtool finishes");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(if out.status.success() && out.stdout.is_empty() {
        Ok(())
    } else {
        Err(said)
    })
}

/// Every `.rs` file under `dir`, for tests that read the sources.
pub fn rust_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("a readable source folder") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// pytest's closing summary line in `output` and the number it says passed
/// (0 when there is none), so a harness can insist that every test ran.
pub fn pytest_passed(output: &str) -> (u32, String) {
    let summary = output
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_default()
        .to_string();
    let passed = summary
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or(0);
    (passed, summary)
}
