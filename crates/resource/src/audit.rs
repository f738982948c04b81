//! The audit trail: one event per change of a resource, written in the change's own
//! transaction (an event exists exactly when its change committed), readable by the tenant at
//! `GET …/projects/{project}/events` in time order.
//!
//! | key | value |
//! |---|---|
//! | `{service}/event/{tenant}/{project}/{at_ms:013}-{kind}-{id}-{revision}` | the [`Event`] |
//!
//! Events expire: [`spawn_expiry`] deletes those older than the service's retention (30 days
//! by default) every hour. A project's events sort by time, so a pass reads only what it
//! deletes plus one event per project.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use ultracloud_flaredb::error::FlareError;

use crate::store::{Store, end_of};
use crate::{Owner, Resource};

/// How long events are kept unless a service is configured otherwise.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// How often expired events are deleted.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(3600);

/// Keys read per scan, and deleted per transaction, by an expiry pass.
const EXPIRY_BATCH: usize = 500;

/// What happened to the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It was created.
    Created,
    /// It changed.
    Updated,
    /// It was deleted.
    Deleted,
}

/// One change of one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// Who (`user:<id>`, `sa:<id>`, `system`).
    pub actor: String,
    /// What happened.
    pub action: Action,
    /// The resource's kind (`vpc`, `vm`, …).
    pub kind: String,
    /// Its ID.
    pub id: String,
    /// Its unique name, if its kind has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its revision after the change (deletes: one past the last).
    pub revision: u64,
}

impl Event {
    /// The event of `action` on `r` (whose metadata is already stamped).
    pub fn of<R: Resource>(r: &R, action: Action, actor: String, at_ms: u64) -> Self {
        let revision = r.meta().revision + u64::from(action == Action::Deleted);
        Self {
            at_ms,
            actor,
            action,
            kind: R::KIND.to_owned(),
            id: r.id().to_owned(),
            name: r.unique_name().to_owned(),
            revision,
        }
    }

    /// Where it is stored.
    pub fn key(&self, service: &str, owner: &Owner) -> Vec<u8> {
        let mut k = prefix(service, owner);
        k.extend_from_slice(format!("{:013}-{}-{}-{}", self.at_ms, self.kind, self.id, self.revision).as_bytes());
        k
    }
}

/// The prefix of a project's events.
pub fn prefix(service: &str, owner: &Owner) -> Vec<u8> {
    format!("{service}/event/{}/{}/", owner.tenant, owner.project).into_bytes()
}

/// The time of the event at `key` and the prefix of its project's events, read off the key
/// (`{service}/event/{tenant}/{project}/{at_ms:013}-…`); `None` for a key of another shape.
fn parse_key<'k>(service_events: &[u8], key: &'k [u8]) -> Option<(&'k [u8], u64)> {
    let rest = key.strip_prefix(service_events)?;
    let tenant_end = rest.iter().position(|b| *b == b'/')?;
    let project_end = tenant_end + 1 + rest[tenant_end + 1..].iter().position(|b| *b == b'/')?;
    let at = rest.get(project_end + 1..project_end + 14)?;
    let at_ms = std::str::from_utf8(at).ok()?.parse().ok()?;
    Some((&key[..service_events.len() + project_end + 1], at_ms))
}

/// Deletes `store`'s service's events from before `cutoff_ms`, in every project; how many.
pub async fn expire(store: &Store, cutoff_ms: u64) -> Result<usize, FlareError> {
    let all = format!("{}/event/", store.service()).into_bytes();
    let end = end_of(&all);
    let (mut start, mut deleted) = (all.clone(), 0);
    loop {
        let rows = store.db.scan(&start, Some(&end), EXPIRY_BATCH, false).await?;
        let Some(last) = rows.last() else { return Ok(deleted) };
        let mut next = [last.key.as_slice(), &[0]].concat();
        let mut old = Vec::new();
        for row in &rows {
            match parse_key(&all, &row.key) {
                Some((_, at_ms)) if at_ms < cutoff_ms => old.push(row.key.clone()),
                // The first event to keep: the rest of its project is newer; skip to the next.
                Some((project, _)) => {
                    next = end_of(project);
                    break;
                }
                None => {}
            }
        }
        if !old.is_empty() {
            deleted += old.len();
            // Owned by the body: a transaction's future must be `Send` for any borrow.
            store
                .db
                .transact(async move |t| {
                    for k in &old {
                        t.delete(k);
                    }
                    Ok(())
                })
                .await?;
        }
        start = next;
    }
}

/// Runs [`expire`] now and then every hour with a cutoff `retention_days` back, until
/// `shutdown`; `0` days keeps events for ever. Any replica may run it (deletes repeat harmlessly).
pub fn spawn_expiry(store: Store, retention_days: u32, shutdown: CancellationToken) {
    if retention_days == 0 {
        return;
    }
    let keep_ms = u64::from(retention_days) * 86_400_000;
    tokio::spawn(async move {
        loop {
            let cutoff = ultracloud_runtime::clock::now_ms().saturating_sub(keep_ms);
            match expire(&store, cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(service = store.service(), events = n, retention_days, "expired audit events"),
                Err(e) => {
                    tracing::warn!(service = store.service(), error = %e, "expiring audit events failed; will retry")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(EXPIRY_INTERVAL) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_project_and_time() {
        let all = b"svc/event/";
        let key = b"svc/event/acme/web/0001700000000-vm-vm-abc-3";
        assert_eq!(parse_key(all, key), Some((&b"svc/event/acme/web/"[..], 1_700_000_000)));
        assert_eq!(parse_key(all, b"svc/event/acme/web/12-x"), None, "a short time");
        assert_eq!(parse_key(all, b"svc/event/acme"), None);
        assert_eq!(parse_key(all, b"other/event/acme/web/0001700000000-x"), None);
    }
}
