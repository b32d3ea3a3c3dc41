//! Shutdown signals: Ctrl-C in a terminal (SIGINT) and SIGTERM from a service manager
//! (systemd, a container runtime) both mean "stop cleanly".

/// Waits for SIGINT or SIGTERM; returns the signal's name (for the log).
pub async fn shutdown() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
