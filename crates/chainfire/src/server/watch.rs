//! `etcdserverpb.Watch`: one task per client stream owning its watchers.
//!
//! Each watcher remembers the next revision it owes the client. Live changes come from the
//! watch hub; anything the hub cannot vouch for (a watcher starting in the past, a gap, a
//! lagging channel, a snapshot install) is read from the store's `events` table. Events are
//! delivered in revision order, each revision whole and once.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::EtcdError;
use crate::mvcc::KeyRange;
use crate::node::Node;
use crate::pb::etcdserverpb::watch_create_request::FilterType;
use crate::pb::etcdserverpb::watch_request::RequestUnion;
use crate::pb::etcdserverpb::watch_server::Watch;
use crate::pb::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use crate::pb::mvccpb::Event;
use crate::pb::mvccpb::event::EventType;
use crate::watch_hub::Applied;

/// Most events read from the store per catch-up step.
const CATCH_UP_BATCH: usize = 1000;

/// Most watchers one stream may hold: each event is matched against every watcher of its
/// stream, so an unbounded count lets one client make every write slow. (etcd has no such bound;
/// Kubernetes' apiserver holds one watcher per resource type per stream, far below it.)
pub const MAX_WATCHERS_PER_STREAM: usize = 4096;

/// The Watch service.
#[derive(Debug, Clone)]
pub struct WatchService {
    node: Arc<Node>,
}

impl WatchService {
    /// Serves watches on `node`'s store.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let session = Session { node: self.node.clone(), watchers: BTreeMap::new(), next_id: 0, tx };
        tokio::spawn(session.run(inbound));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

struct Watcher {
    keys: KeyRange,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    /// The next revision this watcher has not seen.
    next_rev: i64,
}

struct Session {
    node: Arc<Node>,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
}

/// The client went away; end the session.
struct Gone;

impl Session {
    async fn run(mut self, mut inbound: Streaming<WatchRequest>) {
        let mut applied = self.node.hub.subscribe();
        let interval = Duration::from_secs(self.node.config.watch_progress_notify_interval_secs.max(1));
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            let step = tokio::select! {
                msg = inbound.next() => match msg {
                    Some(Ok(req)) => self.handle(req).await,
                    Some(Err(_)) | None => Err(Gone),
                },
                change = applied.recv() => match change {
                    Ok(Applied::Events { revision, events }) => self.deliver(revision, &events).await,
                    Ok(Applied::Reset) | Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up_all().await,
                    Err(broadcast::error::RecvError::Closed) => Err(Gone),
                },
                _ = progress.tick() => self.periodic_progress().await,
                () = self.node.shutdown.cancelled() => Err(Gone),
            };
            if step.is_err() {
                return;
            }
        }
    }

    async fn send(&self, resp: WatchResponse) -> Result<(), Gone> {
        self.tx.send(Ok(resp)).await.map_err(|_| Gone)
    }

    fn current(&self) -> i64 {
        self.node.mvcc.revisions().map(|r| r.current).unwrap_or(0)
    }

