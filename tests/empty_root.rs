//! The static binary in an otherwise empty root, as the `FROM scratch` image
//! runs it. The root is built from the Containerfile's own COPY lines (so
//! the test runs exactly what the image packages: no /etc/hosts,
//! /etc/resolv.conf, /etc/nsswitch.conf, CA store, /proc, /dev or shared
//! library), and its ENTRYPOINT runs there under `unshare --user
//! --map-root-user chroot` (no privilege needed; the network namespace is
//! the host's, so a simulator on the host's loopback is reachable). The
//! daemon serves the image's default config, then, after a SIGHUP, probes
//! the simulator by `localhost` (resolved without /etc/hosts) and by IP;
//! `/metrics` is scraped from outside.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::package::{TARGET, is_static_elf, static_binary};
use testkit::{Proc, Scrape, client, free_port, require_tool};

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// The Containerfile's instructions, as (instruction, rest) pairs.
fn containerfile() -> Vec<(String, String)> {
    std::fs::read_to_string(repo("Containerfile"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (i, rest) = l.split_once(' ').unwrap_or((l, ""));
            (i.to_uppercase(), rest.trim().to_string())
        })
        .collect()
}

/// `COPY [--flag=..] SRC DEST` lines: (source in the repository, destination).
fn copies() -> Vec<(String, String)> {
    containerfile()
        .into_iter()
        .filter(|(i, _)| i == "COPY")
        .map(|(_, rest)| {
            let words: Vec<&str> = rest
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            assert_eq!(words.len(), 2, "COPY with one source: {rest}");
            (words[0].to_string(), words[1].to_string())
        })
        .collect()
}

fn one(instruction: &str) -> String {
    let found: Vec<String> = containerfile()
        .into_iter()
        .filter(|(i, _)| i == instruction)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(found.len(), 1, "one {instruction} in the Containerfile");
    found[0].clone()
}

/// Copy a file, or a folder's files, as `COPY src dest` would.
fn copy_into(root: &Path, src: &Path, dest: &str) -> Vec<String> {
    let dest = dest.trim_start_matches('/');
    if src.is_dir() {
        let mut made = vec![];
        for e in std::fs::read_dir(src).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            made.extend(copy_into(
                root,
                &p,
                &format!("{}/{name}", dest.trim_end_matches('/')),
            ));
        }
        std::fs::create_dir_all(root.join(dest)).unwrap();
        made
    } else {
        let to = root.join(dest);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(src, &to).unwrap();
        vec![format!("/{dest}")]
    }
}

/// Every file under `dir`, as absolute paths inside it.
fn files_under(dir: &Path, base: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p, base));
        } else {
            out.insert(format!("/{}", p.strip_prefix(base).unwrap().display()));
        }
    }
    out
}

#[test]
fn containerfile_ships_the_static_binary_and_nothing_of_a_distribution() {
    assert_eq!(one("FROM"), "scratch");
    let sources: Vec<String> = copies().into_iter().map(|(s, _)| s).collect();
    assert_eq!(sources[0], format!("target/{TARGET}/release/hfbreaker"));
    assert!(
        is_static_elf(&static_binary()),
        "the release build is static"
    );
    assert_eq!(one("USER"), "65534:65534");
    assert_eq!(one("EXPOSE"), "9799");
    assert_eq!(one("VOLUME"), r#"["/data"]"#);
    // The build context (.dockerignore) lets in exactly what is copied.
    let ignore = std::fs::read_to_string(repo(".dockerignore")).unwrap();
    let allowed: Vec<&str> = ignore.lines().filter_map(|l| l.strip_prefix('!')).collect();
    let mut want: Vec<String> = sources
        .iter()
        .map(|s| s.trim_end_matches('/').to_string())
        .collect();
    want.dedup_by(|a, b| a.starts_with(&format!("{b}/")));
    let got: Vec<String> = allowed
        .iter()
        .map(|s| s.trim_end_matches('/').to_string())
        .collect();
    for s in &want {
        assert!(
            got.iter()
                .any(|g| s == g || s.starts_with(&format!("{g}/"))),
            ".dockerignore lets in {s}: {got:?}"
        );
    }
    assert!(
        ignore.lines().any(|l| l.trim() == "*"),
        "everything else is left out"
    );
}

async fn scrape(base: &str) -> Result<Scrape, String> {
    let r = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Scrape(r.text().await.map_err(|e| e.to_string())?))
}

