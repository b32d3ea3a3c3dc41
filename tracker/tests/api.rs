//! The REST API and `/metrics` against a real tracker with real peers.

mod common;
use common::*;
use std::collections::HashMap;
use swarm_core::api::{ApiError, FileDetail, FilesPage, PeersAnswer, SearchAnswer, Stats};
use swarm_core::wire::FileMeta;
use swarm_core::{ClientMsg, ManifestBuilder, ServerMsg};

async fn publish(ws: &mut common::Ws, req: u32, name: &str, seed: u8, chunks: usize) -> swarm_core::FileId {
    let mut mb = ManifestBuilder::new(4);
    for i in 0..chunks {
        mb.push(&[seed, i as u8, 1, 2]);
    }
    let manifest = mb.finish();
    send(ws, &ClientMsg::Have { chunks: manifest.chunks.clone(), full: false }).await;
    let meta = FileMeta::public(name, "text/plain");
    send(ws, &ClientMsg::Publish { req, manifest, meta }).await;
    loop {
        match recv(ws).await {
            ServerMsg::Published { req: r, file } if r == req => return file,
            ServerMsg::Replicate { .. } | ServerMsg::Trim { .. } => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn rest_endpoints_describe_the_swarm() {
    let (url, host) = start(tracker::Config::default()).await;
    let mut a = connect(&url).await;
    let id_a = hello(&mut a, &secret(1)).await;
    send(&mut a, &ClientMsg::Storage { used: 100, capacity: 1000 }).await;
    let mut ids = Vec::new();
    for (i, name) in ["my cat.png", "dog.txt", "cat", "bobcat.jpg", "zebra"].iter().enumerate() {
        ids.push(publish(&mut a, i as u32, name, i as u8, 2).await);
    }

    let (status, page) = get_json(&host, "/api/files?offset=1&limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 5);
    assert_eq!(page["files"].as_array().unwrap().len(), 2);
    let typed: FilesPage = serde_json::from_value(page).unwrap();
    assert_eq!((typed.total, typed.offset, typed.limit, typed.files.len()), (5, 1, 2, 2));
    let (_, all) = get_json(&host, "/api/files").await;
    let mut listed: Vec<String> =
        all["files"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_string()).collect();
    let mut expected: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    let (_, beyond) = get_json(&host, "/api/files?offset=10").await;
    assert_eq!(beyond["files"].as_array().unwrap().len(), 0);
    assert_eq!(get_json(&host, "/api/files?offset=-1").await.0, 400);

    let (status, f) = get_json(&host, &format!("/api/files/{}", ids[0])).await;
    assert_eq!(status, 200);
    assert_eq!(f["name"], "my cat.png");
    assert_eq!(f["holders"], serde_json::json!([[0], [0]]));
    assert_eq!(f["peers"][0], id_a.to_string());
    assert_eq!(f["health"]["replication"], 3);
    assert_eq!(f["health"]["min_copies"], 1);
    assert_eq!(f["health"]["max_copies"], 1);
    assert_eq!(f["health"]["under_replicated"], 2);
    assert_eq!(f["health"]["lost"], 0);
    let typed: FileDetail = serde_json::from_value(f.clone()).unwrap();
    assert_eq!((typed.id, typed.health.min_copies, typed.manifest.chunks.len()), (ids[0], 1, 2));
    let (status, e) = get_json(&host, "/api/files/nothex").await;
    assert_eq!(status, 400);
    assert!(serde_json::from_value::<ApiError>(e.clone()).unwrap().error.contains("64 hex"));
    let (status, e) = get_json(&host, &format!("/api/files/{}", "0".repeat(64))).await;
    assert_eq!(status, 404);
    assert!(e["error"].is_string());

    let (_, s) = get_json(&host, "/api/search?q=CAT").await;
    let names: Vec<&str> = s["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["cat", "my cat.png", "bobcat.jpg"], "ranked by name match");
    assert_eq!(s["replication"], f["health"]["replication"], "the target the health bars are drawn against");
    let typed: SearchAnswer = serde_json::from_value(s).unwrap();
    assert_eq!((typed.query.as_str(), typed.files.len()), ("CAT", 3));

    let (_, p) = get_json(&host, "/api/peers").await;
    let peer = &p["peers"][0];
    assert_eq!(peer["id"], id_a.to_string());
    assert_eq!(peer["kind"], "native");
    assert_eq!(peer["chunks"], 10);
    assert_eq!(peer["storage_capacity"], 1000);
    assert!(peer["uptime_secs"].is_u64());
    let typed: PeersAnswer = serde_json::from_value(p.clone()).unwrap();
    assert_eq!((typed.total, typed.peers[0].storage_used, typed.peers[0].storage_free), (1, 100, 900));

    let (_, st) = get_json(&host, "/api/stats").await;
    assert_eq!(st["peers"], 1);
    assert_eq!(st["files"], 5);
    assert_eq!(st["chunks"], 10);
    assert_eq!(st["under_replicated"], 10);
    assert_eq!(st["lost"], 0);
    for key in ["orders_in_flight", "orders_issued", "ws_messages_in", "relay_bytes", "relay_frames", "rate_limited"] {
        assert!(st[key].is_u64(), "{key} in stats");
    }
    let typed: Stats = serde_json::from_value(st).unwrap();
    assert_eq!((typed.peers_native, typed.replication), (1, 3));
}

/// Parses the Prometheus text format strictly enough to catch mistakes: every sample belongs
/// to a declared metric family, names and labels are well formed, values are numbers.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "family declared twice: {name}");
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        assert!(!line.starts_with('#'), "{line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
        assert!(types.contains_key(name), "sample without TYPE: {line}");
        if types[name] == "counter" {
            assert!(name.ends_with("_total"), "counter names end in _total: {name}");
        }
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            for pair in labels[1..labels.len() - 1].split(',') {
                let (k, v) = pair.split_once('=').unwrap();
                assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
                assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
            }
        }
        assert!(samples.insert(series.to_string(), value).is_none(), "duplicate series: {series}");
    }
    samples
}

/// A file's detail lists the holders of a page of its chunks (`?offset=&limit=`), with the
/// chunk the page starts at; its health counts every chunk.
#[tokio::test]
async fn a_file_s_holders_come_in_pages() {
    let (url, host) = start(tracker::Config::default()).await;
    let mut a = connect(&url).await;
    hello(&mut a, &secret(1)).await;
    let id = publish(&mut a, 1, "ten.bin", 9, 10).await;
    let (status, all) = get_json(&host, &format!("/api/files/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!((all["holders"].as_array().unwrap().len(), &all["holders_offset"]), (10, &serde_json::json!(0)));
    let (_, page) = get_json(&host, &format!("/api/files/{id}?offset=4&limit=3")).await;
    let d: FileDetail = serde_json::from_value(page).unwrap();
    assert_eq!((d.holders.len(), d.holders_offset, d.manifest.chunks.len()), (3, 4, 10));
    assert_eq!(d.holders, vec![vec![0]; 3], "the publisher holds chunks 4..7");
    assert_eq!(d.health.min_copies, all["health"]["min_copies"].as_u64().unwrap() as u32, "health counts them all");
    let (_, past) = get_json(&host, &format!("/api/files/{id}?offset=99")).await;
    assert_eq!((past["holders"].as_array().unwrap().len(), &past["holders_offset"]), (0, &serde_json::json!(10)));
    assert_eq!(get_json(&host, &format!("/api/files/{id}?offset=x")).await.0, 400);
}

#[tokio::test]
async fn the_live_peers_come_in_pages_ordered_by_id() {
    let (url, host) = start(tracker::Config::default()).await;
    let mut conns = Vec::new();
    let mut ids = Vec::new();
    for n in 0..7u32 {
        let mut ws = connect(&url).await;
        ids.push(hello(&mut ws, &secret(n + 10)).await.to_string());
        conns.push(ws);
    }
    ids.sort();
    let mut paged = Vec::new();
    for offset in [0, 3, 6] {
        let (status, p) = get_json(&host, &format!("/api/peers?offset={offset}&limit=3")).await;
        assert_eq!(status, 200);
        let typed: PeersAnswer = serde_json::from_value(p).unwrap();
        assert_eq!((typed.total, typed.offset, typed.limit), (7, offset, 3));
        paged.extend(typed.peers.into_iter().map(|p| p.id.to_string()));
    }
    assert_eq!(paged, ids, "the pages, in turn, are every live peer once, in the order of their ids");
    let (_, all) = get_json(&host, "/api/peers").await;
    let typed: PeersAnswer = serde_json::from_value(all).unwrap();
    assert_eq!((typed.peers.len(), typed.limit), (7, 100), "a page of 100 unless asked");
    let (_, big) = get_json(&host, "/api/peers?limit=100000").await;
    assert_eq!(big["limit"], 500, "a page is 500 peers at most");
    let (_, beyond) = get_json(&host, "/api/peers?offset=50").await;
    assert_eq!((beyond["total"].as_u64(), beyond["peers"].as_array().map(Vec::len)), (Some(7), Some(0)));
    assert_eq!(get_json(&host, "/api/peers?limit=x").await.0, 400);
    drop(conns);
}

#[tokio::test]
async fn metrics_parse_and_count() {
    let (url, host) = start(tracker::Config::default()).await;
    let (mut a, mut b) = (connect(&url).await, connect(&url).await);
    hello(&mut a, &secret(1)).await;
    let id_b = hello(&mut b, &secret(2)).await;
    publish(&mut a, 1, "x.txt", 1, 3).await;
    let sig = swarm_core::Signal::Offer { sdp: "v=0".into() };
    send(&mut a, &ClientMsg::Signal { to: id_b, conn: 1, signal: sig }).await;
    recv(&mut b).await;
    let (status, text) = http_get(&host, "/metrics").await;
    assert_eq!(status, 200);
    let m = parse_prometheus(&text);
    assert_eq!(m["pp_peers{kind=\"native\"}"], 2.0);
    assert_eq!(m["pp_files"], 1.0);
    assert_eq!(m["pp_chunks"], 3.0);
    assert_eq!(m["pp_signals_relayed_total"], 1.0);
    assert_eq!(m["pp_relay_bytes_total"], 0.0);
    assert!(m["pp_ws_messages_total{dir=\"in\"}"] >= 5.0);
    assert!(m.contains_key("pp_repair_orders_issued_total"));
}

/// `/api/stats` and `/metrics` serve figures the core published after the request began (what
/// just happened is seen), and readers at once share the walks of the swarm that take them:
/// at most one per 100 ms however many ask (`tracker/src/driver.rs`, `Shared::figures`).
#[tokio::test]
async fn readers_of_the_figures_see_what_just_happened_and_share_the_walks() {
    let (url, host) = start(tracker::Config::default()).await;
    let mut a = connect(&url).await;
    hello(&mut a, &secret(1)).await;
    for i in 0..3u8 {
        publish(&mut a, i as u32, &format!("f{i}.txt"), i, 2).await;
        let (_, st) = get_json(&host, "/api/stats").await;
        assert_eq!(st["files"], u64::from(i) + 1, "a read right after a publish sees it");
    }
    let taken = |text: String| parse_prometheus(&text)["pp_figures_taken_total"];
    let before = taken(http_get(&host, "/metrics").await.1);
    let t0 = std::time::Instant::now();
    let readers: Vec<_> = (0..200)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { get_json(&host, "/api/stats").await.0 })
        })
        .collect();
    for r in readers {
        assert_eq!(r.await.unwrap(), 200);
    }
    let elapsed_ms = t0.elapsed().as_millis() as f64;
    let walks = taken(http_get(&host, "/metrics").await.1) - before;
    assert!(
        walks <= 2.0 + elapsed_ms / 100.0,
        "200 readers in {elapsed_ms} ms took {walks} walks: at most one per 100 ms (plus the /metrics reads)"
    );
}

/// `/metrics` read as Prometheus reads it (the `prometheus-parse` exposition parser), checked
/// against the naming conventions (<https://prometheus.io/docs/practices/naming/>): every
/// family has HELP and TYPE, counters end in `_total` and nothing else does, units are base
/// units named at the end, no label value stands for the sum of its siblings, and the
/// `process_*` families and `pp_build_info` are there.
#[tokio::test]
async fn metrics_follow_the_prometheus_conventions() {
    let (url, host) = start(tracker::Config::default()).await;
    let mut a = connect(&url).await;
    hello(&mut a, &secret(1)).await;
    publish(&mut a, 1, "x.txt", 1, 3).await;
    let (status, text) = http_get(&host, "/metrics").await;
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let sample_lines = text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count();
    assert_eq!(scrape.samples.len(), sample_lines, "every sample line parsed");

    let mut kinds: HashMap<&str, &str> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(kinds.insert(name, kind).is_none(), "{name} declared twice");
        }
    }
    let valid_name = |n: &str| {
        n.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    for sample in &scrape.samples {
        let name = sample.metric.as_str();
        let kind = kinds.get(name).unwrap_or_else(|| panic!("{name} has no TYPE"));
        assert!(scrape.docs.contains_key(name), "{name} has no HELP");
        assert!(valid_name(name), "{name}: not a valid metric name");
        assert!(name.starts_with("pp_") || name.starts_with("process_"), "{name}: not in our namespace");
        match *kind {
            "counter" => assert!(name.ends_with("_total"), "counter {name} must end in _total"),
            _ => assert!(!name.ends_with("_total"), "{kind} {name} must not end in _total"),
        }
        for unit in ["_ms", "_millis", "_us", "_kb", "_mb", "_mib", "_minutes", "_hours", "_percent"] {
            assert!(!name.contains(unit), "{name}: use base units (seconds, bytes, ratios)");
        }
        for (label, value) in sample.labels.iter() {
            assert!(valid_name(label), "{name}: bad label name {label}");
            for all in ["total", "all", "sum", "received", "issued", "sent"] {
                assert_ne!(
                    value.as_str(),
                    all,
                    "{name}{{{label}={value:?}}} is the sum of its siblings: a family of its own"
                );
            }
        }
    }
    for family in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
        "pp_build_info",
    ] {
        assert!(kinds.contains_key(family), "{family} is missing");
    }
    let info = scrape.samples.iter().find(|s| s.metric == "pp_build_info").unwrap();
    assert_eq!(info.labels.get("version"), Some(env!("CARGO_PKG_VERSION")));
}

/// The Grafana dashboard in the repository (packaging/grafana/pp-tracker.json) queries only
/// metric families `/metrics` has: renaming a metric without the dashboard fails here.
#[tokio::test]
async fn the_grafana_dashboard_queries_metrics_that_exist() {
    let (_url, host) = start(tracker::Config::default()).await;
    let (_, text) = http_get(&host, "/metrics").await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/grafana/pp-tracker.json");
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut names = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            // Metric names in PromQL: words starting pp_ or process_ (functions and labels do not).
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("pp_") || word.starts_with("process_") {
                    names += 1;
                    if let Some(cluster) = word.strip_prefix("pp_cluster_") {
                        // Only a cluster node exports these: look for them where they are made.
                        let source = include_str!("../src/http/metrics.rs");
                        assert!(source.contains(&format!("\"cluster_{cluster}\"")), "{word:?} is never exported");
                        continue;
                    }
                    let declared = format!("# TYPE {word} ");
                    assert!(text.contains(&declared), "the dashboard's {word:?} is not in /metrics");
                }
            }
        }
    }
    assert!(names > 20, "the dashboard names {names} metrics");
}
