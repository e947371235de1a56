//! Command line, Prometheus style: `--config.file=...`, `--web.listen-address=:9799`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config;
use crate::daemon::{Daemon, parse_listen_address};
use crate::http::server::{self, DEFAULT_MAX_CONNECTIONS};
use crate::http::web_config::WebConfig;
use crate::http::{AppOptions, ServeOptions};
use crate::logging;
use crate::secret::Secret;
use crate::signal::{reload_on_sighup, shutdown_signal};

pub const DEFAULT_LISTEN: &str = ":9799";

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("HFBREAKER_REVISION"),
    ")"
);

/// Circuit breakers and Prometheus metrics for Hugging Face inference endpoints.
///
/// Without a command, runs the daemon: it loads and validates the config file,
/// probes every endpoint through a circuit breaker and serves /metrics, the API
/// and a landing page. SIGHUP reloads the config; SIGTERM drains and exits 0.
#[derive(Debug, PartialEq, Parser)]
#[command(
    name = "hfbreaker",
    version = VERSION,
    // Only `--version`, as Prometheus: no `-V`.
    disable_version_flag = true,
    // A daemon flag next to a command would be silently ignored: refuse it.
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(flatten)]
    pub flags: Flags,
    /// Print the version and exit
    #[arg(long, action = clap::ArgAction::Version)]
    pub version: (),
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags of the daemon (no command).
#[derive(Debug, PartialEq, Args)]
pub struct Flags {
    /// Config file; re-read on SIGHUP and POST /-/reload
    #[arg(
        long = "config.file",
        value_name = "PATH",
        default_value = "hfbreaker.yml"
    )]
    pub config_file: PathBuf,
    /// How often to look at the config file and the token and key files it names, reloading when they changed (for ConfigMaps and rotated Secrets); 0s: never
    #[arg(long = "config.auto-reload-interval", value_name = "DURATION", default_value = "0s",
          value_parser = parse_reload_interval)]
    pub auto_reload_interval: Duration,
    /// Address for /metrics, the API and the landing page
    #[arg(long = "web.listen-address", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// File with the bearer token for POST /api/v1/breakers/...; without it admin writes are refused
    #[arg(long = "web.admin-token-file", value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,
    /// Directory for breaker state kept across restarts (breakers.json); empty disables it
    #[arg(long = "storage.path", value_name = "PATH", default_value = "data/")]
    pub storage_path: String,
    /// Enable POST /-/reload (without it: 403); SIGHUP always reloads
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,
    /// Web config (exporter-toolkit format): TLS, basic auth, response headers; re-read on change
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,
    /// Most connections held at once (capped at a quarter of the file descriptor limit)
    #[arg(long = "web.max-connections", value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = parse_positive)]
    pub max_connections: usize,
    /// Address of the OpenAI-compatible gateway (POST /v1/chat/completions, /v1/embeddings; GET /v1/models); off without it
    #[arg(long = "gateway.listen-address", value_name = "ADDR")]
    pub gateway_listen: Option<String>,
    /// After SIGTERM, how long in-flight requests may take before connections are dropped
    #[arg(long = "web.shutdown-timeout", value_name = "DURATION", default_value = "5s",
          value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    #[command(flatten)]
    pub log: LogFlags,
}

/// The daemon's tasks beside serving: reloads on SIGHUP and on a changed
/// file (`--config.auto-reload-interval`), and giving memory back.
fn spawn_housekeeping(daemon: &Arc<Daemon>, flags: &Flags) {
    tokio::spawn(reload_on_sighup(daemon.clone()));
    if !flags.auto_reload_interval.is_zero() {
        tokio::spawn(crate::daemon::auto_reload(
            daemon.clone(),
            flags.auto_reload_interval,
        ));
    }
    tokio::spawn(crate::memory::trim_periodically());
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("must be a whole number of at least 1".to_string()),
    }
}

/// 0 (off), or 1 s to 1 h: more often only spends CPU parsing the file;
/// less often leaves an edit unapplied for longer than anyone would wait.
fn parse_reload_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() || (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d) {
        Ok(d)
    } else {
        Err("must be 0s (off) or between 1s and 1h".to_string())
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 5s, 500ms)"))
}

