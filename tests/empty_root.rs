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
use testkit::{Proc, Scrape, client, find_tool, free_port, require_tool};

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
  - {{name: tls, kind: tgi, url: 'https://localhost:{sim_port}/tgi', probe: generate}}
"
    )
}

/// A fresh root holding what the Containerfile's COPY lines put there, and
/// nothing else: checked file by file.
fn image_root() -> tempfile::TempDir {
    static_binary();
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
    root
}

/// The Containerfile's ENTRYPOINT in `root` through `chroot` (prefixed by
/// `wrap`, e.g. unshare), listening on a free loopback port: the one
/// argument added (the image listens on :9799), as `podman run IMAGE
/// --web.listen-address=...` would. No environment either: nothing like
/// HTTP_PROXY leaks in.
fn start_entrypoint(wrap: &[&std::ffi::OsStr], chroot: &Path, root: &Path) -> Proc {
    let entry: Vec<String> =
        serde_json::from_str(&one("ENTRYPOINT")).expect("ENTRYPOINT in exec form");
    assert_eq!(entry[0], "/hfbreaker");
    let port = free_port();
    let mut cmd = Command::new(wrap.first().copied().unwrap_or(chroot.as_os_str()));
    if !wrap.is_empty() {
        cmd.args(&wrap[1..]).arg(chroot);
    }
    cmd.arg(root)
        .args(&entry)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .env_clear();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    Proc::external(&mut cmd, None, addr).expect("the daemon starts")
}

#[tokio::test(flavor = "multi_thread")]
async fn static_binary_runs_and_probes_from_an_empty_root() {
    let (Some(unshare), Some(chroot)) = (
        require_tool("unshare (util-linux)", &["unshare"]),
        require_tool("chroot (coreutils)", &["chroot"]),
    ) else {
        return;
    };
    let root = image_root();
    let sim = testkit::binary!().simulate(SCENARIO);
    let wrap = [
        unshare.as_os_str(),
        "--user".as_ref(),
        "--map-root-user".as_ref(),
    ];
    let mut d = start_entrypoint(&wrap, &chroot, root.path());

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

    // HTTPS with no CA store in the root: the client still builds (the
    // bundled roots) and speaks TLS; the simulator answers in plain HTTP,
    // which rustls reports as such.
    assert!(
        s.val(
            "hfbreaker_probe_failures_total",
            &[("endpoint", "tls"), ("reason", "connect")]
        ) >= 1.0,
        "{}",
        s.hfbreaker_lines()
    );
    let log = d.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("endpoint=tls") && l.contains("InvalidContentType")),
        "a TLS handshake was tried:\n{log}"
    );

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

/// The name the DNS test's server knows.
const SIM_NAME: &str = "sim.hfbreaker.test";

/// Other names than `localhost` go to DNS with the /etc/resolv.conf a
/// container runtime provides, and nothing else from a distribution (no
/// nsswitch.conf, no NSS module, no /etc/hosts). The nameserver must be on
/// port 53, so the test runs itself again in a new network namespace of its
/// own user namespace (unprivileged), where it may bind that port:
/// [`dns_inside_a_network_namespace`] does the work there.
#[test]
fn names_resolve_through_the_runtimes_resolv_conf() {
    let Some(unshare) = require_tool("unshare (util-linux)", &["unshare"]) else {
        return;
    };
    static_binary();
    let me = std::env::current_exe().unwrap();
    let out = Command::new(unshare)
        .args(["--user", "--map-root-user", "--net"])
        .arg(me)
        .args([
            "dns_inside_a_network_namespace",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HFBREAKER_IN_NETNS", "1")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.contains("test result: ok. 1 passed"),
        "in the network namespace:\n{said}"
    );
}

/// Bring the loopback interface of a new network namespace up.
fn loopback_up() {
    // SAFETY: a socket for the ioctls, closed at the end; `req` is a zeroed
    // ifreq that the kernel reads and writes, with a NUL-terminated name.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0, "a socket for ioctl");
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req), 0);
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &req), 0, "lo up");
        libc::close(fd);
    }
}

