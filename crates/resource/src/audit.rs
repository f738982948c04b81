//! The audit trail: one event per change of a resource, written in the change's own
//! transaction (an event exists exactly when its change committed), readable by the tenant at
//! `GET …/projects/{project}/events` in time order.
//!
//! | key | value |
//! |---|---|
//! | `{service}/event/{tenant}/{project}/{at_ms:013}-{kind}-{id}-{revision}` | the [`Event`] |

use serde::{Deserialize, Serialize};

use crate::{Owner, Resource};

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
