//! The one guard for child processes.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Captured = Arc<Mutex<String>>;

/// A child process, killed and reaped on drop. Its stdout and stderr are
/// captured (so waiting on a line works and failures can show the log), and
/// its scratch folder (config, storage) lives as long as it does.
pub struct Proc {
    child: Child,
    /// Where it serves HTTP.
    pub addr: SocketAddr,
    config: Option<PathBuf>,
    stdout: Captured,
    stderr: Captured,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Read `from` line by line into `into` until the pipe closes.
fn capture(from: impl Read + Send + 'static, into: Captured) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let mut s = into.lock().unwrap_or_else(|p| p.into_inner());
            s.push_str(&line);
            s.push('\n');
        }
    });
}

impl Proc {
    /// Spawn `cmd` with its output captured. `addr` is filled in by the
    /// starter once known (see [`Proc::set_addr`]).
    pub(crate) fn spawn(
        cmd: &mut Command,
        dir: Option<tempfile::TempDir>,
        config: Option<PathBuf>,
    ) -> std::io::Result<Proc> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (stdout, stderr) = (Captured::default(), Captured::default());
        if let Some(o) = child.stdout.take() {
            capture(o, stdout.clone());
        }
        if let Some(e) = child.stderr.take() {
            capture(e, stderr.clone());
        }
        Ok(Proc {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            config,
            stdout,
            stderr,
            _dir: dir,
        })
    }

    /// Any program (a proxy, an upstream) as a guarded child serving at
    /// `addr`, its scratch folder `dir` kept as long as it runs.
    pub fn external(
        cmd: &mut Command,
        dir: Option<tempfile::TempDir>,
        addr: SocketAddr,
    ) -> std::io::Result<Proc> {
        let mut p = Proc::spawn(cmd, dir, None)?;
        p.set_addr(addr);
        Ok(p)
    }

    pub(crate) fn set_addr(&mut self, addr: SocketAddr) {
        self.addr = addr;
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config (or scenario) file it was started with; rewrite it to
    /// test reloads.
    pub fn config_path(&self) -> &Path {
        self.config
            .as_deref()
            .expect("this process was started without a config file")
    }

    /// Everything it printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Everything it printed on stderr so far (hfbreaker's log).
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The stdout line containing `needle`, from `needle` on; panics with
    /// the output after `limit`.
    pub fn wait_stdout(&self, needle: &str, limit: Duration) -> String {
        wait_line(&self.stdout, "stdout", needle, limit)
    }

    /// The stderr (log) line containing `needle`, from `needle` on; panics
    /// with the log after `limit`.
    pub fn wait_stderr(&self, needle: &str, limit: Duration) -> String {
        wait_line(&self.stderr, "stderr", needle, limit)
    }

    /// The address of a listener the log announced: the `address=` field
    /// after `needle` on the first stderr line containing it (the daemon's gateway:
    /// `msg="gateway listening"`, see [`Proc::gateway_base`]).
    pub fn log_address(&self, needle: &str, limit: Duration) -> SocketAddr {
        let line = self.wait_stderr(needle, limit);
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix("address="))
            .and_then(|a| a.trim_matches('"').parse().ok())
            .unwrap_or_else(|| panic!("no address= after {needle:?} in {line:?}"))
    }

    /// `http://<gateway address>` of a daemon started with
    /// `--gateway.listen-address` (from its log, so any port works).
    pub fn gateway_base(&self, limit: Duration) -> String {
        format!(
            "http://{}",
            self.log_address("msg=\"gateway listening\"", limit)
        )
    }

    /// Send a signal by name (`HUP`, `TERM`, `INT`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(ok.success(), "kill -{sig} {}", self.pid());
    }

    /// Its exit status, if it exits within `limit`.
    pub fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("child is ours") {
                return Some(s);
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it has exited (without waiting).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

fn wait_line(out: &Captured, stream: &str, needle: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = out.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(i) = text.find(needle) {
            return text[i..].lines().next().unwrap_or_default().to_string();
        }
        assert!(
            start.elapsed() < limit,
            "no {needle:?} on {stream} within {limit:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
