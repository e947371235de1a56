//! The Debian package and its hardened systemd unit: the `.deb` that
//! `scripts/package` builds is unpacked into a scratch root (`dpkg-deb -x`,
//! nothing is installed on the machine), its files, modes, metadata and
//! maintainer scripts are checked, the unpacked binary runs, and the shipped
//! config passes its `check-config`; `systemd-analyze` verifies the unit and
//! rates its exposure at most 2.0.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::package::{deb_package, is_static_elf};
use testkit::require_tool;

const UNIT: &str = "deploy/systemd/hfbreaker.service";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `cmd`'s output; panics with it when the command fails.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let said = text(&out);
    assert!(out.status.success(), "{cmd:?} failed:\n{said}");
    said
}

/// The package unpacked into a fresh folder (kept as long as the guard).
fn unpacked(dpkg_deb: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(dpkg_deb)
            .arg("-x")
            .arg(deb_package())
            .arg(dir.path()),
    );
    dir
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{} is in the package: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn package_installs_its_files_and_the_binary_runs() {
    let Some(dpkg_deb) = require_tool("dpkg-deb", &["dpkg-deb"]) else {
        return;
    };
    let root = unpacked(&dpkg_deb);
    let r = |p: &str| root.path().join(p);
    for (path, want) in [
        ("usr/bin/hfbreaker", 0o755),
        ("etc/hfbreaker/hfbreaker.yml", 0o644),
        ("etc/default/hfbreaker", 0o644),
        ("usr/lib/systemd/system/hfbreaker.service", 0o644),
        ("usr/share/doc/hfbreaker/README.md", 0o644),
        ("usr/share/doc/hfbreaker/runbooks.md", 0o644),
        ("usr/share/doc/hfbreaker/copyright", 0o644),
    ] {
        assert_eq!(mode(&r(path)), want, "mode of {path}");
    }
    // What is shipped is what is in the repository.
    for (shipped, source) in [
        ("usr/lib/systemd/system/hfbreaker.service", UNIT),
        (
            "etc/hfbreaker/hfbreaker.yml",
            "deploy/systemd/hfbreaker.yml",
        ),
        ("etc/default/hfbreaker", "deploy/systemd/hfbreaker.default"),
    ] {
        assert_eq!(
            std::fs::read(r(shipped)).unwrap(),
            std::fs::read(repo(source)).unwrap(),
            "{shipped} differs from {source}"
        );
    }
    let bin = r("usr/bin/hfbreaker");
    assert!(
        is_static_elf(&bin),
        "the packaged binary is the static build"
    );
    let version = run_ok(Command::new(&bin).arg("--version"));
    assert!(
        version.starts_with(&format!("hfbreaker {VERSION} "))
            || version.contains(&format!(" {VERSION} ")),
        "--version: {version}"
    );
    // The shipped config, checked by the shipped binary.
    let checked = run_ok(
        Command::new(&bin)
            .arg("check-config")
            .arg(r("etc/hfbreaker/hfbreaker.yml")),
    );
    assert!(!checked.contains("error"), "check-config: {checked}");
}

/// The example endpoints commented out in the shipped config are valid once
/// uncommented (with a token file where the credential would be).
#[test]
fn shipped_config_example_is_valid_when_uncommented() {
    let bin = testkit::binary!();
    let shipped = std::fs::read_to_string(repo("deploy/systemd/hfbreaker.yml")).unwrap();
    let (head, example) = shipped
        .split_once("endpoints: []\n")
        .expect("the shipped config has `endpoints: []`");
    let example: String = example
        .lines()
        .filter(|l| l.starts_with("# ") && !l.starts_with("# Replace"))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    assert!(
        example.contains("endpoints:") && example.contains("routes:"),
        "{example}"
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("hf-token");
    std::fs::write(&token, "hf_example\n").unwrap();
    let cred = "/run/credentials/hfbreaker.service/tokens_hf-token";
    assert!(
        example.contains(cred),
        "the example reads the token credential"
    );
    let cfg = format!(
        "{}{}",
        head.replace("allow_empty: true", "allow_empty: false"),
        example
    )
    .replace(cred, &token.display().to_string());
    let file = dir.path().join("hfbreaker.yml");
    std::fs::write(&file, &cfg).unwrap();
    let out = bin
        .command()
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{cfg}\n{}", text(&out));
}

#[test]
fn package_metadata_and_maintainer_scripts() {
    let Some(dpkg_deb) = require_tool("dpkg-deb", &["dpkg-deb"]) else {
        return;
    };
    let deb = deb_package();
    let field = |name: &str| {
        run_ok(Command::new(&dpkg_deb).arg("-f").arg(&deb).arg(name))
            .trim()
            .to_string()
    };
    assert_eq!(field("Package"), "hfbreaker");
    assert_eq!(field("Architecture"), "amd64");
    assert!(
        field("Version").starts_with(&format!("{VERSION}-")),
        "{}",
        field("Version")
    );
    assert!(field("Maintainer").contains('@'), "{}", field("Maintainer"));
    // Static: no shared library to depend on.
    assert_eq!(
        field("Depends"),
        "",
        "a static binary needs no dependencies"
    );

    let info = run_ok(Command::new(&dpkg_deb).arg("-I").arg(&deb));
    for part in ["postinst", "postrm", "prerm", "conffiles"] {
        assert!(info.contains(part), "control member {part} in:\n{info}");
    }
    let control = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(&dpkg_deb)
            .arg("-e")
            .arg(&deb)
            .arg(control.path()),
    );
    let read = |n: &str| std::fs::read_to_string(control.path().join(n)).unwrap();
    let conffiles: Vec<String> = read("conffiles").lines().map(str::to_string).collect();
    for f in ["/etc/hfbreaker/hfbreaker.yml", "/etc/default/hfbreaker"] {
        assert!(
            conffiles.iter().any(|c| c == f),
            "{f} is a conffile: {conffiles:?}"
        );
    }
    let postinst = read("postinst");
    assert!(
        postinst.contains("install -d -m 0700 -o root -g root /etc/hfbreaker/credentials"),
        "postinst creates the credentials folder:\n{postinst}"
    );
    assert!(
        postinst.contains("deb-systemd-helper")
            && postinst.contains("enable")
            && postinst.contains("hfbreaker.service"),
        "postinst enables the unit:\n{postinst}"
    );
    assert!(
        postinst.contains("deb-systemd-invoke") && postinst.contains("start"),
        "postinst starts the unit:\n{postinst}"
    );
    assert!(
        !postinst.contains("#DEBHELPER#"),
        "the placeholder was filled in"
    );
    let postrm = read("postrm");
    assert!(
        postrm.contains("purge") && postrm.contains("/var/lib/private/hfbreaker"),
        "{postrm}"
    );
    for script in ["postinst", "postrm", "prerm"] {
        assert_eq!(
            mode(&control.path().join(script)) & 0o111,
            0o111,
            "{script} is executable"
        );
        let sh = run_ok(
            Command::new("sh")
                .arg("-n")
                .arg(control.path().join(script)),
        );
        assert!(sh.is_empty(), "{script}: {sh}");
    }
}

