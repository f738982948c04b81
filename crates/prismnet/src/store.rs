//! prismnet's records in flaredb, under `prismnet/`. Every change runs in one flaredb
//! transaction (snapshot isolation, write-write conflicts retried), so concurrent controllers
//! never allocate one address, VNI or MAC twice: each allocation writes a key of its own.
//!
//! | key | value |
//! |---|---|
//! | `prismnet/obj/{kind}/{id}` | the resource (JSON) |
//! | `prismnet/idx/{kind}/{tenant}/{project}/{id}` | the resource again (one scan lists a project) |
//! | `prismnet/name/{kind}/{tenant}/{project}/{name}` | its ID (names are unique per project) |
//! | `prismnet/ipam/{subnet}/{ip}` | who holds the address (`port:ID`, `sip:ID`) |
//! | `prismnet/mac/{subnet}/{mac}` | the port holding the MAC |
//! | `prismnet/vni/{vni}` | the subnet holding the VNI |
//! | `prismnet/dhcp/{subnet}/{host}` | the DHCP port of that subnet on that host |
//! | `prismnet/host/{name}` | a registered agent |
//! | `prismnet/version` | bumped after every change; agents long-poll it |

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ultracloud_flaredb::Client;
use ultracloud_flaredb::client::Txn;
use ultracloud_flaredb::error::FlareError;

use crate::model::{Owner, Port, Router, SecurityGroup, ServiceIp, Subnet, Vpc};

/// The first VNI handed out (lower ones are left for the platform's own networks).
pub const FIRST_VNI: u32 = 1000;
/// The last VNI (24 bits).
pub const LAST_VNI: u32 = (1 << 24) - 1;

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
}

macro_rules! resource {
    ($t:ty, $kind:literal, named) => {
        impl Resource for $t {
            const SERVICE: &'static str = "prismnet";
            const KIND: &'static str = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn owner(&self) -> &Owner {
                &self.owner
            }
            fn unique_name(&self) -> &str {
                &self.name
            }
        }
    };
    ($t:ty, $kind:literal) => {
        impl Resource for $t {
            const SERVICE: &'static str = "prismnet";
            const KIND: &'static str = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn owner(&self) -> &Owner {
                &self.owner
            }
        }
    };
}

resource!(Vpc, "vpc", named);
resource!(Subnet, "subnet", named);
resource!(Router, "router", named);
resource!(SecurityGroup, "sg", named);
resource!(Port, "port");
resource!(ServiceIp, "sip");

/// A registered agent host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Its name.
    pub name: String,
    /// The address VXLAN tunnels reach it on.
    pub underlay_ip: Ipv4Addr,
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
}

type Result<T> = std::result::Result<T, StoreError>;

