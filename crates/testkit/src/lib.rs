//! Test and benchmark support for hfbreaker, used only by its integration
//! tests and benches (a dev-dependency), so none of it ships in the binary.
//!
//! - [`adaptive`]: the evaluation of learned slow-call thresholds on a simulated clock.
//! - [`Proc`]: the one guard for a child process (killed and reaped on drop,
//!   its output captured), made by the starters:
//!   [`Binary::daemon`], [`Binary::simulate`], [`Binary::demo`] (the real
//!   hfbreaker binary; get one with [`binary!`]), [`start_prometheus`],
//!   [`start_alertmanager`], [`start_blackbox`], [`start_nginx`].
//! - [`TestDaemon`] and [`sim`]: the daemon and the simulator in this process,
//!   for tests that drive them directly.
//! - [`Scrape`]: the one parser of the `/metrics` text.
//! - [`scripted`]: an upstream that records what it received and answers as scripted.
//! - [`Webhook`], [`query`], [`wait_http_ok`]: talking to Prometheus and
//!   Alertmanager.
//! - [`find_tool`], [`require_tool`], [`free_port`]; [`procfs`] and [`bench`](mod@bench)
//!   for the process-level benchmarks.
//! - [`Browser`]: headless Chromium over WebDriver, for the status page.
//! - [`package`]: the static binary and the Debian package of `scripts/package`.

pub mod adaptive;
pub mod bench;
mod binary;
mod inproc;
mod monitoring;
mod nginx;
pub mod package;
mod proc;
pub mod procfs;
mod scrape;
pub mod scripted;
mod tools;
mod webdriver;

pub use binary::Binary;
pub use inproc::{
    FAST_GLOBAL, TestDaemon, client, key_file, scrape_blocking, scrape_url, sim, within,
};
pub use monitoring::{
    Notification, Webhook, query, start_alertmanager, start_blackbox, start_prometheus,
    wait_http_ok,
};
pub use nginx::start_nginx;
pub use proc::Proc;
pub use scrape::{STATES, Sample, Scrape};
pub use tools::{
    find_tool, free_port, promtool_check_metrics, pytest_passed, require_tool, rust_files,
};
pub use webdriver::Browser;

/// The hfbreaker binary built for the calling integration test or bench.
/// `CARGO_BIN_EXE_hfbreaker` exists only while compiling those, so this is
/// a macro: it expands there, not here.
#[macro_export]
macro_rules! binary {
    () => {
        $crate::Binary::new(env!("CARGO_BIN_EXE_hfbreaker"))
    };
}
