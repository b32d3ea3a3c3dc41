//! Swarm-wide figures, as the core last published them ([`stats`]), served as JSON
//! by `/api/stats` and in the Prometheus text format (version 0.0.4) by `/metrics`, with the
//! state's estimated bytes by kind and its heaviest addresses ([`state_metrics`]).

use crate::app::AppState;
use crate::core::figures::Figures;
use crate::driver::Counters;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::Arc;
use swarm_core::api::Stats;
use swarm_core::LinkPath;

/// Every figure the tracker exposes: the swarm's as the core last published them, taken after
/// this call began ([`crate::driver::Shared::figures`]), beside the traffic counters read now.
/// Also the figures themselves (for the state metrics).
pub async fn stats(state: &AppState) -> (Stats, Arc<Figures>) {
    let f = state.figures().await;
    let c = &state.counters;
    let g = Counters::get;
    let stats = Stats {
        uptime_secs: state.mono_ms() / 1000,
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
        read_pauses: g(&c.read_pauses),
        closed_abuse: g(&c.closed_abuse),
        closed_slow: g(&c.closed_slow),
        limit_refusals: g(&c.limit_refusals),
        stun_requests: g(&c.stun_requests),
        stun_answers: g(&c.stun_answers),
        stun_ignored: g(&c.stun_ignored),
        stun_rate_limited: g(&c.stun_rate_limited),
        ..f.stats.clone()
    };
    (stats, f)
}

