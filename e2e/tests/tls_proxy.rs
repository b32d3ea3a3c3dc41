//! A real deployment shape: the tracker behind nginx terminating TLS, as in the README's
//! "Deploying behind TLS". A CA and a server certificate are made at run time (rcgen);
//! native peers join through `wss://` trusting that CA (`--tracker-ca`) and move a file
//! through the swarm; TLS failures give clear errors and exit code 5; and the per-address
//! connection limit counts the client behind the proxy (from `X-Forwarded-For`, the tracker
//! trusting `127.0.0.1/32`), while a direct client's own `X-Forwarded-For` is ignored.
//!
//! Clients take distinct loopback source addresses (127.0.0.2, …) by binding their socket
//! before connecting; all traffic stays on 127.0.0.0/8.

use e2e::{bin, free_port, random_file, NativePeer, Nginx, Tracker};
use futures_util::{SinkExt, StreamExt};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use swarm_core::wire::ErrorCode;
use swarm_core::{PeerKind, ServerMsg};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A test CA and a server certificate for `127.0.0.1` (an IP name only: `localhost` is a
/// name mismatch), as PEM files.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client: Arc<rustls::ClientConfig>,
}

fn make_pki(dir: &Path) -> anyhow::Result<Pki> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Peer Pressure test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()])?;
    params.distinguished_name.push(DnType::CommonName, "tracker behind nginx");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client: {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der().clone())?;
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            Arc::new(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        },
    };
    std::fs::write(&pki.ca, ca.pem())?;
    std::fs::write(&pki.cert, cert.pem())?;
    std::fs::write(&pki.key, key.serialize_pem())?;
    Ok(pki)
}

/// Opens a websocket to `url` from the loopback address `source`, over TLS when `tls` is
/// given, optionally with an `X-Forwarded-For` header of its own.
async fn ws_from(
    source: &str,
    to: SocketAddr,
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    xff: Option<&str>,
) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse()?)?;
    let stream = socket.connect(to).await?;
    let mut req = url.into_client_request()?;
    if let Some(v) = xff {
        req.headers_mut().insert("x-forwarded-for", v.parse()?);
    }
    let connector = tls.map(|c| Connector::Rustls(c.clone()));
    let (ws, _) = tokio_tungstenite::client_async_tls_with_config(req, stream, None, connector).await?;
    Ok(ws)
}

/// Says hello and proves it for the tracker at `url`; returns the tracker's answer (welcome,
/// or the error that refused us).
async fn hello(ws: &mut Ws, n: u32, url: &str) -> anyhow::Result<ServerMsg> {
    let keys = swarm_core::identity::Keypair::from_secret(&format!("{n:064x}"));
    // A refused connection may be closed already: its error is still there to read.
    let _ = ws.send(Message::Text(keys.hello(PeerKind::Native, None).to_json().into())).await;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await? {
            Some(Ok(Message::Text(t))) => match serde_json::from_str(t.as_str())? {
                ServerMsg::AuthChallenge { nonce } => {
                    let _ = ws.send(Message::Text(keys.proof(&nonce, url, None).to_json().into())).await;
                }
                m => return Ok(m),
            },
            Some(Ok(_)) => {}
            other => anyhow::bail!("connection ended without an answer: {other:?}"),
        }
    }
}

fn assert_welcome(m: &ServerMsg, who: &str) {
    assert!(matches!(m, ServerMsg::Welcome { .. }), "{who} should get in, got {m:?}");
}

fn assert_refused_as(m: &ServerMsg, ip: &str, who: &str) {
    match m {
        ServerMsg::Error { code: ErrorCode::LimitReached, message, .. } => {
            assert!(message.contains(&format!("from {ip} ")), "{who}: refused as {ip}? {message}")
        }
        other => panic!("{who} should be refused by the per-address limit, got {other:?}"),
    }
}

