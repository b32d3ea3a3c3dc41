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
# PP_BENCH_SECS of signalling (10), PP_BENCH_PORT base port (17000), NATS_SERVER (nats-server
# on PATH, else the one scripts/setup.sh installs), CARGO_TARGET_DIR (target),
# PP_BENCH_DIR for logs (a new /tmp/pp-bench-cluster.* directory).
set -euo pipefail
cd "$(dirname "$0")/.."

PEERS=${PP_BENCH_PEERS:-5000}
RATE=${PP_BENCH_RATE:-10000}
SECS=${PP_BENCH_SECS:-10}
BASE=${PP_BENCH_PORT:-17000}
NATS=${NATS_SERVER:-${PP_NATS_SERVER:-$(command -v nats-server || echo "${XDG_DATA_HOME:-$HOME/.local/share}/peer-pressure/nats/bin/nats-server")}}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
DIR=${PP_BENCH_DIR:-$(mktemp -d /tmp/pp-bench-cluster.XXXXXX)}
mkdir -p "$DIR"
[ -x "$NATS" ] || { echo "nats-server not found (set NATS_SERVER)" >&2; exit 1; }

PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    # They are disowned (no "Killed" lines): wait for them to be gone by polling.
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    done
    echo "logs: $DIR" >&2
    exit "$rc"
}
trap cleanup EXIT INT TERM

# 5,000 peers are 5,000 sockets in pp-loadtest and as many in the trackers.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((PEERS + 1024)) ] || { echo "ulimit -n $(ulimit -n) is too low for $PEERS peers" >&2; exit 1; }

echo "== building (release)"
cargo build --release -p tracker -p loadtest
TRACKER=$TARGET/release/tracker
LOADTEST=$TARGET/release/pp-loadtest

# Waits until http://127.0.0.1:$1$2 answers, for at most $3 seconds.
wait_http() {
    for _ in $(seq $(($3 * 10))); do
        curl -sf -o /dev/null "http://127.0.0.1:$1$2" && return 0
        sleep 0.1
    done
    echo "nothing answers on http://127.0.0.1:$1$2 after $3 s" >&2
    return 1
}

echo "== NATS: 3 servers with JetStream"
ROUTES=nats://127.0.0.1:$((BASE + 11)),nats://127.0.0.1:$((BASE + 12)),nats://127.0.0.1:$((BASE + 13))
NATS_URLS=nats://127.0.0.1:$((BASE + 1)),nats://127.0.0.1:$((BASE + 2)),nats://127.0.0.1:$((BASE + 3))
for i in 1 2 3; do
    "$NATS" -js -a 127.0.0.1 -p $((BASE + i)) -m $((BASE + 20 + i)) -sd "$DIR/nats$i" -n "n$i" \
        --cluster_name pp --cluster nats://127.0.0.1:$((BASE + 10 + i)) --routes "$ROUTES" \
        >"$DIR/nats$i.log" 2>&1 &
    PIDS+=($!)
    disown
done
for i in 1 2 3; do wait_http $((BASE + 20 + i)) /healthz 30; done

# Starts a tracker on port $1 with log $2 and extra flags; sets TPID.
start_tracker() {
    local port=$1 name=$2
    shift 2
    "$TRACKER" --listen 127.0.0.1:"$port" --data-dir "$DIR/$name" --stun-listen off \
        --max-conns-per-ip 0 --max-peers 30000 "$@" >"$DIR/$name.log" 2>&1 &
    TPID=$!
    PIDS+=("$TPID")
    disown
    wait_http "$port" /metrics 30
}

metric() { # metric PORT NAME: the value of a metric line (empty when the node is gone)
    curl -sf "http://127.0.0.1:$1/metrics" 2>/dev/null | awk -v m="$2" '$1 == m { print $2 }'
}

COMMON=(--peers "$PEERS" --signal-rate "$RATE" --duration "$SECS" --settle 3)

echo "== (a) one tracker node, $PEERS peers, $RATE signals/s"
start_tracker $((BASE + 90)) single
"$LOADTEST" --tracker ws://127.0.0.1:$((BASE + 90))/ws --tracker-pid "$TPID" "${COMMON[@]}" | tee "$DIR/single.out"
kill -KILL "$TPID"

echo "== (b) three cluster nodes, $PEERS peers, $RATE signals/s across nodes, then kill node 3"
URLS=()
TPIDS=()
for i in 1 2 3; do
    start_tracker $((BASE + 90 + i)) "node$i" --cluster "$NATS_URLS"
    URLS+=("ws://127.0.0.1:$((BASE + 90 + i))/ws")
    TPIDS+=("$TPID")
done
# Until all three see each other.
for _ in $(seq 300); do
    n=0
    for i in 1 2 3; do [ "$(metric $((BASE + 90 + i)) pp_cluster_members)" = 3 ] && n=$((n + 1)); done
    [ "$n" = 3 ] && break
    sleep 0.1
done
[ "$n" = 3 ] || { echo "the cluster nodes did not find each other in 30 s" >&2; exit 1; }
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
"$LOADTEST" --tracker "$(IFS=,; echo "${URLS[*]}")" --tracker-pid "$(IFS=,; echo "${TPIDS[*]}")" --cross-node \
    --failover-kill-pid "${TPIDS[2]}" --failover-timeout 60 "${COMMON[@]}" | tee "$DIR/cluster.out"
sleep 1.5

# Summary, from the `summary:` line pp-loadtest prints last.
get() { grep -m1 '^summary:' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
S=$DIR/single.out C=$DIR/cluster.out
row() { printf '%-42s | %-14s | %s\n' "$@"; }
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