/// The Prometheus text exposition of a snapshot.
pub fn prometheus(s: &Stats) -> String {
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
    metric(
        "peers",
        gauge,
        "Live peers by kind.",
        &[("{kind=\"native\"}", s.peers_native), ("{kind=\"browser\"}", s.peers_browser)],
    );
    metric("files", gauge, "Files in the index.", &[("", s.files)]);
    metric("chunks", gauge, "Distinct chunks of indexed files.", &[("", s.chunks)]);
    metric("claims", gauge, "Claims kept: (peer, chunk) pairs of live peers.", &[("", s.claims)]);
    metric("replication_factor", gauge, "Copies every chunk should have.", &[("", s.replication)]);
    metric(
        "chunks_under_replicated",
        gauge,
        "Chunks below the replication factor (lost ones included).",
        &[("", s.under_replicated)],
    );
    metric("chunks_lost", gauge, "Chunks with no live copy.", &[("", s.lost)]);
    metric("repair_orders_in_flight", gauge, "Replication orders in flight.", &[("", s.orders_in_flight)]);
    metric("repair_orders_issued_total", counter, "Replication orders issued.", &[("", s.orders_issued)]);
    metric(
        "repair_orders_finished_total",
        counter,
        "Replication orders finished, by outcome.",
        &[
            ("{outcome=\"done\"}", s.orders_done),
            ("{outcome=\"failed\"}", s.orders_failed),
            ("{outcome=\"expired\"}", s.orders_expired),
        ],
    );
    metric("chunks_trimmed_total", counter, "Surplus copies trimmed.", &[("", s.chunks_trimmed)]);
    let help = "Copies of chunks no file uses that holders were told to let go.";
    metric("orphans_trimmed_total", counter, help, &[("", s.orphans_trimmed)]);
    metric("signals_relayed_total", counter, "WebRTC signalling messages relayed.", &[("", s.signals_relayed)]);
    metric("errors_sent_total", counter, "Error messages sent to peers.", &[("", s.errors_sent)]);
    metric("bad_sources_total", counter, "Bad chunk sources reported.", &[("", s.bad_sources_reported)]);
    metric("ws_connections_total", counter, "Websocket connections accepted.", &[("", s.ws_connections_total)]);
    metric(
        "ws_messages_total",
        counter,
        "Websocket messages by direction.",
        &[("{dir=\"in\"}", s.ws_messages_in), ("{dir=\"out\"}", s.ws_messages_out)],
    );
    metric(
        "ws_bytes_total",
        counter,
        "Websocket payload bytes by direction.",
        &[("{dir=\"in\"}", s.ws_bytes_in), ("{dir=\"out\"}", s.ws_bytes_out)],
    );
    metric("relay_frames_total", counter, "Data relay frames forwarded.", &[("", s.relay_frames)]);
    metric("relay_bytes_total", counter, "Data relay bytes forwarded.", &[("", s.relay_bytes)]);
    metric(
        "relay_frames_refused_total",
        counter,
        "Relay frames not forwarded, by reason.",
        &[("{reason=\"recipient_busy\"}", s.relay_dropped), ("{reason=\"invalid\"}", s.relay_refused)],
    );
    metric("rate_limited_total", counter, "Messages refused by rate limits.", &[("", s.rate_limited)]);
    metric(
        "ws_read_pauses_total",
        counter,
        "Messages whose connection was not read for a while first: past its message byte rate, or its address's.",
        &[("", s.read_pauses)],
    );
    metric(
        "connections_closed_total",
        counter,
        "Connections closed by the tracker, by reason.",
        &[("{reason=\"abuse\"}", s.closed_abuse), ("{reason=\"slow\"}", s.closed_slow)],
    );
    metric("limit_refusals_total", counter, "Requests refused by a configured limit.", &[("", s.limit_refusals)]);
    metric("stun_datagrams_total", counter, "STUN datagrams received.", &[("", s.stun_requests)]);
    metric(
        "stun_datagrams_handled_total",
        counter,
        "STUN datagrams received, by what was done with them.",
        &[
            ("{outcome=\"answered\"}", s.stun_answers),
            ("{outcome=\"ignored\"}", s.stun_ignored),
            ("{outcome=\"rate_limited\"}", s.stun_rate_limited),
        ],
    );
    let t = &s.trust;
    metric("trust_challenges_sent_total", counter, "Challenges of claimed holdings sent.", &[("", t.challenges_sent)]);
    metric(
        "trust_challenges_answered_total",
        counter,
        "Challenges of claimed holdings, by outcome.",
        &[
            ("{outcome=\"passed\"}", t.proofs_passed),
            ("{outcome=\"failed\"}", t.proofs_failed),
            ("{outcome=\"expired\"}", t.challenges_expired),
        ],
    );
    metric(
        "trust_nonces_total",
        counter,
        "Challenge nonces added to pools, by source.",
        &[("{source=\"publisher\"}", t.nonces_from_publishers), ("{source=\"agreement\"}", t.nonces_agreed)],
    );
    metric("trust_strikes_total", counter, "Strikes given to peers.", &[("", t.strikes)]);
    metric("trust_distrusted_total", counter, "Identities distrusted after too many strikes.", &[("", t.distrusted)]);
    metric(
        "trust_reports_total",
        counter,
        "bad_source reports, by verdict.",
        &[
            ("{verdict=\"refuted\"}", t.reports_refuted),
            ("{verdict=\"upheld\"}", t.reports_upheld),
            ("{verdict=\"ignored\"}", t.reports_ignored),
        ],
    );
    let labelled = |v: &[(LinkPath, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|(p, n)| (format!("{{path=\"{}\"}}", p.as_str()), *n)).collect()
    };
    let links = labelled(&s.reported_links);
    let bytes = labelled(&s.reported_bytes);
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
        "peer_received_bytes",
        gauge,
        "Chunk bytes the connected peers received, by path, as they report them (unverified).",
        &refs(&bytes),
    );
    out
}

