//! The HTTP server: accepts connections and serves each with hyper's HTTP/1 server and the
//! axum router, upgrades allowed.
//!
//! Not `axum::serve`: it wraps every stream (to sniff HTTP/2) so that an upgraded
//! connection can only be used through hyper's boxed `Upgraded`; here the websocket
//! handler gets the bare `TcpStream` back (see `crate::transport::websocket::handshake`). Graceful
//! shutdown as in `axum::serve`: stop accepting, let HTTP connections finish their
//! requests, wait for them.
//!
//! Strangers cannot hold connections for free: every connection takes a place in the
//! [`ConnTable`] at accept (over a cap: `503` and closed, see [`crate::net::conns`]), and hyper
//! runs with a timer, so a request head must arrive whole within the header timeout, and a
//! kept-alive connection waiting for its next request is closed after the same time (hyper
//! starts the header timer whenever it waits for a request head: a slowloris client
//! trickling a header, or an idle keep-alive connection, is closed then).

use crate::net::conns::{refusal_response, ConnPermit, ConnTable};
use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the server treats connections.
#[derive(Clone)]
pub struct Options {
    /// Time for a request head to arrive whole, and for an idle kept-alive connection to send
    /// its next request.
    pub header_timeout: Duration,
    pub conns: Arc<ConnTable>,
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for the open HTTP
/// connections (upgraded ones are no longer HTTP connections: their own tasks end them).
pub async fn run(
    listener: TcpListener,
    router: Router,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // Every connection task holds a receiver of each: `stop` tells them to finish, `done`
    // counts them.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let permit = match options.conns.admit(addr.ip()) {
            Ok(p) => p,
            Err(why) => {
                tracing::debug!(%addr, "connection refused: {why}");
                // No wait and no read: what the socket's buffer takes now, then closed.
                let _ = stream.try_write(&refusal_response(&why));
                continue;
            }
        };
        // Signalling is many small frames that each matter now: no Nagle delay (it showed as
        // a ~40 ms p99 in `pp-loadtest` at 2,000 signals/s).
        let _ = stream.set_nodelay(true);
        let conn = connection(stream, addr, permit, router.clone(), options.header_timeout, stop_rx.clone());
        let done = done_rx.clone();
        tokio::spawn(async move {
            conn.await;
            drop(done);
        });
    }
    drop(listener);
    drop(done_rx);
    let _ = stop_tx.send(true);
    done_tx.closed().await;
    Ok(())
}

/// Errors of one connection are that connection's; others (out of file descriptors) pause
/// accepting for a moment rather than spin.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if !matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        tracing::error!("accept failed: {e}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    permit: ConnPermit,
    router: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let router = TowerToHyperService::new(router);
    // The address this connection arrived on: a hello signed for it is this tracker's.
    let local = crate::transport::ws::LocalAddr(stream.local_addr().ok());
    // The permit rides along with each request, so an upgraded websocket keeps its place.
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(addr));
        req.extensions_mut().insert(permit.clone());
        req.extensions_mut().insert(local);
        router.call(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn.with_upgrades());
    let stopping = async {
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::trace!("connection from {addr}: {e}");
    }
}
