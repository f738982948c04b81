#!/usr/bin/env bash
# The test command of README.md: builds UltraCloud, makes the host ready (as root), and runs every
# unit and integration test. Safe to run repeatedly; installs only Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found. Install Rust first: https://rustup.rs (then re-run $0)" >&2
    exit 1
fi

# Build and test tools (as root; see scripts/prereqs.sh).
. scripts/prereqs.sh
install_prereqs
use_mold

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
steps_done
