#!/usr/bin/env bash
# Benchmarks the claims a tracker keeps, one node against a cluster of three on this machine,
# same run, same parameters: builds the release tracker and pp-loadtest, starts a 3-server
# NATS JetStream cluster, then
#   (a) one tracker node alone (no --cluster),
#   (b) three cluster nodes, once every node keeps its share of the shards;
# each time pp-loadtest connects the peers (round-robin over the nodes), publishes synthetic
# files (round-robin over the nodes: --files, --chunks-per-file), has every peer claim chunks
# of them (--holdings, `have` with full: true), and reads each node's `claims` (/api/stats)
# and resident memory. Prints a table: files published/refused, claims kept per node, memory
# growth per peer per node, beside the single-node baseline. Every process it starts is
# killed on exit, failure or Ctrl-C; logs stay in $PP_BENCH_DIR.
#
# Environment (defaults; QUICK=1 for a quick run: 500 peers, 50 files of 16 chunks, 16
# holdings): PP_BENCH_PEERS (5000), PP_BENCH_FILES (500), PP_BENCH_CHUNKS chunks per file
# (64), PP_BENCH_HOLDINGS claims per peer (64), and those of
# scripts/lib/bench-cluster-common.sh (PP_BENCH_PORT, NATS_SERVER, CARGO_TARGET_DIR,
# PP_BENCH_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${QUICK:-0}" = 1 ]; then
    PEERS=${PP_BENCH_PEERS:-500} FILES=${PP_BENCH_FILES:-50} CHUNKS=${PP_BENCH_CHUNKS:-16}
    HOLDINGS=${PP_BENCH_HOLDINGS:-16}
else
    PEERS=${PP_BENCH_PEERS:-5000} FILES=${PP_BENCH_FILES:-500} CHUNKS=${PP_BENCH_CHUNKS:-64}
    HOLDINGS=${PP_BENCH_HOLDINGS:-64}
fi
BENCH_NAME=claims
# shellcheck source=scripts/lib/bench-cluster-common.sh
source scripts/lib/bench-cluster-common.sh

COMMON=(--peers "$PEERS" --signal-rate 0 --settle 3 --files "$FILES" --chunks-per-file "$CHUNKS" --holdings "$HOLDINGS")

echo "== (a) one tracker node: $PEERS peers, $FILES files of $CHUNKS chunks, $HOLDINGS holdings per peer"
start_tracker "$SINGLE_PORT" single
"$LOADTEST" --tracker "$SINGLE_URL" --tracker-pid "$TPID" "${COMMON[@]}" | tee "$DIR/single.out"
kill -KILL "$TPID"

echo "== (b) three cluster nodes: the same, peers and files round-robin over the nodes"
start_cluster_nodes
# Until the shards are spread (each node keeps its fair share, none is free): a file whose
# shard is moving would be refused as unavailable.
SHARDS=$(curl -sf "http://127.0.0.1:$((BASE + 91))/api/cluster" | sed -n 's/.*"shards":\([0-9]*\).*/\1/p')
spread=0
for _ in $(seq 120); do
    total=0 least=$SHARDS
    for i in 1 2 3; do
        n=$(curl -sf "http://127.0.0.1:$((BASE + 90 + i))/api/cluster" | sed -n 's/.*"owned":\[\([0-9,]*\)\].*/\1/p' | tr ',' '\n' | grep -c . || true)
        total=$((total + n))
        [ "$n" -lt "$least" ] && least=$n
    done
    if [ "$total" = "$SHARDS" ] && [ "$least" -ge $((SHARDS / 3)) ]; then spread=1; break; fi
    sleep 0.5
done
[ "$spread" = 1 ] || echo "warning: the shards were not spread over the nodes after 60 s ($total kept, fewest $least)" >&2
"$LOADTEST" --tracker "$URL_LIST" --tracker-pid "$TPID_LIST" "${COMMON[@]}" | tee "$DIR/cluster.out"

# Summary, from the `summary:` line pp-loadtest prints last.
S=$DIR/single.out C=$DIR/cluster.out
echo
echo "== summary ($PEERS peers, $FILES files x $CHUNKS chunks, $HOLDINGS holdings per peer; logs in $DIR)"
row "" "1 node" "3 nodes"
row "peers held (failed)" "$(get peers "$S") ($(get failed "$S"))" "$(get peers "$C") ($(get failed "$C"))"
row "files published / refused" "$(get files_published "$S") / $(get files_refused "$S")" \
    "$(get files_published "$C") / $(get files_refused "$C")"
row "refusals by error code" "$(get refusals "$S")" "$(get refusals "$C")"
row "claims announced" "$(get claims_expected "$S")" "$(get claims_expected "$C")"
for i in 1 2 3; do
    row "claims kept, node $i" "$([ "$i" = 1 ] && get claims_1 "$S")" "$(get claims_$i "$C")"
done
row "claims kept, all nodes" "$(get claims_all "$S")" "$(get claims_all "$C")"
row "counts settled after, s" "$(get claims_settle_s "$S")" "$(get claims_settle_s "$C")"
row "slowest /api/stats answer meanwhile, s" "$(get stats_slowest_s "$S")" "$(get stats_slowest_s "$C")"
row "challenges expired meanwhile, per node" "$(get challenges_expired "$S")" "$(get challenges_expired "$C")"
for i in 1 2 3; do
    row "bytes/peer node $i: all / claims phase" \
        "$([ "$i" = 1 ] && echo "$(get mem_claims_peer_1 "$S") / $(get mem_claims_phase_1 "$S")")" \
        "$(get mem_claims_peer_$i "$C") / $(get mem_claims_phase_$i "$C")"
done
for i in 1 2 3; do
    row "bytes per claim kept, node $i" "$([ "$i" = 1 ] && get bytes_per_claim_1 "$S")" "$(get bytes_per_claim_$i "$C")"
done
row "peers dropped" "$(get lost_peers "$S")" "$(get lost_peers "$C")"
echo "(bytes/peer: resident memory growth of the node since before the peers connected, and during the claims"
echo " phase alone (the files' index included), divided by all the peers of the run; bytes per claim: the claims"
echo " phase's growth per claim kept)"
echo "tracker log lines at WARN or ERROR (but the missing web app):"
grep -hE 'WARN|ERROR' "$DIR"/single.log "$DIR"/node*.log | grep -v 'no embedded web app' | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-300 || true
