//! Fan-out of applied changes to the watch streams of this member.
//!
//! The state machine publishes each applied write (its revision and events) on a broadcast
//! channel. A watcher that falls behind (the channel overflows) or that sees a `Reset` (a
//! snapshot replaced the state) catches up from the `events` table instead, so no event is lost
//! or repeated: the table is the source of truth, the channel only the fast path.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::pb::mvccpb::Event;

/// One applied change set.
#[derive(Debug, Clone)]
pub enum Applied {
    /// Events of one revision, in order.
    Events {
        /// The revision they were written at.
        revision: i64,
        /// The events.
        events: Arc<Vec<Event>>,
    },
    /// The whole state was replaced by a snapshot; catch up from the store.
    Reset,
}

/// The hub; cheap to clone.
#[derive(Debug, Clone)]
pub struct WatchHub {
    tx: broadcast::Sender<Applied>,
    revision: Arc<watch::Sender<i64>>,
    /// Raft log index applied to the store: linearizable reads wait on it.
    applied_index: Arc<watch::Sender<u64>>,
}

/// Capacity of the broadcast channel before slow watchers fall back to the store.
const CHANNEL_CAPACITY: usize = 4096;

impl WatchHub {
    /// A hub whose current revision starts at `revision` and applied log index at `applied`.
    pub fn new(revision: i64, applied: u64) -> Self {
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        Self { tx, revision: Arc::new(watch::channel(revision).0), applied_index: Arc::new(watch::channel(applied).0) }
    }

    /// Records that the store has applied the log up to `index`.
    pub fn set_applied(&self, index: u64) {
        self.applied_index.send_if_modified(|cur| {
            let newer = index > *cur;
            if newer {
                *cur = index;
            }
            newer
        });
    }

    /// Waits until the store has applied the log up to `index`.
    pub async fn wait_applied(&self, index: u64) {
        let mut rx = self.applied_index.subscribe();
        // The sender lives as long as the hub, which outlives every waiter.
        let _ = rx.wait_for(|applied| *applied >= index).await;
    }

    /// Subscribes to applied changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Applied> {
        self.tx.subscribe()
    }

    /// Follows the store's current revision.
    pub fn revision(&self) -> watch::Receiver<i64> {
        self.revision.subscribe()
    }

    /// Publishes the events of one revision.
    pub fn publish(&self, revision: i64, events: Vec<Event>) {
        self.revision.send_replace(revision);
        if !events.is_empty() {
            let _ = self.tx.send(Applied::Events { revision, events: Arc::new(events) });
        }
    }

    /// Tells watchers the state was replaced.
    pub fn reset(&self, revision: i64) {
        self.revision.send_replace(revision);
        let _ = self.tx.send(Applied::Reset);
    }
}
