//! Free TCP ports for tests that must name a port before the server binds it.
//!
//! Binding `127.0.0.1:0` and releasing the port is racy: the kernel hands the same number out
//! again as the *source* port of any outgoing connection (the ephemeral range, 32768–60999 by
//! default), and a busy test binary makes hundreds of those. CI lost a chainfire run to exactly
//! that. Ports here come from below the ephemeral range, so no outgoing connection can take them,
//! and from a per-process counter, so two tests of one binary never get the same one. The start
//! is spread by process id so that test binaries running side by side rarely meet; each port is
//! still checked by binding it.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out (above the well-known and most registered service ports).
const FIRST: u32 = 20_000;
/// One past the highest port handed out: the start of Linux's default ephemeral range.
const END: u32 = 32_768;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A TCP port on 127.0.0.1 that was free a moment ago and that no other caller in this process
/// is given, outside the kernel's ephemeral range.
///
/// # Panics
/// If no port in the range can be bound (the whole range is taken).
#[must_use]
pub fn free_port() -> u16 {
    let span = END - FIRST;
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (start + n) % span;
        #[allow(clippy::cast_possible_truncation)] // below 32768
        let port = port as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1 between {FIRST} and {END}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len());
        assert!(ports.iter().all(|p| (20_000..32_768).contains(&u32::from(*p))));
    }

    #[test]
    fn a_taken_port_is_skipped() {
        let first = free_port();
        let _held = TcpListener::bind(("127.0.0.1", first + 1)).ok();
        let second = free_port();
        assert_ne!(second, first + 1);
    }
}
