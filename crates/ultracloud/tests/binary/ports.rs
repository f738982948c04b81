//! Ports for servers a test kills and restarts on the same address.

use std::sync::atomic::{AtomicU16, Ordering};

/// Below Linux's ephemeral range (32768–60999 by default).
const RANGE: std::ops::Range<u16> = 20000..32000;

/// A free 127.0.0.1 port below the ephemeral range. A port the kernel handed out (`:0`) may be
/// given to some outgoing connection while its server is down, and the restart then fails
/// with "address in use"; these are never handed out that way.
pub fn stable_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = RANGE.end - RANGE.start;
    // Test binaries run one after another, but start each at its own spot anyway.
    let offset = u16::try_from(std::process::id() % u32::from(span)).unwrap_or(0);
    for _ in 0..span {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = RANGE.start + (offset.wrapping_add(step.wrapping_mul(7))) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {RANGE:?}");
}
