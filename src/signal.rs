//! Process signals shared by the daemon, the demo and the simulator. A module
//! of its own so that `demo` does not have to import `cli` (which calls `demo`).

use std::sync::Arc;

use crate::daemon::Daemon;

/// Resolves on SIGTERM or Ctrl-C.
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
            let _ = daemon.reload().await;
        }
    }
    #[cfg(not(unix))]
    let _ = daemon;
}
