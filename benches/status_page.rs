//! The status page's cost to probing: 1,000 endpoints probed every second
//! (1,000 probes/s against the simulator), `/metrics` scraped every 5 s,
//! in alternating phases without and with the page open (its JSON,
//! `/api/v1/status`, fetched as the page does: the current minute every
//! 2 s, the whole hour every 30 s). Compares the
//! daemon's CPU per probe and how late probes start (also in the seconds
//! around the hour polls, against the same seconds of the closed phases),
//! and reports what one poll of the JSON costs.

use std::time::{Duration, Instant};

use testkit::Scrape;
use testkit::bench::{curl, endpoints_config, guard, median};
use testkit::procfs::{cpu_seconds, rss_bytes};

const N: usize = 1_000;
/// Each phase: two of the page's hour polls, 30 s apart.
const PHASE: Duration = Duration::from_secs(60);
/// Alternations of a closed and an open phase (`STATUS_BENCH_ROUNDS` to change).
const ROUNDS: usize = 3;
/// The ticks (seconds into a phase) of the page's hour polls.
const HOUR_TICKS: [u64; 2] = [14, 44];
/// One healthy TGI endpoint `t` to probe.
const TARGET: &str = "endpoints:\n  - {name: t, protocol: tgi}\n";

/// Counters read from one scrape.
#[derive(Clone, Copy, Default)]
struct Counters {
    probes: f64,
    late_count: f64,
    within_10ms: f64,
    within_50ms: f64,
}

fn counters(text: String) -> Counters {
    let s = Scrape(text);
    let late = "hfbreaker_scheduler_lateness_seconds_bucket";
    Counters {
        probes: s.sum("hfbreaker_probes_total", &[]),
        late_count: s.sum("hfbreaker_scheduler_lateness_seconds_count", &[]),
        within_10ms: s.sum(late, &[("le", "0.01")]),
        within_50ms: s.sum(late, &[("le", "0.05")]),
    }
}

/// What one phase measured.
#[derive(Default)]
struct Phase {
    cpu: f64,
    probes: f64,
    late: f64,
    within_10ms: f64,
    within_50ms: f64,
    /// Probes started over 10 ms and over 50 ms late in the 4 s around the
    /// hour polls' ticks (from 1 s before to 3 s after; in a closed phase,
    /// the same ticks without the poll).
    late_10ms_near_hour: f64,
    late_50ms_near_hour: f64,
    polls: Vec<f64>,
    bytes: usize,
}

impl Phase {
    fn add(&mut self, other: Phase) {
        self.cpu += other.cpu;
        self.probes += other.probes;
        self.late += other.late;
        self.within_10ms += other.within_10ms;
        self.within_50ms += other.within_50ms;
        self.late_10ms_near_hour += other.late_10ms_near_hour;
        self.late_50ms_near_hour += other.late_50ms_near_hour;
        self.polls.extend(other.polls);
        self.bytes = self.bytes.max(other.bytes);
    }
}

/// Run one phase: scrape every 5 s, and with `page` poll the JSON every 2 s.
fn phase(pid: u32, base: &str, page: bool) -> Phase {
    let metrics = format!("{base}/metrics");
    // As the page polls: the current minute every 2 s, the hour every 30 s.
    let recent = format!("{base}/api/v1/status?history_minutes=1");
    let hour = format!("{base}/api/v1/status");
    let before = counters(curl(&metrics).0);
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let mut out = Phase::default();
    let mut tick = 0u64;
    let mut near = Counters::default();
    while start.elapsed() < PHASE {
        std::thread::sleep(Duration::from_secs(1));
        tick += 1;
        if HOUR_TICKS.contains(&(tick + 1)) {
            near = counters(curl(&metrics).0);
        }
        if page && tick.is_multiple_of(2) {
            let (body, took) = curl(if HOUR_TICKS.contains(&tick) {
                &hour
            } else {
                &recent
            });
            assert!(body.starts_with("{\"now\""), "{body:.200}");
            out.polls.push(took.as_secs_f64());
            out.bytes = out.bytes.max(body.len());
        }
        if HOUR_TICKS.iter().any(|h| tick == h + 3) {
            let after = counters(curl(&metrics).0);
            let late_10 = |c: &Counters| c.late_count - c.within_10ms;
            let late_50 = |c: &Counters| c.late_count - c.within_50ms;
            out.late_10ms_near_hour += late_10(&after) - late_10(&near);
            out.late_50ms_near_hour += late_50(&after) - late_50(&near);
        }
        if tick.is_multiple_of(5) {
            curl(&metrics);
        }
    }
    let after = counters(curl(&metrics).0);
    out.cpu = cpu_seconds(pid) - cpu0;
    out.probes = after.probes - before.probes;
    out.late = after.late_count - before.late_count;
    out.within_10ms = after.within_10ms - before.within_10ms;
    out.within_50ms = after.within_50ms - before.within_50ms;
    out
}

