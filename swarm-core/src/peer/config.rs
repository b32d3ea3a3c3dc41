//! The peer's tunables, one set for the native peer and the web app.
//!
//! Before the peer core existed the two peers disagreed (requests in flight per source 4 vs
//! 16, stall 4 s vs 15 s, sources 8 vs 4, frames 16 KiB vs 64 KiB, reconnect 250 ms–5 s vs
//! 500 ms–10 s). The values here are the ones that measured best on these machines:
//! - 16 requests in flight per source: with 256 KiB chunks that is 4 MiB outstanding, enough
//!   to fill a 40 MB/s link with a 100 ms round trip; `pp-bench` gains nothing beyond 8 on
//!   loopback and loses nothing at 16.
//! - 64 KiB frames: the largest message every browser and str0m take; 4× fewer frames (and
//!   relay headers) per chunk than 16 KiB.
//! - A stall is declared after 5 s of silence with requests outstanding: a working path
//!   (the relay included) delivers a frame every few milliseconds, and a killed peer must be
//!   noticed long before ICE consent fails (30 s).

use crate::chunk_proto::DATA_HEADER;

/// Requests outstanding per source (pipelining hides the round trip).
pub const PIPELINE: usize = 16;
/// Requests outstanding per source through the tracker relay: 1 MiB, an eighth of a second
/// at the relay's default 8 MiB/s per sender. Requests sent through the relay are answered
/// through it even when a data channel opens meanwhile, so a deep relay pipeline moves
/// megabytes through the tracker that the channel would have carried (measured between
/// namespaces: 4.4 MB of a 16 MiB file with 16, under 5% with 4).
pub const RELAY_PIPELINE: usize = 4;
/// Reads of chunks to serve outstanding per link (or relay route) at once: requests are
/// served in order, so the first chunk of a pipelined burst goes out after one read, not
/// after all of them (16 concurrent reads on 2 cores delayed the first chunk by 150 ms).
pub const READS_PER_ROUTE: usize = 2;
/// Requests queued per link (or relay route) beyond the reads in progress; more are
/// answered `busy` at once (an honest peer keeps at most [`PIPELINE`] outstanding).
pub const QUEUE_PER_ROUTE: usize = 64;
/// Data frame payload: every data message is at most 64 KiB.
pub const FRAME_PAYLOAD: usize = 64 * 1024 - DATA_HEADER;
/// Sources one download connects to at first (more join when a chunk has no live source).
pub const MAX_SOURCES: usize = 6;
/// Times one chunk may fail (bad hash, broken frames) before the download gives up.
pub const MAX_ATTEMPTS: u32 = 8;
/// A source with requests outstanding that sends nothing for this long is dropped.
pub const STALL_MS: u64 = 5_000;
/// Chunks from a player's playhead on that a download asks first, in order: 16 × 256 KiB =
/// 4 MiB, several seconds of high-bitrate video (a media element reads a few MiB ahead), and
/// at 40 MB/s a tenth of a second: after a seek the window is fetched before the player
/// stalls again, while the rest of the file still flows rarest first.
pub const PLAYHEAD_WINDOW: usize = 16;
/// While a player plays, each source is asked for at most what it delivers in this long (at
/// its measured rate; at least one chunk): a seek's chunk waits behind that much at its
/// source. At 1 MiB/s through the relay that is 1 chunk of 256 KiB, at 8 MiB/s the relay
/// pipeline; a direct link at 40 MB/s keeps its whole pipeline.
pub const PLAYING_QUEUE_MS: u64 = 300;
/// Most sources asked for one chunk at once during the endgame.
pub const ENDGAME_COPIES: usize = 2;
/// A measured source is asked a chunk only if it would deliver it within this many times as
/// soon as the best measured holder (after what each has queued).
pub const ETA_SLACK: f64 = 1.5;
/// A measured source is also asked a chunk it would deliver within this share of the time the
/// measured sources together need for the rest of the file (so a slower source keeps working
/// through the bulk of a download and stops in time for its end).
pub const WORK_SHARE: f64 = 0.8;
/// Sources not measured yet are asked a chunk (one at a time) only while the measured ones
/// have this much work queued, or none is measured: a probe of a slow source is what the end
/// of a small download would wait for.
pub const PROBE_MS: f64 = 250.0;
/// While no source is measured, each probe in flight is reckoned to deliver this many bytes
/// per ms (40 MB/s): a small file is asked of one or two sources at first, not of all.
pub const PROBE_RATE: f64 = 40_000.0;
/// A request its source may already be sending is copied to an idle source only if it is
/// expected this many times later than there.
pub const LATE_FACTOR: f64 = 3.0;
/// Copies of requests a source may already be sending, each counted whole, stay within this
/// share of the file's bytes (per mille).
pub const DUP_BUDGET_PERMILLE: u64 = 15;
/// A source with requests outstanding that sent nothing for this long has its requests
/// copied elsewhere, budget or not, and is asked nothing more (it is dropped after
/// [`STALL_MS`]).
pub const SILENT_MS: u64 = 1_000;
/// How long newly stored chunks wait to be announced together (the tracker limits
/// messages per second; a fast download stores hundreds of chunks a second).
pub const HAVE_BATCH_MS: u64 = 50;
/// Chunk ids per inventory message (about 660 KiB of JSON, under the tracker's limit).
pub const INVENTORY_BATCH: usize = 10_000;
/// How long a new link waits for its data channel before requests also go through the
/// tracker relay (relay-then-upgrade). Between namespaces a channel opens in 20–60 ms, on a
/// real LAN or through NATs in a few round trips more.
pub const DIRECT_GRACE_MS: u64 = 300;
/// How long a WebRTC attempt may take in all before it is given up (the relay stays).
pub const DIRECT_TIMEOUT_MS: u64 = 10_000;
/// How long a peer whose link failed (or that the tracker says is gone) is left alone.
pub const LOST_COOLDOWN_MS: u64 = 5_000;
/// A fetching link nobody has used for this long is closed.
pub const LINK_IDLE_MS: u64 = 30_000;
/// Replication orders carried out at once; more wait their turn.
pub const ORDER_CONCURRENCY: usize = 8;
/// Serving links other peers may hold open to this peer at once.
pub const MAX_INBOUND: usize = 64;
/// Bytes a serving route (a link, or a relay route) may have queued to send before it starts
/// no new read: four 256 KiB chunks, ahead of what its writer is sending.
pub const SEND_WINDOW: u64 = 1024 * 1024;
/// Bytes of data the peer may have queued to send in all (frames and their
/// [`SEND_FRAME_COST`], reads in progress at the largest chunk size): no read starts past it.
pub const SEND_BUDGET: u64 = 32 * 1024 * 1024;
/// Bytes of data the peer may have queued on relay routes together (frames and their
/// [`SEND_FRAME_COST`], relay reads in progress at the largest chunk size), within
/// [`SEND_BUDGET`]. The tracker passes a connection's relay frames on at its relay rate (8 MiB/s
/// by default) in order, so this is how late an answer through the relay can be: with the whole
/// [`SEND_BUDGET`] a flood of relayed requests kept 29 MiB queued (3.6 s at 8 MiB/s) ahead of
/// an honest asker's answer, which then stalled past its asker's [`STALL_MS`]. 12 MiB: at most
/// 1.5 s of queue at the default rate, and room for three relay reads at once.
pub const RELAY_SEND_BUDGET: u64 = 12 * 1024 * 1024;
/// Bytes of `busy` and `missing` answers queued at once (apart from [`SEND_BUDGET`]); beyond,
/// requests are dropped unanswered.
pub const BUSY_SLACK: u64 = 64 * 1024;
/// What one queued frame costs a driver beyond its bytes (allocation, channel slot, relay
/// header), counted so that floods of tiny answers are bounded too.
pub const SEND_FRAME_COST: u64 = 256;
/// Requests waiting to be read, on every route together; more are answered `busy`.
pub const MAX_WAITING: usize = 1024;
/// A source that answered `busy` is asked nothing for this long (other holders are).
pub const BUSY_BACKOFF_MS: u64 = 500;
/// How often, at most, the tracker hears this peer's links by path (when they changed).
pub const PATH_REPORT_MS: u64 = 5_000;
/// Interval between heartbeats to the tracker (a browser's, answered: see [`super::liveness`]).
pub const HEARTBEAT_MS: u64 = 5_000;
/// A tracker node that let a heartbeat go unanswered (or, for the native peer, sent nothing
/// at all) for this long is taken for gone: the peer moves to the next node.
pub const TRACKER_SILENT_MS: u64 = 15_000;
/// Reconnect backoff to the tracker: first delay, cap.
pub const RECONNECT_MIN_MS: u64 = 500;
pub const RECONNECT_MAX_MS: u64 = 10_000;
/// Times a tracker request is sent while the tracker answers it `unavailable` (part of the
/// swarm is moving between tracker nodes: nothing changed, try again shortly); the last such
/// answer reaches the caller. About 6 s in all: a tracker node's lease time (5 s by default),
/// after which a dead node's shards are kept by another.
pub const UNAVAILABLE_TRIES: u32 = 12;
/// The wait before a request answered `unavailable` is sent again.
pub const UNAVAILABLE_RETRY_MS: u64 = 500;
/// Tracker URLs kept from a `welcome`'s list of nodes (a tracker cannot make a peer keep more).
pub const MAX_LEARNED_TRACKERS: usize = 16;
