//! The reading side of a [`super::Socket`] without the stream (sans-IO): bytes go in
//! ([`Decoder::buf_mut`], at most [`Decoder::room`] of them), messages and control frames
//! come out ([`Decoder::next`]). Kept apart so the property tests below can feed it any byte
//! stream, cut anywhere, which a client on the internet may send.
//!
//! Bounds: the unparsed bytes never exceed the message limit plus one frame header (the
//! reader asks for no more), and a fragmented message never exceeds the limit; so a
//! connection's read memory is bounded by about twice its message limit, whatever it sends.

use super::frame::{self, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use super::{Message, SocketError};

/// A fragmented message being put together: its opcode and the payload so far.
struct Partial {
    opcode: u8,
    payload: Vec<u8>,
}

/// What a complete frame (or run of frames) amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Message(Message),
    /// A ping, with its payload (at most 125 bytes): answer with a pong.
    Ping(Vec<u8>),
    /// The peer closed, with this (valid) status code: answer with a close.
    Close(u16),
}

pub struct Decoder {
    /// Received bytes; `rbuf[rpos..]` is not parsed yet. Unallocated once drained.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Boxed: rare, and the idle socket should not carry its room.
    partial: Option<Box<Partial>>,
    max_message: usize,
}

impl Decoder {
    /// A decoder holding `read` (bytes already read) that refuses messages over `max_message`.
    pub fn new(read: Vec<u8>, max_message: usize) -> Self {
        Self { rbuf: read, rpos: 0, partial: None, max_message }
    }

    /// Changes the limit for what is still to come; raise it only (a lower limit could leave
    /// more buffered than [`Decoder::room`] allows).
    pub fn set_max_message(&mut self, max_message: usize) {
        self.max_message = max_message;
    }

    /// Most bytes buffered unparsed: one largest frame.
    pub fn bound(&self) -> usize {
        self.max_message + frame::MAX_HEADER
    }

    /// Bytes the reader may add now (after [`Decoder::compact`]). Never 0 while
    /// [`Decoder::next`] waits for more: a frame that fits the limit always fits the buffer.
    pub fn room(&self) -> usize {
        self.bound().saturating_sub(self.rbuf.len())
    }

    /// Drops the bytes already parsed.
    pub fn compact(&mut self) {
        if self.rpos > 0 {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
    }

    /// The buffer to read into (append only, at most [`Decoder::room`] bytes).
    pub fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.rbuf
    }

    /// Forgets everything (the connection is broken).
    pub fn clear(&mut self) {
        self.rbuf = Vec::new();
        self.rpos = 0;
        self.partial = None;
    }

    /// Bytes held: unparsed input and a fragmented message's payload so far.
    #[cfg(test)]
    pub fn buffered(&self) -> (usize, usize) {
        (self.rbuf.len() - self.rpos, self.partial.as_ref().map_or(0, |p| p.payload.len()))
    }

    /// Parses buffered frames until one completes a message or is a ping or close;
    /// `Ok(None)`: more bytes are needed.
    pub fn next(&mut self) -> Result<Option<Decoded>, SocketError> {
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
            let out = match h.opcode {
                OP_PING => Some(Decoded::Ping(body.to_vec())),
                OP_PONG => None,
                OP_CLOSE => Some(Decoded::Close(close_code(body)?)),
                OP_TEXT | OP_BINARY if self.partial.is_some() => {
                    return Err(SocketError::Protocol("a new message inside a fragmented one"))
                }
                OP_TEXT | OP_BINARY if h.fin => Some(Decoded::Message(message(h.opcode, body.to_vec())?)),
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
                        (true, Some(p)) => Some(Decoded::Message(message(p.opcode, p.payload)?)),
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
            if out.is_some() {
                return Ok(out);
            }
        }
    }
}

