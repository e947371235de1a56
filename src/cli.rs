//! Command line, Prometheus style: `--config.file=...`, `--web.listen-address=:9799`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config;
use crate::daemon::{Daemon, parse_listen_address};
use crate::logging;
use crate::secret::Secret;

pub const DEFAULT_LISTEN: &str = ":9799";

const USAGE: &str = "\
hfbreaker: circuit breakers and Prometheus metrics for Hugging Face inference endpoints

Usage:
  hfbreaker [flags]                 run the daemon
  hfbreaker demo [flags]            simulated HF deployment + daemon + scripted incident, live view
  hfbreaker simulate --listen ADDR [--scenario FILE]
                                    run only the HF simulator (default: the demo scenario)
  hfbreaker check-config FILE...    validate config files and exit (0 valid, 1 invalid)

Flags:
  --config.file=PATH                config file (default hfbreaker.yml)
  --web.listen-address=ADDR         address for /metrics, the API and the landing page (default :9799)
  --web.admin-token-file=PATH       bearer token for POST /api/v1/breakers/...; without it admin writes are refused
  --log.level=LEVEL                 debug, info, warn or error (default info)
  --log.format=FORMAT               logfmt or json (default logfmt)
  --version                         print the version and exit
  -h, --help                        this help
";

#[derive(Debug, PartialEq)]
pub struct Flags {
    pub config_file: PathBuf,
    pub listen: String,
    pub admin_token_file: Option<PathBuf>,
    pub log_level: tracing::Level,
    pub log_format: logging::Format,
}

#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Flags),
    Demo(Flags),
    Simulate {
        listen: String,
        scenario: Option<PathBuf>,
    },
    CheckConfig(Vec<PathBuf>),
    Help,
    Version,
}

/// Parse arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut flags = Flags {
        config_file: PathBuf::from("hfbreaker.yml"),
        listen: DEFAULT_LISTEN.to_string(),
        admin_token_file: None,
        log_level: tracing::Level::INFO,
        log_format: logging::Format::Logfmt,
    };
    let mut positional = Vec::new();
    let mut sim_listen = None;
    let mut scenario = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        if arg == "--version" {
            return Ok(Command::Version);
        }
        let Some(flag) = arg.strip_prefix("--") else {
            positional.push(arg.clone());
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                let v = it
                    .next()
                    .ok_or_else(|| format!("flag --{flag} needs a value"))?;
                (flag.to_string(), v.clone())
            }
        };
        match name.as_str() {
            "config.file" => flags.config_file = PathBuf::from(value),
            "web.listen-address" => flags.listen = value,
            "web.admin-token-file" => flags.admin_token_file = Some(PathBuf::from(value)),
            "listen" => sim_listen = Some(value),
            "scenario" => scenario = Some(PathBuf::from(value)),
            "log.level" => {
                flags.log_level = match value.as_str() {
                    "debug" => tracing::Level::DEBUG,
                    "info" => tracing::Level::INFO,
                    "warn" => tracing::Level::WARN,
                    "error" => tracing::Level::ERROR,
                    _ => {
                        return Err(format!(
                            "--log.level must be debug, info, warn or error, not {value:?}"
                        ));
                    }
                }
            }
            "log.format" => {
                flags.log_format = match value.as_str() {
                    "logfmt" => logging::Format::Logfmt,
                    "json" => logging::Format::Json,
                    _ => {
                        return Err(format!(
                            "--log.format must be logfmt or json, not {value:?}"
                        ));
                    }
                }
            }
            _ => return Err(format!("unknown flag --{name}")),
        }
    }
    let cmd = positional.first().map(String::as_str);
    if cmd != Some("simulate") && (sim_listen.is_some() || scenario.is_some()) {
        return Err("--listen and --scenario belong to the simulate command".to_string());
    }
    match cmd {
        None => Ok(Command::Run(flags)),
        Some("demo") if positional.len() == 1 => Ok(Command::Demo(flags)),
        Some("simulate") if positional.len() == 1 => Ok(Command::Simulate {
            listen: sim_listen
                .ok_or("simulate needs --listen ADDR, e.g. --listen 127.0.0.1:8080")?,
            scenario,
        }),
        Some("check-config") if positional.len() > 1 => Ok(Command::CheckConfig(
            positional[1..].iter().map(PathBuf::from).collect(),
        )),
        Some("check-config") => Err("check-config needs a FILE".to_string()),
        Some(other) => Err(format!("unknown command {other:?}")),
    }
}

/// Entry point of the binary; returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    let cmd = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hfbreaker: {e}\n\n{USAGE}");
            return 2;
        }
    };
    match cmd {
        Command::Help => {
            print!("{USAGE}");
            0
        }
        Command::Version => {
            println!(
                "hfbreaker {} (revision {})",
                env!("CARGO_PKG_VERSION"),
                env!("HFBREAKER_REVISION")
            );
            0
        }
        Command::CheckConfig(files) => check_config(&files),
        Command::Run(flags) => run(flags),
        Command::Demo(flags) => demo(flags),
        Command::Simulate { listen, scenario } => simulate(&listen, scenario.as_deref()),
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            None
        }
    }
}

