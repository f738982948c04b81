#!/usr/bin/env bash
# The test command of README.md: builds UltraCloud, makes the host ready (as root), and runs every
# unit and integration test. Safe to run repeatedly; installs only Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found. Install Rust first: https://rustup.rs (then re-run $0)" >&2
    exit 1
fi

if [ "$(id -u)" = 0 ]; then
    # Build tools, protoc (the etcd-client crate used by chainfire's tests compiles its protos
    # with it), etcdctl (tests drive the real etcd client against chainfire) and busybox
    # (prismnet's dataplane test runs udhcpc, ping, httpd and nc inside its "VMs"), curl (the VM
    # tests and smoke reach guests' HTTP from inside namespaces) and mke2fs (guest image disks).
    build_pkgs=()
    for tool in gcc:gcc pkg-config:pkg-config protoc:protobuf-compiler etcdctl:etcd-client busybox:busybox-static \
        curl:curl mke2fs:e2fsprogs; do
        command -v "${tool%%:*}" >/dev/null 2>&1 || build_pkgs+=("${tool#*:}")
    done
    # protoc's well-known types (etcd-client's protos import them).
    [ -f /usr/include/google/protobuf/descriptor.proto ] || build_pkgs+=(libprotobuf-dev)
    if [ ${#build_pkgs[@]} -gt 0 ]; then
        step "installing build and test tools: ${build_pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${build_pkgs[@]}"
    fi
fi

step "building the ultracloud binary (release)"
cargo build --release --locked -p ultracloud

if [ "$(id -u)" = 0 ]; then
    step "making the host ready: ultracloud doctor --install"
    ./target/release/ultracloud doctor --install
else
    step "not root: checking the host only (ultracloud doctor)"
    ./target/release/ultracloud doctor || echo "(host not fully ready; tests that need it are skipped)"
fi

step "building the static guest agent (the guest image's PID 1)"
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked -p ultracloud-guest-agent --target x86_64-unknown-linux-gnu

step "unit and integration tests"
cargo test --release --locked --workspace
