//! Soak: 10,000 endpoints probing 50 simulated servers whose faults change
//! at random every 10 s, a config reload every minute (SIGHUP, thresholds
//! changed) and a scrape every 5 s, for HFBREAKER_SOAK_SECONDS (default
//! 1,800). RSS, open file descriptors, threads and runtime tasks are taken
//! twice under the same conditions, every server healthy and settled (the
//! median of five samples): after a 5-minute warm-up storm of the same
//! kind, and after the long storm; growth over 5% fails the run.
//!
//! `scripts/soak` runs it; `scripts/soak 300` for a short run.

use std::time::{Duration, Instant};

use testkit::Scrape;
use testkit::bench::{curl, guard};
use testkit::procfs::{connections_to, rss_bytes};

const N: usize = 10_000;
const SERVERS: usize = 50;
/// The warm-up storm (then `SETTLE`, then the first measurement).
const WARM_UP: Duration = Duration::from_secs(300);
/// Over twice the probe client's pool idle timeout (30 s, checked every
/// 30 s), so that the extra connections the storm opened are closed again
/// before measuring.
const SETTLE: Duration = Duration::from_secs(120);

fn scenario() -> String {
    let mut y = String::from("endpoints:\n");
    for s in 0..SERVERS {
        y.push_str(&format!("  - {{name: s{s:02}, protocol: tgi}}\n"));
    }
    y
}

/// The config; `variant` changes thresholds (not identities) on reloads.
fn config(sim: &str, variant: usize) -> String {
    let threshold = 3 + variant % 3;
    let mut y = format!(
        "global:\n  interval: 10s\n  timeout: 2s\n  breaker: {{failure_threshold: {threshold}, open_duration: 20s}}\nendpoints:\n"
    );
    for i in 0..N {
        y.push_str(&format!(
            "  - {{name: ep-{i:05}, kind: tgi, probe: health, url: '{sim}/s{:02}'}}\n",
            i % SERVERS
        ));
    }
    y.push_str("routes:\n");
    for i in (0..N).step_by(4) {
        y.push_str(&format!(
            "  - {{name: r-{i:05}, endpoints: [ep-{i:05}, ep-{:05}]}}\n",
            i + 1
        ));
    }
    y
}

#[derive(Clone, Copy, Debug)]
struct Usage {
    rss_mib: f64,
    fds: f64,
    threads: f64,
    tasks: f64,
    /// Pooled and busy connections to the simulator: what the probes in
    /// flight need now, for reading the other rows.
    upstream: f64,
    /// The allocator's heap in use, free in its heaps and mapped apart
    /// (`hfbreaker_allocator_bytes`), MiB: in use growing is a leak, free
    /// growing is fragmentation.
    in_use_mib: f64,
    free_mib: f64,
    mapped_mib: f64,
}

fn usage(pid: u32, metrics: &Scrape, sim_port: u16) -> Usage {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()) as f64;
    Usage {
        rss_mib: rss_bytes(pid) as f64 / 1048576.0,
        fds,
        threads: metrics.val("process_threads", &[]),
        tasks: metrics.val("hfbreaker_runtime_tasks", &[]),
        upstream: connections_to(pid, sim_port) as f64,
        in_use_mib: allocator(metrics, "in_use"),
        free_mib: allocator(metrics, "free"),
        mapped_mib: allocator(metrics, "mapped"),
    }
}

fn allocator(metrics: &Scrape, kind: &str) -> f64 {
    metrics.val("hfbreaker_allocator_bytes", &[("kind", kind)]) / 1048576.0
}

fn set_mode(sim: &str, server: usize, mode: &str) {
    let status = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-X",
            "PUT",
            "-H",
            "content-type: application/json",
        ])
        .args([
            "--data",
            mode,
            &format!("{sim}/_sim/endpoints/s{server:02}/mode"),
        ])
        .status()
        .expect("curl runs");
    assert!(status.success());
}

const FAULTS: [&str; 10] = [
    "\"ok\"",
    "\"ok\"",
    "\"ok\"",
    "\"hang\"",
    "\"reset\"",
    "\"down\"",
    "\"garbage\"",
    "{\"status\": 503}",
    "{\"status\": 429}",
    "\"huge_body\"",
];

#[derive(Default)]
struct Storm {
    reloads: usize,
    scrapes: usize,
    changes: usize,
}

