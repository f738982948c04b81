//! Pagination of every list: `?limit=N&page_token=T`, in key order (resource IDs), so a page
//! boundary is a key. A listing that follows `next_page_token` to the end sees every resource
//! that existed throughout exactly once, however many are created or deleted meanwhile
//! (Kubernetes' `continue`, without its snapshot: a resource created behind the cursor is seen
//! by the next listing).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::meta::{Labels, Selector};

/// A page's size when the request names none, and the most one page holds.
pub const MAX_LIMIT: usize = 1000;

/// The query of a list request.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Items per page (1–1000; default 1000).
    #[serde(default)]
    pub limit: Option<usize>,
    /// The previous page's `next_page_token`.
    #[serde(default)]
    pub page_token: Option<String>,
    /// A label selector (`env=prod,tier!=db,gpu,!legacy`).
    #[serde(default)]
    pub selector: Option<String>,
    /// Only the resource with this name.
    #[serde(default)]
    pub name: Option<String>,
}

/// A checked [`ListQuery`].
#[derive(Debug, Clone)]
pub struct Filter {
    /// Items per page.
    pub limit: usize,
    /// The key suffix the page starts after (exclusive).
    pub after: Option<Vec<u8>>,
    selector: Selector,
    name: Option<String>,
}

impl ListQuery {
    /// Checks the query; an error names the parameter.
    pub fn filter(&self) -> Result<Filter, StoreError> {
        let limit = match self.limit {
            None => MAX_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(n) => return Err(StoreError::Invalid(format!("limit {n}: 1 to {MAX_LIMIT}"))),
        };
        let after = match &self.page_token {
            None => None,
            Some(t) => Some(
                URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| StoreError::Invalid(format!("page_token {t:?} is not one this API gave out")))?,
            ),
        };
        let selector = Selector::parse(self.selector.as_deref().unwrap_or(""))?;
        Ok(Filter { limit, after, selector, name: self.name.clone() })
    }
}

impl Filter {
    /// Whether a resource with `name` and `labels` is listed.
    pub fn admits(&self, name: &str, labels: &Labels) -> bool {
        self.name.as_deref().is_none_or(|n| n == name) && self.selector.matches(labels)
    }
}

/// The page token that continues after `key_suffix`.
pub fn token(key_suffix: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(key_suffix)
}

/// One page: the items and, when more may follow, the token of the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, in key order.
    pub items: Vec<T>,
    /// Pass as `page_token` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

impl<T> Page<T> {
    /// A list that is never paged (bounded by nature: one VM's events, the platform's hosts).
    pub fn all(items: Vec<T>) -> Self {
        Self { items, next_page_token: None }
    }

    /// The same page with its items mapped.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_page_token: self.next_page_token }
    }
}

/// Reads one page from rows in key order, in batches: ask [`Pager::want`] for the next scan
/// (`n` rows strictly after a key suffix, from the start when `None`), hand the rows to
/// [`Pager::feed`], and repeat until `want` says the page is done. A full page carries a token
/// only when an admitted item follows it, so the last page has none. (A state machine rather
/// than a function taking an async scan closure: its futures stay `Send` for axum.)
#[derive(Debug)]
pub struct Pager<T> {
    limit: usize,
    batch: usize,
    cursor: Option<Vec<u8>>,
    items: Vec<(Vec<u8>, T)>,
    next: Option<String>,
    done: bool,
}

impl<T> Pager<T> {
    /// A page of `limit` items after `after`.
    pub fn new(limit: usize, after: Option<Vec<u8>>) -> Self {
        let batch = limit.saturating_add(1).min(MAX_LIMIT + 1);
        Self { limit, batch, cursor: after, items: Vec::new(), next: None, done: false }
    }

    /// The next scan to run (after this key suffix, this many rows), or `None` when done.
    pub fn want(&self) -> Option<(Option<&[u8]>, usize)> {
        (!self.done).then_some((self.cursor.as_deref(), self.batch))
    }

    /// The rows of the scan [`Pager::want`] asked for; `keep` says which items are listed.
    pub fn feed(&mut self, rows: Vec<(Vec<u8>, T)>, keep: impl Fn(&T) -> bool) {
        let exhausted = rows.len() < self.batch;
        for (key, item) in rows {
            self.cursor = Some(key.clone());
            if !keep(&item) {
                continue;
            }
            if self.items.len() == self.limit {
                // One more admitted item exists: the page is full and not the last.
                self.next = self.items.last().map(|(k, _)| token(k));
                self.done = true;
                return;
            }
            self.items.push((key, item));
        }
        self.done = exhausted;
    }