/// A DNS server on 127.0.0.1:53 (UDP) that knows [`SIM_NAME`] (A: 127.0.0.1,
/// no AAAA) and answers NXDOMAIN for every other name; returns the names asked.
fn start_dns() -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sock = std::net::UdpSocket::bind("127.0.0.1:53").expect("port 53 in our namespace");
    let log = asked.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let q = &buf[..n];
            // The question: labels from byte 12 to a zero, then type and class.
            let (mut at, mut labels) = (12, vec![]);
            while at < n && q[at] != 0 {
                let len = q[at] as usize;
                labels.push(String::from_utf8_lossy(&q[at + 1..at + 1 + len]).to_string());
                at += 1 + len;
            }
            let qend = at + 5;
            let name = labels.join(".");
            let qtype = u16::from_be_bytes([q[at + 1], q[at + 2]]);
            log.lock().unwrap().push(format!("{name} {qtype}"));
            let known = name.eq_ignore_ascii_case(SIM_NAME);
            let a = known && qtype == 1;
            let mut r = vec![q[0], q[1], 0x81, if known { 0x80 } else { 0x83 }];
            r.extend([0, 1, 0, u8::from(a), 0, 0, 0, 0]);
            r.extend(&q[12..qend]);
            if a {
                r.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
            }
            let _ = sock.send_to(&r, from);
        }
    });
    asked
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "runs inside a network namespace, started by names_resolve_through_the_runtimes_resolv_conf"]
async fn dns_inside_a_network_namespace() {
    assert!(
        std::env::var_os("HFBREAKER_IN_NETNS").is_some(),
        "only names_resolve_through_the_runtimes_resolv_conf runs this"
    );
    let chroot = find_tool(&["chroot"]).expect("chroot (the outer test found unshare)");
    loopback_up();
    let asked = start_dns();
    let sim = testkit::binary!().simulate(SCENARIO);
    let root = image_root();
    // What a container runtime adds to the image: only /etc/resolv.conf here.
    std::fs::write(
        root.path().join("etc/resolv.conf"),
        "nameserver 127.0.0.1\n",
    )
    .unwrap();
    let port = sim.port();
    std::fs::write(
        root.path().join("etc/hfbreaker/hfbreaker.yml"),
        format!(
            "global: {{interval: 200ms, timeout: 2s}}
endpoints:
  - {{name: by-dns, kind: tgi, url: 'http://{SIM_NAME}:{port}/tgi', probe: generate}}
  - {{name: unknown, kind: tgi, url: 'http://nowhere.hfbreaker.test:{port}/tgi', probe: generate}}
"
        ),
    )
    .unwrap();
    // Root in this user namespace already: chroot without unshare.
    let mut d = start_entrypoint(&[], &chroot, root.path());
    let s = until(&mut d, "by-dns probed", |s| {
        s.get(
            "hfbreaker_probes_total",
            &[("endpoint", "by-dns"), ("result", "success")],
        )
        .is_some_and(|n| n >= 2.0)
            && s.sum("hfbreaker_probe_failures_total", &[("endpoint", "unknown")]) >= 1.0
    })
    .await;
    assert_eq!(s.state("by-dns"), Some("closed"), "{}", s.hfbreaker_lines());
    assert_eq!(
        s.val(
            "hfbreaker_probe_failures_total",
            &[("endpoint", "unknown"), ("reason", "connect")]
        ),
        s.sum("hfbreaker_probe_failures_total", &[("endpoint", "unknown")]),
        "an unknown name is a connect failure"
    );
    let asked = asked.lock().unwrap().clone();
    assert!(
        asked.iter().any(|q| q == &format!("{SIM_NAME} 1")),
        "the daemon asked the nameserver of /etc/resolv.conf: {asked:?}"
    );
}
