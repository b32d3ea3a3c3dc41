//! The edges of the peer's HTTP gateway ([`crate::gateway`]): who may use it and for how long.
//!
//! - **Host and Origin.** A web page must not use the gateway: not through DNS rebinding (a
//!   page on `evil.example` whose name is made to resolve to 127.0.0.1, so the browser sends
//!   `Host: evil.example`), nor cross-site (a page that points `fetch`, `<video>` or `<img>` at
//!   `http://127.0.0.1:PORT`). A request is served only if its `Host` names this machine the
//!   way no foreign page can: an IP address literal (those cannot be rebound), `localhost` or
//!   a `*.localhost` name, or a name given with `--http-host`; and if it carries an `Origin`,
//!   that origin is the gateway itself (same host and port as `Host`), and if it carries
//!   `Sec-Fetch-Site`, that is `same-origin` or `none` (typed or bookmarked by the user).
//!   Anything else gets `403` with a message that says which check failed. Command-line
//!   clients (curl, media players, `pp-peer`) send no `Origin` and are served as before.
//! - **Time and connections.** hyper runs with a timer: a request head must arrive whole
//!   within the header timeout, and an idle kept-alive connection is closed after the same
//!   time. At most [`MAX_CONNS`] connections are open at once; one more is answered `503` and
//!   closed at once.

use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Connections the gateway serves at once.
pub const MAX_CONNS: usize = 256;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error(
        "Host {0:?} is not this gateway: use an IP address, localhost, or a name given with `pp-peer run --http-host NAME`"
    )]
    Host(String),
    #[error("requests from web pages of another origin ({0}) are refused")]
    Origin(String),
    #[error("cross-site requests (Sec-Fetch-Site: {0}) are refused")]
    FetchSite(String),
}

/// Which hosts the gateway answers to, besides IP literals and `localhost`.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    names: Vec<String>,
}

/// The host part of `host[:port]` or `[v6][:port]`, lowercased, without a trailing dot.
fn host_part(authority: &str) -> String {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        a.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(a, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl Guard {
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        Self { names: names.into_iter().map(|n| host_part(&n)).filter(|n| !n.is_empty()).collect() }
    }

    fn host_allowed(&self, host: &str) -> bool {
        host.parse::<IpAddr>().is_ok()
            || host == "localhost"
            || host.ends_with(".localhost")
            || self.names.iter().any(|n| n == host)
    }

    /// Checks a request's headers.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), GuardError> {
        let text = |name| headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string());
        let host = text(header::HOST);
        if let Some(h) = &host {
            if !self.host_allowed(&host_part(h)) {
                return Err(GuardError::Host(h.clone()));
            }
        }
        if let Some(origin) = text(header::ORIGIN) {
            let own = origin
                .strip_prefix("http://")
                .is_some_and(|authority| host.as_deref().is_some_and(|h| authority.eq_ignore_ascii_case(h)));
            if !own {
                return Err(GuardError::Origin(origin));
            }
        }
        match text(header::HeaderName::from_static("sec-fetch-site")).as_deref() {
            None | Some("same-origin" | "none") => Ok(()),
            Some(other) => Err(GuardError::FetchSite(other.to_string())),
        }
    }
}

/// Middleware: `403` for a request [`Guard::check`] refuses.
pub async fn enforce(guard: Arc<Guard>, req: Request, next: Next) -> Response {
    match guard.check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            tracing::debug!("gateway request refused: {e}");
            (StatusCode::FORBIDDEN, format!("{e}\n")).into_response()
        }
    }
}

/// Serves `app` on `listener` for ever (see the module docs for the limits).
pub async fn serve(listener: TcpListener, app: Router, header_timeout: Duration) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNS));
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("gateway accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let body = format!("the gateway has {MAX_CONNS} connections open; try again later\n");
            let msg = format!(
                "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.try_write(msg.as_bytes());
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| service.call(req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::trace!("gateway connection from {addr}: {e}");
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn only_this_machine_and_configured_names() {
        let g = Guard::new(["media.lan".to_string(), "Box.Example:8080".to_string()]);
        for ok in [
            &[("host", "127.0.0.1:8080")][..],
            &[("host", "[::1]:8080")],
            &[("host", "192.168.1.5")],
            &[("host", "localhost:9")],
            &[("host", "app.localhost")],
            &[("host", "MEDIA.lan.:80")],
            &[("host", "box.example")],
            &[],
            &[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080"), ("sec-fetch-site", "same-origin")],
            &[("host", "localhost:8080"), ("sec-fetch-site", "none")],
        ] {
            assert_eq!(g.check(&headers(ok)), Ok(()), "{ok:?}");
        }
        assert!(matches!(g.check(&headers(&[("host", "evil.example:8080")])), Err(GuardError::Host(_))));
        assert!(matches!(g.check(&headers(&[("host", "localhost.evil.example")])), Err(GuardError::Host(_))));
        let foreign = [("host", "127.0.0.1:8080"), ("origin", "http://evil.example")];
        assert!(matches!(g.check(&headers(&foreign)), Err(GuardError::Origin(_))));
        let other_port = [("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:3000")];
        assert!(matches!(g.check(&headers(&other_port)), Err(GuardError::Origin(_))));
        let null = [("host", "127.0.0.1:8080"), ("origin", "null")];
        assert!(matches!(g.check(&headers(&null)), Err(GuardError::Origin(_))));
        let embedded = [("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")];
        assert!(matches!(g.check(&headers(&embedded)), Err(GuardError::FetchSite(_))));
        let e = g.check(&headers(&[("host", "evil.example")])).unwrap_err().to_string();
        assert!(e.contains("--http-host"), "{e}");
    }
}
