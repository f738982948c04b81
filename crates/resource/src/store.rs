//! Tenant-owned resources in flaredb, under a service's own key space. Every change runs in one
//! flaredb transaction (snapshot isolation, write-write conflicts retried), so concurrent
//! controllers never hand out one name (or anything else a service claims by key) twice.
//!
//! | key | value |
//! |---|---|
//! | `{service}/obj/{kind}/{id}` | the resource (JSON) |
//! | `{service}/idx/{kind}/{tenant}/{project}/{id}` | the resource again (one scan lists a project) |
//! | `{service}/name/{kind}/{tenant}/{project}/{name}` | its ID (for kinds with unique names) |
//! | `{service}/version` | bumped after every change; agents long-poll it |
//! | `{service}/event/{tenant}/{project}/…` | one audit event per change (see [`crate::audit`]) |
//!
//! Every write stamps the resource's [`Meta`] (revision, who and when) and records an event,
//! in the same transaction.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ultracloud_flaredb::Client;
use ultracloud_flaredb::client::Txn;
use ultracloud_flaredb::error::FlareError;
use ultracloud_runtime::{actor, clock};

use crate::audit::{self, Action, Event};
use crate::meta::{Meta, MetaPatch};
use crate::page::{self, ListQuery, Page};

/// Where a resource lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Owner {
    /// Tenant.
    pub tenant: String,
    /// Project.
    pub project: String,
}

/// A stored resource kind.
pub trait Resource: Serialize + DeserializeOwned + Clone {
    /// The service whose key space holds it (`prismnet`, `plasmavmc`, …).
    const SERVICE: &'static str;
    /// Key segment.
    const KIND: &'static str;
    /// Its ID.
    fn id(&self) -> &str;
    /// Its owner.
    fn owner(&self) -> &Owner;
    /// Its name ("" when names are not unique for this kind).
    fn unique_name(&self) -> &str {
        ""
    }
    /// Its metadata (labels, annotations, stamps).
    fn meta(&self) -> &Meta;
    /// Its metadata, to stamp.
    fn meta_mut(&mut self) -> &mut Meta;
}

/// Implements [`Resource`] for a struct with `id`, `owner` and `meta` fields (and `name`,
/// unique per project, with `named`): `resource!(Vm, "plasmavmc", "vm")`,
/// `resource!(Vpc, "prismnet", "vpc", named)`.
#[macro_export]
macro_rules! resource {
    ($t:ty, $service:literal, $kind:literal $(, $named:ident)?) => {
        impl $crate::Resource for $t {
            const SERVICE: &'static str = $service;
            const KIND: &'static str = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn owner(&self) -> &$crate::Owner {
                &self.owner
            }
            $(
                fn unique_name(&self) -> &str {
                    let _ = stringify!($named);
                    &self.name
                }
            )?
            fn meta(&self) -> &$crate::meta::Meta {
                &self.meta
            }
            fn meta_mut(&mut self) -> &mut $crate::meta::Meta {
                &mut self.meta
            }
        }
    };
}

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] FlareError),
    /// Refused: the request conflicts with stored state (409).
    #[error("{0}")]
    Conflict(String),
    /// Refused: something named does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// Refused: the request is invalid given stored state (400).
    #[error("{0}")]
    Invalid(String),
    /// Refused: the caller may not do this (403), e.g. a tenant setting a platform field.
    #[error("{0}")]
    Forbidden(String),
    /// Refused: `If-Match` names a revision the resource no longer has (412).
    #[error("{0}")]
    Precondition(String),
}

type Result<T> = std::result::Result<T, StoreError>;

/// A record as stored. Failing here (a map with non-string keys, say) is a bug: it is reported
/// and nothing is written, never an empty record.
pub fn encode<T: Serialize>(v: &T) -> std::result::Result<Vec<u8>, FlareError> {
    serde_json::to_vec(v).map_err(|e| FlareError::Internal(format!("cannot encode a record: {e}")))
}

