//! Helpers shared by the integration tests: a real tracker on port 0, real websocket clients,
//! and a tiny HTTP/1.1 GET client.
#![allow(dead_code)] // every test binary compiles this module and uses only some of its helpers

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use swarm_core::wire::ErrorCode;
use swarm_core::{ClientMsg, PeerId, PeerKind, ServerMsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Starts the tracker; returns its `ws://` url, its `host:port` and the server task.
pub async fn start_with(
    config: tracker::Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (String, String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(tracker::serve(listener, config, shutdown));
    (format!("ws://{addr}/ws"), addr.to_string(), server)
}

pub async fn start(config: tracker::Config) -> (String, String) {
    let (url, host, _) = start_with(config, std::future::pending()).await;
    (url, host)
}

pub async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

pub async fn send(ws: &mut Ws, msg: &ClientMsg) {
    ws.send(Message::Text(msg.to_json().into())).await.unwrap();
}

/// The next frame (text or binary), or `None` if the connection closed.
pub async fn next_frame(ws: &mut Ws) -> Option<Message> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("answer in time") {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return Some(m),
            Some(Ok(_)) => {}
        }
    }
}

pub async fn recv(ws: &mut Ws) -> ServerMsg {
    match next_frame(ws).await.expect("connection open") {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// The tracker's origin as this socket dialled it (`ws://ip:port`).
pub fn origin(ws: &Ws) -> String {
    match ws.get_ref() {
        MaybeTlsStream::Plain(s) => format!("ws://{}", s.peer_addr().unwrap()),
        _ => panic!("a plain socket"),
    }
}

/// Says hello as the key of `secret`, proves it for this socket's tracker (and `migrate`s), and
/// returns the tracker's answer (`welcome`, or an error).
pub async fn hello_answer(
    ws: &mut Ws,
    secret: &str,
    kind: PeerKind,
    token: Option<String>,
    migrate: Option<String>,
) -> ServerMsg {
    let keys = swarm_core::identity::Keypair::from_secret(secret);
    send(ws, &keys.hello(kind, token)).await;
    let nonce = match recv(ws).await {
        ServerMsg::AuthChallenge { nonce } => nonce,
        other => return other,
    };
    let url = origin(ws);
    send(ws, &keys.proof(&nonce, &url, migrate)).await;
    recv(ws).await
}

pub async fn hello(ws: &mut Ws, secret: &str) -> PeerId {
    match hello_answer(ws, secret, PeerKind::Native, None, None).await {
        ServerMsg::Welcome { peer_id, .. } => peer_id,
        other => panic!("expected welcome, got {other:?}"),
    }
}

pub fn error_code(m: &ServerMsg) -> ErrorCode {
    match m {
        ServerMsg::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

pub fn secret(n: u32) -> String {
    format!("{n:064x}")
}

/// `GET path` over HTTP/1.1; returns the status code and the body.
/// Spawns a tracker binary `cmd` set up by the caller (its arguments include `--listen
/// 127.0.0.1:0`), its stdout piped; returns it with the `host:port` its first line names.
pub fn spawn_listening(cmd: &mut std::process::Command) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().expect("tracker binary runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let host = line.trim().rsplit("http://").next().unwrap().to_string();
    (child, host)
}

/// Sends nothing; reads until `n` search answers came (heartbeats skipped), panicking with
/// `why` and the message on anything else.
pub async fn search_answers(ws: &mut Ws, n: usize, why: &str) {
    let mut answered = 0;
    while answered < n {
        match recv(ws).await {
            ServerMsg::SearchResults { .. } => answered += 1,
            ServerMsg::Heartbeat => {}
            other => panic!("{why}: {other:?}"),
        }
    }
}

pub async fn http_get(host: &str, path: &str) -> (u16, String) {
    let (status, _, body) = http_get_with_head(host, path).await;
    (status, body)
}

/// A GET's status, header block and body.
pub async fn http_get_with_head(host: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(host).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

pub async fn get_json(host: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http_get(host, path).await;
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}")))
}