fn demo(flags: Flags) -> i32 {
    // The live view owns the terminal: only errors are logged unless asked.
    let level = if flags.log_level == tracing::Level::INFO {
        tracing::Level::ERROR
    } else {
        flags.log_level
    };
    logging::init(level, flags.log_format);
    let addr = match parse_listen_address(&flags.listen) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let Some(rt) = runtime() else { return 1 };
    match rt.block_on(crate::demo::run(addr)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hfbreaker demo: {e}");
            1
        }
    }
}

fn simulate(listen: &str, scenario: Option<&Path>) -> i32 {
    use crate::sim::scenario::Scenario;
    logging::init(tracing::Level::INFO, logging::Format::Logfmt);
    let parsed = match scenario {
        Some(p) => Scenario::load(p),
        None => Scenario::parse(crate::demo::SCENARIO, "examples/demo/scenario.yml"),
    };
    let scenario = match parsed {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let addr = match parse_listen_address(listen) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let Some(rt) = runtime() else { return 1 };
    rt.block_on(async move {
        let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
        let sim = match scenario.start(addr, Some(tx)).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot listen on {addr}: {e}");
                return 1;
            }
        };
        println!(
            "hfbreaker simulate: {} endpoints on http://{}",
            scenario.endpoints.len(),
            sim.addr()
        );
        for e in &scenario.endpoints {
            println!(
                "  {:<20} {:<14} {}",
                e.name,
                format!("{:?}", e.protocol).to_lowercase(),
                sim.url(&e.name)
            );
        }
        println!("  control API: http://{}/_sim/endpoints", sim.addr());
        let stop = shutdown_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                Some(n) = notes.recv() => tracing::info!(step = %n, "scenario"),
            }
        }
        sim.shutdown().await;
        0
    })
}

fn check_config(files: &[PathBuf]) -> i32 {
    let mut code = 0;
    for f in files {
        match config::load(f) {
            Ok(c) => println!(
                "{}: valid ({} endpoints, {} routes)",
                f.display(),
                c.endpoints.len(),
                c.routes.len()
            ),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    code
}

fn read_admin_token(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: cannot read admin token file: {}",
            path.display(),
            e.kind()
        )
    })?;
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("{}: admin token file is empty", path.display()));
    }
    Ok(Secret::new(t))
}

fn run(flags: Flags) -> i32 {
    logging::init(flags.log_level, flags.log_format);
    // Everything is validated before a port is bound.
    let cfg = match config::load(&flags.config_file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            tracing::error!("invalid configuration; not starting");
            return 1;
        }
    };
    let admin_token = match flags
        .admin_token_file
        .as_deref()
        .map(read_admin_token)
        .transpose()
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let addr = match parse_listen_address(&flags.listen) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {addr}: {e}");
                return 1;
            }
        };
        let local = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let daemon = Daemon::new(cfg, Some(flags.config_file.clone()), admin_token);
        daemon.start();
        tracing::info!(
            address = %local,
            config = %flags.config_file.display(),
            endpoints = daemon.topology().endpoints.len(),
            routes = daemon.topology().config.routes.len(),
            version = env!("CARGO_PKG_VERSION"),
            "listening"
        );
        tokio::spawn(reload_on_sighup(daemon.clone()));
        let served = crate::http::serve(listener, daemon.clone(), shutdown_signal()).await;
        daemon.stop();
        match served {
            Ok(()) => {
                tracing::info!("stopped");
                0
            }
            Err(e) => {
                tracing::error!(error = %e, "server failed");
                1
            }
        }
    })
}

async fn reload_on_sighup(daemon: Arc<Daemon>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading config");
            let _ = daemon.reload().await;
        }
    }
    #[cfg(not(unix))]
    let _ = daemon;
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_prometheus_style_flags() {
        let Command::Run(f) = parse(&args(&[
            "--config.file=a.yml",
            "--web.listen-address",
            "127.0.0.1:0",
            "--log.format=json",
        ]))
        .unwrap() else {
            panic!()
        };
        assert_eq!(f.config_file, PathBuf::from("a.yml"));
        assert_eq!(f.listen, "127.0.0.1:0");
        assert_eq!(f.log_format, logging::Format::Json);
        let Command::Run(f) = parse(&[]).unwrap() else {
            panic!()
        };
        assert_eq!(f.listen, ":9799");
        assert_eq!(
            parse(&args(&["check-config", "x.yml"])).unwrap(),
            Command::CheckConfig(vec![PathBuf::from("x.yml")])
        );
        assert!(parse(&args(&["--nope=1"])).is_err());
        assert!(parse(&args(&["--log.level=loud"])).is_err());
        assert!(parse(&args(&["check-config"])).is_err());
        assert_eq!(
            parse(&args(&["simulate", "--listen", "127.0.0.1:8080"])).unwrap(),
            Command::Simulate {
                listen: "127.0.0.1:8080".into(),
                scenario: None
            }
        );
        assert!(parse(&args(&["simulate"])).is_err());
        assert!(parse(&args(&["--listen=1"])).is_err());
        assert!(matches!(
            parse(&args(&["demo", "--web.listen-address=127.0.0.1:0"])).unwrap(),
            Command::Demo(_)
        ));
    }
}