async fn until(p: &mut Proc, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let start = Instant::now();
    loop {
        let last = scrape(&p.base()).await;
        if let Ok(s) = &last
            && ok(s)
        {
            return last.unwrap();
        }
        assert!(!p.exited(), "the daemon exited:\n{}", p.stderr());
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} not within 30 s: {}\n{}",
            last.map_or_else(|e| e, |s| s.hfbreaker_lines()),
            p.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const SCENARIO: &str = "endpoints:\n  - {name: tgi, protocol: tgi, model: m}\n";

fn config(sim_port: u16) -> String {
    format!(
        "global:
  interval: 200ms
  timeout: 2s
endpoints:
  - {{name: by-name, kind: tgi, url: 'http://localhost:{sim_port}/tgi', probe: generate}}
  - {{name: by-ip, kind: tgi, url: 'http://127.0.0.1:{sim_port}/tgi', probe: generate}}
"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn static_binary_runs_and_probes_from_an_empty_root() {
    let (Some(unshare), Some(chroot)) = (
        require_tool("unshare (util-linux)", &["unshare"]),
        require_tool("chroot (coreutils)", &["chroot"]),
    ) else {
        return;
    };
    static_binary();
    // The root: what the COPY lines put there, and nothing else.
    let root = tempfile::tempdir().unwrap();
    let mut expected = BTreeSet::new();
    for (src, dest) in copies() {
        expected.extend(copy_into(root.path(), &repo(&src), &dest));
    }
    assert_eq!(files_under(root.path(), root.path()), expected);
    for absent in [
        "etc/hosts",
        "etc/resolv.conf",
        "etc/nsswitch.conf",
        "etc/ssl",
        "lib",
        "usr",
        "proc",
        "dev",
    ] {
        assert!(!root.path().join(absent).exists(), "{absent} in the root");
    }

    let sim = testkit::binary!().simulate(SCENARIO);
    let entry: Vec<String> =
        serde_json::from_str(&one("ENTRYPOINT")).expect("ENTRYPOINT in exec form");
    assert_eq!(entry[0], "/hfbreaker");
    let port = free_port();
    let mut cmd = Command::new(unshare);
    // The one argument added: where to listen (the image listens on :9799;
    // here a free loopback port, as `podman run IMAGE --web.listen-address=...`).
    // No environment either: nothing like HTTP_PROXY leaks in.
    cmd.args(["--user", "--map-root-user"])
        .arg(chroot)
        .arg(root.path())
        .args(&entry)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .env_clear();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut d = Proc::external(&mut cmd, None, addr).expect("unshare starts");

    // The image's own config: idle, serving.
    let s = until(&mut d, "the default config served", |s| {
        s.get("hfbreaker_config_last_reload_successful", &[]) == Some(1.0)
    })
    .await;
    assert!(s.series("hfbreaker_circuit_state", &[]).next().is_none());

    // A config mounted over it, then SIGHUP (`podman kill --signal HUP`).
    std::fs::write(
        root.path().join("etc/hfbreaker/hfbreaker.yml"),
        config(sim.port()),
    )
    .unwrap();
    d.signal("HUP");
    let s = until(&mut d, "both endpoints probed", |s| {
        ["by-name", "by-ip"].iter().all(|e| {
            s.get(
                "hfbreaker_probes_total",
                &[("endpoint", e), ("result", "success")],
            )
            .is_some_and(|n| n >= 2.0)
        })
    })
    .await;
    for e in ["by-name", "by-ip"] {
        assert_eq!(s.state(e), Some("closed"), "{e}:\n{}", s.hfbreaker_lines());
        assert_eq!(s.val("hfbreaker_probe_success", &[("endpoint", e)]), 1.0);
        assert_eq!(
            s.sum("hfbreaker_probe_failures_total", &[("endpoint", e)]),
            0.0,
            "{e}:\n{}",
            s.hfbreaker_lines()
        );
    }

    // SIGTERM drains and exits 0; the breaker state is saved in /data.
    d.signal("TERM");
    let status = d
        .exit_within(Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", d.stderr());
    assert!(
        root.path().join("data/breakers.json").is_file(),
        "state saved under --storage.path=/data:\n{}",
        d.stderr()
    );
}
