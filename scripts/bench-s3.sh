#!/usr/bin/env bash
# Side-by-side benchmark: lightningstor (the S3 gateway over flaredb metadata and storage
# nodes) vs Garage, on loopback, with the same load tool (`ultracloud bench s3`, our SigV4
# client, UNSIGNED-PAYLOAD bodies, pseudo-random objects): PUT and GET of 4 KiB
# objects at 64 clients, 1 MiB at 64 clients, 64 MiB at 16 clients; one node, then three nodes
# with three copies. One S3 endpoint per target (one gateway; Garage's first node).
#
# Durability (FSYNC=1, the default): Garage runs with metadata_fsync and data_fsync on; our
# storage nodes fsync every block before acknowledging and flaredb fsyncs its Raft log and
# commits its applies durably. FSYNC=0: Garage's defaults (both off) and our storage nodes with
# --fsync=false; flaredb stays durable (it has no switch), so ours does more work there.
#
# Objects are pseudo-random: Garage compresses blocks with zstd by default (compression_level 1,
# kept here: it is what a self-hoster runs) and a patterned body would let it write almost nothing;
# real large objects (backups, images, media) are mostly compressed already.
#
# Garage is the v2.0.0 binary built from its source (GARAGE=path; default
# /work/peers/garage/target/release/garage: `git checkout v2.0.0 && cargo build --release -p
# garage` in a clone of deuxfleurs-org/garage). Everything runs in a temporary directory on
# disk, removed at the end; every process started is stopped by its PID, on failure too.
#
# Usage: scripts/bench-s3.sh
#   BIN=path/to/ultracloud  another build (default target/release/ultracloud)
#   TARGETS="lightningstor-1 garage-1 lightningstor-3 garage-3"  which targets (default all)
#   CELLS="4096:64:3000 1048576:64:600 67108864:16:48"  size:clients:objects per cell
#   MAX_SECONDS=30  bound on each half-cell
#   GARAGE_COMPRESSION=none  Garage's compression_level (default 1, Garage's own default)
#   STREAM_MIB=4096  instead of the cells: one streamed PUT and GET of an object this large,
#                    then each server process's peak resident memory (VmHWM)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-./target/release/ultracloud}
GARAGE=${GARAGE:-/work/peers/garage/target/release/garage}
TARGETS=${TARGETS:-lightningstor-1 garage-1 lightningstor-3 garage-3}
CELLS=${CELLS:-4096:64:3000 1048576:64:600 67108864:16:48}
MAX_SECONDS=${MAX_SECONDS:-30}
STREAM_MIB=${STREAM_MIB:-0}
FSYNC=${FSYNC:-1}
GARAGE_COMPRESSION=${GARAGE_COMPRESSION:-1}
PIDS=()
SERVERS=()
WORK=""

stop_all() {
    local p
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] || continue
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    PIDS=()
}

cleanup() {
    local rc=$?
    stop_all
    if [ "$rc" != 0 ] && [ -n "$WORK" ]; then
        for f in $(find "$WORK" -name '*.log' -o -name log | sort); do
            echo "--- ${f#"$WORK"/} (last lines)" >&2
            tail -n 5 "$f" >&2
        done
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$BIN" ] || { echo "build first: cargo build --release -p ultracloud (or set BIN)" >&2; exit 1; }
case " $TARGETS " in *" garage-"*)
    [ -x "$GARAGE" ] || { echo "no Garage binary at $GARAGE (set GARAGE=…)" >&2; exit 1; } ;;
esac

port_free() { ! ss -Htln "sport = :$1" | grep -q .; }

# A base port with the next 60 free.
pick_base() {
    local base i ok
    for _ in $(seq 1 50); do
        base=$((20000 + RANDOM % 30000))
        ok=1
        for i in $(seq 0 59); do port_free $((base + i)) || { ok=0; break; }; done
        [ "$ok" = 1 ] && { echo "$base"; return 0; }
    done
    echo "no free ports found" >&2
    return 1
}