/// A stored record read back; a record that does not decode is reported with its key.
pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> std::result::Result<T, FlareError> {
    serde_json::from_slice(bytes)
        .map_err(|e| FlareError::Internal(format!("corrupt record {}: {e}", String::from_utf8_lossy(key))))
}

/// The end (exclusive) of a scan over every key starting with `prefix`.
pub fn end_of(prefix: &[u8]) -> Vec<u8> {
    let mut e = prefix.to_vec();
    if let Some(l) = e.last_mut() {
        *l += 1;
    }
    e
}

/// `{service}/obj/{kind}/{id}`: where a resource is stored.
pub fn obj_key<R: Resource>(id: &str) -> Vec<u8> {
    format!("{}/obj/{}/{id}", R::SERVICE, R::KIND).into_bytes()
}

fn idx_prefix<R: Resource>(o: &Owner) -> String {
    format!("{}/idx/{}/{}/{}/", R::SERVICE, R::KIND, o.tenant, o.project)
}

fn name_key<R: Resource>(o: &Owner, name: &str) -> Vec<u8> {
    format!("{}/name/{}/{}/{}/{name}", R::SERVICE, R::KIND, o.tenant, o.project).into_bytes()
}

/// Reads a record inside a transaction.
pub async fn txn_get<T: DeserializeOwned>(t: &Txn, key: &[u8]) -> std::result::Result<Option<T>, FlareError> {
    match t.get(key).await? {
        Some(b) => Ok(Some(decode(key, &b)?)),
        None => Ok(None),
    }
}

/// Every value under a prefix, inside a transaction.
pub async fn txn_scan<T: DeserializeOwned>(t: &Txn, prefix: &[u8]) -> std::result::Result<Vec<T>, FlareError> {
    let rows = t.scan(prefix, Some(&end_of(prefix)), 0, false).await?;
    rows.iter().map(|p| decode(&p.key, &p.value)).collect()
}

/// Writes a resource (record, project index, name claim) inside a transaction, stamped —
/// revision, who (the request's actor) and when — and records the audit event. Returns the
/// resource as written; `r` itself is left as it was, so a transaction body that is run again
/// after a conflict stamps it once, not twice.
pub fn txn_put<R: Resource>(t: &mut Txn, r: &R) -> std::result::Result<R, FlareError> {
    let (who, now) = (actor::current(), clock::now_ms());
    let action = if r.meta().revision == 0 { Action::Created } else { Action::Updated };
    let mut r = r.clone();
    r.meta_mut().stamp(&who, now);
    let r = &r;
    let bytes = encode(r)?;
    t.put(&obj_key::<R>(r.id()), &bytes);
    t.put(format!("{}{}", idx_prefix::<R>(r.owner()), r.id()).as_bytes(), &bytes);
    if !r.unique_name().is_empty() {
        t.put(&name_key::<R>(r.owner(), r.unique_name()), r.id().as_bytes());
    }
    record::<R>(t, &Event::of(r, action, who, now), r.owner())?;
    Ok(r.clone())
}

/// Deletes a resource inside a transaction, recording the audit event.
pub fn txn_delete<R: Resource>(t: &mut Txn, r: &R) -> std::result::Result<(), FlareError> {
    t.delete(&obj_key::<R>(r.id()));
    t.delete(format!("{}{}", idx_prefix::<R>(r.owner()), r.id()).as_bytes());
    if !r.unique_name().is_empty() {
        t.delete(&name_key::<R>(r.owner(), r.unique_name()));
    }
    record::<R>(t, &Event::of(r, Action::Deleted, actor::current(), clock::now_ms()), r.owner())
}

/// Writes the audit event of a change to `R` (see [`crate::audit`]).
fn record<R: Resource>(t: &mut Txn, e: &Event, owner: &Owner) -> std::result::Result<(), FlareError> {
    t.put(&e.key(R::SERVICE, owner), &encode(e)?);
    Ok(())
}

