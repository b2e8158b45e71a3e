//! Serving the API with limits a client cannot talk its way past: a request's headers must
//! arrive within a time limit (a slowloris or an idle keep-alive connection is closed when it
//! runs out), and at most so many connections are open at once (more are closed on accept, so
//! idle ones can never use up the process's file descriptors).
//!
//! axum's own `serve` sets no timer, so hyper's header timeout never runs there; this is the
//! same hyper connection builder with the timer and the limits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

/// What a connection may take.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time to send a request's headers, and the longest a keep-alive connection may sit
    /// idle between requests.
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long open requests may finish after shutdown is asked for.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            // Under a typical 1,024-descriptor limit, with room for the store and captures.
            max_connections: 768,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish for
/// the grace period.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // HTTP/1.1 only (agents, the CLI, browsers and the API server's proxy all speak it): a
    // version-sniffing server would wait for the first bytes before any timer runs.
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut warned_full = false;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a reset before accept: not the listener's end.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if !warned_full {
                warn!(
                    limit = limits.max_connections,
                    "connection limit reached: new connections are closed until some end"
                );
                warned_full = true;
            }
            drop(stream);
            continue;
        };
        warned_full = false;
        let service = TowerToHyperService::new(app.clone());
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    info!("stopping: open requests may finish");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            warn!("requests still open after the grace period: closed");
        }
    }
    Ok(())
}