wait_http() { # url what
    for _ in $(seq 1 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
    echo "$2 did not answer $1 within 60 s" >&2
    return 1
}

WORK=$(mktemp -d /var/tmp/uc-bench-s3.XXXXXX)
BASE=$(pick_base)
SECRET_KEY_FILE=""

# Peak resident memory of each named process: "name=pid …".
peaks() {
    local np
    for np in "$@"; do
        printf '  %-10s peak RSS %s\n' "${np%%=*}" "$(awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' "/proc/${np#*=}/status")"
    done
}

bench() { # label endpoint region credentials-file
    local cell size clients requests
    echo "== $1 (fsync $([ "$FSYNC" = 1 ] && echo on || echo off))"
    if [ "$STREAM_MIB" -gt 0 ]; then
        "$BIN" bench s3 --endpoint "$2" --region "$3" --credentials-file "$4" --bucket bench --stream-mib "$STREAM_MIB"
        peaks "${SERVERS[@]}"
        return
    fi
    for cell in $CELLS; do
        IFS=: read -r size clients requests <<<"$cell"
        "$BIN" bench s3 --endpoint "$2" --region "$3" --credentials-file "$4" --bucket bench \
            --sizes "$size" --clients "$clients" --requests "$requests" --max-seconds "$MAX_SECONDS" |
            { [ "$cell" = "${CELLS%% *}" ] && cat || tail -n +2; }
    done
}

start_lightningstor() { # nodes
    local n=$1 d=$WORK/ls-$1 i flare="" initial="" peers=""
    mkdir -p "$d"
    for i in $(seq 1 "$n"); do
        initial+="f$i=127.0.0.1:$((BASE + i)),"
        flare+="127.0.0.1:$((BASE + i)),"
        peers+="s$i=http://127.0.0.1:$((BASE + 20 + i)),"
    done
    initial=${initial%,} flare=${flare%,} peers=${peers%,}
    for i in $(seq 1 "$n"); do
        local args=(flaredb --name "f$i" --data-dir "$d/f$i" --listen "127.0.0.1:$((BASE + i))"
            --admin-listen "127.0.0.1:$((BASE + 10 + i))")
        [ "$n" -gt 1 ] && args+=(--initial-cluster "$initial")
        "$BIN" "${args[@]}" >"$d/f$i.log" 2>&1 &
        PIDS+=($!)
    done
    "$BIN" iam --listen "127.0.0.1:$((BASE + 40))" --admin-listen "127.0.0.1:$((BASE + 41))" \
        --flaredb-endpoints "$flare" --data-dir "$d/iam" >"$d/iam.log" 2>&1 &
    PIDS+=($!)
    for i in $(seq 1 "$n"); do
        local args=(lightningstor-node --name "s$i" --data-dir "$d/s$i" --listen "127.0.0.1:$((BASE + 20 + i))"
            --admin-listen "127.0.0.1:$((BASE + 30 + i))")
        [ "$FSYNC" = 1 ] || args+=(--fsync false)
        [ "$n" -gt 1 ] && args+=(--peers "$peers" --replication "$n")
        "$BIN" "${args[@]}" >"$d/s$i.log" 2>&1 &
        PIDS+=($!)
        SERVERS+=("node-s$i=$!")
    done
    wait_http "http://127.0.0.1:$((BASE + 41))/readyz" iam
    "$BIN" lightningstor --listen "127.0.0.1:$((BASE + 50))" --admin-listen "127.0.0.1:$((BASE + 51))" \
        --data-dir "$d/gw" --flaredb-endpoints "$flare" --iam-endpoints "http://127.0.0.1:$((BASE + 40))" \
        --api-key-file "$d/iam/s3-gateway-api-key" --nodes "$peers" --replication "$n" >"$d/gw.log" 2>&1 &
    PIDS+=($!)
    SERVERS+=("gateway=$!")
    wait_http "http://127.0.0.1:$((BASE + 51))/readyz" "the S3 gateway"
    # A tenant, a project and an S3 key pair, through the CLI as an operator does it.
    export XDG_CONFIG_HOME=$d/cli HOME=$d/cli ULTRACLOUD_IAM=http://127.0.0.1:$((BASE + 40))
    "$BIN" login -u admin --password-file "$d/iam/admin-password" >/dev/null
    "$BIN" tenant create bench >/dev/null
    "$BIN" project create --tenant bench s3 >/dev/null
    "$BIN" s3 credentials create -t bench -p s3 --write "$d/creds" >/dev/null
    unset XDG_CONFIG_HOME ULTRACLOUD_IAM
    LS_ENDPOINT="http://127.0.0.1:$((BASE + 50))" LS_CREDS="$d/creds"
}

start_garage() { # nodes
    local n=$1 d=$WORK/garage-$1 i secret ids=()
    mkdir -p "$d"
    secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    local fsync=false
    [ "$FSYNC" = 1 ] && fsync=true
    for i in $(seq 1 "$n"); do
        mkdir -p "$d/n$i"
        cat >"$d/n$i/garage.toml" <<EOF
metadata_dir = "$d/n$i/meta"
data_dir = "$d/n$i/data"
db_engine = "lmdb"
metadata_fsync = $fsync
compression_level = $( [ "$GARAGE_COMPRESSION" = none ] && echo '"none"' || echo "$GARAGE_COMPRESSION" )
data_fsync = $fsync
replication_factor = $n
rpc_bind_addr = "127.0.0.1:$((BASE + 20 + i))"
rpc_public_addr = "127.0.0.1:$((BASE + 20 + i))"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$((BASE + i))"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$((BASE + 10 + i))"
EOF
        "$GARAGE" -c "$d/n$i/garage.toml" server >"$d/n$i/log" 2>&1 &
        PIDS+=($!)
        SERVERS+=("garage-n$i=$!")
    done
    local g="$GARAGE -c $d/n1/garage.toml"
    for _ in $(seq 1 100); do $g status >/dev/null 2>&1 && break; sleep 0.2; done
    for i in $(seq 1 "$n"); do
        local id
        id=$("$GARAGE" -c "$d/n$i/garage.toml" node id -q 2>/dev/null)
        ids+=("${id%%@*}")
        [ "$i" -gt 1 ] && $g node connect "$id" >/dev/null
    done
    for id in "${ids[@]}"; do $g layout assign -z dc1 -c 10G "$id" >/dev/null; done
    $g layout apply --version 1 >/dev/null
    local key="GK$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    local sk
    sk=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    $g key import --yes -n bench "$key" "$sk" >/dev/null
    $g bucket create bench >/dev/null
    $g bucket allow --read --write --owner bench --key bench >/dev/null
    printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$key" "$sk" >"$d/creds"
    chmod 600 "$d/creds"
    GARAGE_ENDPOINT="http://127.0.0.1:$((BASE + 1))" GARAGE_CREDS="$d/creds"
}

echo "cells (size:clients:objects): $CELLS; machine: $(nproc) cores; $(date -u +%FT%TZ)"
for t in $TARGETS; do
    SERVERS=()
    case $t in
    lightningstor-*)
        start_lightningstor "${t#lightningstor-}"
        bench "$t" "$LS_ENDPOINT" us-east-1 "$LS_CREDS"
        ;;
    garage-*)
        start_garage "${t#garage-}"
        bench "$t ($("$GARAGE" --version 2>/dev/null | head -1))" "$GARAGE_ENDPOINT" garage "$GARAGE_CREDS"
        ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
    esac
    stop_all
done