/// Directives the unit must have, as the issue and the README promise.
#[test]
fn unit_has_the_promised_hardening() {
    let unit = std::fs::read_to_string(repo(UNIT)).unwrap();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for want in [
        "Type=simple",
        "DynamicUser=yes",
        "StateDirectory=hfbreaker",
        "ConfigurationDirectory=hfbreaker",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "NoNewPrivileges=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "SystemCallArchitectures=native",
        "CapabilityBoundingSet=",
        "UMask=0077",
        "LoadCredential=tokens:/etc/hfbreaker/credentials",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
    ] {
        assert!(lines.contains(&want), "{UNIT} lacks `{want}`");
    }
    let exec = lines
        .iter()
        .find(|l| l.starts_with("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.contains("--storage.path=/var/lib/hfbreaker")
            && exec.contains("--config.file=/etc/hfbreaker/hfbreaker.yml"),
        "{exec}"
    );
}

/// The unit with its ExecStart pointed at a real file: `systemd-analyze
/// verify` checks that the command exists, and /usr/bin/hfbreaker is not
/// installed on this machine. Nothing else changes.
fn unit_with_binary(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(repo(UNIT)).unwrap();
    let bin = testkit::binary!();
    assert_eq!(unit.matches("ExecStart=/usr/bin/hfbreaker ").count(), 1);
    let unit = unit.replace(
        "ExecStart=/usr/bin/hfbreaker ",
        &format!("ExecStart={} ", bin.path().display()),
    );
    let path = dir.join("hfbreaker.service");
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Some(sa) = require_tool("systemd-analyze", &["systemd-analyze"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_with_binary(dir.path());
    let out = Command::new(&sa).arg("verify").arg(&unit).output().unwrap();
    let said = text(&out);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );

    // It is not a test that passes whatever the unit says.
    let broken = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("Type=simple", "Type=bogus");
    std::fs::write(&unit, broken).unwrap();
    let out = Command::new(&sa).arg("verify").arg(&unit).output().unwrap();
    assert!(
        text(&out).contains("bogus"),
        "verify reports a bad Type=: {}",
        text(&out)
    );
}

/// The overall exposure `systemd-analyze security --offline=true` gives `unit`.
fn exposure(sa: &Path, unit: &Path) -> (f64, String) {
    let out = Command::new(sa)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .unwrap();
    let said = text(&out);
    let line = said
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{said}"));
    let value = line
        .split(':')
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"));
    (value, said)
}

#[test]
fn systemd_analyze_rates_the_exposure_at_most_2() {
    let Some(sa) = require_tool("systemd-analyze", &["systemd-analyze"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (value, said) = exposure(&sa, &repo(UNIT));
    assert!(value <= 2.0, "exposure {value} > 2.0:\n{said}");
    // The parse reads the real figure: without the sandbox it is far higher.
    let plain = dir.path().join("hfbreaker.service");
    std::fs::write(&plain, "[Service]\nExecStart=/usr/bin/hfbreaker\n").unwrap();
    let (loose, _) = exposure(&sa, &plain);
    assert!(loose > 8.0, "an unhardened unit rates {loose}");
}