    async fn handle(&mut self, req: WatchRequest) -> Result<(), Gone> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(RequestUnion::CancelRequest(cancel)) => {
                if self.watchers.remove(&cancel.watch_id).is_some() {
                    let header = self.node.header(self.current());
                    self.send(WatchResponse {
                        header,
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..Default::default()
                    })
                    .await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // A progress response at R promises every event up to R was sent: catch every
                // watcher up to R from the store first (the hub may still hold some of them).
                let current = self.current();
                self.catch_up_to(current).await?;
                let header = self.node.header(current);
                self.send(WatchResponse { header, watch_id: -1, ..Default::default() }).await
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, create: WatchCreateRequest) -> Result<(), Gone> {
        let revs = self.node.mvcc.revisions().unwrap_or_default();
        let id = if create.watch_id > 0 { create.watch_id } else { self.next_free_id() };
        let header = self.node.header(revs.current);
        let refused = if create.key.is_empty() {
            Some(EtcdError::EmptyKey.to_string())
        } else if self.watchers.contains_key(&id) {
            Some("watch id already in use".into())
        } else if self.watchers.len() >= MAX_WATCHERS_PER_STREAM {
            Some(format!("too many watches on one stream (at most {MAX_WATCHERS_PER_STREAM}); open another stream"))
        } else {
            None
        };
        if let Some(reason) = refused {
            return self
                .send(WatchResponse {
                    header,
                    watch_id: id,
                    created: true,
                    canceled: true,
                    cancel_reason: reason,
                    ..Default::default()
                })
                .await;
        }
        let start = if create.start_revision > 0 { create.start_revision } else { revs.current + 1 };
        self.send(WatchResponse { header, watch_id: id, created: true, ..Default::default() }).await?;
        if start < revs.compacted {
            return self.cancel_compacted(id, revs).await;
        }
        let filters: Vec<FilterType> = create.filters.iter().filter_map(|f| FilterType::try_from(*f).ok()).collect();
        self.watchers.insert(
            id,
            Watcher {
                keys: KeyRange::new(&create.key, &create.range_end),
                no_put: filters.contains(&FilterType::Noput),
                no_delete: filters.contains(&FilterType::Nodelete),
                prev_kv: create.prev_kv,
                progress_notify: create.progress_notify,
                next_rev: start,
            },
        );
        self.catch_up(id, revs.current).await
    }

    /// Tells the client watcher `id` was canceled because its start is compacted away.
    async fn cancel_compacted(&self, id: i64, revs: crate::mvcc::Revisions) -> Result<(), Gone> {
        self.send(WatchResponse {
            header: self.node.header(revs.current),
            watch_id: id,
            canceled: true,
            compact_revision: revs.compacted,
            cancel_reason: EtcdError::Compacted.to_string(),
            ..Default::default()
        })
        .await
    }

    fn next_free_id(&mut self) -> i64 {
        while self.watchers.contains_key(&self.next_id) {
            self.next_id += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends watcher `id` everything from its next revision up to `upto` from the store.
    async fn catch_up(&mut self, id: i64, upto: i64) -> Result<(), Gone> {
        loop {
            let Some(w) = self.watchers.get(&id) else { return Ok(()) };
            if w.next_rev > upto {
                return Ok(());
            }
            let revs = self.node.mvcc.revisions().unwrap_or_default();
            if w.next_rev < revs.compacted {
                self.watchers.remove(&id);
                return self.cancel_compacted(id, revs).await;
            }
            let events = match self.node.mvcc.events(w.next_rev, upto, &w.keys, CATCH_UP_BATCH) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "watch catch-up failed");
                    return Err(Gone);
                }
            };
            let full = events.len() >= CATCH_UP_BATCH;
            // Never split a revision: when the batch is full, hold back its last revision.
            let last_rev = events.last().and_then(|e| e.kv.as_ref()).map_or(upto, |kv| kv.mod_revision);
            let (send, next) = if full {
                let cut = events
                    .iter()
                    .position(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision == last_rev))
                    .unwrap_or(0);
                if cut > 0 {
                    (events[..cut].to_vec(), last_rev)
                } else {
                    // The whole batch is one revision: read that revision whole.
                    match self.node.mvcc.events(last_rev, last_rev, &w.keys, usize::MAX) {
                        Ok(whole) => (whole, last_rev + 1),
                        Err(e) => {
                            tracing::error!(error = %e, "watch catch-up failed");
                            return Err(Gone);
                        }
                    }
                }
            } else {
                (events, upto + 1)
            };
            let send = self.filter(id, send);
            if let Some(w) = self.watchers.get_mut(&id) {
                w.next_rev = next;
            }
            if !send.is_empty() {
                let header = self.node.header(upto.max(last_rev));
                self.send(WatchResponse { header, watch_id: id, events: send, ..Default::default() }).await?;
            }
        }
    }

    async fn catch_up_all(&mut self) -> Result<(), Gone> {
        let current = self.current();
        self.catch_up_to(current).await
    }

    async fn catch_up_to(&mut self, revision: i64) -> Result<(), Gone> {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            self.catch_up(id, revision).await?;
        }
        Ok(())
    }

    /// Delivers one live revision to every watcher that is exactly at it.
    async fn deliver(&mut self, revision: i64, events: &[Event]) -> Result<(), Gone> {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let Some(next) = self.watchers.get(&id).map(|w| w.next_rev) else { continue };
            if revision < next {
                continue;
            }
            if revision > next {
                self.catch_up(id, revision - 1).await?;
            }
            let Some(w) = self.watchers.get(&id) else { continue };
            if w.next_rev != revision {
                continue;
            }
            let matching: Vec<Event> =
                events.iter().filter(|e| e.kv.as_ref().is_some_and(|kv| w.keys.contains(&kv.key))).cloned().collect();
            let send = self.filter(id, matching);
            if let Some(w) = self.watchers.get_mut(&id) {
                w.next_rev = revision + 1;
            }
            if !send.is_empty() {
                self.send(WatchResponse {
                    header: self.node.header(revision),
                    watch_id: id,
                    events: send,
                    ..Default::default()
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Applies the watcher's filters and attaches previous values when asked.
    fn filter(&self, id: i64, events: Vec<Event>) -> Vec<Event> {
        let Some(w) = self.watchers.get(&id) else { return Vec::new() };
        events
            .into_iter()
            .filter(|e| {
                let put = e.r#type == EventType::Put as i32;
                !(put && w.no_put || !put && w.no_delete)
            })
            .map(|mut e| {
                if w.prev_kv
                    && let Some(kv) = &e.kv
                {
                    e.prev_kv = self.node.mvcc.previous(&kv.key, kv.mod_revision).ok().flatten();
                }
                e
            })
            .collect()
    }

    async fn periodic_progress(&mut self) -> Result<(), Gone> {
        let current = self.current();
        self.catch_up_to(current).await?;
        let header = self.node.header(current);
        let ids: Vec<i64> = self.watchers.iter().filter(|(_, w)| w.progress_notify).map(|(id, _)| *id).collect();
        for id in ids {
            self.send(WatchResponse { header, watch_id: id, ..Default::default() }).await?;
        }
        Ok(())
    }
}
