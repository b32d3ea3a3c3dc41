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

mod frame;
pub mod handshake;

use bytes::Bytes;
use frame::{OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use std::future::poll_fn;
use std::io;
use std::task::{ready, Context, Poll};
use tokio::net::TcpStream;

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 4096;

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
    fn close_code(&self) -> u16 {
        match self {
            SocketError::Protocol(_) | SocketError::Io(_) => 1002,
            SocketError::TooLarge => 1009,
            SocketError::BadUtf8 => 1007,
        }
    }
}

/// A fragmented message being put together: its opcode and the payload so far.
struct Partial {
    opcode: u8,
    payload: Vec<u8>,
}

/// One websocket connection (after the upgrade).
pub struct Socket {
    io: TcpStream,
    /// Received bytes; `rbuf[rpos..]` is not parsed yet. Unallocated once drained.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Bytes to send; `wbuf[wpos..]` is not written yet. Unallocated once drained.
    wbuf: Vec<u8>,
    wpos: usize,
    /// Boxed: rare, and the idle socket should not carry its room.
    partial: Option<Box<Partial>>,
    max_message: usize,
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
            rbuf: read.to_vec(),
            rpos: 0,
            wbuf: Vec::new(),
            wpos: 0,
            partial: None,
            max_message,
            close_sent: false,
            done: false,
        }
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
        self.rbuf = Vec::new();
        self.rpos = 0;
        self.partial = None;
        if !matches!(e, SocketError::Io(_)) {
            self.queue_close(e.close_code(), "");
            let _ = self.poll_flush(cx);
        }
        e
    }

    /// Parses buffered frames until one completes a message; answers control frames.
    fn next_message(&mut self) -> Result<Option<Message>, SocketError> {
        loop {
            let buf = &self.rbuf[self.rpos..];
            let Some(h) = frame::parse_header(buf, self.max_message)? else { return Ok(None) };
            if buf.len() < h.frame_len() {
                self.rbuf.reserve(h.frame_len() - buf.len());
                return Ok(None);
            }
            let payload = self.rpos + h.header_len..self.rpos + h.frame_len();
            self.rpos = payload.end;
            frame::unmask(&mut self.rbuf[payload.clone()], h.mask);
            let body = &self.rbuf[payload];
            let msg = match h.opcode {
                OP_PING => {
                    if !self.close_sent {
                        frame::encode(&mut self.wbuf, OP_PONG, body);
                    }
                    None
                }
                OP_PONG => None,
                OP_CLOSE => {
                    let code = match body {
                        [a, b, ..] => u16::from_be_bytes([*a, *b]),
                        _ => 1000,
                    };
                    self.done = true;
                    self.queue_close(code, "");
                    None
                }
                OP_TEXT | OP_BINARY if self.partial.is_some() => {
                    return Err(SocketError::Protocol("a new message inside a fragmented one"))
                }
                OP_TEXT | OP_BINARY if h.fin => Some(message(h.opcode, body.to_vec())?),
                OP_TEXT | OP_BINARY => {
                    self.partial = Some(Box::new(Partial { opcode: h.opcode, payload: body.to_vec() }));
                    None
                }
                OP_CONTINUATION => {
                    let Some(p) = self.partial.as_mut() else {
                        return Err(SocketError::Protocol("a continuation without a message"));
                    };
                    if p.payload.len() + body.len() > self.max_message {
                        return Err(SocketError::TooLarge);
                    }
                    p.payload.extend_from_slice(body);
                    match (h.fin, self.partial.take()) {
                        (true, Some(p)) => Some(message(p.opcode, p.payload)?),
                        (_, p) => {
                            self.partial = p;
                            None
                        }
                    }
                }
                _ => unreachable!("parse_header refuses other opcodes"),
            };
            if self.rpos == self.rbuf.len() {
                self.rbuf = Vec::new(); // a quiet peer holds no read buffer
                self.rpos = 0;
            }
            if msg.is_some() || self.done {
                return Ok(msg);
            }
        }
    }

    /// Reads what the kernel has (at least one byte, or 0 at end of stream).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rpos > 0 {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        loop {
            ready!(self.io.poll_read_ready(cx))?;
            // Room only once there is something to read: a waiting peer holds no buffer.
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            match self.io.try_read_buf(&mut self.rbuf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.rbuf.is_empty() {
                        self.rbuf = Vec::new();
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

fn message(opcode: u8, payload: Vec<u8>) -> Result<Message, SocketError> {
    if opcode == OP_TEXT {
        String::from_utf8(payload).map(Message::Text).map_err(|_| SocketError::BadUtf8)
    } else {
        Ok(Message::Binary(payload.into()))
    }
}

#[cfg(test)]
mod tests;
