//! Shutdown on SIGTERM or SIGINT, shared by the long-running subcommands.

use tracing::info;

/// Completes on the first SIGTERM or SIGINT. Without signal handlers it never completes (the
/// default action of SIGTERM still stops the process).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
    }
}
