//! The socket against tungstenite's client over a real loopback connection.

use super::*;
use frame::{OP_CONTINUATION, OP_PING};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message as TMsg;
use tokio_tungstenite::WebSocketStream;

async fn pair(max: usize) -> (Socket, WebSocketStream<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap());
    let (client, accepted) = tokio::join!(client, listener.accept());
    let server = Socket::new(accepted.unwrap().0, &[], max);
    let client = WebSocketStream::from_raw_socket(client.unwrap(), Role::Client, None).await;
    (server, client)
}

#[tokio::test]
async fn messages_both_ways_and_no_buffers_while_idle() {
    let (mut server, mut client) = pair(1 << 20).await;
    client.send(TMsg::text("hello")).await.unwrap();
    client.send(TMsg::binary(vec![7u8; 100_000])).await.unwrap();
    assert_eq!(server.recv().await.unwrap().unwrap(), Message::Text("hello".into()));
    assert_eq!(server.recv().await.unwrap().unwrap(), Message::Binary(vec![7u8; 100_000].into()));
    assert_eq!((server.dec.buf_mut().capacity(), server.wbuf.capacity()), (0, 0));
    server.send(&Message::Text("welcome".into())).await.unwrap();
    server.send(&Message::Binary(vec![1u8; 70_000].into())).await.unwrap();
    assert_eq!(client.next().await.unwrap().unwrap(), TMsg::text("welcome"));
    assert_eq!(client.next().await.unwrap().unwrap(), TMsg::binary(vec![1u8; 70_000]));
    assert_eq!((server.dec.buf_mut().capacity(), server.wbuf.capacity()), (0, 0));
}

#[tokio::test]
async fn fragmented_text_with_a_ping_between() {
    let (mut server, mut client) = pair(1 << 20).await;
    let text = "é".repeat(500);
    let (a, b) = text.as_bytes().split_at(501); // cuts a character in half
    let mut raw = frame::client_frame(false, OP_TEXT, a);
    raw.extend(frame::client_frame(true, OP_PING, &[1, 2, 3]));
    raw.extend(frame::client_frame(true, OP_CONTINUATION, b));
    raw.extend(frame::client_frame(true, OP_TEXT, b"after"));
    for byte in raw.chunks(7) {
        client.get_mut().write_all(byte).await.unwrap(); // in pieces
    }
    assert_eq!(server.recv().await.unwrap().unwrap(), Message::Text(text));
    assert_eq!(client.next().await.unwrap().unwrap(), TMsg::Pong(vec![1, 2, 3].into()));
    assert_eq!(server.recv().await.unwrap().unwrap(), Message::Text("after".into()));
}

#[tokio::test]
async fn continuation_without_a_message_is_refused() {
    let (mut server, mut client) = pair(1 << 20).await;
    client.get_mut().write_all(&frame::client_frame(true, OP_CONTINUATION, b"x")).await.unwrap();
    assert!(matches!(server.recv().await, Some(Err(SocketError::Protocol(_)))));
}

#[tokio::test]
async fn close_handshake_from_the_client() {
    let (mut server, mut client) = pair(1 << 20).await;
    client.close(None).await.unwrap();
    assert!(server.recv().await.is_none());
    assert!(server.recv().await.is_none());
    server.close(1000, "").await.unwrap(); // already answered: no second close frame
    drop(server);
    let close = client.next().await.unwrap().unwrap();
    assert!(matches!(close, TMsg::Close(_)), "{close:?}");
    assert!(client.next().await.is_none());
}

#[tokio::test]
async fn too_large_closes_with_1009() {
    let (mut server, mut client) = pair(100).await;
    client.send(TMsg::binary(vec![0u8; 101])).await.unwrap();
    assert!(matches!(server.recv().await, Some(Err(SocketError::TooLarge))));
    assert!(server.recv().await.is_none());
    match client.next().await.unwrap().unwrap() {
        TMsg::Close(Some(f)) => assert_eq!(f.code, CloseCode::Size),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_utf8_closes_with_1007() {
    let (mut server, mut client) = pair(100).await;
    // A text frame holding 0xFF, written below tungstenite's checks.
    client.get_mut().write_all(&frame::client_frame(true, OP_TEXT, &[0xFF])).await.unwrap();
    assert!(matches!(server.recv().await, Some(Err(SocketError::BadUtf8))));
    match client.next().await.unwrap() {
        Ok(TMsg::Close(Some(f))) => assert_eq!(f.code, CloseCode::Invalid),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn pings_never_read_cannot_grow_the_write_buffer() {
    let (mut server, mut client) = pair(1 << 20).await;
    let mut raw = Vec::new();
    for _ in 0..20_000 {
        raw.extend(frame::client_frame(true, OP_PING, &[7; 125]));
    }
    raw.extend(frame::client_frame(true, OP_TEXT, b"end"));
    let writer = tokio::spawn(async move {
        client.get_mut().write_all(&raw).await.unwrap();
        client // kept open, never read
    });
    assert_eq!(server.recv().await.unwrap().unwrap(), Message::Text("end".into()));
    assert!(server.wbuf.len() - server.wpos <= PONG_BACKLOG + 131, "{} bytes queued", server.wbuf.len());
    drop(writer.await.unwrap());
}
