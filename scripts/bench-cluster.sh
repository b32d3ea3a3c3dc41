#!/usr/bin/env bash
# Benchmarks one tracker against a cluster of three on this machine, same run, same
# parameters: builds the release tracker and pp-loadtest, starts a 3-server NATS JetStream
# cluster, then
#   (a) one tracker node alone (no --cluster): peers held, connect time, memory per idle
#       peer, signalling msgs/s with random receivers, relay latency p50/p99;
#   (b) three cluster nodes: the same with every signal's receiver on another node than its
#       sender, memory per idle peer per node, then failover: one node is killed and the
#       time until its peers are welcomed elsewhere and have re-announced is measured.
# Prints a summary table at the end, with each node's pp_cluster_dropped_total. Every
# process it starts is killed on exit, failure or Ctrl-C; logs stay in $PP_BENCH_DIR.
#
# Environment (defaults): PP_BENCH_PEERS (5000), PP_BENCH_RATE signals/s (10000),
# PP_BENCH_SECS of signalling (10), and those of scripts/lib/bench-cluster-common.sh
# (PP_BENCH_PORT, NATS_SERVER, CARGO_TARGET_DIR, PP_BENCH_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

PEERS=${PP_BENCH_PEERS:-5000}
RATE=${PP_BENCH_RATE:-10000}
SECS=${PP_BENCH_SECS:-10}
BENCH_NAME=cluster
# shellcheck source=scripts/lib/bench-cluster-common.sh
source scripts/lib/bench-cluster-common.sh

COMMON=(--peers "$PEERS" --signal-rate "$RATE" --duration "$SECS" --settle 3)

echo "== (a) one tracker node, $PEERS peers, $RATE signals/s"
start_tracker "$SINGLE_PORT" single
"$LOADTEST" --tracker "$SINGLE_URL" --tracker-pid "$TPID" "${COMMON[@]}" | tee "$DIR/single.out"
kill -KILL "$TPID"

echo "== (b) three cluster nodes, $PEERS peers, $RATE signals/s across nodes, then kill node 3"
start_cluster_nodes
# Each node's drop counter every second (the killed node's last value stays in its file).
(
    while sleep 1; do
        for i in 1 2 3; do
            v=$(metric $((BASE + 90 + i)) pp_cluster_dropped_total)
            [ -n "$v" ] && echo "$v" >"$DIR/dropped$i"
        done
    done
) &
PIDS+=($!)
disown
"$LOADTEST" --tracker "$URL_LIST" --tracker-pid "$TPID_LIST" --cross-node \
    --failover-kill-pid "${TPIDS[2]}" --failover-timeout 60 "${COMMON[@]}" | tee "$DIR/cluster.out"
sleep 1.5

# Summary, from the `summary:` line pp-loadtest prints last.
S=$DIR/single.out C=$DIR/cluster.out
echo
echo "== summary ($PEERS peers, $RATE signals/s for $SECS s; logs in $DIR)"
row "" "1 node" "3 nodes"
row "peers held (failed)" "$(get peers "$S") ($(get failed "$S"))" "$(get peers "$C") ($(get failed "$C"))"
row "connect time, s" "$(get connect_s "$S")" "$(get connect_s "$C")"
row "signals received/s (random / cross-node)" "$(get sig_received_per_s "$S")" "$(get sig_received_per_s "$C")"
row "signals lost, %" "$(get sig_lost_pct "$S")" "$(get sig_lost_pct "$C")"
row "latency p50 / p99, ms (upper bounds)" "$(get p50_ms "$S") / $(get p99_ms "$S")" "$(get p50_ms "$C") / $(get p99_ms "$C")"
for i in 1 2 3; do
    row "bytes/idle peer node $i: /cluster, /node" \
        "$([ "$i" = 1 ] && echo "$(get mem_cluster_1 "$S") / $(get mem_node_1 "$S")")" \
        "$(get mem_cluster_$i "$C") / $(get mem_node_$i "$C")"
done
row "bytes/idle peer, all nodes" "$(get mem_all "$S")" "$(get mem_all "$C")"
row "failover: peers of node 3 back" "n/a" "$(get failover_back "$C") of $(get failover_peers "$C"), $(get failover_never "$C") never"
row "failover p50 / p99 / max, ms" "n/a" \
    "$(get failover_p50_ms "$C") / $(get failover_p99_ms "$C") / $(get failover_max_ms "$C")"
row "after failover: signals lost, %" "n/a" "$(get after_sig_lost_pct "$C")"
row "pp_cluster_dropped_total nodes 1/2/3" "n/a" \
    "$(cat "$DIR/dropped1" 2>/dev/null)/$(cat "$DIR/dropped2" 2>/dev/null)/$(cat "$DIR/dropped3" 2>/dev/null)"
row "peers dropped outside the failover" "$(get lost_peers "$S")" "$(get lost_peers "$C")"
echo "tracker log lines at WARN or ERROR (but the missing web app):"
grep -hE 'WARN|ERROR' "$DIR"/single.log "$DIR"/node*.log | grep -v 'no embedded web app' | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-300 || true
