//! The version long-poll agents follow: every change bumps the service's version key; each
//! controller replica polls that one key and answers `GET /v1/watch?after=N` as soon as it
//! differs (one database read per replica fans out to every agent).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::Store;

/// How long a watch waits for a change before answering with the same version.
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a replica reads the version key.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The change version of a store as this replica last read it.
#[derive(Debug)]
pub struct VersionWatch(watch::Sender<u64>);

impl Default for VersionWatch {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl VersionWatch {
    /// Polls `store`'s version every [`POLL_INTERVAL`] until `shutdown`.
    pub async fn follow(&self, store: &Store, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            if let Ok(v) = store.version().await {
                self.0.send_if_modified(|cur| std::mem::replace(cur, v) != v);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }

    /// Answers once the version differs from `after`, or after [`WATCH_TIMEOUT`] with the
    /// same one.
    pub async fn wait(&self, after: u64) -> WatchAnswer {
        let mut rx = self.0.subscribe();
        let _ = tokio::time::timeout(WATCH_TIMEOUT, rx.wait_for(|v| *v != after)).await;
        WatchAnswer { version: *rx.borrow() }
    }

    /// Sets the version (for tests and for a replica that learned it another way).
    pub fn set(&self, version: u64) {
        self.0.send_if_modified(|cur| std::mem::replace(cur, version) != version);
    }
}

/// `GET /v1/watch?after=N`.
#[derive(Debug, Deserialize)]
pub struct WatchQuery {
    /// The version the caller has seen.
    #[serde(default)]
    pub after: u64,
}

/// The answer of `/v1/watch`.
#[derive(Debug, Serialize, Deserialize)]
pub struct WatchAnswer {
    /// The current version (equal to `after` when nothing changed within the timeout).
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watch_answers_at_the_change_and_not_before() {
        let w = std::sync::Arc::new(VersionWatch::default());
        let waiting = tokio::spawn({
            let w = w.clone();
            async move { w.wait(0).await.version }
        });
        tokio::task::yield_now().await;
        w.set(3);
        assert_eq!(waiting.await.unwrap(), 3, "answered at the change");
        let unchanged = tokio::time::timeout(std::time::Duration::from_millis(200), w.wait(3)).await;
        assert!(unchanged.is_err(), "no change: still waiting");
        assert_eq!(w.wait(1).await.version, 3, "an old version answers at once");
    }
}