/// `pp-peer --tracker URL [extra…] search x` from a fresh data dir: (exit code, stderr).
fn short_lived(tmp: &Path, name: &str, url: &str, extra: &[&str]) -> anyhow::Result<(i32, String)> {
    let out = Command::new(bin("pp-peer"))
        .arg("--tracker")
        .arg(url)
        .arg("--data-dir")
        .arg(tmp.join(name))
        .args(extra)
        .args(["--json", "search", "x"])
        .output()?;
    let (code, err) = (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned());
    println!("pp-peer {name}: exit {code}: {}", err.trim());
    Ok((code, err))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_peers_share_through_a_tls_proxy() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = make_pki(tmp.path())?;
    let ca = pki.ca.to_string_lossy().into_owned();
    // nginx first (on a port the tracker is told: peers sign their hello for it).
    let port = free_port();
    let nginx = Nginx::start("tls-nginx", &tmp.path().join("nginx"), port, &pki.cert, &pki.key)?;
    let url = nginx.wss_url();
    let tracker = Tracker::start_with(
        "tls-tracker",
        None,
        &tmp.path().join("tracker"),
        port,
        &["--trusted-proxy", "127.0.0.1/32", "--public-url", &url],
    )?;

    // Two peers through wss://, one puts a file, the other gets it through the swarm.
    let a = NativePeer::start_with("tls-peer-a", &url, &tmp.path().join("a"), &["--tracker-ca", &ca], &[])?;
    let b = NativePeer::start_with("tls-peer-b", &url, &tmp.path().join("b"), &["--tracker-ca", &ca], &[])?;
    let (path, bytes) = random_file(tmp.path(), "through-tls.bin", 1024 * 1024 + 4321, 7)?;
    let put = a.cli_json(&["put", &path.to_string_lossy()])?;
    let id = put["files"][0]["id"].as_str().expect("file id").to_string();
    let out = tmp.path().join("got.bin");
    let got = b.cli_json(&["get", &id, "-o", &out.to_string_lossy()])?;
    assert_eq!(got["size"], bytes.len());
    assert!(std::fs::read(&out)? == bytes, "the bytes arrived intact");
    let peers = tracker.get_json("/api/peers")?;
    assert!(peers.to_string().contains(&a.peer_id) && peers.to_string().contains(&b.peer_id), "{peers}");

    // TLS failures: clear words, exit code 5 (tracker unreachable), no endless retries.
    let (code, err) = short_lived(tmp.path(), "no-ca", &url, &[])?;
    assert_eq!(code, 5, "untrusted certificate: {err}");
    assert!(err.contains("not trusted") && err.contains("--tracker-ca"), "{err}");
    let wrong_name = url.replace("127.0.0.1", "localhost");
    let (code, err) = short_lived(tmp.path(), "wrong-name", &wrong_name, &["--tracker-ca", &ca])?;
    assert_eq!(code, 5, "name mismatch: {err}");
    assert!(err.contains("not valid for localhost"), "{err}");
    let plain = format!("wss://127.0.0.1:{}/ws", tracker.port);
    let (code, err) = short_lived(tmp.path(), "not-tls", &plain, &["--tracker-ca", &ca])?;
    assert_eq!(code, 5, "no TLS there: {err}");
    assert!(err.contains("did not answer with TLS"), "{err}");
    let (code, err) = short_lived(tmp.path(), "bad-ca", &url, &["--tracker-ca", &path.to_string_lossy()])?;
    assert_eq!(code, 1, "a CA file that is no certificate: {err}");
    assert!(err.contains("no PEM certificate"), "{err}");
    let (code, err) = short_lived(tmp.path(), "with-ca", &url, &["--tracker-ca", &ca])?;
    assert_eq!(code, 0, "a short-lived peer through wss:// works too: {err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_limit_counts_the_client_behind_the_proxy() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = make_pki(tmp.path())?;
    let port = free_port();
    let nginx = Nginx::start("limit-nginx", &tmp.path().join("nginx"), port, &pki.cert, &pki.key)?;
    let tracker = Tracker::start_with(
        "limit-tracker",
        None,
        &tmp.path().join("tracker"),
        port,
        &["--trusted-proxy", "127.0.0.1/32", "--max-conns-per-ip", "1", "--public-url", &nginx.wss_url()],
    )?;
    let proxy: SocketAddr = format!("127.0.0.1:{}", nginx.port).parse()?;
    let direct: SocketAddr = format!("127.0.0.1:{}", tracker.port).parse()?;
    let (wss, ws) = (nginx.wss_url(), tracker.ws_url());
    let tls = Some(&pki.client);

    // Through nginx every connection comes from 127.0.0.1; the tracker counts the client.
    let mut first = ws_from("127.0.0.2", proxy, &wss, tls, None).await?;
    assert_welcome(&hello(&mut first, 1, &wss).await?, "the first client from 127.0.0.2");
    // Same source again, claiming another address: nginx appends the real one, which wins.
    let mut again = ws_from("127.0.0.2", proxy, &wss, tls, Some("127.0.0.3")).await?;
    assert_refused_as(&hello(&mut again, 2, &wss).await?, "127.0.0.2", "a second client from 127.0.0.2");
    let mut other = ws_from("127.0.0.3", proxy, &wss, tls, None).await?;
    assert_welcome(&hello(&mut other, 3, &wss).await?, "a client from 127.0.0.3");

    // Direct, from an address that is no trusted proxy: its own X-Forwarded-For is ignored.
    // It names 127.0.0.2, whose slot is taken, and still gets in, counted as 127.0.0.4 ...
    let mut spoofer = ws_from("127.0.0.4", direct, &ws, None, Some("127.0.0.2")).await?;
    assert_welcome(&hello(&mut spoofer, 4, &ws).await?, "a direct client from 127.0.0.4");
    // ... so that a second one from 127.0.0.4, naming a fresh address, is refused: at accept,
    // before a byte of HTTP is read (a `503`, counted as a per-address refusal).
    let refused = ws_from("127.0.0.4", direct, &ws, None, Some("127.0.0.9")).await;
    let Err(err) = refused else { panic!("a second direct client from 127.0.0.4 is refused") };
    let err = err.to_string();
    assert!(err.contains("503"), "refused at accept: {err}");
    let metrics = tracker.get_text("/metrics")?;
    assert!(metrics.contains("pp_connections_refused_total{reason=\"per_address\"} 1"), "{metrics}");

    // The first client's slot is freed when it goes: 127.0.0.2 gets in again.
    first.close(None).await?;
    drop(first);
    let mut back = None;
    for _ in 0..50 {
        let mut ws = ws_from("127.0.0.2", proxy, &wss, tls, None).await?;
        if matches!(hello(&mut ws, 6, &wss).await?, ServerMsg::Welcome { .. }) {
            back = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back.is_some(), "127.0.0.2 gets its slot back once its connection closed");
    let stats = tracker.get_json("/api/stats")?;
    // The refusal behind the proxy (at the upgrade); the direct one was counted at accept.
    assert!(stats["limit_refusals"].as_u64() >= Some(1), "{stats}");
    Ok(())
}