fn row(what: &str, p: &Phase) -> String {
    format!(
        "| {what} | {:.0} | {:.1} µs | {:.2}% / {:.2}% | {:.0} / {:.0} | {:.0} / {:.0} |",
        p.probes,
        1e6 * p.cpu / p.probes,
        100.0 * p.within_10ms / p.late,
        100.0 * p.within_50ms / p.late,
        p.late - p.within_10ms,
        p.late - p.within_50ms,
        p.late_10ms_near_hour,
        p.late_50ms_near_hour,
    )
}

/// Load average over 1 minute, from /proc/loadavg.
fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// One poll of `minutes` of history when every endpoint has a full hour,
/// in process: 1,000 endpoints with 60 marks and 16 state changes each;
/// (median seconds to build and serialize the document, its size in bytes).
fn full_hour_poll(minutes: usize) -> (f64, usize) {
    use hfbreaker::breaker::State;
    use hfbreaker::history::Outcome;
    let yaml = endpoints_config(N, "http://127.0.0.1:9/", "1s", "");
    let cfg = hfbreaker::config::parse(&yaml, "bench.yml", &hfbreaker::config::ProcessEnv)
        .expect("bench config");
    let d = hfbreaker::daemon::Daemon::new(cfg, None, None);
    let now = std::time::SystemTime::now();
    for ep in &d.topology().endpoints {
        let mut st = ep.lock();
        for s in (0..3600).step_by(2) {
            let at = now - Duration::from_secs(3600 - s);
            let outcome = if s % 300 == 0 {
                Outcome::Failure(hfbreaker::classify::Reason::Timeout)
            } else {
                Outcome::Success
            };
            st.history
                .record(at, outcome, Duration::from_millis(40), State::Closed);
            if s % 200 == 0 {
                st.history.change(at, State::Closed, State::Open, None);
            }
        }
    }
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..15 {
        let start = Instant::now();
        let body = serde_json::to_vec(&hfbreaker::http::status::status_view(&d, minutes)).unwrap();
        times.push(start.elapsed().as_secs_f64());
        bytes = body.len();
    }
    (median(times), bytes)
}

fn main() {
    if !guard("status_page", "see scripts/bench") {
        return;
    }
    let (full_poll, full_bytes) = full_hour_poll(60);
    let (recent_poll, recent_bytes) = full_hour_poll(1);
    let bin = testkit::binary!();
    let target = bin.simulate(TARGET);
    let url = format!("{}/t/health", target.base());
    let d = bin.daemon(
        &endpoints_config(N, &url, "1s", "  timeout: 5s\n"),
        &["--log.level=warn"],
        &[],
    );
    // Let the first round of probes and the schedule settle.
    std::thread::sleep(Duration::from_secs(20));
    let rounds = std::env::var("STATUS_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS);
    let (mut off, mut on) = (Phase::default(), Phase::default());
    let mut loads = Vec::new();
    for _ in 0..rounds {
        off.add(phase(d.pid(), &d.base(), false));
        loads.push(load1());
        on.add(phase(d.pid(), &d.base(), true));
        loads.push(load1());
    }
    let rss = rss_bytes(d.pid()) as f64 / 1048576.0;
    // On-phase CPU beyond what its probes cost at the off-phase rate.
    let extra_cpu = on.cpu - off.cpu / off.probes * on.probes;
    let polls = on.polls.len();
    println!(
        "\nStatus page at 1,000 endpoints, 1 s interval; {rounds} × {} s per phase, alternating; \
         1-minute load average at the phases' ends {:.2} to {:.2} (2 cores)",
        PHASE.as_secs(),
        loads.iter().cloned().fold(f64::INFINITY, f64::min),
        loads.iter().cloned().fold(0.0, f64::max),
    );
    println!(
        "| page | probes | daemon CPU per probe | started within 10 ms / 50 ms | over 10 ms / 50 ms late | of which in the 4 s around an hour poll's tick |"
    );
    println!("|---|---|---|---|---|---|");
    println!("{}", row("closed (/metrics every 5 s)", &off));
    println!("{}", row("open (+ /api/v1/status every 2 s)", &on));
    println!(
        "\n/api/v1/status as the page polls it: at most {:.2} MB, fetched in {:.0} ms median (max {:.0} ms) over {polls} polls; \
         extra daemon CPU with the page open: {:.1} ms per poll; RSS {rss:.0} MiB",
        on.bytes as f64 / 1e6,
        1000.0 * median(on.polls.clone()),
        1000.0 * on.polls.iter().cloned().fold(0.0, f64::max),
        1000.0 * extra_cpu / polls as f64,
    );
    println!(
        "At a full hour of history (60 marks and 16 changes per endpoint, in process), built and \
         serialized (median of 15): the page's 2 s poll (current minute) {:.2} MB in {:.1} ms; \
         its 30 s poll (the hour) {:.2} MB in {:.1} ms",
        recent_bytes as f64 / 1e6,
        1000.0 * recent_poll,
        full_bytes as f64 / 1e6,
        1000.0 * full_poll
    );
}
