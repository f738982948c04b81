#!/usr/bin/env bash
# Side-by-side benchmark: flaredb (one node, then three nodes) vs PostgreSQL 15 from Debian, on
# loopback, with the same key-value workload driven by the same load tool (`ultracloud bench
# flaredb` / `ultracloud bench postgres`): point get, point put and a two-key read-write
# transaction at 1, 16 and 64 clients, uniform and Zipf(0.99) keys over a preloaded key space.
# Same durability: PostgreSQL runs with fsync=on and synchronous_commit=on (every commit waits
# for its WAL flush); flaredb fsyncs its Raft log before it acknowledges a write.
#
# Installs postgresql-15 with apt-get when it is missing (Debian 12, as root). Everything runs
# from a temporary directory on disk (not tmpfs) that is removed at the end; every process the
# script starts is stopped by its PID, on failure too. Prints one table per target; also writes
# them to $OUT when set.
#
# Usage: scripts/bench-flaredb.sh [requests-per-cell [max-seconds-per-cell]]
#   BIN=path/to/ultracloud  another build (default target/release/ultracloud)
#   TARGETS="postgres flaredb-1 flaredb-3"  which targets to run (default all three)
#   KEY_SPACE=10000  distinct keys
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-./target/release/ultracloud}
REQUESTS=${1:-3000}
MAX_SECONDS=${2:-30}
KEY_SPACE=${KEY_SPACE:-10000}
TARGETS=${TARGETS:-postgres flaredb-1 flaredb-3}
PGBIN=/usr/lib/postgresql/15/bin
FLARE_PIDS=()
PG_PID=""
WORK=""

stop_flaredb() {
    local p
    for p in "${FLARE_PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    for p in "${FLARE_PIDS[@]:-}"; do
        [ -n "$p" ] || continue
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    FLARE_PIDS=()
}

stop_postgres() {
    [ -n "$PG_PID" ] || return 0
    kill -INT "$PG_PID" 2>/dev/null || true # fast shutdown
    for _ in $(seq 1 300); do kill -0 "$PG_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PG_PID" 2>/dev/null || true
    PG_PID=""
}

cleanup() {
    stop_flaredb
    stop_postgres
    [ -n "$WORK" ] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$BIN" ] || { echo "build first: cargo build --release -p ultracloud (or set BIN)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (PostgreSQL is started as the postgres user)" >&2; exit 1; }

if [ ! -x "$PGBIN/postgres" ]; then
    echo "installing postgresql-15 ..." >&2
    # Do not let the package create and start its own cluster: this script runs a private one.
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/ultracloud-bench.conf
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi

port_free() { ! ss -Htln "sport = :$1" | grep -q .; }

# A base port with the next 20 free: PostgreSQL at base, flaredb APIs at base+1.., admin at base+11..
pick_base() {
    local base i ok
    for _ in $(seq 1 50); do
        base=$((20000 + RANDOM % 30000))
        ok=1
        for i in $(seq 0 19); do port_free $((base + i)) || { ok=0; break; }; done
        [ "$ok" = 1 ] && { echo "$base"; return 0; }
    done
    echo "no free ports found" >&2
    return 1
}

WORK=$(mktemp -d /var/tmp/uc-bench-flaredb.XXXXXX)
chmod 755 "$WORK"
BASE=$(pick_base)

start_postgres() {
    local port=$BASE dir=$WORK/pg
    install -d -o postgres -g postgres "$dir"
    runuser -u postgres -- "$PGBIN/initdb" -D "$dir/data" -U bench -A trust -E UTF8 >"$dir/initdb.log" 2>&1
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
fsync = on
synchronous_commit = on
full_page_writes = on
EOF
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
    PG_PID=$(head -1 "$dir/data/postmaster.pid")
    PG_URL="postgres://bench@127.0.0.1:$port/postgres"
}

start_flaredb() { # nodes
    local n=$1 i initial="" d
    for i in $(seq 1 "$n"); do initial+="n$i=127.0.0.1:$((BASE + i)),"; done
    initial=${initial%,}
    ENDPOINTS=""
    for i in $(seq 1 "$n"); do
        d="$WORK/flaredb-$n-n$i"
        mkdir -p "$d"
        local args=(flaredb --name "n$i" --data-dir "$d/data" --listen "127.0.0.1:$((BASE + i))"
            --admin-listen "127.0.0.1:$((BASE + 10 + i))")
        [ "$n" -gt 1 ] && args+=(--initial-cluster "$initial")
        "$BIN" "${args[@]}" >"$d/log" 2>&1 &
        FLARE_PIDS+=($!)
        ENDPOINTS+="127.0.0.1:$((BASE + i)),"
    done
    ENDPOINTS=${ENDPOINTS%,}
    for i in $(seq 1 "$n"); do
        for _ in $(seq 1 150); do
            curl -sf "http://127.0.0.1:$((BASE + 10 + i))/readyz" >/dev/null && break
            sleep 0.2
        done
    done
    # Ready when a write goes through and the region has all its replicas.
    for _ in $(seq 1 60); do
        if timeout 10 "$BIN" db put --endpoints "$ENDPOINTS" bench-ready 1 >/dev/null 2>&1 &&
            [ "$("$BIN" db regions --endpoints "$ENDPOINTS" 2>/dev/null | awk 'NR==2 {print $5}' |
                tr ',' '\n' | grep -c .)" -ge "$n" ]; then
            return 0
        fi
        sleep 0.5
    done
    echo "flaredb ($n nodes) never became ready; logs in $WORK" >&2
    tail -20 "$WORK"/flaredb-"$n"-n1/log >&2
    return 1
}

run_bench() { # title, bench args...
    local title=$1
    shift
    echo
    echo "## $title"
    echo
    echo '```text'
    "$BIN" --log-level warn bench "$@" --requests "$REQUESTS" --max-seconds "$MAX_SECONDS" --key-space "$KEY_SPACE"
    echo '```'
}

# Not a pipeline into tee: the steps must run in this shell so the EXIT trap sees their PIDs.
if [ -n "${OUT:-}" ]; then exec > >(tee "$OUT"); fi
echo "# flaredb vs PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') — $(date -u +%Y-%m-%d)," \
    "$(nproc) cores, $(uname -r), $REQUESTS requests per cell (at most ${MAX_SECONDS} s)," \
    "$KEY_SPACE keys, 256-byte values"

for target in $TARGETS; do
    case $target in
        postgres)
            start_postgres
            run_bench "PostgreSQL 15 (fsync=on, synchronous_commit=on)" postgres --url "$PG_URL"
            stop_postgres
            ;;
        flaredb-1 | flaredb-3)
            n=${target#flaredb-}
            start_flaredb "$n"
            run_bench "flaredb, $n node(s)" flaredb --endpoints "$ENDPOINTS"
            stop_flaredb
            ;;
        *) echo "unknown target $target (postgres, flaredb-1, flaredb-3)" >&2; exit 2 ;;
    esac
done
