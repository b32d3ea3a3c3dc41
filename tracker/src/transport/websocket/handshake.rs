//! The HTTP side of a websocket: checks an upgrade request (RFC 6455, 4.2.1), answers
//! `101 Switching Protocols`, and takes the raw [`TcpStream`] back from hyper once the
//! response is out. Requires the connection to be served by hyper's HTTP/1 server over a
//! `TokioIo<TcpStream>` (as `crate::http::server` does).

use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Why an upgrade request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    #[error("not a websocket upgrade request (Connection: upgrade, Upgrade: websocket)")]
    NotUpgrade,
    #[error("unsupported websocket version (this server speaks 13)")]
    Version,
    #[error("missing Sec-WebSocket-Key")]
    NoKey,
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The `Sec-WebSocket-Accept` answer to a valid upgrade request.
pub fn accept_key(headers: &HeaderMap) -> Result<String, UpgradeError> {
    if !has_token(headers, header::CONNECTION, "upgrade") || !has_token(headers, header::UPGRADE, "websocket") {
        return Err(UpgradeError::NotUpgrade);
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(UpgradeError::Version);
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or(UpgradeError::NoKey)?;
    Ok(derive_accept_key(key.as_bytes()))
}

/// The `101 Switching Protocols` response.
pub fn switching_protocols<B: Default>(accept: &str) -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(accept).expect("base64 is a valid header value"));
    res
}

/// Waits for hyper to hand over the connection; returns the stream and any bytes hyper
/// read past the request.
pub async fn upgraded(on: OnUpgrade) -> Option<(TcpStream, Bytes)> {
    let upgraded = match on.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!("websocket upgrade failed: {e}");
            return None;
        }
    };
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => Some((parts.io.into_inner(), parts.read_buf)),
        Err(_) => {
            tracing::error!("websocket upgrade over an unexpected stream type");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_rfc_example() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        assert_eq!(accept_key(&h), Err(UpgradeError::NoKey));
        h.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(accept_key(&h).as_deref(), Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert_eq!(accept_key(&h), Err(UpgradeError::Version));
        h.remove(header::UPGRADE);
        assert_eq!(accept_key(&h), Err(UpgradeError::NotUpgrade));
    }
}
