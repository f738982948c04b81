//! A chainfire client for the other UltraCloud components, over chainfire's own generated etcd
//! v3 stubs (so no external protoc is needed), with the recipes the platform needs:
//! leases kept alive in the background, watches that resume after a disconnect without losing
//! or repeating events, and leader election.

use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::pb::etcdserverpb::lease_client::LeaseClient;
use crate::pb::etcdserverpb::request_op::Request as Op;
use crate::pb::etcdserverpb::watch_client::WatchClient;
use crate::pb::etcdserverpb::watch_request::RequestUnion;
use crate::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};
use crate::pb::mvccpb::{Event, KeyValue};

/// A client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// An endpoint URL is malformed.
    #[error("invalid endpoint {endpoint}")]
    Endpoint {
        /// The endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: crate::tls::EndpointError,
    },
    /// The server answered an error.
    #[error("chainfire: {0}")]
    Status(#[from] tonic::Status),
    /// A watch started below the compacted revision; events were lost.
    #[error("watch history compacted up to revision {0}")]
    Compacted(i64),
    /// The lease no longer exists.
    #[error("lease {0:x} expired or was revoked")]
    LeaseLost(i64),
}

/// A connection to a chainfire cluster (requests are balanced over the endpoints).
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
}

impl Client {
    /// Connects lazily to `endpoints` (`http://host:port`, or `https://` with this process's
    /// cluster certificate).
    pub fn connect(endpoints: &[String]) -> Result<Self, ClientError> {
        let mut list = Vec::new();
        for e in endpoints {
            let ep = crate::tls::endpoint(e)
                .map_err(|source| ClientError::Endpoint { endpoint: e.clone(), source })?
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true);
            list.push(ep);
        }
        Ok(Self { channel: Channel::balance_list(list.into_iter()) })
    }

    fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone())
    }

    /// The value of `key`, if present (linearizable).
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>, ClientError> {
        let resp = self.kv().range(RangeRequest { key: key.into(), ..Default::default() }).await?.into_inner();
        Ok(resp.kvs.into_iter().next())
    }

    /// Every key under `prefix` and the revision read at.
    pub async fn get_prefix(&self, prefix: impl Into<Vec<u8>>) -> Result<(Vec<KeyValue>, i64), ClientError> {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        let resp = self.kv().range(RangeRequest { key, range_end, ..Default::default() }).await?.into_inner();
        Ok((resp.kvs, resp.header.map_or(0, |h| h.revision)))
    }

    /// Sets `key` (optionally attached to `lease`); returns the new revision.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        lease: i64,
    ) -> Result<i64, ClientError> {
        let resp =
            self.kv().put(PutRequest { key: key.into(), value: value.into(), lease, ..Default::default() }).await?;
        Ok(resp.into_inner().header.map_or(0, |h| h.revision))
    }

    /// Deletes `key`; returns how many keys were deleted.
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<i64, ClientError> {
        let resp = self.kv().delete_range(DeleteRangeRequest { key: key.into(), ..Default::default() }).await?;
        Ok(resp.into_inner().deleted)
    }

    /// Grants a lease of `ttl` seconds and keeps it alive until the returned handle is dropped
    /// or revoked. `lost()` on the handle resolves if the lease expires anyway.
    pub async fn lease(&self, ttl: i64) -> Result<Lease, ClientError> {
        let mut client = LeaseClient::new(self.channel.clone());
        let granted = client.lease_grant(LeaseGrantRequest { ttl, id: 0 }).await?.into_inner();
        let id = granted.id;
        let stop = CancellationToken::new();
        let lost = CancellationToken::new();
        let (every, stopped, lost_signal) =
            (Duration::from_secs((granted.ttl / 3).max(1) as u64), stop.clone(), lost.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = stopped.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let once = tokio_stream::once(LeaseKeepAliveRequest { id });
                let ttl = match client.lease_keep_alive(once).await {
                    Ok(resp) => resp.into_inner().next().await.and_then(Result::ok).map(|r| r.ttl),
                    Err(_) => None,
                };
                match ttl {
                    Some(t) if t <= 0 => {
                        lost_signal.cancel();
                        return;
                    }
                    // A failed renewal is retried on the next tick; the TTL leaves room for two.
                    _ => {}
                }
            }
        });
        Ok(Lease { id, ttl: granted.ttl, client: self.clone(), stop, lost })
    }

    /// Watches `[key, range_end)` (`range_end` empty: the key alone) from `start_revision`
    /// (0: from now). The stream resumes after disconnects from the last revision it delivered,
    /// so no event is lost or repeated; it ends with `Err(Compacted)` if history is gone.
    pub fn watch(
        &self,
        key: impl Into<Vec<u8>>,
        range_end: impl Into<Vec<u8>>,
        start_revision: i64,
    ) -> impl Stream<Item = Result<Event, ClientError>> + Send + 'static {
        let (tx, rx) = mpsc::channel(256);
        let (key, range_end, channel) = (key.into(), range_end.into(), self.channel.clone());
        tokio::spawn(async move {
            let mut next = start_revision;
            loop {
                let mut client = WatchClient::new(channel.clone());
                let create = WatchRequest {
                    request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                        key: key.clone(),
                        range_end: range_end.clone(),
                        start_revision: next,
                        ..Default::default()
                    })),
                };
                // Keep the request stream open for the life of the watch.
                let (req_tx, req_rx) = mpsc::channel(1);
                let _ = req_tx.send(create).await;
                let stream = client.watch(ReceiverStream::new(req_rx)).await;
                if let Ok(resp) = stream {
                    let mut stream = resp.into_inner();
                    while let Some(Ok(msg)) = stream.next().await {
                        if msg.compact_revision > 0 {
                            let _ = tx.send(Err(ClientError::Compacted(msg.compact_revision))).await;
                            return;
                        }
                        if next == 0
                            && let Some(h) = &msg.header
                        {
                            // "From now": pin the start so a resume does not skip anything.
                            next = h.revision + 1;
                        }
                        // A revision is never split across messages: deliver this message's
                        // events that are new, then move past its last revision.
                        let mut last = None;
                        for event in msg.events {
                            let rev = event.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                            if rev >= next {
                                last = Some(rev);
                                if tx.send(Ok(event)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        if let Some(rev) = last {
                            next = rev + 1;
                        }
                    }
                }
                drop(req_tx);
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        ReceiverStream::new(rx)
    }

    /// Campaigns for leadership of `election` with `value`, under `lease` (its loss ends the
    /// leadership). Returns once this campaigner leads: it holds the oldest key under
    /// `<election>/`, as in etcd's election recipe.
    pub async fn campaign(
        &self,
        election: &str,
        value: impl Into<Vec<u8>>,
        lease: &Lease,
    ) -> Result<Leadership, ClientError> {
        let prefix = format!("{election}/").into_bytes();
        let key = [prefix.clone(), format!("{:016x}", lease.id).into_bytes()].concat();
        // Create our key only if absent, so a retried campaign keeps its place in line.
        let txn = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Create as i32,
                key: key.clone(),
                target_union: Some(TargetUnion::CreateRevision(0)),
                range_end: vec![],
            }],
            success: vec![RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: key.clone(),
                    value: value.into(),
                    lease: lease.id,
                    ..Default::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(Op::RequestRange(RangeRequest { key: key.clone(), ..Default::default() })),
            }],
        };
        self.kv().txn(txn).await?;
        loop {
            let (kvs, revision) = self.get_prefix(prefix.clone()).await?;
            let mine = kvs.iter().find(|kv| kv.key == key).ok_or(ClientError::LeaseLost(lease.id))?;
            let predecessor =
                kvs.iter().filter(|kv| kv.create_revision < mine.create_revision).max_by_key(|kv| kv.create_revision);
            let Some(pred) = predecessor else {
                return Ok(Leadership { key, revision: mine.create_revision });
            };
            // Wait for the predecessor's key to go away, then look again.
            let mut events = Box::pin(self.watch(pred.key.clone(), Vec::new(), revision + 1));
            loop {
                tokio::select! {
                    () = lease.lost() => return Err(ClientError::LeaseLost(lease.id)),
                    ev = events.next() => match ev {
                        Some(Ok(e)) if e.r#type == crate::pb::mvccpb::event::EventType::Delete as i32 => break,
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(e),
                        None => break,
                    },
                }
            }
        }
    }

    /// Gives up leadership.
    pub async fn resign(&self, leadership: Leadership) -> Result<(), ClientError> {
        self.delete(leadership.key).await.map(|_| ())
    }
}

/// A lease kept alive in the background until dropped or revoked.
#[derive(Debug)]
pub struct Lease {
    /// The lease ID.
    pub id: i64,
    /// Its granted TTL in seconds.
    pub ttl: i64,
    client: Client,
    stop: CancellationToken,
    lost: CancellationToken,
}

impl Lease {
    /// Resolves if the lease expired despite the keep-alives (e.g. a long partition).
    pub async fn lost(&self) {
        self.lost.cancelled().await;
    }

    /// Revokes the lease now, deleting its keys.
    pub async fn revoke(self) -> Result<(), ClientError> {
        self.stop.cancel();
        LeaseClient::new(self.client.channel.clone()).lease_revoke(LeaseRevokeRequest { id: self.id }).await?;
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Proof of leadership: the campaign key and its creation revision (a fencing token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// The key this leader holds.
    pub key: Vec<u8>,
    /// Its creation revision; strictly increases from one leader to the next.
    pub revision: i64,
}

/// The end of the range of keys starting with `prefix` (etcd's `GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}
