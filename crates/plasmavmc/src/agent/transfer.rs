//! Moving a stopped VM's disks between workers (cold migration): the source agent serves them
//! over HTTP to the migration's target agent alone (its node credential, checked against the
//! plan), and the target pulls them with its own node token — never a platform-wide one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use ultracloud_iam::guard::Principal;
use ultracloud_runtime::error::ApiError;

use super::Worker;
use super::qemu::{self, VmPaths};

/// Which file a disk name means on this worker: `root` or a volume ID.
fn disk_file(w: &Worker, vm: &str, disk: &str) -> Option<PathBuf> {
    let ok = |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok(vm) || !ok(disk) {
        return None;
    }
    if disk == "root" { Some(VmPaths::new(&w.data_dir, vm).root_disk()) } else { Some(w.volumes.path(disk)) }
}

/// Whether `caller` may copy `vm`'s disks from here: a node agent only when its node is the
/// target of the VM's migration away from this worker; a credential bound to no node (an
/// operator holding `platform.disk.read`) always.
fn may_copy(w: &Worker, caller: &Principal, vm: &str) -> bool {
    let Some(node) = &caller.claims.node else { return true };
    w.outgoing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(vm) == Some(node)
}

async fn serve_disk(
    State(w): State<Arc<Worker>>,
    caller: Principal,
    UrlPath((vm, disk)): UrlPath<(String, String)>,
) -> Response {
    let Some(path) = disk_file(&w, &vm, &disk) else {
        return ApiError::invalid("bad VM or disk name").into_response();
    };
    if !may_copy(&w, &caller, &vm) {
        return ApiError::forbidden(format!("VM {vm} is not moving to the caller's node")).into_response();
    }
    if qemu::pid_of(&VmPaths::new(&w.data_dir, &vm), &vm).is_some() {
        return ApiError::conflict(format!("VM {vm} is running here; its disks cannot be copied")).into_response();
    }
    match tokio::fs::File::open(&path).await {
        Ok(f) => Body::from_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 20)).into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            ApiError::not_found(format!("no disk {disk} of VM {vm} here")).into_response()
        }
        Err(e) => ApiError::internal(&e).into_response(),
    }
}

/// The agent's HTTP routes (behind the iam guard).
pub fn router(w: Arc<Worker>, guard: &Arc<ultracloud_iam::guard::Guard>) -> axum::Router {
    axum::Router::new()
        .route("/v1/vms/{vm}/disks/{disk}", get(serve_disk).route_layer(guard.require_node("platform.disk.read")))
        .with_state(w)
}

/// Pulls disk `disk` of `vm` from the agent at `source` into `dest` (through a temporary file).
pub async fn pull(
    http: &reqwest::Client,
    token: &str,
    source: &str,
    vm: &str,
    disk: &str,
    dest: &Path,
) -> Result<u64, String> {
    let url = format!("{}/v1/vms/{vm}/disks/{disk}", source.trim_end_matches('/'));
    let resp = http.get(&url).bearer_auth(token).send().await.map_err(|e| format!("fetching {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url} answered {}: {}", resp.status(), resp.text().await.unwrap_or_default()));
    }
    let tmp = dest.with_extension("partial");
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let mut f = tokio::fs::File::create(&tmp).await.map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let mut n = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("reading {url}: {e}"))?;
        n += chunk.len() as u64;
        f.write_all(&chunk).await.map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    }
    f.sync_all().await.map_err(|e| format!("syncing {}: {e}", tmp.display()))?;
    tokio::fs::rename(&tmp, dest).await.map_err(|e| format!("renaming {}: {e}", tmp.display()))?;
    Ok(n)
}