/// `--log.level` and `--log.format` with the daemon's defaults.
#[derive(Debug, PartialEq, Args)]
pub struct LogFlags {
    /// Lowest level logged
    #[arg(
        long = "log.level",
        value_name = "LEVEL",
        value_enum,
        default_value = "info"
    )]
    pub level: LogLevel,
    /// Log line format, on stderr
    #[arg(
        long = "log.format",
        value_name = "FORMAT",
        value_enum,
        default_value = "logfmt"
    )]
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl From<LogLevel> for tracing::Level {
    fn from(l: LogLevel) -> Self {
        match l {
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

impl From<LogFormat> for logging::Format {
    fn from(f: LogFormat) -> Self {
        match f {
            LogFormat::Logfmt => logging::Format::Logfmt,
            LogFormat::Json => logging::Format::Json,
        }
    }
}

#[derive(Debug, PartialEq, Subcommand)]
pub enum Command {
    /// Simulated HF deployment + daemon + scripted incident, with a live view
    ///
    /// Needs no network and no config: starts a simulated Hugging Face
    /// deployment on a free local port, runs the daemon against it with the
    /// demo config and plays a scripted incident on a loop, showing breaker
    /// states live. /metrics, the API and the landing page are served as by
    /// the daemon. Ctrl-C or SIGTERM stops it.
    Demo(DemoFlags),
    /// Run only the HF simulator (default: the demo scenario)
    ///
    /// Serves simulated Hugging Face endpoints under path prefixes
    /// (http://ADDR/{name}/...) and a control API at /_sim/endpoints, for
    /// testing your own Prometheus, Grafana and Alertmanager set-up. Prints
    /// each endpoint's URL; Ctrl-C or SIGTERM stops it.
    Simulate(SimulateFlags),
    /// Validate config files and exit (0 valid, 1 invalid)
    ///
    /// Prints every error with file, line and field; valid files get a
    /// summary line on stdout.
    CheckConfig {
        /// Config files to check
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
}

/// Flags of `hfbreaker demo`.
#[derive(Debug, PartialEq, Args)]
pub struct DemoFlags {
    /// Address for /metrics, the API and the landing page
    #[arg(long = "web.listen-address", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Lowest level logged (the live view owns the terminal, hence `error`)
    #[arg(
        long = "log.level",
        value_name = "LEVEL",
        value_enum,
        default_value = "error"
    )]
    pub log_level: LogLevel,
    /// Log line format, on stderr
    #[arg(
        long = "log.format",
        value_name = "FORMAT",
        value_enum,
        default_value = "logfmt"
    )]
    pub log_format: LogFormat,
}

/// Flags of `hfbreaker simulate`.
#[derive(Debug, PartialEq, Args)]
pub struct SimulateFlags {
    /// Address to serve the simulated endpoints on, e.g. 127.0.0.1:8080
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Scenario file (see examples/scenario.yml); without it, the demo's
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    #[command(flatten)]
    pub log: LogFlags,
}

/// Parse arguments (without the program name). Help and `--version` come back
/// as errors of kind `DisplayHelp` / `DisplayVersion`, as clap reports them.
pub fn parse(args: &[String]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("hfbreaker").chain(args.iter().map(String::as_str)))
}

