//! What every resource carries besides its own fields: labels and annotations the tenant sets,
//! and the stamps the store keeps — when and by whom it was created and last changed, and its
//! revision (the `ETag` of optimistic concurrency). Label selectors filter lists.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Labels or annotations: key → value.
pub type Labels = BTreeMap<String, String>;

/// At most this many labels (and this many annotations) on one resource.
pub const MAX_ENTRIES: usize = 64;
/// A label value's longest length (annotations: [`MAX_ANNOTATION_BYTES`] in all).
pub const MAX_LABEL_VALUE: usize = 63;
/// All annotations of a resource together, in bytes.
pub const MAX_ANNOTATION_BYTES: usize = 64 * 1024;

/// A resource's metadata. Stamps are the store's: whatever a request sends for them is
/// ignored (requests carry only `labels` and `annotations`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Identifying key/values that lists select on (`?selector=env=prod`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Free-form key/values for tools; never selected on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: Labels,
    /// When it was created (ms since the epoch).
    #[serde(default)]
    pub created_at_ms: u64,
    /// Who created it (`user:<id>`, `sa:<id>`, `system`).
    #[serde(default)]
    pub created_by: String,
    /// When it last changed (ms since the epoch).
    #[serde(default)]
    pub updated_at_ms: u64,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: String,
    /// Bumped by every change; its `ETag` (`"3"`) is what `If-Match` compares.
    #[serde(default)]
    pub revision: u64,
}

impl Meta {
    /// The metadata of a new resource with the tenant's `labels` and `annotations`, checked.
    pub fn new(labels: Labels, annotations: Labels) -> Result<Self, StoreError> {
        check_labels(&labels)?;
        check_annotations(&annotations)?;
        Ok(Self { labels, annotations, ..Self::default() })
    }

    /// Stamps a change made by `actor` at `now_ms`: the revision goes up, creation stamps are
    /// set once.
    pub fn stamp(&mut self, actor: &str, now_ms: u64) {
        if self.revision == 0 {
            self.created_at_ms = now_ms;
            self.created_by = actor.to_owned();
        }
        self.revision += 1;
        self.updated_at_ms = now_ms;
        self.updated_by = actor.to_owned();
    }
}

/// A change of a resource's labels and annotations, as a JSON merge patch (RFC 7396):
/// `"key": "value"` sets, `"key": null` removes, keys not named stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaPatch {
    /// Labels to set (a value) or remove (`null`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, Option<String>>,
    /// Annotations to set or remove.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, Option<String>>,
}

impl MetaPatch {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

fn merge(into: &mut Labels, patch: &BTreeMap<String, Option<String>>) {
    for (k, v) in patch {
        match v {
            Some(v) => into.insert(k.clone(), v.clone()),
            None => into.remove(k),
        };
    }
}

impl Meta {
    /// Applies `patch`; refused (and `self` unchanged) when the result breaks the label or
    /// annotation rules.
    pub fn apply(&mut self, patch: &MetaPatch) -> Result<(), StoreError> {
        let (mut labels, mut annotations) = (self.labels.clone(), self.annotations.clone());
        merge(&mut labels, &patch.labels);
        merge(&mut annotations, &patch.annotations);
        check_labels(&labels)?;
        check_annotations(&annotations)?;
        (self.labels, self.annotations) = (labels, annotations);
        Ok(())
    }
}

/// `KEY=VALUE`, as the CLI takes a label or an annotation (the value may be empty); the key
/// and value are checked by the API.
pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: use KEY=VALUE")),
    }
}

