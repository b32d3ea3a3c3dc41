//! TLS for the tracker connection (`wss://`, e.g. a tracker behind an nginx that terminates
//! TLS): which certificates are trusted (the platform's root CAs, plus one extra PEM CA for
//! self-hosted deployments: `--tracker-ca`), and handshake failures told in words a person
//! can act on (not trusted, wrong name, expired, not TLS at all).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_tungstenite::tungstenite;

/// The TLS settings could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the tracker CA file {path}: {source}")]
    ReadCa { path: PathBuf, source: std::io::Error },
    #[error("the tracker CA file {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----): {reason}")]
    NoCert { path: PathBuf, reason: String },
    #[error("the tracker CA file {path} holds a certificate that cannot be a trust anchor: {source}")]
    BadCert { path: PathBuf, source: rustls::Error },
    #[error("no trusted CA certificates: the system has none (install ca-certificates) and no --tracker-ca was given")]
    NoRoots,
    #[error("TLS set-up failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A TLS handshake with the tracker failed in a way that trying again will not fix.
#[derive(Debug, thiserror::Error)]
#[error("TLS with the tracker at {host} failed: {reason}")]
pub struct TlsRefused {
    pub host: String,
    pub reason: String,
}

/// Whether `url` asks for TLS.
pub fn is_wss(url: &str) -> bool {
    url.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("wss://"))
}

/// A client configuration trusting the platform's root CAs and, if given, the PEM
/// certificates in `extra_ca`.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!("platform CA certificates: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "platform CA certificates");
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).map_err(|source| TlsSetupError::ReadCa { path: path.into(), source })?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsSetupError::NoCert { path: path.into(), reason: e.to_string() })?;
        if certs.is_empty() {
            return Err(TlsSetupError::NoCert { path: path.into(), reason: "none found".into() });
        }
        for cert in certs {
            roots.add(cert).map_err(|source| TlsSetupError::BadCert { path: path.into(), source })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The reason of a failed TLS handshake, if `err` is one (`host` is the tracker's).
pub fn explain(err: &tungstenite::Error, host: &str) -> Option<TlsRefused> {
    let rustls_err = match err {
        tungstenite::Error::Io(io) => io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
        tungstenite::Error::Tls(tungstenite::error::TlsError::InvalidDnsName) => {
            let reason = "not a valid host name for TLS".to_string();
            return Some(TlsRefused { host: host.into(), reason });
        }
        tungstenite::Error::Tls(tungstenite::error::TlsError::Rustls(e)) => Some(&**e),
        _ => None,
    }?;
    let hint = "trust its CA with --tracker-ca FILE (PP_TRACKER_CA)";
    let reason = match rustls_err {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                format!("the tracker's certificate is not trusted (issued by an unknown CA); {hint}")
            }
            CertificateError::BadSignature => format!("the tracker's certificate chain has a bad signature; {hint}"),
            CertificateError::NotValidForName => {
                format!("the tracker's certificate is not valid for {}", name_of(host))
            }
            CertificateError::NotValidForNameContext { presented, .. } => {
                let names: Vec<&str> = presented.iter().map(|n| plain_name(n)).collect();
                let names = if names.is_empty() { "no name".to_string() } else { names.join(", ") };
                format!("the tracker's certificate is not valid for {} (it is for {names})", name_of(host))
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the tracker's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the tracker's certificate is not valid yet (is this machine's clock right?)".into()
            }
            other => format!("the tracker's certificate was refused: {other:?}"),
        },
        rustls::Error::InvalidMessage(_) => {
            "the server did not answer with TLS (a ws:// tracker? use ws://, or the TLS port)".into()
        }
        other => other.to_string(),
    };
    Some(TlsRefused { host: host.into(), reason })
}

/// The host name of `host[:port]` (IPv6 in brackets).
fn name_of(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// A name as rustls presents it (`DnsName("a.example")`, `IpAddress(192.0.2.1)`), plain.
fn plain_name(presented: &str) -> &str {
    for (pre, post) in [("DnsName(\"", "\")"), ("IpAddress(", ")")] {
        if let Some(inner) = presented.strip_prefix(pre).and_then(|r| r.strip_suffix(post)) {
            return inner;
        }
    }
    presented
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(client_config(Some(&missing)), Err(TlsSetupError::ReadCa { .. })));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(Some(&empty)).unwrap_err();
        assert!(matches!(err, TlsSetupError::NoCert { .. }), "{err}");
        assert!(err.to_string().contains("empty.pem"), "{err}");
    }

    #[test]
    fn schemes() {
        assert!(is_wss("wss://tracker.example/ws"));
        assert!(is_wss("WSS://tracker.example/ws"));
        assert!(!is_wss("ws://127.0.0.1:8080/ws"));
        assert!(!is_wss("ws"));
    }

    #[test]
    fn names_in_messages_are_plain() {
        assert_eq!(name_of("tracker.example:443"), "tracker.example");
        assert_eq!(name_of("[::1]:8443"), "::1");
        assert_eq!(name_of("localhost"), "localhost");
        assert_eq!(plain_name("DnsName(\"tracker.example\")"), "tracker.example");
        assert_eq!(plain_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(plain_name("something else"), "something else");
    }
}
