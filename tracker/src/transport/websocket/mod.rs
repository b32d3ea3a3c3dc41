//! A lean server-side websocket over a [`TcpStream`], for the tracker's tens of thousands of
//! mostly idle peers.
//!
//! A general websocket library keeps a read buffer per connection (tungstenite: its whole
//! configured size, zero-filled, for as long as the connection lives) and, through tokio
//! adapters, wakers and boxed I/O on top. Here a connection is the stream, two byte vectors
//! that hold memory only while bytes are in flight (they are freed as soon as they are
//! drained), and a few flags: an idle peer costs about 120 bytes of socket state.
//!
//! Handles what RFC 6455 asks of a server without extensions: masked client frames,
//! fragmented messages, ping (answered), pong, the close handshake, UTF-8 text, and a size
//! limit per message. The HTTP upgrade is [`handshake`]'s.
//!
//! Hand-written, so it faces strangers with tests of its own: the reading side is a sans-IO
//! `decode::Decoder` that property tests feed arbitrary byte streams cut at arbitrary points
//! (no panic; unparsed bytes never above the message limit plus one frame header; an error,
//! never a wait with no room to read; close codes 1002, 1007, 1009 as RFC 6455 asks), and a
//! client that pings without reading gets no pongs beyond a bounded backlog. The tracker lowers
//! the message limit until a peer is welcomed (see `crate::transport::ws`).

mod decode;
mod frame;
pub mod handshake;

use bytes::{BufMut, Bytes};
use decode::{Decoded, Decoder};
use frame::{OP_BINARY, OP_CLOSE, OP_PONG, OP_TEXT};
use std::future::poll_fn;
use std::io;
use std::task::{ready, Context, Poll};
use tokio::net::TcpStream;

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 4096;
/// Unwritten bytes beyond which pings get no pong (RFC 6455, 5.5.3 lets an endpoint answer
/// only the latest ping): a client that sends pings and reads nothing cannot grow the
/// write buffer.
const PONG_BACKLOG: usize = 64 * 1024;

/// A complete message from or to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Bytes),
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("message over the size limit")]
    TooLarge,
    #[error("text message is not UTF-8")]
    BadUtf8,
    #[error("websocket i/o: {0}")]
    Io(#[from] io::Error),
}

impl SocketError {
    /// Close code that tells the peer why (RFC 6455, 7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            SocketError::Protocol(_) | SocketError::Io(_) => 1002,
            SocketError::TooLarge => 1009,
            SocketError::BadUtf8 => 1007,
        }
    }
}

/// One websocket connection (after the upgrade).
pub struct Socket {
    io: TcpStream,
    /// Received bytes not parsed yet, and a fragmented message being put together.
    dec: Decoder,
    /// Bytes to send; `wbuf[wpos..]` is not written yet. Unallocated once drained.
    wbuf: Vec<u8>,
    wpos: usize,
    close_sent: bool,
    /// The peer closed (close frame or end of stream) or broke the protocol.
    done: bool,
}

impl Socket {
    /// A socket over an upgraded stream; `read` holds bytes already read past the HTTP
    /// request. Messages over `max_message` bytes close the connection.
    pub fn new(io: TcpStream, read: &[u8], max_message: usize) -> Self {
        Self {
            io,
            dec: Decoder::new(read.to_vec(), max_message),
            wbuf: Vec::new(),
            wpos: 0,
            close_sent: false,
            done: false,
        }
    }

    /// Changes the size limit of the messages to come (e.g. once a peer is welcomed).
    pub fn set_max_message(&mut self, max_message: usize) {
        self.dec.set_max_message(max_message);
    }

    /// The next message: `None` once the peer closed; an error ends the connection (the
    /// peer is told why with a close frame).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, SocketError>>> {
        if self.wpos < self.wbuf.len() {
            // Pongs and close replies go out without waiting for a write of our own; a
            // failure shows up on the read side too.
            let _ = self.poll_flush(cx);
        }
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match self.next_message() {
                Ok(Some(msg)) => {
                    if self.wpos < self.wbuf.len() {
                        let _ = self.poll_flush(cx); // a pong read along with the message
                    }
                    return Poll::Ready(Some(Ok(msg)));
                }
                Ok(None) if self.done => continue,
                Ok(None) => {}
                Err(e) => return Poll::Ready(Some(Err(self.fail(cx, e)))),
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => self.done = true,
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(self.fail(cx, e.into())))),
            }
        }
    }

    /// Waits for the next message (see [`Socket::poll_recv`]).
    pub async fn recv(&mut self) -> Option<Result<Message, SocketError>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The connection is broken: tell the peer why (best effort) and stop reading.
    fn fail(&mut self, cx: &mut Context<'_>, e: SocketError) -> SocketError {
        self.done = true;
        self.dec.clear();
        if !matches!(e, SocketError::Io(_)) {
            self.queue_close(e.close_code(), &e.to_string());
            let _ = self.poll_flush(cx);
        }
        e
    }

    /// Parses buffered frames until one completes a message; answers control frames.
    fn next_message(&mut self) -> Result<Option<Message>, SocketError> {
        loop {
            match self.dec.next()? {
                None => return Ok(None),
                Some(Decoded::Message(m)) => return Ok(Some(m)),
                Some(Decoded::Ping(body)) => {
                    if !self.close_sent && self.wbuf.len() - self.wpos <= PONG_BACKLOG {
                        frame::encode(&mut self.wbuf, OP_PONG, &body);
                    }
                }
                Some(Decoded::Close(code)) => {
                    self.done = true;
                    self.queue_close(code, "");
                    return Ok(None);
                }
            }
        }
    }

    /// Reads what the kernel has (at least one byte, or 0 at end of stream).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.dec.compact();
        loop {
            ready!(self.io.poll_read_ready(cx))?;
            // Room only once there is something to read: a waiting peer holds no buffer. Never
            // more than one largest frame is buffered (see `Decoder::room`).
            let room = self.dec.room();
            let rbuf = self.dec.buf_mut();
            if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
                rbuf.reserve(READ_CHUNK.min(room));
            }
            match self.io.try_read_buf(&mut rbuf.limit(room)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if rbuf.is_empty() {
                        *rbuf = Vec::new();
                    }
                }
                r => return Poll::Ready(r),
            }
        }
    }

    /// Queues a message; [`Socket::flush`] sends it.
    pub fn feed(&mut self, msg: &Message) {
        match msg {
            Message::Text(t) => frame::encode(&mut self.wbuf, OP_TEXT, t.as_bytes()),
            Message::Binary(b) => frame::encode(&mut self.wbuf, OP_BINARY, b),
        }
    }

    fn queue_close(&mut self, code: u16, reason: &str) {
        if !self.close_sent {
            self.close_sent = true;
            frame::encode(&mut self.wbuf, OP_CLOSE, &frame::close_payload(code, reason));
        }
    }

    /// Writes what is queued.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wbuf.len() {
            ready!(self.io.poll_write_ready(cx))?;
            match self.io.try_write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.wbuf = Vec::new(); // nothing in flight: no write buffer
        self.wpos = 0;
        Poll::Ready(Ok(()))
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Queues a message and writes everything queued.
    pub async fn send(&mut self, msg: &Message) -> io::Result<()> {
        self.feed(msg);
        self.flush().await
    }

    /// Sends a close frame (once) with `code` and `reason`, and writes what is queued.
    pub async fn close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        self.queue_close(code, reason);
        self.flush().await
    }
}

#[cfg(test)]
mod tests;