/// Random faults every 10 s, a reload every minute, a scrape every 5 s,
/// for `length`; then every server healthy again and `SETTLE` to let the
/// pool close what the storm opened.
fn storm(sim: &testkit::Proc, d: &testkit::Proc, metrics: &str, length: Duration, n: &mut Storm) {
    let start = Instant::now();
    let mut tick = 0u64;
    while start.elapsed() < length {
        std::thread::sleep(Duration::from_secs(5));
        tick += 1;
        let scrape = Scrape(curl(metrics).0);
        n.scrapes += 1;
        if tick.is_multiple_of(12) {
            // A minute-by-minute trace (cut from scripts/soak's table).
            let u = usage(d.pid(), &scrape, sim.port());
            println!(
                "trace {:>5.0} s: RSS {:.1} MiB, heap in use {:.1}, free {:.1}, mapped {:.1}, upstream {:.0}, tasks {:.0}",
                start.elapsed().as_secs_f64(),
                u.rss_mib,
                u.in_use_mib,
                u.free_mib,
                u.mapped_mib,
                u.upstream,
                u.tasks
            );
        }
        if tick.is_multiple_of(2) {
            for _ in 0..5 {
                let server = fastrand::usize(..SERVERS);
                set_mode(&sim.base(), server, FAULTS[fastrand::usize(..FAULTS.len())]);
                n.changes += 1;
            }
        }
        if tick.is_multiple_of(12) {
            n.reloads += 1;
            std::fs::write(d.config_path(), config(&sim.base(), n.reloads))
                .expect("config written");
            d.signal("HUP");
        }
        assert!(!scrape.0.is_empty(), "/metrics answered");
    }
    for s in 0..SERVERS {
        set_mode(&sim.base(), s, "\"ok\"");
    }
    std::thread::sleep(SETTLE);
}

/// The median of five samples 10 s apart: a single sample catches
/// whatever peak of probes in flight the machine's load made just then.
fn settled_usage(pid: u32, metrics: &str, sim_port: u16) -> (Usage, Scrape) {
    let mut samples = Vec::new();
    let mut last = Scrape(String::new());
    for i in 0..5 {
        if i > 0 {
            std::thread::sleep(Duration::from_secs(10));
        }
        last = Scrape(curl(metrics).0);
        samples.push(usage(pid, &last, sim_port));
    }
    let median = |f: fn(&Usage) -> f64| {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let u = Usage {
        rss_mib: median(|u| u.rss_mib),
        fds: median(|u| u.fds),
        threads: median(|u| u.threads),
        tasks: median(|u| u.tasks),
        upstream: median(|u| u.upstream),
        in_use_mib: median(|u| u.in_use_mib),
        free_mib: median(|u| u.free_mib),
        mapped_mib: median(|u| u.mapped_mib),
    };
    (u, last)
}

fn main() {
    if !guard("soak", "see scripts/soak") {
        return;
    }
    let run = Duration::from_secs(
        std::env::var("HFBREAKER_SOAK_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1800),
    )
    .max(Duration::from_secs(60));
    let bin = testkit::binary!();
    let sim = bin.simulate(&scenario());
    let d = bin.daemon(&config(&sim.base(), 0), &["--log.level=error"], &[]);
    let metrics = format!("{}/metrics", d.base());
    // The warm-up is the same workload, shorter: the first storm takes
    // the allocator and the connection pool to their working size; what
    // the soak looks for is growth after that.
    let mut warm_up = Storm::default();
    storm(&sim, &d, &metrics, WARM_UP, &mut warm_up);
    let (warm, _) = settled_usage(d.pid(), &metrics, sim.port());
    let start = Instant::now();
    let mut n = Storm {
        reloads: warm_up.reloads,
        ..Storm::default()
    };
    storm(&sim, &d, &metrics, run, &mut n);
    let (end, last) = settled_usage(d.pid(), &metrics, sim.port());
    let (changes, reloads, scrapes) = (n.changes, n.reloads - warm_up.reloads, n.scrapes);
    let growth = |a: f64, b: f64| if a > 0.0 { 100.0 * (b - a) / a } else { 0.0 };
    println!(
        "\nSoak: {N} endpoints, {SERVERS} simulated servers, {:.0} s; {changes} fault changes, {reloads} reloads, {scrapes} scrapes",
        start.elapsed().as_secs_f64()
    );
    println!(
        "| what | after a {:.0} s warm-up storm | at the end | growth |",
        WARM_UP.as_secs_f64()
    );
    println!("|---|---|---|---|");
    let rows = [
        ("RSS (MiB)", warm.rss_mib, end.rss_mib),
        ("open file descriptors", warm.fds, end.fds),
        ("threads", warm.threads, end.threads),
        ("runtime tasks", warm.tasks, end.tasks),
    ];
    let mut worst = 0.0f64;
    for (what, a, b) in rows {
        let g = growth(a, b);
        worst = worst.max(g);
        println!("| {what} | {a:.1} | {b:.1} | {g:+.1}% |");
    }
    println!(
        "| upstream connections (not a criterion) | {:.0} | {:.0} | |",
        warm.upstream, end.upstream
    );
    for (what, a, b) in [
        (
            "heap in use (MiB, not a criterion)",
            warm.in_use_mib,
            end.in_use_mib,
        ),
        (
            "heap free (MiB, not a criterion)",
            warm.free_mib,
            end.free_mib,
        ),
        (
            "mapped apart (MiB, not a criterion)",
            warm.mapped_mib,
            end.mapped_mib,
        ),
    ] {
        println!("| {what} | {a:.1} | {b:.1} | {:+.1}% |", growth(a, b));
    }
    let reload_ok = last.val("hfbreaker_config_last_reload_successful", &[]);
    let local = last.sum("hfbreaker_local_errors_total", &[]);
    println!("| last reload successful | | {reload_ok} | |");
    println!("| local errors | | {local} | |");
    assert_eq!(reload_ok, 1.0, "every reload applied");
    assert!(worst < 5.0, "resource growth {worst:.1}% is over 5%");
}
