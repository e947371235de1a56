//! The real hfbreaker binary as a child process: the daemon, the simulator
//! and the demo, each started one way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::proc::Proc;
use crate::procfs::listening_addr;

/// The hfbreaker binary under test. Integration tests and benches get it
/// with [`binary!`](crate::binary!).
#[derive(Clone, Debug)]
pub struct Binary(PathBuf);

impl Binary {
    pub fn new(path: impl Into<PathBuf>) -> Binary {
        Binary(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A command for one-shot runs (`check-config`, a refused start).
    pub fn command(&self) -> Command {
        Command::new(&self.0)
    }

    /// The daemon on `config` (written to a fresh folder, see
    /// [`Proc::config_path`]) on an ephemeral loopback port, with `args` and
    /// `env` added; returns once it listens. The port is read from /proc, so
    /// any `--log.level` works. Its `--storage.path` is `data/` in that
    /// folder (never the checkout) unless `args` give one.
    pub fn daemon(&self, config: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        self.daemon_with(config, args, env, |_| {})
    }

    /// [`Binary::daemon`], with `prepare` applied to the command before it
    /// is spawned (e.g. a `pre_exec` that lowers a resource limit).
    pub fn daemon_with(
        &self,
        config: &str,
        args: &[&str],
        env: &[(&str, &str)],
        prepare: impl FnOnce(&mut Command),
    ) -> Proc {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = dir.path().join("hfbreaker.yml");
        std::fs::write(&cfg, config).expect("config written");
        let mut cmd = self.command();
        cmd.arg(format!("--config.file={}", cfg.display()))
            .arg("--web.listen-address=127.0.0.1:0");
        if !args.iter().any(|a| a.starts_with("--storage.path")) {
            cmd.arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ));
        }
        cmd.args(args).envs(env.iter().copied());
        prepare(&mut cmd);
        let mut p = Proc::spawn(&mut cmd, Some(dir), Some(cfg)).expect("hfbreaker starts");
        let start = Instant::now();
        let addr = loop {
            if let Some(a) = listening_addr(p.pid()) {
                break a;
            }
            assert!(
                !p.exited(),
                "daemon exited before listening:\n{}",
                p.stderr()
            );
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "daemon did not listen:\n{}",
                p.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        p.set_addr(addr);
        p
    }

    /// `hfbreaker simulate` with the `scenario` YAML; returns once it prints
    /// its address (its [`Proc::base`] is the simulator's base URL).
    pub fn simulate(&self, scenario: &str) -> Proc {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("scenario.yml");
        std::fs::write(&file, scenario).expect("scenario written");
        let mut cmd = self.command();
        cmd.args(["simulate", "--listen", "127.0.0.1:0", "--scenario"])
            .arg(&file);
        let mut p = Proc::spawn(&mut cmd, Some(dir), Some(file)).expect("hfbreaker starts");
        let addr = address_after(&p.wait_stdout("http://", Duration::from_secs(20)));
        p.set_addr(addr);
        p
    }

    /// `hfbreaker demo` on an ephemeral port with `args` added; returns once
    /// it prints where it serves.
    pub fn demo(&self, args: &[&str]) -> Proc {
        let mut cmd = self.command();
        cmd.args(["demo", "--web.listen-address=127.0.0.1:0"])
            .args(args);
        let mut p = Proc::spawn(&mut cmd, None, None).expect("hfbreaker starts");
        let addr = address_after(&p.wait_stdout("serving on http://", Duration::from_secs(20)));
        p.set_addr(addr);
        p
    }
}

/// The `host:port` after the first `http://` in `line`.
fn address_after(line: &str) -> SocketAddr {
    let rest = line.split("http://").nth(1).unwrap_or_default();
    let addr = rest
        .split(|c: char| c.is_whitespace() || c == '/')
        .next()
        .unwrap_or_default();
    addr.parse()
        .unwrap_or_else(|e| panic!("no address in {line:?}: {e}"))
}
