//! WebRTC data-channel links to other peers, driven by str0m (sans-IO) on a tokio UDP socket.
//!
//! A [`Link`] is one peer connection with one data channel ("chunks"), with host candidates
//! on every usable local address and server-reflexive ones from STUN ([`net`], [`RtcEnv`]). The side that wants
//! chunks offers ([`Link::offer`]); the holder answers ([`Link::answer`]). Signalling goes
//! through the tracker: the caller carries [`LinkEvent::Signal`] out and feeds incoming
//! signals in with [`Link::signal`].
//!
//! Tuning, measured on the project's 2-core machines (str0m 0.25, headless Chromium): str0m's
//! SCTP send buffer at 32 KiB and frames of at most 16 KiB were fastest both toward browsers and
//! between str0m peers. Toward Chromium, 8-16 KiB messages with a 16-32 KiB buffer gave 33-38
//! MB/s, against 11 MB/s with str0m's default 128 KiB buffer (`Channel::write` takes a message
//! only if all of it fits the buffer, and a large buffer caused UDP receive drops). Re-measured with
//! `pp-bench` (str0m to str0m, loopback, 16 KiB messages, release): a 32 KiB buffer gave
//! 29-45 MB/s, 64 KiB 28-35, 128 KiB 18-26, 256 KiB 16; a 16 KiB buffer stalls (a message
//! as large as the buffer). UDP socket buffers are raised to 4 MiB so bursts are not dropped.

mod driver;
pub mod net;

pub use driver::{Link, LinkEvent, LinkSender, RtcEnv, SignalHandle, MAX_REMOTE_CANDIDATES};

/// str0m's SCTP send buffer (see the module docs).
pub const SCTP_BUFFER: usize = 32 * 1024;
/// Data-channel label every Peer Pressure link uses.
pub const CHANNEL_LABEL: &str = "chunks";