/// Entry point of the binary; returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    let cli = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with 0, usage errors to stderr with 2.
            let _ = e.print();
            return e.exit_code();
        }
    };
    match cli.command {
        None => run(cli.flags),
        Some(Command::Demo(f)) => demo(f),
        Some(Command::Simulate(f)) => simulate(&f),
        Some(Command::CheckConfig { files }) => check_config(&files),
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

/// Worker threads of the daemon's runtime: `TOKIO_WORKER_THREADS` when
/// set; with the gateway on, one per CPU (tokio's default); a daemon that
/// only probes, half the CPUs, at least one.
///
/// A probe is a small piece of work that mostly waits on a socket. Each
/// extra worker mostly parks and is woken again (a futex and a context
/// switch) for work another worker would have picked up a moment later: on
/// the 2-CPU bench machine one worker instead of two took 10 to 20% off
/// the CPU of a probe, with half the context switches (docs/performance.md,
/// "Probe cost"). The gateway is different: under load, requests arrive on
/// many connections at once, and two workers there relayed about a third
/// more requests/s at a lower CPU cost per request than one
/// (docs/performance.md, "Gateway"). `/metrics` renders and config loads
/// run on tokio's blocking threads, not on these.
fn daemon_workers(gateway: bool) -> usize {
    let env = std::env::var("TOKIO_WORKER_THREADS").ok();
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    workers_for(env.as_deref(), cpus, gateway)
}

fn workers_for(env: Option<&str>, cpus: usize, gateway: bool) -> usize {
    let auto = if gateway { cpus } else { cpus / 2 };
    env.and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(auto.max(1))
}

fn demo(flags: DemoFlags) -> i32 {
    logging::init(flags.log_level.into(), flags.log_format.into());
    let addr = match parse_listen_address(&flags.listen) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    crate::memory::tune_allocator();
    let Some(rt) = runtime() else { return 1 };
    match rt.block_on(async move {
        tokio::spawn(crate::memory::trim_periodically());
        crate::demo::run(addr).await
    }) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hfbreaker demo: {e}");
            1
        }
    }
}