/// A record as stored. Failing here (a map with non-string keys, say) is a bug: it is reported
/// and nothing is written, never an empty record.
fn encode<T: Serialize>(v: &T) -> std::result::Result<Vec<u8>, FlareError> {
    serde_json::to_vec(v).map_err(|e| FlareError::Internal(format!("cannot encode a record: {e}")))
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> std::result::Result<T, FlareError> {
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

/// `prismnet/ipam/{subnet}/` — addresses are written as fixed-width numbers so they sort.
fn ipam_key(subnet: &str, ip: Ipv4Addr) -> Vec<u8> {
    format!("prismnet/ipam/{subnet}/{:010}", u32::from(ip)).into_bytes()
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

/// Writes a resource (record, project index, name claim) inside a transaction.
pub fn txn_put<R: Resource>(t: &mut Txn, r: &R) -> std::result::Result<(), FlareError> {
    let bytes = encode(r)?;
    t.put(&obj_key::<R>(r.id()), &bytes);
    t.put(format!("{}{}", idx_prefix::<R>(r.owner()), r.id()).as_bytes(), &bytes);
    if !r.unique_name().is_empty() {
        t.put(&name_key::<R>(r.owner(), r.unique_name()), r.id().as_bytes());
    }
    Ok(())
}

/// Deletes a resource inside a transaction.
pub fn txn_delete<R: Resource>(t: &mut Txn, r: &R) {
    t.delete(&obj_key::<R>(r.id()));
    t.delete(format!("{}{}", idx_prefix::<R>(r.owner()), r.id()).as_bytes());
    if !r.unique_name().is_empty() {
        t.delete(&name_key::<R>(r.owner(), r.unique_name()));
    }
}

/// The addresses held in a subnet.
pub async fn txn_used_ips(t: &Txn, subnet: &str) -> std::result::Result<BTreeSet<Ipv4Addr>, FlareError> {
    let prefix = format!("prismnet/ipam/{subnet}/").into_bytes();
    let rows = t.scan(&prefix, Some(&end_of(&prefix)), 0, false).await?;
    Ok(rows
        .iter()
        .filter_map(|p| std::str::from_utf8(&p.key[prefix.len()..]).ok()?.parse::<u32>().ok())
        .map(Ipv4Addr::from)
        .collect())
}

/// Claims an address for `holder` inside a transaction (the caller checked it is free).
pub fn txn_claim_ip(t: &mut Txn, subnet: &str, ip: Ipv4Addr, holder: &str) {
    t.put(&ipam_key(subnet, ip), holder.as_bytes());
}

/// Releases an address inside a transaction.
pub fn txn_release_ip(t: &mut Txn, subnet: &str, ip: Ipv4Addr) {
    t.delete(&ipam_key(subnet, ip));
}

/// Claims a MAC in a subnet; false when taken.
pub async fn txn_claim_mac(t: &mut Txn, subnet: &str, mac: &str, port: &str) -> std::result::Result<bool, FlareError> {
    let key = format!("prismnet/mac/{subnet}/{mac}").into_bytes();
    if t.get(&key).await?.is_some() {
        return Ok(false);
    }
    t.put(&key, port.as_bytes());
    Ok(true)
}

/// Releases a MAC.
pub fn txn_release_mac(t: &mut Txn, subnet: &str, mac: &str) {
    t.delete(format!("prismnet/mac/{subnet}/{mac}").as_bytes());
}

/// The lowest free VNI, claimed for `subnet`.
pub async fn txn_claim_vni(t: &mut Txn, subnet: &str) -> Result<u32> {
    let prefix = b"prismnet/vni/".to_vec();
    let rows = t.scan(&prefix, Some(&end_of(&prefix)), 0, false).await?;
    let used: BTreeSet<u32> =
        rows.iter().filter_map(|p| std::str::from_utf8(&p.key[prefix.len()..]).ok()?.parse().ok()).collect();
    let vni =
        (FIRST_VNI..=LAST_VNI).find(|v| !used.contains(v)).ok_or_else(|| StoreError::Conflict("no VNI left".into()))?;
    t.put(format!("prismnet/vni/{vni:08}").as_bytes(), subnet.as_bytes());
    Ok(vni)
}

/// Releases a VNI.
pub fn txn_release_vni(t: &mut Txn, vni: u32) {
    t.delete(format!("prismnet/vni/{vni:08}").as_bytes());
}

/// A service's view of flaredb: its resources and the version its agents watch.
#[derive(Debug, Clone)]
pub struct Store {
    /// The database client.
    pub db: Client,
    version_key: Vec<u8>,
}

impl Store {
    /// prismnet's store over `db`.
    pub fn new(db: Client) -> Self {
        Self::for_service(db, "prismnet")
    }

    /// The store of `service` (its version key is `{service}/version`).
    pub fn for_service(db: Client, service: &str) -> Self {
        Self { db, version_key: format!("{service}/version").into_bytes() }
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

    /// Registers (or updates) an agent host.
    pub async fn put_host(&self, h: &Host) -> Result<()> {
        let key = format!("prismnet/host/{}", h.name);
        let old = self.db.get(key.as_bytes()).await?;
        let new = encode(h)?;
        if old.as_deref() != Some(new.as_slice()) {
            self.db.put(key.as_bytes(), &new).await?;
            self.bump().await?;
        }
        Ok(())
    }

    /// Every registered host.
    pub async fn hosts(&self) -> Result<Vec<Host>> {
        let prefix = b"prismnet/host/".to_vec();
        let rows = self.db.scan(&prefix, Some(&end_of(&prefix)), 0, false).await?;
        Ok(rows.iter().map(|p| decode(&p.key, &p.value)).collect::<std::result::Result<_, _>>()?)
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

    /// The DHCP port key of a subnet on a host.
    pub fn dhcp_key(subnet: &str, host: &str) -> Vec<u8> {
        format!("prismnet/dhcp/{subnet}/{host}").into_bytes()
    }

    /// The per-project index prefix of a kind (for scans inside transactions).
    pub fn idx_prefix<R: Resource>(owner: &Owner) -> Vec<u8> {
        idx_prefix::<R>(owner).into_bytes()
    }
}
