//! Graceful shutdown: SIGTERM and SIGINT cancel one token that every task of a service watches.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Returns a token cancelled on the first SIGTERM or SIGINT received by the process.
///
/// Must be called inside a tokio runtime. If the signal handlers cannot be installed (which only
/// happens when the process is out of resources) the error is returned so `main` can fail early
/// instead of running a service that cannot be stopped cleanly.
pub fn on_signals() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            () = cancel.cancelled() => return,
        };
        tracing::info!(signal = which, "shutdown requested");
        cancel.cancel();
    });
    Ok(token)
}
