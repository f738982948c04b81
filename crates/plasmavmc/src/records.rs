//! plasmavmc's records in flaredb, under `plasmavmc/`. Resources (VMs, images, volumes) use
//! prismnet's generic resource layout; what agents report lives under keys of its own, so a
//! report never conflicts with a tenant's change to the VM record.
//!
//! | key | value |
//! |---|---|
//! | `plasmavmc/obj/{vm,image,volume}/{id}` | the resource (JSON) |
//! | `plasmavmc/idx/{kind}/{tenant}/{project}/{id}` | the resource again (one scan lists a project) |
//! | `plasmavmc/name/{kind}/{tenant}/{project}/{name}` | its ID (names are unique per project) |
//! | `plasmavmc/status/{vm}` | the agent's last report ([`VmStatus`]) |
//! | `plasmavmc/console/{vm}` | the tail of the VM's serial console |
//! | `plasmavmc/event/{vm}/{at_ms}-{seq}` | an [`Event`] |
//! | `plasmavmc/host/{name}` | a registered agent ([`Host`]) |
//! | `plasmavmc/placement-epoch` | bumped by every placement (see [`txn_claim_placement`]) |
//! | `plasmavmc/version` | bumped after every change; agents long-poll it |

use serde::Serialize;
use serde::de::DeserializeOwned;
use ultracloud_flaredb::client::Txn;
use ultracloud_flaredb::error::FlareError;
use ultracloud_resource::store::{Store, StoreError, end_of};

use crate::model::{Event, Host, VmStatus, now_ms};

/// The service name (key prefix).
pub const SERVICE: &str = "plasmavmc";

/// Events kept per VM (older ones are dropped when a new one is written).
pub const EVENTS_KEPT: usize = 200;

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| {
        StoreError::Db(FlareError::Internal(format!("corrupt record {}: {e}", String::from_utf8_lossy(key))))
    })
}

/// A record as stored; an encoding failure is reported, never written as an empty record.
fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Db(FlareError::Internal(format!("cannot encode a record: {e}"))))
}

/// plasmavmc's store: prismnet's generic resource store under `plasmavmc/`, plus reports.
pub fn store(db: ultracloud_flaredb::Client) -> Store {
    Store::for_service(db, SERVICE)
}

async fn get<T: DeserializeOwned>(store: &Store, key: String) -> Result<Option<T>, StoreError> {
    match store.db.get(key.as_bytes()).await? {
        Some(b) => Ok(Some(decode(key.as_bytes(), &b)?)),
        None => Ok(None),
    }
}

async fn scan<T: DeserializeOwned>(store: &Store, prefix: String) -> Result<Vec<T>, StoreError> {
    let rows = store.db.scan(prefix.as_bytes(), Some(&end_of(prefix.as_bytes())), 0, false).await?;
    rows.iter().map(|p| decode(&p.key, &p.value)).collect()
}

/// A VM's last report.
pub async fn status(store: &Store, vm: &str) -> Result<Option<VmStatus>, StoreError> {
    get(store, format!("{SERVICE}/status/{vm}")).await
}

/// Stores a VM's report.
pub async fn put_status(store: &Store, vm: &str, s: &VmStatus) -> Result<(), StoreError> {
    Ok(store.db.put(format!("{SERVICE}/status/{vm}").as_bytes(), &encode(s)?).await?)
}

/// A VM's console tail ("" when none was reported).
pub async fn console(store: &Store, vm: &str) -> Result<String, StoreError> {
    let b = store.db.get(format!("{SERVICE}/console/{vm}").as_bytes()).await?;
    Ok(b.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default())
}

/// Stores a VM's console tail.
pub async fn put_console(store: &Store, vm: &str, text: &str) -> Result<(), StoreError> {
    Ok(store.db.put(format!("{SERVICE}/console/{vm}").as_bytes(), text.as_bytes()).await?)
}

/// Appends an event to a VM's history (keeping the last [`EVENTS_KEPT`]).
pub async fn add_event(store: &Store, vm: &str, kind: &str, message: impl Into<String>) -> Result<(), StoreError> {
    let e = Event { at_ms: now_ms(), kind: kind.to_owned(), message: message.into() };
    let suffix = &ultracloud_iam::credential::new_id()[..6];
    let key = format!("{SERVICE}/event/{vm}/{:016}-{suffix}", e.at_ms);
    store.db.put(key.as_bytes(), &encode(&e)?).await?;
    let prefix = format!("{SERVICE}/event/{vm}/");
    let rows = store.db.scan(prefix.as_bytes(), Some(&end_of(prefix.as_bytes())), 0, false).await?;
    for old in rows.iter().take(rows.len().saturating_sub(EVENTS_KEPT)) {
        store.db.delete(&old.key).await?;
    }
    Ok(())
}

/// A VM's events, oldest first.
pub async fn events(store: &Store, vm: &str) -> Result<Vec<Event>, StoreError> {
    scan(store, format!("{SERVICE}/event/{vm}/")).await
}

/// Removes everything reported about a VM (after it is deleted).
pub async fn forget_vm(store: &Store, vm: &str) -> Result<(), StoreError> {
    store.db.delete(format!("{SERVICE}/status/{vm}").as_bytes()).await?;
    store.db.delete(format!("{SERVICE}/console/{vm}").as_bytes()).await?;
    let prefix = format!("{SERVICE}/event/{vm}/");
    for row in store.db.scan(prefix.as_bytes(), Some(&end_of(prefix.as_bytes())), 0, false).await? {
        store.db.delete(&row.key).await?;
    }
    Ok(())
}

/// Registers (or refreshes) an agent host.
pub async fn put_host(store: &Store, h: &Host) -> Result<(), StoreError> {
    Ok(store.db.put(format!("{SERVICE}/host/{}", h.name).as_bytes(), &encode(h)?).await?)
}

/// Counts the placements made: a VM created on a worker, a migration target chosen.
const PLACEMENT_EPOCH: &[u8] = b"plasmavmc/placement-epoch";

fn parse_epoch(b: Option<&[u8]>) -> u64 {
    b.and_then(|b| std::str::from_utf8(b).ok()?.parse().ok()).unwrap_or(0)
}

/// The placement epoch, read before the VMs a placement is decided from.
pub async fn placement_epoch(store: &Store) -> Result<u64, StoreError> {
    Ok(parse_epoch(store.db.get(PLACEMENT_EPOCH).await?.as_deref()))
}

/// Inside the transaction that records a placement decided at epoch `seen`: `true` (and the
/// epoch moves on) when no other placement landed meanwhile, `false` when one did and the
/// decision must be made again from fresh data.
///
/// A placement is decided outside its transaction (the VM's ports are made between the two), so
/// two requests could both see the last room on a worker and both take it. Every placement
/// writes the epoch, so of two racing ones flaredb lets one commit; the other's transaction
/// reruns, sees the epoch moved and decides again.
pub async fn txn_claim_placement(t: &mut Txn, seen: u64) -> Result<bool, FlareError> {
    if parse_epoch(t.get(PLACEMENT_EPOCH).await?.as_deref()) != seen {
        return Ok(false);
    }
    t.put(PLACEMENT_EPOCH, (seen + 1).to_string().as_bytes());
    Ok(true)
}

/// Every registered host.
pub async fn hosts(store: &Store) -> Result<Vec<Host>, StoreError> {
    scan(store, format!("{SERVICE}/host/")).await
}