/// The one key rule of labels and annotations: 1–63 letters, digits, `-`, `_`, `.`, `/`,
/// starting and ending with a letter or digit (Kubernetes' rule, prefix included).
pub fn valid_key(k: &str) -> bool {
    let ok_edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    (1..=63).contains(&k.len())
        && ok_edge(k.chars().next())
        && ok_edge(k.chars().last())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// A label value: at most 63 letters, digits, `-`, `_`, `.` (may be empty).
pub fn valid_value(v: &str) -> bool {
    v.len() <= MAX_LABEL_VALUE && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Refuses labels breaking [`valid_key`], [`valid_value`] or [`MAX_ENTRIES`], naming the first.
pub fn check_labels(labels: &Labels) -> Result<(), StoreError> {
    if labels.len() > MAX_ENTRIES {
        return Err(StoreError::Invalid(format!("{} labels: at most {MAX_ENTRIES}", labels.len())));
    }
    for (k, v) in labels {
        if !valid_key(k) {
            return Err(StoreError::Invalid(format!(
                "label key {k:?}: 1–63 letters, digits, '-', '_', '.', '/', starting and ending with a letter or digit"
            )));
        }
        if !valid_value(v) {
            return Err(StoreError::Invalid(format!(
                "label {k:?} value {v:?}: at most {MAX_LABEL_VALUE} letters, digits, '-', '_', '.'"
            )));
        }
    }
    Ok(())
}

/// Refuses annotations with a bad key or more than [`MAX_ENTRIES`] / [`MAX_ANNOTATION_BYTES`].
pub fn check_annotations(annotations: &Labels) -> Result<(), StoreError> {
    if annotations.len() > MAX_ENTRIES {
        return Err(StoreError::Invalid(format!("{} annotations: at most {MAX_ENTRIES}", annotations.len())));
    }
    if let Some(k) = annotations.keys().find(|k| !valid_key(k)) {
        return Err(StoreError::Invalid(format!("annotation key {k:?}: the label key rule applies")));
    }
    let bytes: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_ANNOTATION_BYTES {
        return Err(StoreError::Invalid(format!("annotations take {bytes} bytes: at most {MAX_ANNOTATION_BYTES}")));
    }
    Ok(())
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

/// A label selector (Kubernetes' equality-based syntax): comma-separated requirements, all of
/// which must hold — `env=prod` (or `env==prod`), `tier!=db` (also true when `tier` is
/// absent), `gpu` (has the label), `!legacy` (has not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    /// Parses a selector; an error names the requirement that is wrong.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = |why: &str| StoreError::Invalid(format!("selector requirement {part:?}: {why}"));
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::Absent(k.trim().into())
            } else {
                Requirement::Exists(part.into())
            };
            let (key, value) = match &req {
                Requirement::Equals(k, v) | Requirement::NotEquals(k, v) => (k, Some(v)),
                Requirement::Exists(k) | Requirement::Absent(k) => (k, None),
            };
            if !valid_key(key) {
                return Err(bad("not a valid label key"));
            }
            if value.is_some_and(|v| !valid_value(v)) {
                return Err(bad("not a valid label value"));
            }
            out.push(req);
        }
        Ok(Self(out))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::Absent(k) => !labels.contains_key(k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meta_patch_sets_removes_and_keeps_the_rules() {
        let mut m = Meta::new(
            Labels::from([("env".into(), "dev".into()), ("tier".into(), "web".into())]),
            Labels::from([("note".into(), "x".into())]),
        )
        .unwrap();
        let patch: MetaPatch =
            serde_json::from_str(r#"{"labels":{"env":"prod","tier":null,"team":"a"},"annotations":{"note":null}}"#)
                .unwrap();
        m.apply(&patch).unwrap();
        assert_eq!(m.labels, Labels::from([("env".into(), "prod".into()), ("team".into(), "a".into())]));
        assert!(m.annotations.is_empty());
        let bad: MetaPatch = serde_json::from_str(r#"{"labels":{"bad key":"x","ok":"y"}}"#).unwrap();
        let before = m.clone();
        assert!(m.apply(&bad).is_err());
        assert_eq!(m, before, "a refused patch changes nothing");
        assert!(serde_json::from_str::<MetaPatch>(r#"{"revision":3}"#).is_err(), "stamps are not patched");
        assert!(MetaPatch::default().is_empty());
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn pairs_are_key_equals_value() {
        assert_eq!(parse_pair("env=prod").unwrap(), ("env".into(), "prod".into()));
        assert_eq!(parse_pair("empty=").unwrap(), ("empty".into(), String::new()));
        assert!(parse_pair("=x").is_err());
        assert!(parse_pair("novalue").unwrap_err().contains("KEY=VALUE"));
    }

    #[test]
    fn selectors_follow_kubernetes_equality_rules() {
        let l = labels(&[("env", "prod"), ("tier", "web")]);
        for (sel, want) in [
            ("", true),
            ("env=prod", true),
            ("env==prod", true),
            ("env=dev", false),
            ("env!=dev", true),
            ("owner!=bob", true),
            ("tier", true),
            ("!tier", false),
            ("!legacy", true),
            ("env=prod, tier=web", true),
            ("env=prod,tier=db", false),
        ] {
            assert_eq!(Selector::parse(sel).unwrap().matches(&l), want, "{sel}");
        }
    }

    #[test]
    fn bad_selectors_and_labels_are_named() {
        for sel in ["env=pr od", "-env=prod", "=x", "!"] {
            let e = Selector::parse(sel).unwrap_err().to_string();
            assert!(e.contains("selector requirement"), "{sel}: {e}");
        }
        let e = Meta::new(labels(&[("ok", "fine"), ("bad key!", "x")]), Labels::new()).unwrap_err();
        assert!(e.to_string().contains("\"bad key!\""), "{e}");
        let e = Meta::new(labels(&[("k", &"v".repeat(64))]), Labels::new()).unwrap_err();
        assert!(e.to_string().contains("at most 63"), "{e}");
        let big = labels(&[("note", &"x".repeat(MAX_ANNOTATION_BYTES))]);
        assert!(Meta::new(Labels::new(), big).is_err());
    }

    #[test]
    fn stamps_set_creation_once_and_count_revisions() {
        let mut m = Meta::default();
        m.stamp("user:a", 10);
        m.stamp("sa:agent", 20);
        assert_eq!((m.created_at_ms, m.created_by.as_str()), (10, "user:a"));
        assert_eq!((m.updated_at_ms, m.updated_by.as_str(), m.revision), (20, "sa:agent", 2));
    }
}
