//! prismnet's records in flaredb, under `prismnet/`, on the controller kit's store
//! ([`ultracloud_resource::store`]). Every change runs in one flaredb transaction, so concurrent
//! controllers never allocate one address, VNI or MAC twice: each allocation writes a key of
//! its own.
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

use serde::{Deserialize, Serialize};
use ultracloud_flaredb::Client;
use ultracloud_flaredb::client::Txn;
use ultracloud_flaredb::error::FlareError;
pub use ultracloud_resource::store::{
    Resource, Store, StoreError, decode, encode, end_of, obj_key, txn_delete, txn_get, txn_put, txn_scan,
};

use crate::model::{Port, Router, SecurityGroup, ServiceIp, Subnet, Vpc};

/// The first VNI handed out (lower ones are left for the platform's own networks).
pub const FIRST_VNI: u32 = 1000;
/// The last VNI (24 bits).
pub const LAST_VNI: u32 = (1 << 24) - 1;

ultracloud_resource::resource!(Vpc, "prismnet", "vpc", named);
ultracloud_resource::resource!(Subnet, "prismnet", "subnet", named);
ultracloud_resource::resource!(Router, "prismnet", "router", named);
ultracloud_resource::resource!(SecurityGroup, "prismnet", "sg", named);
ultracloud_resource::resource!(Port, "prismnet", "port");
ultracloud_resource::resource!(ServiceIp, "prismnet", "sip");

type Result<T> = std::result::Result<T, StoreError>;

/// prismnet's store over `db` (its version key is `prismnet/version`).
pub fn open(db: Client) -> Store {
    Store::for_service(db, "prismnet")
}

/// A registered agent host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Its name.
    pub name: String,
    /// The address VXLAN tunnels reach it on.
    pub underlay_ip: Ipv4Addr,
}

/// `prismnet/ipam/{subnet}/` — addresses are written as fixed-width numbers so they sort.
fn ipam_key(subnet: &str, ip: Ipv4Addr) -> Vec<u8> {
    format!("prismnet/ipam/{subnet}/{:010}", u32::from(ip)).into_bytes()
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

/// Registers (or updates) an agent host.
pub async fn put_host(store: &Store, h: &Host) -> Result<()> {
    let key = format!("prismnet/host/{}", h.name);
    let old = store.db.get(key.as_bytes()).await?;
    let new = encode(h)?;
    if old.as_deref() != Some(new.as_slice()) {
        store.db.put(key.as_bytes(), &new).await?;
        store.bump().await?;
    }
    Ok(())
}

/// Every registered host.
pub async fn hosts(store: &Store) -> Result<Vec<Host>> {
    let prefix = b"prismnet/host/".to_vec();
    let rows = store.db.scan(&prefix, Some(&end_of(&prefix)), 0, false).await?;
    Ok(rows.iter().map(|p| decode(&p.key, &p.value)).collect::<std::result::Result<_, _>>()?)
}

/// The DHCP port key of a subnet on a host.
pub fn dhcp_key(subnet: &str, host: &str) -> Vec<u8> {
    format!("prismnet/dhcp/{subnet}/{host}").into_bytes()
}
