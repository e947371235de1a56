//! `hfbreaker demo`: a simulated HF deployment, the daemon probing it, a
//! scripted incident on a loop, the gateway carrying a small steady load
//! through it, and a live terminal view.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::breaker::State;
use crate::config;
use crate::daemon::{AdminAction, Daemon};
use crate::http::api::breaker_views;
use crate::sim::scenario::Scenario;

pub const SCENARIO: &str = include_str!("../examples/demo/scenario.yml");
pub const CONFIG: &str = include_str!("../examples/demo/hfbreaker.yml");
/// Where the shipped demo config expects the simulator.
const CONFIG_SIM_ADDR: &str = "127.0.0.1:8080";
/// The demo's gateway: open, because it listens on loopback only and its
/// endpoints are simulated (no token is spent), so that `curl` works as is.
/// Short timeouts so that requests to a hanging endpoint fail over quickly.
const GATEWAY_CONFIG: &str = "
gateway:
  allow_unauthenticated: true
  first_byte_timeout: 2s
  timeout: 10s
";
/// The demo's load through the gateway: a request every tick (100 ms); a
/// chat every 2 ticks (5/s, every other one streamed), embeddings every 5 (2/s).
const LOAD_TICK: Duration = Duration::from_millis(100);

/// Operator actions the demo plays on top of the simulated incident, so that
/// the forced states appear too: (second of the cycle, endpoint, action, note).
const OPERATOR: [(u64, &str, AdminAction, &str); 4] = [
    (
        34,
        "zephyr-serverless",
        AdminAction::ForceOpen,
        "operator forces zephyr-serverless open for maintenance",
    ),
    (
        36,
        "bge-serverless",
        AdminAction::ForceClosed,
        "operator pins bge-serverless closed",
    ),
    (
        44,
        "zephyr-serverless",
        AdminAction::Reset,
        "operator resets zephyr-serverless",
    ),
    (
        44,
        "bge-serverless",
        AdminAction::Reset,
        "operator resets bge-serverless",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("embedded demo scenario: {0}")]
    Scenario(#[from] crate::sim::scenario::ScenarioError),
    #[error("embedded demo config: {0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot start the simulator: {0}")]
    Sim(std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(String, std::io::Error),
    #[error("cannot start the gateway: {0}")]
    Gateway(#[from] crate::gateway::StartError),
}

/// Run until Ctrl-C or SIGTERM.
pub async fn run(listen: std::net::SocketAddr) -> Result<(), DemoError> {
    let scenario = Scenario::parse(SCENARIO, "examples/demo/scenario.yml")?;
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let sim = scenario
        .start(
            "127.0.0.1:0".parse().expect("static address"),
            Some(notes_tx.clone()),
        )
        .await
        .map_err(DemoError::Sim)?;
    let yaml = CONFIG.replace(CONFIG_SIM_ADDR, &sim.addr().to_string()) + GATEWAY_CONFIG;
    let cfg = config::parse(&yaml, "examples/demo/hfbreaker.yml", &config::ProcessEnv)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| DemoError::Listen(listen.to_string(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| DemoError::Listen(listen.to_string(), e))?;
    // No storage: the demo replays the same incident and writes nothing.
    let daemon = Daemon::new(cfg, None, None);
    daemon.start();
    let started = Instant::now();
    println!(
        "hfbreaker demo: serving on http://{addr}  (status page /, /metrics, /api/v1/status, /api/v1/breakers, /api/v1/routes)"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let gateway = start_gateway(&daemon, stop_rx.clone()).await?;
    println!(
        "gateway (OpenAI-compatible, loopback only, no key) on http://{gateway}/v1  (models: assistant, embeddings; 5 chats/s and 2 embeddings/s of demo traffic)"
    );
    println!(
        "simulated Hugging Face deployment on http://{}  (control API: /_sim/endpoints)",
        sim.addr()
    );
    println!(
        "the incident repeats every {}s; Ctrl-C stops",
        scenario.cycle().as_secs()
    );
    let _ = std::io::stdout().flush();

    let server = tokio::spawn(crate::http::serve(listener, daemon.clone(), {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.changed().await;
        }
    }));
    let operator = tokio::spawn(play_operator(daemon.clone(), scenario.cycle(), notes_tx));
    let load = tokio::spawn(drive_load(gateway));

    let tty = std::io::stdout().is_terminal();
    let mut view = View::new(tty, addr.to_string(), started);
    let mut tick = tokio::time::interval(Duration::from_millis(if tty { 500 } else { 250 }));
    let shutdown = crate::signal::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(note) = notes.recv() => view.event(note),
            _ = tick.tick() => view.refresh(&daemon),
        }
    }
    operator.abort();
    load.abort();
    daemon.stop();
    let _ = stop_tx.send(true);
    let _ = server.await;
    sim.shutdown().await;
    println!("hfbreaker demo: stopped");
    Ok(())
}

/// Serve the gateway on an ephemeral loopback port until `stop` turns true.
async fn start_gateway(
    daemon: &Arc<Daemon>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<std::net::SocketAddr, DemoError> {
    let gateway = crate::gateway::Gateway::new(daemon.clone())?;
    let at = "127.0.0.1:0";
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .map_err(|e| DemoError::Listen(at.to_string(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| DemoError::Listen(at.to_string(), e))?;
    tokio::spawn(crate::gateway::serve(
        listener,
        gateway,
        Default::default(),
        None,
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
    ));
    Ok(addr)
}

/// The steady load: chats to `assistant` (streamed or not) and embeddings,
/// each request on its own task so that a slow answer does not hold the
/// pace. Answers are read to the end and dropped; nothing is printed.
async fn drive_load(gateway: std::net::SocketAddr) {
    // Straight to loopback, whatever proxy the environment names.
    let Ok(client) = reqwest::Client::builder().no_proxy().build() else {
        return;
    };
    let mut tick = tokio::time::interval(LOAD_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tick.tick().await;
        let (path, body) = match n % 10 {
            0 | 4 => (
                "embeddings",
                serde_json::json!({"model": "embeddings", "input": "hello"}),
            ),
            k if k % 2 == 1 => (
                "chat/completions",
                serde_json::json!({
                    "model": "assistant",
                    "messages": [{"role": "user", "content": "Hello!"}],
                    "max_tokens": 16,
                    "stream": k % 4 == 1,
                }),
            ),
            _ => continue,
        };
        let req = client
            .post(format!("http://{gateway}/v1/{path}"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        tokio::spawn(async move {
            if let Ok(r) = req.send().await {
                let _ = r.bytes().await;
            }
        });
    }
}

async fn play_operator(daemon: Arc<Daemon>, cycle: Duration, notes: mpsc::UnboundedSender<String>) {
    let cycle = cycle.max(Duration::from_secs(60));
    let start = tokio::time::Instant::now();
    let mut round = 0u32;
    loop {
        for (at, endpoint, action, note) in OPERATOR {
            let when = start + cycle * round + Duration::from_secs(at);
            tokio::time::sleep_until(when).await;
            if daemon.admin(endpoint, action).is_ok() {
                let _ = notes.send(note.to_string());
            }
        }
        round += 1;
    }
}

/// The live view: a table redrawn in place on a terminal, event lines otherwise.
struct View {
    tty: bool,
    addr: String,
    started: Instant,
    events: Vec<String>,
    last_states: HashMap<String, State>,
    last_routes: HashMap<String, Option<String>>,
}

impl View {
    fn new(tty: bool, addr: String, started: Instant) -> Self {
        View {
            tty,
            addr,
            started,
            events: Vec::new(),
            last_states: HashMap::new(),
            last_routes: HashMap::new(),
        }
    }

    fn stamp(&self) -> String {
        format!("{:>6.1}s", self.started.elapsed().as_secs_f64())
    }

    fn event(&mut self, text: String) {
        let line = format!("{} {text}", self.stamp());
        if !self.tty {
            println!("{line}");
        }
        self.events.push(line);
        if self.events.len() > 8 {
            self.events.remove(0);
        }
    }

    fn refresh(&mut self, d: &Daemon) {
        let breakers = breaker_views(d);
        let routes = d.routes();
        // Why each breaker last tripped, shown on entries into open.
        let trips: HashMap<String, &'static str> = d
            .topology()
            .endpoints
            .iter()
            .filter_map(|ep| Some((ep.name.clone(), ep.lock().counts.last_trip?.as_str())))
            .collect();
        for b in &breakers {
            let prev = self.last_states.insert(b.name.clone(), b.state);
            if let Some(p) = prev.filter(|p| *p != b.state) {
                let reason = match (b.state, trips.get(&b.name)) {
                    (State::Open | State::ForcedOpen, Some(r)) => format!(" ({r})"),
                    _ => String::new(),
                };
                self.event(format!(
                    "{}: {} -> {}{reason}",
                    b.name,
                    p.as_str(),
                    b.state.as_str()
                ));
            }
        }
        for r in &routes {
            let prev = self.last_routes.insert(r.name.clone(), r.serving.clone());
            if let Some(p) = prev.filter(|p| *p != r.serving) {
                self.event(format!(
                    "route {}: {} -> {} ({})",
                    r.name,
                    p.as_deref().unwrap_or("none"),
                    r.serving.as_deref().unwrap_or("none"),
                    r.tier.as_str()
                ));
            }
        }
        if !self.tty {
            return;
        }
        let mut out = String::with_capacity(4096);
        out.push_str("\x1b[H\x1b[2J");
        out.push_str(&format!(
            "hfbreaker demo  http://{}  ({}s)   metrics: /metrics   API: /api/v1/breakers   Ctrl-C stops\n\n",
            self.addr,
            self.started.elapsed().as_secs()
        ));
        out.push_str(&format!(
            "{:<20} {:<22} {:<14} {:<26} {:>9} {:>5}\n",
            "ENDPOINT", "KIND/PROBE", "STATE", "LAST PROBE", "LATENCY", "TRIPS"
        ));
        for b in &breakers {
            let (last, lat) = match &b.last_probe {
                Some(l) => (
                    match l.reason {
                        Some(r) => format!("{} ({r})", l.result),
                        None => l.result.to_string(),
                    },
                    format!("{:.0} ms", l.duration_seconds * 1000.0),
                ),
                None => ("-".into(), "-".into()),
            };
            let color = match b.state {
                State::Closed => "\x1b[32m",
                State::Open | State::ForcedOpen => "\x1b[31m",
                State::HalfOpen => "\x1b[33m",
                State::ForcedClosed => "\x1b[34m",
            };
            out.push_str(&format!(
                "{:<20} {:<22} {color}{:<14}\x1b[0m {:<26} {:>9} {:>5}\n",
                b.name,
                format!("{}/{}", b.kind, b.probe),
                b.state.as_str(),
                last,
                lat,
                b.counts.trips
            ));
        }
        out.push_str(&format!(
            "\n{:<14} {:<42} {:<20} {:<10}\n",
            "ROUTE", "CHAIN", "SERVING", "TIER"
        ));
        for r in &routes {
            out.push_str(&format!(
                "{:<14} {:<42} {:<20} {:<10}\n",
                r.name,
                r.endpoints.join(" > "),
                r.serving.as_deref().unwrap_or("none"),
                r.tier.as_str()
            ));
        }
        out.push_str("\nRecent events:\n");
        for e in &self.events {
            out.push_str("  ");
            out.push_str(e);
            out.push('\n');
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_files_are_valid_and_agree() {
        let s = Scenario::parse(SCENARIO, "scenario").unwrap();
        let cfg = config::parse(CONFIG, "config", &HashMap::<String, String>::new()).unwrap();
        for ep in &cfg.endpoints {
            let prefix = ep
                .url
                .path()
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap();
            assert!(
                s.endpoints.iter().any(|e| e.name == prefix),
                "{} points at a simulated endpoint",
                ep.name
            );
            assert_eq!(ep.url.port(), Some(8080));
        }
        for (_, ep, _, _) in OPERATOR {
            assert!(cfg.endpoints.iter().any(|e| e.name == ep));
        }
        assert_eq!(s.cycle(), Duration::from_secs(60));
        // One brownout, on the endpoint behind the one breaker whose
        // slow-call threshold is learned.
        let brownouts: Vec<&str> = s
            .endpoints
            .iter()
            .filter(|e| {
                e.timeline.iter().any(
                    |st| matches!(&st.mode, crate::sim::Mode::Latency(l) if l.brownout.is_some()),
                )
            })
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(brownouts, ["hf-inference"]);
        let learned: Vec<&str> = cfg
            .endpoints
            .iter()
            .filter(|e| e.breaker.adaptive.is_some())
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(learned, ["bge-serverless"]);
    }
}