/// Refuses a change when `if_match` (an `If-Match` revision) is not `r`'s current revision.
pub fn check_revision<R: Resource>(r: &R, if_match: Option<u64>) -> Result<()> {
    match if_match {
        Some(want) if want != r.meta().revision => Err(StoreError::Precondition(format!(
            "{} {} is at revision {}, not {want} (If-Match): read it again and retry",
            R::KIND,
            r.id(),
            r.meta().revision
        ))),
        _ => Ok(()),
    }
}

/// A service's view of flaredb: its resources and the version its agents watch.
#[derive(Debug, Clone)]
pub struct Store {
    /// The database client.
    pub db: Client,
    service: String,
    version_key: Vec<u8>,
}

impl Store {
    /// The store of `service` (its version key is `{service}/version`).
    pub fn for_service(db: Client, service: &str) -> Self {
        Self { db, service: service.to_owned(), version_key: format!("{service}/version").into_bytes() }
    }

    /// The service whose key space this is.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// One page of a kind in a project, filtered by the query's selector and name (see
    /// [`crate::page`]).
    pub async fn list_page<R: Resource>(&self, owner: &Owner, q: &ListQuery) -> Result<Page<R>> {
        let f = q.filter()?;
        self.page(idx_prefix::<R>(owner).into_bytes(), f.limit, f.after.clone(), |r: &R| {
            f.admits(r.unique_name(), &r.meta().labels)
        })
        .await
    }

    /// One page of a project's audit events, oldest first.
    pub async fn events(&self, owner: &Owner, q: &ListQuery) -> Result<Page<Event>> {
        let f = q.filter()?;
        let none = crate::Labels::new();
        self.page(audit::prefix(&self.service, owner), f.limit, f.after.clone(), |e: &Event| f.admits(&e.name, &none))
            .await
    }

