# Shared by scripts/bench-cluster.sh and scripts/bench-claims.sh (sourced, not run): settings
# from the environment, a cleanup trap that kills every process started, the release build,
# a 3-server NATS JetStream cluster, tracker nodes (alone or in a cluster), and the summary
# helpers. The sourcing script sets BENCH_NAME (its log directory's name) and PEERS first.
#
# Environment (defaults): PP_BENCH_PORT base port (17000), NATS_SERVER (nats-server on PATH,
# else the one scripts/setup.sh installs), CARGO_TARGET_DIR (target), PP_BENCH_DIR for logs
# (a new /tmp/pp-bench-$BENCH_NAME.* directory).

BASE=${PP_BENCH_PORT:-17000}
NATS=${NATS_SERVER:-${PP_NATS_SERVER:-$(command -v nats-server || echo "${XDG_DATA_HOME:-$HOME/.local/share}/peer-pressure/nats/bin/nats-server")}}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
DIR=${PP_BENCH_DIR:-$(mktemp -d "/tmp/pp-bench-$BENCH_NAME.XXXXXX")}
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
TRACKER=$TARGET/release/pp-tracker
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

# The single node: port and ws URL.
SINGLE_PORT=$((BASE + 90))
SINGLE_URL=ws://127.0.0.1:$SINGLE_PORT/ws

# Starts three cluster nodes on ports BASE+91..93 with extra flags, and waits until all three
# see each other; sets URLS and TPIDS (arrays) and URL_LIST and TPID_LIST (comma-separated).
start_cluster_nodes() {
    URLS=()
    TPIDS=()
    for i in 1 2 3; do
        start_tracker $((BASE + 90 + i)) "node$i" --cluster "$NATS_URLS" "$@"
        URLS+=("ws://127.0.0.1:$((BASE + 90 + i))/ws")
        TPIDS+=("$TPID")
    done
    URL_LIST=$(IFS=,; echo "${URLS[*]}")
    TPID_LIST=$(IFS=,; echo "${TPIDS[*]}")
    local n
    for _ in $(seq 300); do
        n=0
        for i in 1 2 3; do [ "$(metric $((BASE + 90 + i)) pp_cluster_members)" = 3 ] && n=$((n + 1)); done
        [ "$n" = 3 ] && return 0
        sleep 0.1
    done
    echo "the cluster nodes did not find each other in 30 s" >&2
    exit 1
}

# The value of KEY in the `summary:` line pp-loadtest printed into FILE: get KEY FILE.
get() { grep -m1 '^summary:' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
# One row of the summary table: a label and a column per run.
row() { printf '%-42s | %-14s | %s\n' "$@"; }
