# Sourced by scripts/test.sh and scripts/quickstart.sh: installs, as root, the Debian packages
# building and testing UltraCloud need. Only Debian packages; Rust itself comes from rustup.

. scripts/steps.sh

install_prereqs() {
    [ "$(id -u)" = 0 ] || return 0
    # Build tools, protoc (the etcd-client crate used by chainfire's tests compiles its protos
    # with it), etcdctl (tests drive the real etcd client against chainfire) and busybox
    # (prismnet's dataplane test runs udhcpc, ping, httpd and nc inside its "VMs"), curl (the VM
    # tests and smoke reach guests' HTTP from inside namespaces) mke2fs (guest image disks) and
    # cpio (a guest-image test cross-checks our initramfs writer against GNU cpio), mold (a
    # linker several times faster than GNU ld on our large, many test binaries; see use_mold), aws
    # and s3cmd (lightningstor's gateway tests drive the S3 gateway with both clients).
    build_pkgs=()
    for tool in gcc:gcc pkg-config:pkg-config protoc:protobuf-compiler etcdctl:etcd-client busybox:busybox-static \
        curl:curl mke2fs:e2fsprogs cpio:cpio mold:mold aws:awscli s3cmd:s3cmd; do
        command -v "${tool%%:*}" >/dev/null 2>&1 || build_pkgs+=("${tool#*:}")
    done
    # protoc's well-known types (etcd-client's protos import them).
    [ -f /usr/include/google/protobuf/descriptor.proto ] || build_pkgs+=(libprotobuf-dev)
    if [ ${#build_pkgs[@]} -gt 0 ]; then
        step "installing build and test tools: ${build_pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${build_pkgs[@]}"
    fi
}

# Links with mold when it is installed (GCC 12's -fuse-ld=mold), through the per-target flags
# so that an explicit RUSTFLAGS (the static guest agent's) still wins. Every cargo command of a
# run must see the same flags, or cargo rebuilds: call it before the first one.
use_mold() {
    if command -v mold >/dev/null 2>&1; then
        export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=-fuse-ld=mold"
    fi
}
