//! The real binary's command line: help per command, refusal of flags that do
//! not apply, usage errors with exit 2, and the `--version` line.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_hfbreaker");

fn hfbreaker(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Help goes to stdout with exit 0 and nothing on stderr.
fn help(args: &[&str]) -> String {
    let o = hfbreaker(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    assert!(o.stderr.is_empty(), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

/// A usage error: exit 2, nothing on stdout, clap's message on stderr.
fn usage_error(args: &[&str]) -> String {
    let o = hfbreaker(args);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    assert!(o.stdout.is_empty(), "{args:?}: {}", stdout(&o));
    let err = stderr(&o);
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    err
}

#[test]
fn top_level_help_lists_commands_and_flags() {
    for flag in ["--help", "-h"] {
        let out = help(&[flag]);
        assert!(out.contains("Usage: hfbreaker [OPTIONS]"), "{out}");
        for cmd in [
            "demo ",
            "simulate ",
            "check-config ",
            "Validate config files and exit",
        ] {
            assert!(out.contains(cmd), "{flag}: {cmd} missing in {out}");
        }
        for f in [
            "--config.file <PATH>",
            "--web.listen-address <ADDR>",
            "--web.admin-token-file <PATH>",
            "--log.level <LEVEL>",
            "--log.format <FORMAT>",
            "--version",
            "[default: hfbreaker.yml]",
            "[default: :9799]",
            "[possible values: debug, info, warn, error]",
            "[possible values: logfmt, json]",
        ] {
            assert!(out.contains(f), "{flag}: {f} missing in {out}");
        }
    }
}

#[test]
fn each_command_has_its_own_help() {
    let demo = help(&["demo", "--help"]);
    assert!(demo.contains("Usage: hfbreaker demo [OPTIONS]"), "{demo}");
    assert!(demo.contains("--web.listen-address <ADDR>"), "{demo}");
    assert!(demo.contains("[default: error]"), "{demo}");
    assert!(!demo.contains("--config.file"), "{demo}");
    assert!(!demo.contains("--web.admin-token-file"), "{demo}");

    let sim = help(&["simulate", "--help"]);
    assert!(
        sim.contains("Usage: hfbreaker simulate [OPTIONS] --listen <ADDR>"),
        "{sim}"
    );
    assert!(sim.contains("--scenario <FILE>"), "{sim}");
    assert!(!sim.contains("--web.listen-address"), "{sim}");

    let check = help(&["check-config", "--help"]);
    assert!(
        check.contains("Usage: hfbreaker check-config <FILE>..."),
        "{check}"
    );
    assert!(check.contains("file, line and field"), "{check}");
    assert!(!check.contains("--log.level"), "{check}");

    // `help CMD` is the same text as `CMD --help`.
    assert_eq!(help(&["help", "simulate"]), sim);
}

#[test]
fn a_flag_that_does_not_apply_is_refused_and_named() {
    let cases: &[(&[&str], &str)] = &[
        // Used to run the daemon, silently ignoring the flag.
        (
            &["--listen", "127.0.0.1:0"],
            "unexpected argument '--listen'",
        ),
        (
            &["--config.file=x.yml", "demo"],
            "the subcommand 'demo' cannot be used with '--config.file <PATH>'",
        ),
        (
            &["demo", "--config.file=x.yml"],
            "unexpected argument '--config.file'",
        ),
        (
            &[
                "simulate",
                "--listen=127.0.0.1:0",
                "--web.admin-token-file=t",
            ],
            "unexpected argument '--web.admin-token-file'",
        ),
        (
            &["check-config", "--log.level=debug", "a.yml"],
            "unexpected argument '--log.level'",
        ),
    ];
    for (args, msg) in cases {
        let err = usage_error(args);
        assert!(err.contains(msg), "{args:?}: {err}");
        assert!(err.contains("Usage: hfbreaker"), "{args:?}: {err}");
    }
}

#[test]
fn unknown_command_and_bad_values_exit_2() {
    let err = usage_error(&["frobnicate"]);
    assert!(
        err.contains("unrecognized subcommand 'frobnicate'"),
        "{err}"
    );

    let err = usage_error(&["--log.level=loud"]);
    assert!(
        err.contains("invalid value 'loud' for '--log.level <LEVEL>'")
            && err.contains("[possible values: debug, info, warn, error]"),
        "{err}"
    );
    let err = usage_error(&["demo", "--log.format", "xml"]);
    assert!(
        err.contains("invalid value 'xml' for '--log.format"),
        "{err}"
    );

    let err = usage_error(&["simulate"]);
    assert!(err.contains("--listen <ADDR>"), "{err}");
    let err = usage_error(&["check-config"]);
    assert!(err.contains("<FILE>..."), "{err}");
}

#[test]
fn version_line() {
    let o = hfbreaker(&["--version"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let rest = out
        .strip_prefix(&format!(
            "hfbreaker {} (revision ",
            env!("CARGO_PKG_VERSION")
        ))
        .unwrap_or_else(|| panic!("{out:?}"));
    let rev = rest
        .strip_suffix(")\n")
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(
        !rev.is_empty() && !rev.contains(char::is_whitespace),
        "{out:?}"
    );
}

#[test]
fn check_config_warns_of_a_route_no_endpoint_can_carry() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hfbreaker.yml");
    std::fs::write(
        &file,
        "endpoints:
  - {name: tgi, kind: tgi, url: 'http://127.0.0.1:9/'}
  - {name: status, kind: http, url: 'http://127.0.0.1:9/health'}
  - {name: managed, kind: endpoint-status, namespace: org, endpoint_name: my-endpoint}
routes:
  - {name: served, endpoints: [status, tgi]}
  - {name: watched, endpoints: [status, managed]}
",
    )
    .unwrap();
    let o = hfbreaker(&["check-config", file.to_str().unwrap()]);
    let (out, err) = (stdout(&o), stderr(&o));
    // A warning, not an error: such a route still makes sense for monitoring.
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("valid (3 endpoints, 2 routes)"), "{out}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].starts_with(&format!(
            "{}: warning: routes[1] (watched): ",
            file.display()
        )) && warnings[0].contains("no endpoint can carry gateway traffic"),
        "{err}"
    );
    assert!(!err.contains("served"), "{err}");
}