/// The cluster's metrics of this node (nothing for a single tracker).
pub fn cluster_metrics(state: &AppState, figures: &Figures) -> String {
    let Some(c) = &state.cluster else { return String::new() };
    let st = &c.stats;
    let g = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let remote = figures.remote_peers;
    let indexed = c.index().file_count();
    let lines: [(&str, &str, &str, String); 10] = [
        (
            "cluster_members",
            "gauge",
            "Live tracker nodes of the cluster, this one included.",
            format!(" {}", c.members().len()),
        ),
        ("cluster_shards_owned", "gauge", "Shards of the swarm this node keeps.", format!(" {}", c.shards_owned())),
        (
            "cluster_remote_peers",
            "gauge",
            "Peers connected to other nodes, as this node knows them.",
            format!(" {remote}"),
        ),
        (
            "cluster_messages_total",
            "counter",
            "Messages between this node and the others, by direction.",
            format!("{{dir=\"out\"}} {}\npp_cluster_messages_total{{dir=\"in\"}} {}", g(&st.msgs_out), g(&st.msgs_in)),
        ),
        (
            "cluster_relay_frames_total",
            "counter",
            "Relay frames carried between nodes, by direction.",
            format!(
                "{{dir=\"out\"}} {}\npp_cluster_relay_frames_total{{dir=\"in\"}} {}",
                g(&st.relay_out),
                g(&st.relay_in)
            ),
        ),
        (
            "cluster_dropped_total",
            "counter",
            "Messages to other nodes not sent (queue full or NATS down).",
            format!(" {}", g(&st.dropped)),
        ),
        (
            "cluster_shard_moves_total",
            "counter",
            "Shards this node took over and let go of.",
            format!(
                "{{event=\"taken\"}} {}\npp_cluster_shard_moves_total{{event=\"lost\"}} {}",
                g(&st.shards_taken),
                g(&st.shards_lost)
            ),
        ),
        (
            "cluster_refused_total",
            "counter",
            "Requests answered `unavailable`: their shard had no fresh owner.",
            format!(" {}", g(&st.refused_unavailable)),
        ),
        (
            "cluster_claims_total",
            "counter",
            "Claims sent to the node that keeps their chunks: as announced, or moved later.",
            format!(
                "{{how=\"sent\"}} {}\npp_cluster_claims_total{{how=\"moved\"}} {}",
                g(&st.claims_sent),
                g(&st.claims_moved)
            ),
        ),
        ("cluster_index_files", "gauge", "Files in this node's chunk index (every shard's).", format!(" {indexed}")),
    ];
    let mut out = String::new();
    for (name, kind, help, samples) in lines {
        let _ = writeln!(out, "# HELP pp_{name} {help}\n# TYPE pp_{name} {kind}\npp_{name}{samples}");
    }
    out
}

/// The state's estimated bytes by kind, the budget, the heaviest addresses, and the claims
/// and work refused by the bounds ([`swarm_core::swarm::budget`], [`swarm_core::swarm::claims`]).
pub fn state_metrics(state: &AppState, figures: &Figures) -> String {
    let (bytes, top, claims) = (figures.state_bytes, &figures.top_consumers, &figures.claim_stats);
    let l = &state.config.limits;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP pp_{name} {help}\n# TYPE pp_{name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "pp_{name}{labels} {v}");
        }
    };
    let label = |k: &str, v: &dyn std::fmt::Display| format!("{{{k}=\"{v}\"}}");
    let kinds = bytes.kinds().iter().map(|(k, v)| (label("kind", k), *v)).collect();
    metric("state_bytes", "gauge", "Estimated bytes of tracker state, by kind.", kinds);
    metric("state_budget_bytes", "gauge", "The state budget (0: none).", vec![(String::new(), l.state_budget)]);
    let share = vec![(String::new(), l.state_budget_per_ip)];
    metric(
        "state_budget_per_address_bytes",
        "gauge",
        "One client address's share of the state budget (0: none).",
        share,
    );
    let top = top.iter().map(|(a, v)| (label("addr", a), *v)).collect();
    let help = "Estimated bytes of tracker state charged to the heaviest client addresses (at most 5).";
    metric("state_bytes_by_address", "gauge", help, top);
    let refused = vec![
        (label("reason", &"over_cap"), claims.over_cap),
        (label("reason", &"loose_over_cap"), claims.loose_over_cap),
        (label("reason", &"loose_expired"), claims.loose_expired),
    ];
    metric("claims_refused_total", "counter", "Claims not kept by the per-peer bounds, by reason.", refused);
    let taken = Counters::get(&state.figures_taken);
    let help =
        "Times the swarm's figures were taken for /api/stats and /metrics (one walk serves every reader waiting).";
    metric("figures_taken_total", "counter", help, vec![(String::new(), taken)]);
    let n = Counters::get(&state.counters.over_budget);
    let help = "New identities, files and claims refused for the state budget.";
    metric("over_budget_total", "counter", help, vec![(String::new(), n)]);
    out
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let (stats, figures) = stats(&state).await;
    let mut body = prometheus(&stats);
    body.push_str(&state_metrics(&state, &figures));
    body.push_str(&cluster_metrics(&state, &figures));
    body.push_str(&state.conns.metrics());
    body.push_str(&crate::http::process_metrics::exposition(crate::http::process_metrics::read().as_ref()));
    let mut res = ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response();
    res.extensions_mut().insert(crate::http::read_charge::ReadCost(figures.walked));
    res
}
