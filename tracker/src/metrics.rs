//! Swarm-wide figures, taken in one pass under the swarm lock ([`Snapshot`]), served as JSON
//! by `/api/stats` and in the Prometheus text format (version 0.0.4) by `/metrics`.

use crate::state::{AppState, Counters};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use std::fmt::Write;
use std::sync::Arc;
use swarm_core::swarm::Swarm;
use swarm_core::{LinkPath, PathReport, PeerKind};

/// Sums one field of every live peer's path report, per path (every path listed, zeros too).
fn sum_reports<T: Copy + Into<u64>>(
    s: &Swarm,
    field: impl Fn(&PathReport) -> &Vec<(LinkPath, T)>,
) -> Vec<(LinkPath, u64)> {
    LinkPath::ALL
        .iter()
        .map(|path| {
            let total = s
                .peers()
                .filter_map(|(_, p)| p.paths.as_deref())
                .flat_map(|r| field(r).iter().filter(|(q, _)| q == path).map(|(_, n)| (*n).into()))
                .fold(0u64, u64::saturating_add);
            (*path, total)
        })
        .collect()
}

/// Every figure the tracker exposes.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub uptime_secs: u64,
    pub peers: usize,
    pub peers_native: usize,
    pub peers_browser: usize,
    pub files: usize,
    pub chunks: usize,
    pub replication: usize,
    pub under_replicated: usize,
    pub lost: usize,
    pub orders_in_flight: usize,
    pub orders_issued: u64,
    pub orders_done: u64,
    pub orders_failed: u64,
    pub orders_expired: u64,
    pub chunks_trimmed: u64,
    pub signals_relayed: u64,
    pub errors_sent: u64,
    pub bad_sources_reported: u64,
    pub ws_connections_total: u64,
    pub ws_messages_in: u64,
    pub ws_messages_out: u64,
    pub ws_bytes_in: u64,
    pub ws_bytes_out: u64,
    pub relay_frames: u64,
    pub relay_bytes: u64,
    pub relay_dropped: u64,
    pub relay_refused: u64,
    pub rate_limited: u64,
    pub closed_abuse: u64,
    pub closed_slow: u64,
    pub limit_refusals: u64,
    pub stun_requests: u64,
    pub stun_answers: u64,
    pub stun_ignored: u64,
    pub stun_rate_limited: u64,
    /// Peers' own reports of their links, summed: open links and bytes received, by path.
    pub reported_links: Vec<(LinkPath, u64)>,
    pub reported_bytes: Vec<(LinkPath, u64)>,
}

impl Snapshot {
    pub fn take(state: &AppState) -> Self {
        let c = &state.counters;
        let g = Counters::get;
        let inner = state.lock();
        let s = &inner.swarm;
        let native = s.peers().filter(|(_, p)| p.kind == PeerKind::Native).count();
        let peers = inner.connected.len();
        Snapshot {
            uptime_secs: state.mono_ms() / 1000,
            peers,
            peers_native: native,
            peers_browser: s.peers().count() - native,
            files: s.files().count(),
            chunks: s.chunk_count(),
            replication: s.config.replication,
            under_replicated: s.under_replicated(),
            lost: s.lost_chunks(),
            orders_in_flight: s.orders().count(),
            orders_issued: s.repair_stats.orders_issued,
            orders_done: s.repair_stats.orders_done,
            orders_failed: s.repair_stats.orders_failed,
            orders_expired: s.repair_stats.orders_expired,
            chunks_trimmed: s.repair_stats.chunks_trimmed,
            signals_relayed: s.stats.signals_relayed,
            errors_sent: s.stats.errors_sent,
            bad_sources_reported: s.stats.bad_sources_reported,
            ws_connections_total: g(&c.ws_connections),
            ws_messages_in: g(&c.ws_messages_in),
            ws_messages_out: g(&c.ws_messages_out),
            ws_bytes_in: g(&c.ws_bytes_in),
            ws_bytes_out: g(&c.ws_bytes_out),
            relay_frames: g(&c.relay_frames),
            relay_bytes: g(&c.relay_bytes),
            relay_dropped: g(&c.relay_dropped),
            relay_refused: g(&c.relay_refused),
            rate_limited: g(&c.rate_limited),
            closed_abuse: g(&c.closed_abuse),
            closed_slow: g(&c.closed_slow),
            limit_refusals: g(&c.limit_refusals),
            stun_requests: g(&c.stun_requests),
            stun_answers: g(&c.stun_answers),
            stun_ignored: g(&c.stun_ignored),
            stun_rate_limited: g(&c.stun_rate_limited),
            reported_links: sum_reports(s, |r| &r.links),
            reported_bytes: sum_reports(s, |r| &r.bytes_received),
        }
    }

