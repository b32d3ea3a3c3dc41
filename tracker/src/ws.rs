//! One task per websocket peer: waits for `hello`, registers the peer, then feeds every
//! message into the swarm and writes the swarm's answers back. Bad input gets an error
//! message; the connection and the tracker live on.

use crate::state::{now_ms, AppState, Counters};
use axum::extract::ws::{Message, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use swarm_core::swarm::{FileRecord, Output};
use swarm_core::wire::{ErrorCode, MAX_MESSAGE_BYTES, PROTOCOL_VERSION};
use swarm_core::{ClientMsg, PeerId, PeerKind, ServerMsg};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Outbound queue per connection; a peer that lets this fill up is disconnected.
const OUTBOX_CAPACITY: usize = 1024;

pub async fn upgrade(ws: WebSocketUpgrade, State(state): State<Arc<AppState>>) -> Response {
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| connection(socket, state))
}

enum Incoming {
    Msg(ClientMsg),
    Bad(String),
    Skip,
    Closed,
}

async fn read(stream: &mut futures_util::stream::SplitStream<WebSocket>, state: &AppState) -> Incoming {
    match stream.next().await {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Incoming::Closed,
        Some(Ok(Message::Text(text))) => {
            Counters::add(&state.counters.ws_messages_in, 1);
            Counters::add(&state.counters.ws_bytes_in, text.len() as u64);
            match serde_json::from_str::<ClientMsg>(text.as_str()) {
                Ok(m) => Incoming::Msg(m),
                Err(e) => Incoming::Bad(format!("not a valid message: {e}")),
            }
        }
        Some(Ok(Message::Binary(b))) => {
            Counters::add(&state.counters.ws_bytes_in, b.len() as u64);
            Incoming::Bad("binary frames are not part of the tracker protocol".into())
        }
        Some(Ok(_)) => Incoming::Skip,
    }
}

async fn connection(socket: WebSocket, state: Arc<AppState>) {
    Counters::add(&state.counters.ws_connections, 1);
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<ServerMsg>(OUTBOX_CAPACITY);
    let writer_state = state.clone();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let json = msg.to_json();
            Counters::add(&writer_state.counters.ws_messages_out, 1);
            Counters::add(&writer_state.counters.ws_bytes_out, json.len() as u64);
            if sink.send(Message::Text(json.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    if let Some((id, serial)) = welcome(&mut stream, &state, &tx).await {
        tracing::info!(peer = %id, "peer joined");
        serve_peer(&mut stream, &state, &tx, &id).await;
        state.lock().disconnect(&id, serial);
        tracing::info!(peer = %id, "peer left");
    }
    drop(tx);
    let _ = writer.await;
}

/// Waits for a valid hello; registers the peer and answers `welcome`.
async fn welcome(
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    state: &AppState,
    tx: &mpsc::Sender<ServerMsg>,
) -> Option<(PeerId, u64)> {
    loop {
        let incoming = timeout(state.config.hello_timeout, read(stream, state)).await.ok()?;
        let err = match incoming {
            Incoming::Closed => return None,
            Incoming::Skip => continue,
            Incoming::Bad(e) => ServerMsg::error(None, ErrorCode::BadMessage, e),
            Incoming::Msg(ClientMsg::Hello { version, kind, secret }) => {
                if version != PROTOCOL_VERSION {
                    let msg =
                        format!("protocol version {version} is not supported; this tracker speaks {PROTOCOL_VERSION}");
                    let _ = tx.send(ServerMsg::error(None, ErrorCode::UnsupportedVersion, msg)).await;
                    return None;
                }
                if !(32..=128).contains(&secret.len()) || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
                    ServerMsg::error(None, ErrorCode::BadSecret, "secret must be 32 to 128 hex digits")
                } else {
                    let id = PeerId::from_secret(&secret);
                    let serial = join(state, &id, kind, tx.clone());
                    let _ = tx.send(ServerMsg::Welcome { version: PROTOCOL_VERSION, peer_id: id.clone() }).await;
                    return Some((id, serial));
                }
            }
            Incoming::Msg(_) => ServerMsg::error(None, ErrorCode::NotWelcomed, "say hello first"),
        };
        if tx.send(err).await.is_err() {
            return None;
        }
    }
}

fn join(state: &AppState, id: &PeerId, kind: PeerKind, tx: mpsc::Sender<ServerMsg>) -> u64 {
    let mut inner = state.lock();
    inner.swarm.join(id.clone(), kind, now_ms());
    inner.connect(id.clone(), tx)
}

async fn serve_peer(
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    state: &AppState,
    tx: &mpsc::Sender<ServerMsg>,
    id: &PeerId,
) {
    let mut shutdown = state.shutdown.subscribe();
    loop {
        let incoming = tokio::select! {
            r = timeout(state.config.idle_timeout, read(stream, state)) => r,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let Ok(incoming) = incoming else {
            tracing::info!(peer = %id, "no heartbeat: dropping peer");
            return;
        };
        match incoming {
            Incoming::Closed => return,
            Incoming::Skip => {}
            Incoming::Bad(e) => {
                if tx.try_send(ServerMsg::error(None, ErrorCode::BadMessage, e)).is_err() {
                    return;
                }
            }
            Incoming::Msg(msg) => {
                let (out, added) = {
                    let mut inner = state.lock();
                    if !inner.connected.get(id).is_some_and(|c| c.outbox.same_channel(tx)) {
                        return; // replaced by a newer connection of the same peer
                    }
                    let out = inner.swarm.handle(id, msg, now_ms());
                    let added: Vec<FileRecord> = out
                        .iter()
                        .filter_map(|o| match o {
                            Output::FileAdded(f) => inner.swarm.file(f).cloned(),
                            _ => None,
                        })
                        .collect();
                    (out, added)
                };
                // A file is durable before its publisher hears it was published.
                if let (Some(index), false) = (&state.index, added.is_empty()) {
                    if let Err(e) = blocking(|| index.insert(&added)) {
                        tracing::error!("cannot store published file: {e}");
                    }
                }
                state.lock().dispatch(out);
            }
        }
        if tx.capacity() == 0 {
            tracing::warn!(peer = %id, "peer does not read its messages: dropping it");
            return;
        }
    }
}

/// Runs short blocking work (a database commit) without stalling other tasks on this worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
