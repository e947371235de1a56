//! Process signals shared by the daemon, the demo and the simulator. A module
//! of its own so that `demo` does not have to import `cli` (which calls `demo`).

use std::sync::Arc;

use crate::daemon::Daemon;

/// Exit code when a second SIGTERM or Ctrl-C cuts the drain short.
pub const FORCED_EXIT_CODE: i32 = 1;

/// Resolves on SIGTERM or Ctrl-C. Once it has, handling those signals is
/// ours for good (the default action no longer applies), so a second one
/// exits the process at once: an operator is never left without a way out
/// while connections drain.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            // No handler: the default action of SIGTERM still ends us.
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down (a second signal exits at once)"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down (a second signal exits at once)"),
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(FORCED_EXIT_CODE);
        });
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Reloads the daemon's config on every SIGHUP; runs until the runtime stops.
pub async fn reload_on_sighup(daemon: Arc<Daemon>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading config");
            // In a task of its own: should a reload ever panic, the next
            // SIGHUP is still heard.
            let d = daemon.clone();
            if let Err(e) = tokio::spawn(async move { d.reload().await }).await {
                tracing::error!(error = %e, "config reload task failed");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = daemon;
}