    /// The page.
    pub fn finish(self) -> Page<T> {
        Page { items: self.items.into_iter().map(|(_, v)| v).collect(), next_page_token: self.next }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::ops::Bound;

    use proptest::prelude::*;

    use super::*;

    fn scan_of(map: &BTreeMap<Vec<u8>, u32>, after: Option<&[u8]>, n: usize) -> Vec<(Vec<u8>, u32)> {
        let lower = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_vec()));
        map.range((lower, Bound::Unbounded)).take(n).map(|(k, v)| (k.clone(), *v)).collect()
    }

    fn key(n: u16) -> Vec<u8> {
        format!("{n:05}").into_bytes()
    }

    proptest! {
        /// Pages followed to the end, with resources created and deleted between pages:
        /// every resource present throughout is seen exactly once, nothing twice, in order,
        /// and only admitted items appear.
        #[test]
        fn paging_never_skips_or_repeats_under_concurrent_changes(
            initial in proptest::collection::btree_set(0u16..2000, 0..300),
            churn in proptest::collection::vec((any::<bool>(), 0u16..2000), 0..200),
            limit in 1usize..40,
            modulus in 1u32..4,
        ) {
            let mut map: BTreeMap<Vec<u8>, u32> = initial.iter().map(|n| (key(*n), u32::from(*n))).collect();
            let deleted: BTreeSet<u16> = churn.iter().filter(|(add, _)| !add).map(|(_, n)| *n).collect();
            let stable: BTreeSet<u16> = initial.difference(&deleted).copied().collect();
            let mut churn = churn.into_iter();
            let mut seen: Vec<u32> = Vec::new();
            let mut token_in: Option<String> = None;
            let keep = |v: &u32| v.is_multiple_of(modulus);
            for _ in 0..10_000 {
                let q = ListQuery { limit: Some(limit), page_token: token_in.clone(), ..ListQuery::default() };
                let f = q.filter().unwrap();
                let page = run(&map, f.limit, f.after, keep);
                prop_assert!(page.items.len() <= limit);
                prop_assert!(page.items.iter().all(keep));
                seen.extend(page.items);
                // Between pages, another client creates or deletes a few resources.
                for (add, n) in churn.by_ref().take(3) {
                    if add { map.insert(key(n), u32::from(n)); } else { map.remove(&key(n)); }
                }
                match page.next_page_token {
                    Some(t) => token_in = Some(t),
                    None => break,
                }
            }
            let unique: BTreeSet<u32> = seen.iter().copied().collect();
            prop_assert_eq!(unique.len(), seen.len(), "an item was listed twice");
            prop_assert!(seen.windows(2).all(|w| w[0] < w[1]), "out of key order");
            for n in stable.iter().filter(|n| keep(&u32::from(**n))) {
                prop_assert!(unique.contains(&u32::from(*n)), "{} was skipped", n);
            }
        }
    }

    fn run(
        map: &BTreeMap<Vec<u8>, u32>,
        limit: usize,
        after: Option<Vec<u8>>,
        keep: impl Fn(&u32) -> bool,
    ) -> Page<u32> {
        let mut pager = Pager::new(limit, after);
        while let Some((after, n)) = pager.want() {
            let rows = scan_of(map, after, n);
            pager.feed(rows, &keep);
        }
        pager.finish()
    }

    #[test]
    fn bad_queries_are_named() {
        let bad = |q: ListQuery| q.filter().unwrap_err().to_string();
        assert!(bad(ListQuery { limit: Some(0), ..Default::default() }).contains("limit 0"));
        assert!(bad(ListQuery { limit: Some(5000), ..Default::default() }).contains("limit 5000"));
        assert!(bad(ListQuery { page_token: Some("!!".into()), ..Default::default() }).contains("page_token"));
        assert!(bad(ListQuery { selector: Some("a b".into()), ..Default::default() }).contains("selector"));
    }

    #[test]
    fn the_last_page_has_no_token() {
        let map: BTreeMap<Vec<u8>, u32> = (0..4).map(|n| (key(n), u32::from(n))).collect();
        let run = |limit| run(&map, limit, None, |_| true);
        assert_eq!(run(4).next_page_token, None);
        assert_eq!(run(5).next_page_token, None);
        let p = run(3);
        assert_eq!((p.items.len(), p.next_page_token.is_some()), (3, true));
    }
}
