//! The controller kit's side of the one HTTP client (`ultracloud_tls::replicas`, re-exported
//! here): a tenant project's resources of one kind as a typed [`Collection`] — creates with an
//! `Idempotency-Key`, lists that follow `next_page_token`, reads with their revision. Typed
//! clients of each service (`prismnet::client`, `plasmavmc::client`) are made of these.

use std::marker::PhantomData;

use http::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
pub use ultracloud_tls::replicas::*;

use crate::Owner;
use crate::page::{ListQuery, Page};

/// The resources of one kind in a tenant project: `/v1/tenants/{t}/projects/{p}/{kind}`,
/// read as `R`, created from `N`.
pub struct Collection<'c, R, N> {
    client: &'c Client,
    owner: Owner,
    kind: &'static str,
    types: PhantomData<fn() -> (R, N)>,
}

impl<'c, R, N> Collection<'c, R, N> {
    /// The resources of kind `kind` (`"vpcs"`, `"vms"`) in `owner`'s project at `client`'s
    /// service.
    pub fn new(client: &'c Client, owner: &Owner, kind: &'static str) -> Self {
        Self { client, owner: owner.clone(), kind, types: PhantomData }
    }
}

impl<'c, R: DeserializeOwned, N: Serialize> Collection<'c, R, N> {
    /// The path of `rest` under the collection.
    pub fn path(&self, rest: &[&str]) -> Vec<String> {
        let o = &self.owner;
        let mut path: Vec<String> =
            ["v1", "tenants", &o.tenant, "projects", &o.project, self.kind].iter().map(|s| (*s).to_owned()).collect();
        path.extend(rest.iter().map(|s| (*s).to_owned()));
        path
    }

    /// A call on `rest` under the collection (an action: `[id, "start"]`).
    pub fn call(&self, method: Method, rest: &[&str]) -> Call<'c> {
        self.client.request(method, &self.path(rest))
    }

    /// Creates a resource; the call carries a fresh `Idempotency-Key`, so it is retried
    /// safely and a retry never makes a second one.
    pub async fn create(&self, new: &N) -> Result<R, ClientError> {
        self.call(Method::POST, &[]).idempotency_key(&idempotency_key()).json(new).fetch().await
    }

    /// One page of the list.
    pub async fn list(&self, q: &ListQuery) -> Result<Page<R>, ClientError> {
        let set = [
            ("limit", q.limit.map(|l| l.to_string())),
            ("page_token", q.page_token.clone()),
            ("selector", q.selector.clone()),
            ("name", q.name.clone()),
        ];
        let mut call = self.call(Method::GET, &[]);
        for (k, v) in set {
            if let Some(v) = v {
                call = call.query(k, v);
            }
        }
        call.fetch().await
    }

    /// Every item, following `next_page_token` to the end.
    pub async fn list_all(&self, q: &ListQuery) -> Result<Vec<R>, ClientError> {
        let mut q = q.clone();
        let mut items = Vec::new();
        loop {
            let page = self.list(&q).await?;
            items.extend(page.items);
            match page.next_page_token {
                Some(t) if q.page_token.as_ref() != Some(&t) => q.page_token = Some(t),
                _ => return Ok(items),
            }
        }
    }

    /// A resource by ID or name.
    pub async fn get(&self, id: &str) -> Result<R, ClientError> {
        self.call(Method::GET, &[id]).fetch().await
    }

    /// A resource by ID or name, with its revision (for `If-Match`).
    pub async fn get_tagged(&self, id: &str) -> Result<(R, Option<u64>), ClientError> {
        let service = self.client.service().to_owned();
        let answer = self.call(Method::GET, &[id]).send().await?;
        let r =
            serde_json::from_slice(&answer.body).map_err(|e| ClientError::Decode { service, detail: e.to_string() })?;
        Ok((r, answer.revision()))
    }

    /// Deletes a resource.
    pub async fn delete(&self, id: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &[id]).done().await
    }

    /// `PATCH …/{kind}/{id}/metadata`: sets and removes labels and annotations (with
    /// `if_match`, only at that revision); the resource as it now is.
    pub async fn patch_meta(
        &self,
        id: &str,
        patch: &crate::MetaPatch,
        if_match: Option<u64>,
    ) -> Result<R, ClientError> {
        self.call(Method::PATCH, &[id, "metadata"]).json(patch).if_match(if_match).fetch().await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_client_sends_the_key_the_idempotency_layer_reads() {
        assert_eq!(super::IDEMPOTENCY_KEY, crate::idempotency::HEADER);
    }
}