/// The status code of a close frame's payload (RFC 6455, 5.5.1 and 7.4): none means 1000;
/// a single byte, a code no endpoint may send, or a reason that is not UTF-8 is an error.
fn close_code(body: &[u8]) -> Result<u16, SocketError> {
    match body {
        [] => Ok(1000),
        [_] => Err(SocketError::Protocol("close frame with a one-byte payload")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(SocketError::Protocol("invalid close code"));
            }
            std::str::from_utf8(reason).map_err(|_| SocketError::BadUtf8)?;
            Ok(code)
        }
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
mod tests {
    use super::*;
    use crate::transport::websocket::frame::client_frame;
    use proptest::prelude::*;

    /// Feeds `input` in pieces of the given sizes (each capped by the room, as the socket
    /// does); returns what came out and the error that ended it, if any. Checks the bounds
    /// after every step, and that the decoder never waits with no room (a hang).
    fn feed(max: usize, input: &[u8], cuts: &[usize]) -> (Vec<Decoded>, Option<SocketError>) {
        let mut d = Decoder::new(Vec::new(), max);
        let (mut out, mut at, mut cut) = (Vec::new(), 0, cuts.iter().cycle());
        loop {
            loop {
                match d.next() {
                    Ok(Some(x)) => out.push(x),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
            let (unparsed, partial) = d.buffered();
            assert!(unparsed <= max + frame::MAX_HEADER, "{unparsed} bytes buffered, limit {max}");
            assert!(partial <= max, "fragmented message of {partial} bytes, limit {max}");
            if at == input.len() {
                return (out, None);
            }
            d.compact();
            assert!(d.room() > 0, "waiting for bytes with no room to read them");
            let n = (*cut.next().unwrap()).clamp(1, d.room()).min(input.len() - at);
            d.buf_mut().extend_from_slice(&input[at..at + n]);
            at += n;
        }
    }

    /// A valid client frame, or junk.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        let opcode = prop_oneof![Just(OP_CONTINUATION), Just(OP_TEXT), Just(OP_BINARY), Just(OP_PING), Just(OP_PONG)];
        prop_oneof![
            4 => (any::<bool>(), opcode, proptest::collection::vec(any::<u8>(), 0..300))
                .prop_map(|(fin, op, p)| client_frame(fin || op >= OP_CLOSE, op, if op >= OP_CLOSE { &p[..p.len().min(125)] } else { &p })),
            1 => "[a-zé]{0,200}".prop_map(|t| client_frame(true, OP_TEXT, t.as_bytes())),
            1 => proptest::collection::vec(any::<u8>(), 0..40),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_cut_anywhere_never_panic_or_overflow(
            input in proptest::collection::vec(any::<u8>(), 0..4000),
            cuts in proptest::collection::vec(1usize..600, 1..20),
            max in 0usize..1000,
        ) {
            feed(max, &input, &cuts);
        }

        #[test]
        fn frame_streams_decode_the_same_however_they_are_cut(
            pieces in proptest::collection::vec(piece(), 0..12),
            cuts in proptest::collection::vec(1usize..600, 1..20),
            max in 0usize..600,
        ) {
            let input: Vec<u8> = pieces.concat();
            let whole = feed(max, &input, &[usize::MAX]);
            let cut = feed(max, &input, &cuts);
            prop_assert_eq!(&whole.0, &cut.0);
            prop_assert_eq!(whole.1.map(|e| e.close_code()), cut.1.map(|e| e.close_code()));
        }

        #[test]
        fn close_codes_follow_rfc_6455(code: u16, reason in proptest::collection::vec(any::<u8>(), 0..123)) {
            let mut body = code.to_be_bytes().to_vec();
            body.extend_from_slice(&reason);
            let (out, err) = feed(1000, &client_frame(true, OP_CLOSE, &body), &[7]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            match (valid, std::str::from_utf8(&reason).is_ok()) {
                (true, true) => prop_assert_eq!(out, vec![Decoded::Close(code)]),
                (true, false) => prop_assert_eq!(err.map(|e| e.close_code()), Some(1007)),
                (false, _) => prop_assert_eq!(err.map(|e| e.close_code()), Some(1002)),
            }
        }
    }

    #[test]
    fn errors_carry_the_rfc_close_codes() {
        let code = |input: Vec<u8>, max| feed(max, &input, &[3]).1.map(|e| e.close_code());
        assert_eq!(code(client_frame(true, OP_BINARY, &[0; 101]), 100), Some(1009));
        let mut frag = client_frame(false, OP_BINARY, &[0; 60]);
        frag.extend(client_frame(true, OP_CONTINUATION, &[0; 60]));
        assert_eq!(code(frag, 100), Some(1009), "a fragmented message counts whole");
        assert_eq!(code(client_frame(true, OP_TEXT, &[0xC3]), 100), Some(1007), "a cut character");
        let mut split = client_frame(false, OP_TEXT, &[0xC3]);
        split.extend(client_frame(true, OP_CONTINUATION, &[0xA9]));
        assert_eq!(feed(100, &split, &[1]).0, vec![Decoded::Message(Message::Text("é".into()))]);
        assert_eq!(code(client_frame(true, OP_CLOSE, &[3]), 100), Some(1002), "one-byte close payload");
        assert_eq!(code(client_frame(true, OP_CLOSE, &1005u16.to_be_bytes()), 100), Some(1002));
        assert_eq!(code(vec![0x82, 0x01, 0], 100), Some(1002), "unmasked");
        assert_eq!(feed(100, &client_frame(true, OP_CLOSE, &[]), &[1]).0, vec![Decoded::Close(1000)]);
    }
}
