#!/usr/bin/env bash
# The main job of README.md: on a fresh Debian 12 machine (as root, with Rust from rustup),
# install the build tools, build UltraCloud and its guest agent, then run the single-node
# quickstart: every service on this machine, a tenant network and a real VM that answers over
# it. Arguments go to `ultracloud quickstart` (--keep leaves it running; --stop stops it).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found. Install Rust first: https://rustup.rs (then re-run $0)" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "error: the quickstart needs root (network namespaces, bridges, taps, QEMU); run: sudo $0" >&2
    exit 1
fi

. scripts/prereqs.sh
install_prereqs
use_mold

step "building the ultracloud binary (release)"
cargo build --release --locked -p ultracloud

step "building the static guest agent (the guest image's PID 1)"
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked -p ultracloud-guest-agent --target x86_64-unknown-linux-gnu

step "ultracloud quickstart $*"
./target/release/ultracloud quickstart "$@"
steps_done