fn simulate(flags: &SimulateFlags) -> i32 {
    use crate::sim::scenario::Scenario;
    logging::init(flags.log.level.into(), flags.log.format.into());
    let parsed = match &flags.scenario {
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
    let addr = match parse_listen_address(&flags.listen) {
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
            Ok(c) => {
                for w in crate::gateway::warnings(&c) {
                    eprintln!("{}: warning: {w}", f.display());
                }
                println!(
                    "{}: valid ({} endpoints, {} routes)",
                    f.display(),
                    c.endpoints.len(),
                    c.routes.len()
                )
            }
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    code
}

fn read_admin_token(path: &Path) -> Result<Secret, String> {
    // Never blocks on a FIFO, never reads more than 64 KiB, never echoes content.
    crate::secret::read_secret_file(path).map_err(|e| format!("admin token file {e}"))
}

/// Listener options from the flags; raises the descriptor limit first, as
/// the connection limit is a share of it.
fn serve_options(flags: &Flags, web: Option<Arc<WebConfig>>) -> ServeOptions {
    let requested = flags.max_connections;
    let max_connections = match server::raise_fd_limit() {
        Ok(l) => {
            let budget = server::connection_budget(requested, l.soft);
            tracing::info!(
                soft_before = l.soft_before,
                soft = l.soft,
                hard = l.hard,
                max_connections = budget,
                "file descriptor limits"
            );
            budget
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the file descriptor limit");
            requested
        }
    };
    if let Some(w) = &web {
        let s = w.current();
        tracing::info!(
            tls = s.tls.is_some(),
            basic_auth_users = s.user_names().count(),
            "web config loaded"
        );
    }
    ServeOptions {
        app: AppOptions {
            enable_lifecycle: flags.enable_lifecycle,
        },
        limits: server::Limits {
            max_connections,
            shutdown_timeout: flags.shutdown_timeout,
            ..server::Limits::default()
        },
        web,
    }
}

fn run(flags: Flags) -> i32 {
    logging::init(flags.log.level.into(), flags.log.format.into());
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
    let gateway_addr = match flags.gateway_listen.as_deref().map(parse_listen_address) {
        Some(Err(e)) => return usage_error(&format!("--gateway.listen-address: {e}")),
        other => other.and_then(Result::ok),
    };
    let web = match flags
        .web_config_file
        .as_deref()
        .map(WebConfig::load)
        .transpose()
    {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{e}");
            tracing::error!("invalid web config; not starting");
            return 1;
        }
    };
    let options = serve_options(&flags, web);
    crate::memory::tune_allocator();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(daemon_workers(gateway_addr.is_some()))
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
        let storage = (!flags.storage_path.is_empty()).then(|| PathBuf::from(&flags.storage_path));
        let daemon =
            Daemon::with_storage(cfg, Some(flags.config_file.clone()), admin_token, storage);
        daemon.start();
        tracing::info!(
            address = %local,
            config = %flags.config_file.display(),
            endpoints = daemon.topology().endpoints.len(),
            routes = daemon.topology().config.routes.len(),
            version = env!("CARGO_PKG_VERSION"),
            "listening"
        );
        spawn_housekeeping(&daemon, &flags);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let gateway = match gateway_addr {
            None => None,
            Some(a) => match start_gateway(a, &daemon, &options, stop_rx).await {
                Ok(g) => Some(g),
                Err(e) => {
                    eprintln!("{e}");
                    tracing::error!("gateway not started; not starting");
                    daemon.stop();
                    return 1;
                }
            },
        };
        let shutdown = async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        };
        let served = crate::http::serve_with(listener, daemon.clone(), options, shutdown).await;
        if let Some(g) = gateway {
            let _ = g.await;
        }
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

fn usage_error(message: &str) -> i32 {
    eprintln!("{message}");
    1
}

/// Bind and start the gateway; it stops when `stop` turns true.
async fn start_gateway(
    addr: std::net::SocketAddr,
    daemon: &Arc<Daemon>,
    options: &ServeOptions,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let gateway = crate::gateway::Gateway::new(daemon.clone()).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (--gateway.listen-address): {e}"))?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(address = %local, "gateway listening");
    let (limits, web) = (options.limits.clone(), options.web.clone());
    Ok(tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = crate::gateway::serve(listener, gateway, limits, web, stopped).await {
            tracing::error!(error = %e, "gateway listener failed");
        }
    }))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    #[test]
    fn daemon_workers_are_half_the_cpus_without_the_gateway() {
        assert_eq!(workers_for(None, 1, false), 1);
        assert_eq!(workers_for(None, 2, false), 1);
        assert_eq!(workers_for(None, 3, false), 1);
        assert_eq!(workers_for(None, 16, false), 8);
        assert_eq!(workers_for(None, 2, true), 2);
        assert_eq!(workers_for(None, 16, true), 16);
        assert_eq!(workers_for(Some("3"), 2, false), 3);
        assert_eq!(workers_for(Some(" 2 "), 16, true), 2);
        assert_eq!(workers_for(Some("0"), 16, false), 8);
        assert_eq!(workers_for(Some("many"), 4, false), 2);
    }

    fn parse_ok(s: &[&str]) -> Cli {
        let args: Vec<String> = s.iter().map(|x| x.to_string()).collect();
        parse(&args).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn parse_err(s: &[&str]) -> clap::Error {
        let args: Vec<String> = s.iter().map(|x| x.to_string()).collect();
        match parse(&args) {
            Ok(c) => panic!("{s:?} parsed as {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_arguments_runs_the_daemon_with_defaults() {
        let cli = parse_ok(&[]);
        assert_eq!(cli.command, None);
        assert_eq!(
            cli.flags,
            Flags {
                config_file: PathBuf::from("hfbreaker.yml"),
                auto_reload_interval: Duration::ZERO,
                listen: ":9799".into(),
                admin_token_file: None,
                storage_path: "data/".into(),
                enable_lifecycle: false,
                web_config_file: None,
                max_connections: 512,
                gateway_listen: None,
                shutdown_timeout: Duration::from_secs(5),
                log: LogFlags {
                    level: LogLevel::Info,
                    format: LogFormat::Logfmt
                },
            }
        );
        // An empty path turns persistence off.
        assert_eq!(parse_ok(&["--storage.path="]).flags.storage_path, "");
        assert_eq!(
            parse_ok(&["--storage.path", "/var/lib/hfb"])
                .flags
                .storage_path,
            "/var/lib/hfb"
        );
    }

    #[test]
    fn web_flags_parse_and_bad_values_are_usage_errors() {
        let f = parse_ok(&[
            "--web.enable-lifecycle",
            "--web.config.file=web.yml",
            "--web.max-connections=64",
            "--web.shutdown-timeout=750ms",
        ])
        .flags;
        assert!(f.enable_lifecycle);
        assert_eq!(f.web_config_file, Some(PathBuf::from("web.yml")));
        assert_eq!(f.max_connections, 64);
        assert_eq!(f.shutdown_timeout, Duration::from_millis(750));
        for bad in [
            "--web.max-connections=0",
            "--web.max-connections=x",
            "--web.shutdown-timeout=soon",
        ] {
            assert_eq!(
                parse_err(&[bad]).kind(),
                ErrorKind::ValueValidation,
                "{bad}"
            );
        }
        let e = parse_err(&["demo", "--web.enable-lifecycle"]);
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
    }

    #[test]
    fn auto_reload_interval_is_off_or_between_a_second_and_an_hour() {
        for (arg, want) in [
            ("0s", Duration::ZERO),
            ("1s", Duration::from_secs(1)),
            ("30s", Duration::from_secs(30)),
            ("1h", Duration::from_secs(3600)),
        ] {
            let f = parse_ok(&[&format!("--config.auto-reload-interval={arg}")]).flags;
            assert_eq!(f.auto_reload_interval, want, "{arg}");
        }
        for bad in ["500ms", "61m", "500000000000y", "soon"] {
            let e = parse_err(&[&format!("--config.auto-reload-interval={bad}")]);
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{bad}");
        }
    }

    #[test]
    fn daemon_flags_take_equals_or_separate_values() {
        let joined = parse_ok(&[
            "--config.file=a.yml",
            "--web.listen-address=127.0.0.1:0",
            "--web.admin-token-file=tok",
            "--log.level=debug",
            "--log.format=json",
        ]);
        let split = parse_ok(&[
            "--config.file",
            "a.yml",
            "--web.listen-address",
            "127.0.0.1:0",
            "--web.admin-token-file",
            "tok",
            "--log.level",
            "debug",
            "--log.format",
            "json",
        ]);
        assert_eq!(joined, split);
        assert_eq!(joined.command, None);
        let f = joined.flags;
        assert_eq!(f.config_file, PathBuf::from("a.yml"));
        assert_eq!(f.listen, "127.0.0.1:0");
        assert_eq!(f.admin_token_file, Some(PathBuf::from("tok")));
        assert_eq!(tracing::Level::from(f.log.level), tracing::Level::DEBUG);
        assert_eq!(logging::Format::from(f.log.format), logging::Format::Json);
    }

    #[test]
    fn log_levels_map_to_tracing() {
        for (name, level) in [
            ("debug", tracing::Level::DEBUG),
            ("info", tracing::Level::INFO),
            ("warn", tracing::Level::WARN),
            ("error", tracing::Level::ERROR),
        ] {
            let cli = parse_ok(&[&format!("--log.level={name}")]);
            assert_eq!(tracing::Level::from(cli.flags.log.level), level);
        }
    }

    #[test]
    fn demo_takes_listen_address_and_log_flags() {
        let cli = parse_ok(&["demo"]);
        assert_eq!(
            cli.command,
            Some(Command::Demo(DemoFlags {
                listen: ":9799".into(),
                log_level: LogLevel::Error,
                log_format: LogFormat::Logfmt,
            }))
        );
        let cli = parse_ok(&[
            "demo",
            "--web.listen-address=127.0.0.1:9800",
            "--log.level",
            "info",
            "--log.format=json",
        ]);
        assert_eq!(
            cli.command,
            Some(Command::Demo(DemoFlags {
                listen: "127.0.0.1:9800".into(),
                log_level: LogLevel::Info,
                log_format: LogFormat::Json,
            }))
        );
    }

    #[test]
    fn simulate_needs_listen_and_takes_a_scenario() {
        let cli = parse_ok(&["simulate", "--listen", "127.0.0.1:8080"]);
        assert_eq!(
            cli.command,
            Some(Command::Simulate(SimulateFlags {
                listen: "127.0.0.1:8080".into(),
                scenario: None,
                log: LogFlags {
                    level: LogLevel::Info,
                    format: LogFormat::Logfmt
                },
            }))
        );
        let cli = parse_ok(&[
            "simulate",
            "--listen=127.0.0.1:0",
            "--scenario",
            "s.yml",
            "--log.level=warn",
        ]);
        let Some(Command::Simulate(f)) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(f.listen, "127.0.0.1:0");
        assert_eq!(f.scenario, Some(PathBuf::from("s.yml")));
        assert_eq!(f.log.level, LogLevel::Warn);

        let e = parse_err(&["simulate", "--scenario=s.yml"]);
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--listen <ADDR>"), "{e}");
    }

    #[test]
    fn check_config_takes_one_or_more_files() {
        let cli = parse_ok(&["check-config", "a.yml", "b.yml"]);
        assert_eq!(
            cli.command,
            Some(Command::CheckConfig {
                files: vec![PathBuf::from("a.yml"), PathBuf::from("b.yml")]
            })
        );
        let e = parse_err(&["check-config"]);
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("<FILE>"), "{e}");
    }

    #[test]
    fn flags_of_another_command_are_refused() {
        // Each: arguments, the flag the message must name, the expected kind.
        let cases: &[(&[&str], &str, ErrorKind)] = &[
            (&["--listen=x"], "--listen", ErrorKind::UnknownArgument),
            (
                &["--scenario", "s.yml"],
                "--scenario",
                ErrorKind::UnknownArgument,
            ),
            (
                &["--config.file=x", "demo"],
                "--config.file",
                ErrorKind::ArgumentConflict,
            ),
            (
                &["--log.level=debug", "check-config", "a.yml"],
                "--log.level",
                ErrorKind::ArgumentConflict,
            ),
            (
                &["demo", "--config.file=x"],
                "--config.file",
                ErrorKind::UnknownArgument,
            ),
            (
                &["demo", "--web.admin-token-file=t"],
                "--web.admin-token-file",
                ErrorKind::UnknownArgument,
            ),
            (
                &["demo", "--listen=x"],
                "--listen",
                ErrorKind::UnknownArgument,
            ),
            (
                &["simulate", "--listen=x", "--web.listen-address=y"],
                "--web.listen-address",
                ErrorKind::UnknownArgument,
            ),
            (
                &["check-config", "--log.format=json", "a.yml"],
                "--log.format",
                ErrorKind::UnknownArgument,
            ),
        ];
        for (args, flag, kind) in cases {
            let e = parse_err(args);
            assert_eq!(e.kind(), *kind, "{args:?}: {e}");
            assert!(e.to_string().contains(flag), "{args:?}: {e}");
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn bad_values_and_unknown_words_are_usage_errors() {
        let e = parse_err(&["--log.level=loud"]);
        assert_eq!(e.kind(), ErrorKind::InvalidValue);
        assert!(e.to_string().contains("'loud'"), "{e}");
        let e = parse_err(&["--log.format=xml"]);
        assert_eq!(e.kind(), ErrorKind::InvalidValue);
        let e = parse_err(&["--nope=1"]);
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        let e = parse_err(&["frobnicate"]);
        assert_eq!(e.kind(), ErrorKind::InvalidSubcommand);
        assert_eq!(e.exit_code(), 2);
        let e = parse_err(&["--config.file"]);
        assert_eq!(e.kind(), ErrorKind::InvalidValue, "{e}");
    }

    #[test]
    fn help_and_version_exit_zero() {
        for args in [
            &["--help"][..],
            &["-h"],
            &["demo", "--help"],
            &["help", "simulate"],
        ] {
            let e = parse_err(args);
            assert_eq!(e.kind(), ErrorKind::DisplayHelp, "{args:?}");
            assert_eq!(e.exit_code(), 0);
        }
        let e = parse_err(&["--version"]);
        assert_eq!(e.kind(), ErrorKind::DisplayVersion);
        assert_eq!(e.exit_code(), 0);
        assert_eq!(
            e.to_string(),
            format!(
                "hfbreaker {} (revision {})\n",
                env!("CARGO_PKG_VERSION"),
                env!("HFBREAKER_REVISION")
            )
        );
        // No `-V`: Prometheus exporters only have `--version`.
        assert_eq!(parse_err(&["-V"]).kind(), ErrorKind::UnknownArgument);
    }
}
