#!/usr/bin/env bash
# Side-by-side benchmark: chainfire vs etcd (Debian's etcd-server 3.4), single member and three
# members on loopback, same Raft timings (heartbeat 100 ms, election 1000 ms) and durability
# (both fsync their log before acknowledging). Drives every target with the same load tool:
# `ultracloud bench etcd`. Prints one table per target; writes them to $OUT if set.
#
# With TLS=1 both run with mutual TLS on every client and peer connection (one cluster CA from
# `ultracloud ca`; etcd with --client-cert-auth/--peer-client-cert-auth, chainfire with
# --tls-dir), and the load tool presents an operator's certificate: the cost of wire security.
#
# Usage: [TLS=1] scripts/bench-chainfire.sh [requests]   (needs a release build and `etcd` on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./target/release/ultracloud
REQUESTS=${1:-4000}
WORK=$(mktemp -d /tmp/uc-bench.XXXXXX)
OUT=${OUT:-$WORK/results.md}
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

[ -x "$BIN" ] || { echo "build first: cargo build --release -p ultracloud" >&2; exit 1; }
command -v etcd >/dev/null || { echo "install etcd-server first: apt-get install -y etcd-server" >&2; exit 1; }

TLS=${TLS:-0}
SCHEME=http
TLS_FLAGS=()
ETCD_TLS=()
CTL_TLS=()
BENCH_TLS=()
if [ "$TLS" = 1 ]; then
    SCHEME=https
    $BIN ca init --dir "$WORK/ca" >/dev/null
    $BIN ca issue --ca "$WORK/ca" --name member --role control-plane --ip 127.0.0.1 --out "$WORK/member" >/dev/null
    $BIN ca issue --ca "$WORK/ca" --name bench --role admin --out "$WORK/bench" >/dev/null
    TLS_FLAGS=(--tls-dir "$WORK/member")
    ETCD_TLS=(--cert-file "$WORK/member/cert.pem" --key-file "$WORK/member/key.pem"
        --trusted-ca-file "$WORK/ca/ca.pem" --client-cert-auth
        --peer-cert-file "$WORK/member/cert.pem" --peer-key-file "$WORK/member/key.pem"
        --peer-trusted-ca-file "$WORK/ca/ca.pem" --peer-client-cert-auth)
    CTL_TLS=(--cacert "$WORK/ca/ca.pem" --cert "$WORK/bench/cert.pem" --key "$WORK/bench/key.pem")
    BENCH_TLS=(--tls-dir "$WORK/bench")
fi

wait_ready() { # endpoint
    for _ in $(seq 1 100); do
        ETCDCTL_API=3 etcdctl --endpoints="$1" "${CTL_TLS[@]}" endpoint health >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "endpoint $1 never became healthy" >&2; return 1
}

start_cluster() { # kind members
    local kind=$1 n=$2 initial="" i
    for i in $(seq 1 "$n"); do initial+="m$i=$SCHEME://127.0.0.1:$((23800 + i)),"; done
    initial=${initial%,}
    ENDPOINTS=""
    for i in $(seq 1 "$n"); do
        local c=$((23700 + i)) p=$((23800 + i)) d="$WORK/$kind-$n-m$i"
        local common=(--name "m$i" --data-dir "$d" --listen-client-urls "$SCHEME://127.0.0.1:$c"
            --listen-peer-urls "$SCHEME://127.0.0.1:$p" --initial-advertise-peer-urls "$SCHEME://127.0.0.1:$p"
            --initial-cluster "$initial" --initial-cluster-token "bench-$kind-$n")
        if [ "$kind" = etcd ]; then
            etcd "${common[@]}" --advertise-client-urls "$SCHEME://127.0.0.1:$c" --initial-cluster-state new \
                "${ETCD_TLS[@]}" >"$d.log" 2>&1 &
        else
            $BIN chainfire "${common[@]}" --admin-listen "127.0.0.1:$((23900 + i))" "${TLS_FLAGS[@]}" >"$d.log" 2>&1 &
        fi
        PIDS+=($!)
        ENDPOINTS+="$SCHEME://127.0.0.1:$c,"
    done
    ENDPOINTS=${ENDPOINTS%,}
    for e in ${ENDPOINTS//,/ }; do wait_ready "$e"; done
}

stop_cluster() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
}

{
    tls_note=""; [ "$TLS" = 1 ] && tls_note=", mutual TLS on every connection"
    echo "# chainfire vs etcd $(etcd --version | head -1 | awk '{print $3}') — $(date -u +%Y-%m-%d), $(nproc) cores, $REQUESTS requests per row, 256-byte values$tls_note"
    for n in 1 3; do
        for kind in chainfire etcd; do
            start_cluster "$kind" "$n"
            echo
            echo "## $kind, $n member(s)"
            echo
            echo '```text'
            $BIN bench "${BENCH_TLS[@]}" etcd --endpoints "$ENDPOINTS" --clients 1,16,64 --requests "$REQUESTS" --watch-events 500
            echo '```'
            stop_cluster
        done
    done
} | tee "$OUT"
