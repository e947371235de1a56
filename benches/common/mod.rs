//! Shared by the process-level benchmarks: the real binary as the daemon and
//! as the target server, each in its own process so that their CPU and memory
//! are measured apart (from /proc).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hfbreaker");

pub struct Child2 {
    pub child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Child2 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Child2 {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// `hfbreaker simulate` with one healthy TGI endpoint `t`; returns its base URL.
pub fn spawn_target() -> Child2 {
    let dir = tempfile::tempdir().unwrap();
    let scen = dir.path().join("s.yml");
    std::fs::write(&scen, "endpoints:\n  - {name: t, protocol: tgi}\n").unwrap();
    let mut child = Command::new(BIN)
        .args(["simulate", "--listen", "127.0.0.1:0", "--scenario"])
        .arg(&scen)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first.split("http://").nth(1).unwrap().trim().to_string();
    std::thread::spawn(move || for _ in lines {});
    Child2 {
        child,
        addr,
        _dir: dir,
    }
}

/// The daemon on `config`; returns once it listens.
pub fn spawn_daemon(config: &str) -> Child2 {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hfbreaker.yml");
    std::fs::write(&cfg, config).unwrap();
    let mut child = Command::new(BIN)
        .arg(format!("--config.file={}", cfg.display()))
        .args(["--web.listen-address=127.0.0.1:0", "--log.level=warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // "listening" is logged at info; with --log.level=warn find the port another way.
    let _ = child
        .stderr
        .take()
        .map(|e| std::thread::spawn(move || for _ in BufReader::new(e).lines() {}));
    let pid = child.id();
    let start = Instant::now();
    let addr = loop {
        if let Some(a) = listening_port(pid) {
            break a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "daemon did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    Child2 {
        child,
        addr,
        _dir: dir,
    }
}

/// The loopback port a process listens on, from /proc/net/tcp and its fds.
fn listening_port(pid: u32) -> Option<String> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .collect();
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    for line in tcp.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 9 && f[3] == "0A" && inodes.contains(&f[9].to_string()) {
            let port = u16::from_str_radix(f[1].split(':').nth(1)?, 16).ok()?;
            return Some(format!("127.0.0.1:{port}"));
        }
    }
    None
}

/// User + system CPU seconds of a process.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ut: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    let st: f64 = f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    (ut + st) / ticks
}

pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

pub fn get(url: &str) -> (String, Duration) {
    let start = Instant::now();
    let out = Command::new("curl")
        .args(["-s", "--max-time", "30", url])
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        start.elapsed(),
    )
}

/// Sum of every sample of `name` whose labels contain all of `labels`.
pub fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Per-endpoint values of `name{endpoint=...,<label>}`.
pub fn per_endpoint(text: &str, name: &str, label: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect()
}

pub fn endpoints_config(n: usize, url: &str, interval: &str, extra_global: &str) -> String {
    let mut y = format!("global:\n  interval: {interval}\n{extra_global}endpoints:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - {{name: ep-{i:05}, kind: http, url: '{url}'}}\n"
        ));
    }
    y
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn guard(name: &str) -> bool {
    if std::env::args().any(|a| a == "--bench") {
        return true;
    }
    println!("{name}: run with `cargo bench --bench {name}` (see bench/run-all)");
    false
}