    /// The Prometheus text exposition of this snapshot.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP pp_{name} {help}");
            let _ = writeln!(out, "# TYPE pp_{name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "pp_{name}{labels} {v}");
            }
        };
        let gauge = "gauge";
        let counter = "counter";
        metric("uptime_seconds", gauge, "Seconds since the tracker started.", &[("", self.uptime_secs)]);
        metric(
            "peers",
            gauge,
            "Live peers by kind.",
            &[("{kind=\"native\"}", self.peers_native as u64), ("{kind=\"browser\"}", self.peers_browser as u64)],
        );
        metric("files", gauge, "Files in the index.", &[("", self.files as u64)]);
        metric("chunks", gauge, "Distinct chunks of indexed files.", &[("", self.chunks as u64)]);
        metric("replication_factor", gauge, "Copies every chunk should have.", &[("", self.replication as u64)]);
        metric(
            "chunks_under_replicated",
            gauge,
            "Chunks below the replication factor (lost ones included).",
            &[("", self.under_replicated as u64)],
        );
        metric("chunks_lost", gauge, "Chunks with no live copy.", &[("", self.lost as u64)]);
        metric(
            "repair_orders_in_flight",
            gauge,
            "Replication orders in flight.",
            &[("", self.orders_in_flight as u64)],
        );
        metric(
            "repair_orders_total",
            counter,
            "Replication orders by outcome.",
            &[
                ("{outcome=\"issued\"}", self.orders_issued),
                ("{outcome=\"done\"}", self.orders_done),
                ("{outcome=\"failed\"}", self.orders_failed),
                ("{outcome=\"expired\"}", self.orders_expired),
            ],
        );
        metric("chunks_trimmed_total", counter, "Surplus copies trimmed.", &[("", self.chunks_trimmed)]);
        metric("signals_relayed_total", counter, "WebRTC signalling messages relayed.", &[("", self.signals_relayed)]);
        metric("errors_sent_total", counter, "Error messages sent to peers.", &[("", self.errors_sent)]);
        metric("bad_sources_total", counter, "Bad chunk sources reported.", &[("", self.bad_sources_reported)]);
        metric("ws_connections_total", counter, "Websocket connections accepted.", &[("", self.ws_connections_total)]);
        metric(
            "ws_messages_total",
            counter,
            "Websocket messages by direction.",
            &[("{dir=\"in\"}", self.ws_messages_in), ("{dir=\"out\"}", self.ws_messages_out)],
        );
        metric(
            "ws_bytes_total",
            counter,
            "Websocket payload bytes by direction.",
            &[("{dir=\"in\"}", self.ws_bytes_in), ("{dir=\"out\"}", self.ws_bytes_out)],
        );
        metric("relay_frames_total", counter, "Data relay frames forwarded.", &[("", self.relay_frames)]);
        metric("relay_bytes_total", counter, "Data relay bytes forwarded.", &[("", self.relay_bytes)]);
        metric(
            "relay_frames_refused_total",
            counter,
            "Relay frames not forwarded, by reason.",
            &[("{reason=\"recipient_busy\"}", self.relay_dropped), ("{reason=\"invalid\"}", self.relay_refused)],
        );
        metric("rate_limited_total", counter, "Messages refused by rate limits.", &[("", self.rate_limited)]);
        metric(
            "connections_closed_total",
            counter,
            "Connections closed by the tracker, by reason.",
            &[("{reason=\"abuse\"}", self.closed_abuse), ("{reason=\"slow\"}", self.closed_slow)],
        );
        metric(
            "limit_refusals_total",
            counter,
            "Requests refused by a configured limit.",
            &[("", self.limit_refusals)],
        );
        metric(
            "stun_requests_total",
            counter,
            "STUN datagrams received, by outcome.",
            &[
                ("{outcome=\"answered\"}", self.stun_answers),
                ("{outcome=\"ignored\"}", self.stun_ignored),
                ("{outcome=\"rate_limited\"}", self.stun_rate_limited),
                ("{outcome=\"received\"}", self.stun_requests),
            ],
        );
        let labelled = |v: &[(LinkPath, u64)]| -> Vec<(String, u64)> {
            v.iter().map(|(p, n)| (format!("{{path=\"{}\"}}", p.as_str()), *n)).collect()
        };
        let links = labelled(&self.reported_links);
        let bytes = labelled(&self.reported_bytes);
        fn refs(v: &[(String, u64)]) -> Vec<(&str, u64)> {
            v.iter().map(|(l, n)| (l.as_str(), *n)).collect()
        }
        metric(
            "peer_links",
            gauge,
            "Links between peers open now, by path, as the connected peers report them (unverified).",
            &refs(&links),
        );
        metric(
            "peer_bytes_received",
            gauge,
            "Chunk bytes the connected peers received, by path, as they report them (unverified).",
            &refs(&bytes),
        );
        out
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let body = Snapshot::take(&state).prometheus();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}
