//! How a daemon is told to stop: SIGTERM (procd stopping the service) or Ctrl-C.

/// Resolves at the first SIGTERM or SIGINT. Without a SIGTERM handler (it cannot be
/// installed), Ctrl-C alone.
pub async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