    /// Pages through the records under `prefix` (see [`page::Pager`]).
    async fn page<T: DeserializeOwned>(
        &self,
        prefix: Vec<u8>,
        limit: usize,
        after: Option<Vec<u8>>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Page<T>> {
        let mut pager = page::Pager::new(limit, after);
        while let Some((after, n)) = pager.want() {
            let mut start = prefix.clone();
            if let Some(a) = after {
                start.extend_from_slice(a);
                start.push(0); // the first key after `a`
            }
            let rows = self.db.scan(&start, Some(&end_of(&prefix)), n, false).await?;
            let rows = rows
                .iter()
                .map(|p| Ok((p.key[prefix.len()..].to_vec(), decode(&p.key, &p.value)?)))
                .collect::<std::result::Result<Vec<_>, FlareError>>()?;
            pager.feed(rows, &keep);
        }
        Ok(pager.finish())
    }

    /// A resource by ID.
    pub async fn get<R: Resource>(&self, id: &str) -> Result<Option<R>> {
        let key = obj_key::<R>(id);
        match self.db.get(&key).await? {
            Some(b) => Ok(Some(decode(&key, &b)?)),
            None => Ok(None),
        }
    }

    /// A resource by ID, if `owner` owns it (another owner's resource is "not found").
    pub async fn get_owned<R: Resource>(&self, owner: &Owner, id: &str, what: &str) -> Result<R> {
        match self.get::<R>(id).await? {
            Some(r) if r.owner() == owner => Ok(r),
            _ => Err(StoreError::NotFound(format!("{what} {id:?} not found in {}/{}", owner.tenant, owner.project))),
        }
    }

    /// Every resource of a kind in a project.
    pub async fn list<R: Resource>(&self, owner: &Owner) -> Result<Vec<R>> {
        let prefix = idx_prefix::<R>(owner).into_bytes();
        let rows = self.db.scan(&prefix, Some(&end_of(&prefix)), 0, false).await?;
        Ok(rows.iter().map(|p| decode(&p.key, &p.value)).collect::<std::result::Result<_, _>>()?)
    }

    /// Every resource of a kind, platform-wide (for agents' plans).
    pub async fn list_all<R: Resource>(&self) -> Result<Vec<R>> {
        let prefix = format!("{}/obj/{}/", R::SERVICE, R::KIND).into_bytes();
        let rows = self.db.scan(&prefix, Some(&end_of(&prefix)), 0, false).await?;
        Ok(rows.iter().map(|p| decode(&p.key, &p.value)).collect::<std::result::Result<_, _>>()?)
    }

    /// Runs `body` in a transaction (retried on conflicts) and bumps the version after it
    /// commits. A refusal returned as `Ok(Err(_))` aborts the transaction: nothing `body`
    /// wrote before refusing is committed.
    pub async fn change<T>(
        &self,
        body: impl AsyncFnMut(&mut Txn) -> std::result::Result<std::result::Result<T, StoreError>, FlareError>,
    ) -> Result<T> {
        let out = self.db.transact_or_refuse(body).await??;
        self.bump().await?;
        Ok(out)
    }

    /// Bumps the version agents watch.
    pub async fn bump(&self) -> Result<u64> {
        Ok(self.db.increment(&self.version_key, 1).await?.max(0).unsigned_abs())
    }

    /// The version agents watch.
    pub async fn version(&self) -> Result<u64> {
        Ok(self.db.get(&self.version_key).await?.and_then(|v| String::from_utf8(v).ok()?.parse().ok()).unwrap_or(0))
    }

    /// The ID claimed by `name` for a kind in a project.
    pub async fn id_by_name<R: Resource>(&self, owner: &Owner, name: &str) -> Result<Option<String>> {
        Ok(self.db.get(&name_key::<R>(owner, name)).await?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Whether a name is free for a kind in a project, inside a transaction.
    pub async fn txn_name_free<R: Resource>(
        t: &Txn,
        owner: &Owner,
        name: &str,
    ) -> std::result::Result<bool, FlareError> {
        Ok(t.get(&name_key::<R>(owner, name)).await?.is_none())
    }

    /// The per-project index prefix of a kind (for scans inside transactions).
    pub fn idx_prefix<R: Resource>(owner: &Owner) -> Vec<u8> {
        idx_prefix::<R>(owner).into_bytes()
    }
}

/// A refusal from inside a [`Store::change`] body: the transaction is abandoned, nothing it
/// wrote is committed.
pub fn refuse<T>(e: StoreError) -> std::result::Result<Result<T>, FlareError> {
    Ok(Err(e))
}

/// Applies `patch` to the labels and annotations of `owner`'s `R` named by ID or name — with
/// `if_match`, only at that revision — stamped and audited like any change; the resource as
/// written. The resource's own fields are read and written in the same transaction, so a
/// concurrent change of them is never undone.
pub async fn patch_meta<R: Resource + Send + Sync + 'static>(
    store: &Store,
    owner: &Owner,
    id_or_name: &str,
    what: &str,
    patch: &MetaPatch,
    if_match: Option<u64>,
) -> Result<R> {
    let id = resolve::<R>(store, owner, id_or_name, what).await?.id().to_owned();
    let (patch, what) = (patch.clone(), what.to_owned());
    store
        .change(async move |t| {
            let Some(mut r) = txn_get::<R>(t, &obj_key::<R>(&id)).await? else {
                return refuse(StoreError::NotFound(format!("{what} {id} was deleted")));
            };
            if let Err(e) = check_revision(&r, if_match) {
                return refuse(e);
            }
            if let Err(e) = r.meta_mut().apply(&patch) {
                return refuse(e);
            }
            Ok(Ok(txn_put(t, &r)?))
        })
        .await
}

/// Resolves an ID-or-name of a kind in a project.
pub async fn resolve<R: Resource>(store: &Store, owner: &Owner, id_or_name: &str, what: &str) -> Result<R> {
    if let Some(r) = store.get::<R>(id_or_name).await?.filter(|r| r.owner() == owner) {
        return Ok(r);
    }
    match store.id_by_name::<R>(owner, id_or_name).await? {
        Some(id) => store.get_owned(owner, &id, what).await,
        None => {
            Err(StoreError::NotFound(format!("{what} {id_or_name:?} not found in {}/{}", owner.tenant, owner.project)))
        }
    }
}
