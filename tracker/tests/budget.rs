//! Every byte of tracker state is charged and bounded, against a real tracker on port 0 with
//! no address exempt from the limits: a flood of made-up claims, phantom publishes, and many
//! identities from one address each meet a bound with a clear error, while an honest peer
//! (from another address, through a trusted proxy's header) goes on publishing and locating.

mod common;
use common::*;
use swarm_core::wire::{ErrorCode, FileMeta};
use swarm_core::{ChunkId, ClientMsg, Manifest, ManifestBuilder, ServerMsg};

const ATTACKER: &str = "198.51.100.66";
const HONEST: &str = "198.51.100.1";

/// A tracker that exempts no address and takes the client address from a loopback proxy's
/// `X-Forwarded-For` (so two "addresses" can be tested from one machine).
fn config() -> tracker::Config {
    let mut c = tracker::Config {
        limit_exempt: Default::default(),
        trusted_proxies: tracker::client_addr::TrustedProxies::parse(["127.0.0.1/32"]).unwrap(),
        ..Default::default()
    };
    c.limits.max_conns_per_ip = 0;
    c
}

async fn connect_from(url: &str, addr: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("x-forwarded-for", addr.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// `n` made-up chunk ids, distinct for each `seed`.
fn made_up(seed: u32, n: u32) -> Vec<ChunkId> {
    (0..n)
        .map(|i| {
            let mut c = [0u8; 32];
            c[..4].copy_from_slice(&seed.to_be_bytes());
            c[4..8].copy_from_slice(&i.to_be_bytes());
            ChunkId(c)
        })
        .collect()
}

/// A manifest of `chunks` tiny chunks (as if the publisher held them).
fn manifest(seed: u32, chunks: u32) -> Manifest {
    let mut b = ManifestBuilder::new(8);
    for i in 0..chunks {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&seed.to_be_bytes());
        bytes[4..].copy_from_slice(&i.to_be_bytes());
        b.push(&bytes);
    }
    b.finish()
}

/// Reads until an answer to `req` (skipping challenges and other traffic).
async fn answer(ws: &mut Ws, req: u32) -> ServerMsg {
    loop {
        match recv(ws).await {
            m @ ServerMsg::Error { req: Some(r), .. } if r == req => return m,
            m @ (ServerMsg::Published { req: r, .. } | ServerMsg::Located { req: r, .. }) if r == req => return m,
            _ => {}
        }
    }
}

/// The honest peer's round: announces and publishes a small file, then locates it.
async fn honest_round(ws: &mut Ws, seed: u32) {
    let m = manifest(seed, 3);
    send(ws, &ClientMsg::Have { chunks: m.chunks.clone(), full: false }).await;
    let meta = FileMeta::public(format!("honest-{seed}.txt"), "text/plain");
    send(ws, &ClientMsg::Publish { req: seed, manifest: m.clone(), meta }).await;
    assert!(matches!(answer(ws, seed).await, ServerMsg::Published { .. }), "the honest publish is taken");
    send(ws, &ClientMsg::Locate { req: seed + 1, file: m.file_id() }).await;
    let ServerMsg::Located { holders, .. } = answer(ws, seed + 1).await else { panic!("not located") };
    assert!(holders.iter().all(|h| h.len() == 1), "{holders:?}");
}

/// The errors among what arrived until a `search` answer (every message before it was handled).
async fn errors_until_synced(ws: &mut Ws) -> Vec<(ErrorCode, String)> {
    send(ws, &ClientMsg::Search { req: 999_999, query: String::new(), limit: 1 }).await;
    let mut errors = Vec::new();
    loop {
        match recv(ws).await {
            ServerMsg::SearchResults { req: 999_999, .. } => return errors,
            ServerMsg::Error { code, message, .. } => errors.push((code, message)),
            _ => {}
        }
    }
}

/// A sample of `/metrics` (`name{labels}`), if present.
async fn metric(host: &str, sample: &str) -> Option<u64> {
    let (_, body) = http_get(host, "/metrics").await;
    body.lines().find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_flood_of_made_up_claims_keeps_a_bounded_number() {
    let mut config = config();
    config.repair.claims.max_loose = 500;
    let (url, host) = start(config).await;
    let mut honest = connect_from(&url, HONEST).await;
    hello(&mut honest, &secret(1)).await;
    let mut attacker = connect_from(&url, ATTACKER).await;
    hello(&mut attacker, &secret(2)).await;
    for round in 0..20 {
        send(&mut attacker, &ClientMsg::Have { chunks: made_up(round, 1_000), full: false }).await;
    }
    let errors = errors_until_synced(&mut attacker).await;
    assert_eq!(errors.len(), 20, "one error per message, not per claim: {errors:?}");
    assert!(errors.iter().all(|(c, _)| *c == ErrorCode::LimitReached));
    assert!(
        errors[0].1.starts_with("500 claims of chunks no file uses dropped")
            && errors[0].1.contains("--max-loose-claims"),
        "{errors:?}"
    );
    let (_, st) = get_json(&host, "/api/stats").await;
    assert_eq!(st["claims"], 500, "the tracker keeps the cap, not the flood");
    assert_eq!(metric(&host, "pp_claims_refused_total{reason=\"loose_over_cap\"}").await, Some(19_500));
    let claims = metric(&host, "pp_state_bytes{kind=\"claims\"}").await.unwrap();
    use swarm_core::swarm::budget::{CLAIM_BYTES, LOOSE_BYTES};
    assert_eq!(claims, 500 * (CLAIM_BYTES + LOOSE_BYTES), "500 loose claims, each charged as one");
    honest_round(&mut honest, 7).await;
}

#[tokio::test]
async fn phantom_publishes_meet_the_chunks_per_address_limit() {
    let mut config = config();
    config.limits.max_chunks_per_ip = 1_000;
    let (url, host) = start(config).await;
    let mut attacker = connect_from(&url, ATTACKER).await;
    hello(&mut attacker, &secret(2)).await;
    let mut refused = None;
    for seed in 0..5 {
        let m = manifest(100 + seed, 400);
        send(&mut attacker, &ClientMsg::Have { chunks: m.chunks.clone(), full: false }).await;
        let meta = FileMeta::public(format!("phantom-{seed}"), "x");
        send(&mut attacker, &ClientMsg::Publish { req: seed, manifest: m, meta }).await;
        if let ServerMsg::Error { code, message, .. } = answer(&mut attacker, seed).await {
            refused.get_or_insert((seed, code, message));
        }
    }
    let (seed, code, message) = refused.expect("a publish over the limit is refused");
    assert_eq!((seed, code), (2, ErrorCode::LimitReached), "{message}");
    assert!(message.contains("--max-chunks-per-ip") && message.contains(ATTACKER), "{message}");
    let (_, st) = get_json(&host, "/api/stats").await;
    assert_eq!(st["files"], 2);
    // A second identity from the same address meets the same limit.
    let mut again = connect_from(&url, ATTACKER).await;
    hello(&mut again, &secret(3)).await;
    let meta = FileMeta::public("phantom-x", "x");
    send(&mut again, &ClientMsg::Publish { req: 50, manifest: manifest(200, 400), meta }).await;
    assert_eq!(error_code(&answer(&mut again, 50).await), ErrorCode::LimitReached);
    // Another address publishes as before.
    let mut honest = connect_from(&url, HONEST).await;
    hello(&mut honest, &secret(1)).await;
    honest_round(&mut honest, 7).await;
}

#[tokio::test]
async fn near_the_budget_the_heaviest_address_is_refused_and_others_keep_working() {
    let mut config = config();
    config.limits.state_budget = 1 << 20;
    config.limits.state_budget_per_ip = 0;
    config.repair.claims.max_loose = 1_000;
    let (url, host) = start(config).await;
    let mut honest = connect_from(&url, HONEST).await;
    hello(&mut honest, &secret(1)).await;
    // Many identities from one address, each claiming made-up chunks.
    let mut over_budget = Vec::new();
    let mut kept = Vec::new();
    'attack: for n in 0..40u32 {
        let mut ws = connect_from(&url, ATTACKER).await;
        match hello_answer(&mut ws, &secret(100 + n), swarm_core::PeerKind::Native, None, None).await {
            ServerMsg::Welcome { .. } => {}
            ServerMsg::Error { code, message, .. } => {
                over_budget.push((code, message));
                break 'attack;
            }
            other => panic!("{other:?}"),
        }
        for round in 0..5 {
            send(&mut ws, &ClientMsg::Have { chunks: made_up(n * 10 + round, 100), full: false }).await;
        }
        for (code, message) in errors_until_synced(&mut ws).await {
            over_budget.push((code, message));
        }
        kept.push(ws);
    }
    assert!(!over_budget.is_empty(), "the attack met the budget");
    assert!(over_budget.iter().all(|(c, _)| *c == ErrorCode::OverBudget), "{over_budget:?}");
    assert!(over_budget[0].1.contains(ATTACKER) && over_budget[0].1.contains("--state-budget"), "{over_budget:?}");
    let mut used = 0;
    for kind in ["peers", "claims", "files", "trust"] {
        used += metric(&host, &format!("pp_state_bytes{{kind=\"{kind}\"}}")).await.unwrap();
    }
    assert!(used < 1 << 20, "stopped short of the budget: {used}");
    let top = metric(&host, &format!("pp_state_bytes_by_address{{addr=\"{ATTACKER}\"}}")).await;
    assert!(top.is_some_and(|b| b > 7 * (1 << 20) / 8 - 64 * 1024), "{top:?}");
    assert!(metric(&host, "pp_over_budget_total").await.unwrap() > 0);
    // The honest peer, already in, and a newcomer from its address both still work.
    honest_round(&mut honest, 7).await;
    let mut newcomer = connect_from(&url, HONEST).await;
    hello(&mut newcomer, &secret(2)).await;
    honest_round(&mut newcomer, 20).await;
}

#[tokio::test]
async fn claims_of_chunks_no_file_uses_are_forgotten_after_their_time() {
    let mut config = config();
    config.repair.claims.loose_ttl_ms = 1_000;
    config.orphan_grace = None; // not trimmed: only forgotten for age
    let (url, host) = start(config).await;
    let mut attacker = connect_from(&url, ATTACKER).await;
    hello(&mut attacker, &secret(2)).await;
    send(&mut attacker, &ClientMsg::Have { chunks: made_up(1, 300), full: false }).await;
    assert!(errors_until_synced(&mut attacker).await.is_empty());
    let (_, st) = get_json(&host, "/api/stats").await;
    assert_eq!(st["claims"], 300);
    // The peer stays and keeps talking; its claims go all the same.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        send(&mut attacker, &ClientMsg::Have { chunks: made_up(1, 300)[..10].to_vec(), full: false }).await;
        send(&mut attacker, &ClientMsg::Heartbeat).await;
        let (_, st) = get_json(&host, "/api/stats").await;
        if st["claims"].as_u64().unwrap() < 300 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "loose claims never expired");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(metric(&host, "pp_claims_refused_total{reason=\"loose_expired\"}").await.unwrap() >= 290);
}
