//! The placement component's decisions, made on the meta group's leader: which nodes are up
//! (heartbeats), which regions need a replica added, replaced or moved.
//!
//! [`plan`] is a pure function of the region map and the set of live nodes, so it is tested
//! without a cluster; the node carries its decisions out through the regions' leaders.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::{ChangeReplicas, Heartbeat, HeartbeatResponse};
use crate::meta::MetaState;
use crate::raft::types::MetaCommand;
use crate::region::{NodeId, RegionDescriptor, RegionId};

/// Most placement changes started per round.
const MAX_CHANGES_PER_ROUND: usize = 4;
/// How long a started change blocks further changes of its region.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the meta leader learned from heartbeats (in memory; rebuilt after a leader change).
#[derive(Debug)]
pub struct Placement {
    inner: Mutex<State>,
    down_after: Duration,
}

#[derive(Debug)]
struct State {
    /// The meta term this state belongs to, and when it began.
    term: u64,
    since: Instant,
    last_seen: HashMap<NodeId, Instant>,
    leaders: HashMap<RegionId, (NodeId, u64)>,
    in_flight: HashMap<RegionId, Instant>,
    /// When each region's last change finished (its leader reports the new membership a
    /// heartbeat later).
    changed: HashMap<RegionId, Instant>,
}

impl Placement {
    /// A placement tracker that calls a node down after `down_after` of silence.
    pub fn new(down_after: Duration) -> Self {
        let state = State {
            term: 0,
            since: Instant::now(),
            last_seen: HashMap::new(),
            leaders: HashMap::new(),
            in_flight: HashMap::new(),
            changed: HashMap::new(),
        };
        Self { inner: Mutex::new(state), down_after }
    }

    fn state(&self, term: u64) -> std::sync::MutexGuard<'_, State> {
        let mut s = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.term != term {
            // A new meta leader: forget what the old term learned; give every node a grace period.
            *s = State {
                term,
                since: Instant::now(),
                last_seen: HashMap::new(),
                leaders: HashMap::new(),
                in_flight: HashMap::new(),
                changed: HashMap::new(),
            };
        }
        s
    }

    /// Records a heartbeat; returns the meta changes it calls for and the answer to the node.
    pub fn on_heartbeat(&self, term: u64, meta: &MetaState, hb: &Heartbeat) -> (Vec<MetaCommand>, HeartbeatResponse) {
        let mut s = self.state(term);
        s.last_seen.insert(hb.id, Instant::now());
        let mut changes = Vec::new();
        if meta.nodes.get(&hb.id).is_none_or(|n| n.addr != hb.addr || n.name != hb.name) {
            changes.push(MetaCommand::PutNode { id: hb.id, name: hb.name.clone(), addr: hb.addr.clone() });
        }
        let mut destroy = Vec::new();
        for r in &hb.replicas {
            if r.leader {
                s.leaders.insert(r.desc.id, (hb.id, r.approximate_keys));
            } else if s.leaders.get(&r.desc.id).is_some_and(|(l, _)| *l == hb.id) {
                s.leaders.remove(&r.desc.id);
            }
            match meta.regions.get(&r.desc.id) {
                Some(known) if !r.desc.newer_than(known) => {
                    let member = known.voters.contains(&hb.id) || known.learners.contains(&hb.id);
                    if !member && known.conf_ver > r.desc.conf_ver && !s.settling(r.desc.id, self.down_after) {
                        destroy.push(r.desc.id);
                    }
                }
                _ => changes.push(MetaCommand::PutRegion(r.desc.clone())),
            }
        }
        // An empty replica (no snapshot yet) of a region that no longer counts this node —
        // removed while the snapshot was on its way — is stale too; one of a region placement
        // does not know yet is left alone (a split child about to be reported).
        for group in &hb.empty {
            let member = |r: &RegionDescriptor| r.voters.contains(&hb.id) || r.learners.contains(&hb.id);
            if meta.regions.get(group).is_some_and(|r| !member(r)) && !s.settling(*group, self.down_after) {
                destroy.push(*group);
            }
        }
        (changes, HeartbeatResponse { destroy })
    }

    /// The leader of `region` as last reported, and its approximate key count.
    pub fn leader_of(&self, term: u64, region: RegionId) -> Option<(NodeId, u64)> {
        self.state(term).leaders.get(&region).copied()
    }

    /// Nodes heard from recently (during the grace period after a leader change: every node).
    pub fn live_nodes(&self, term: u64, meta: &MetaState) -> BTreeSet<NodeId> {
        let s = self.state(term);
        let now = Instant::now();
        let grace = now.duration_since(s.since) < self.down_after;
        meta.nodes
            .keys()
            .copied()
            .filter(|id| match s.last_seen.get(id) {
                Some(t) => now.duration_since(*t) < self.down_after,
                None => grace,
            })
            .collect()
    }

    /// Picks the changes to start now (skipping regions with a change in flight) and marks them.
    pub fn next_changes(&self, term: u64, meta: &MetaState, replication_factor: usize) -> Vec<ChangeReplicas> {
        let live = self.live_nodes(term, meta);
        let mut s = self.state(term);
        let now = Instant::now();
        s.in_flight.retain(|_, t| now.duration_since(*t) < CHANGE_TIMEOUT);
        let busy: BTreeSet<RegionId> = s.in_flight.keys().copied().collect();
        let changes: Vec<ChangeReplicas> = plan(meta, &live, replication_factor, &busy)
            .into_iter()
            .filter(|c| s.leaders.contains_key(&c.region))
            .take(MAX_CHANGES_PER_ROUND)
            .collect();
        for c in &changes {
            s.in_flight.insert(c.region, now);
        }
        changes
    }

    /// Marks a region's change finished (or failed), so the next round may act on it again.
    pub fn change_done(&self, term: u64, region: RegionId) {
        let mut s = self.state(term);
        s.in_flight.remove(&region);
        s.changed.insert(region, Instant::now());
    }
}

impl State {
    /// Whether `region`'s membership may be ahead of the region map: a change is in flight or
    /// finished within `window`, or this meta term began within it (an earlier leader's change
    /// may be in flight). A replica the map does not list is not called stale then: it may be
    /// the one the change is adding (a node that kept an old replica is re-added with it), and
    /// destroying it would leave the region a voter that never answers.
    fn settling(&self, region: RegionId, window: Duration) -> bool {
        let recent = |t: &Instant| t.elapsed() < window;
        self.in_flight.contains_key(&region) || self.changed.get(&region).is_some_and(recent) || recent(&self.since)
    }
}

/// The replica changes the region map calls for, given the live nodes: replace replicas on
/// dead nodes, add missing replicas, then move one replica from the fullest to the emptiest
/// node when they differ by more than one.
pub fn plan(
    meta: &MetaState,
    live: &BTreeSet<NodeId>,
    replication_factor: usize,
    busy: &BTreeSet<RegionId>,
) -> Vec<ChangeReplicas> {
    let mut load: BTreeMap<NodeId, usize> = live.iter().map(|n| (*n, 0)).collect();
    for r in meta.regions.values() {
        for v in &r.voters {
            if let Some(l) = load.get_mut(v) {
                *l += 1;
            }
        }
    }
    let want = replication_factor.min(live.len());
    let mut out = Vec::new();
    let least_loaded = |load: &BTreeMap<NodeId, usize>, exclude: &[NodeId]| {
        load.iter().filter(|(n, _)| !exclude.contains(n)).min_by_key(|(n, l)| (**l, **n)).map(|(n, _)| *n)
    };
    for r in meta.regions.values() {
        if busy.contains(&r.id) || r.voters.is_empty() {
            continue;
        }
        if !r.learners.is_empty() {
            out.extend(settle_learner(r, live, want));
            continue;
        }
        let dead: Vec<NodeId> = r.voters.iter().copied().filter(|v| !live.contains(v)).collect();
        let alive = r.voters.len() - dead.len();
        if alive == 0 {
            continue; // nothing to copy from
        }
        let change = if let Some(&d) = dead.first() {
            match least_loaded(&load, &r.voters) {
                Some(n) => Some(ChangeReplicas { region: r.id, add: Some(n), add_addr: None, remove: Some(d) }),
                // No spare node: keep the dead replica (Raft catches it up when it returns; with
                // it gone, the region would need every remaining voter, and a second failure
                // after its return would stop the region). Only a region with more voters than
                // the replication factor drops it, and only while the rest make a quorum.
                None if alive > r.voters.len() / 2 && r.voters.len() > replication_factor => {
                    Some(ChangeReplicas { region: r.id, add: None, add_addr: None, remove: Some(d) })
                }
                None => None,
            }
        } else if r.voters.len() < want {
            least_loaded(&load, &r.voters).map(|n| ChangeReplicas {
                region: r.id,
                add: Some(n),
                add_addr: None,
                remove: None,
            })
        } else {
            None
        };
        if let Some(c) = change {
            if let Some(n) = c.add
                && let Some(l) = load.get_mut(&n)
            {
                *l += 1;
            }
            out.push(c);
        }
    }
    if out.is_empty() {
        // Balance: one move per round, from the fullest node to the emptiest.
        let most = load.iter().max_by_key(|(n, l)| (**l, std::cmp::Reverse(**n))).map(|(n, l)| (*n, *l));
        let least = load.iter().min_by_key(|(n, l)| (**l, **n)).map(|(n, l)| (*n, *l));
        if let (Some((from, hi)), Some((to, lo))) = (most, least)
            && hi > lo + 1
            && let Some(r) = meta.regions.values().find(|r| {
                !busy.contains(&r.id)
                    && r.learners.is_empty()
                    && r.voters.contains(&from)
                    && !r.voters.contains(&to)
                    && r.voters.iter().all(|v| live.contains(v))
            })
        {
            out.push(ChangeReplicas { region: r.id, add: Some(to), add_addr: None, remove: Some(from) });
        }
    }
    out
}

/// A learner outside any change in flight was left by a change whose region leader died between
/// adding it and promoting it. Finish that change when it is still wanted (a voter is dead, or
/// the region is short of replicas), otherwise drop the learner; left alone it would keep the
/// region out of every later plan.
fn settle_learner(r: &RegionDescriptor, live: &BTreeSet<NodeId>, want: usize) -> Option<ChangeReplicas> {
    let learner = *r.learners.first()?;
    let dead = r.voters.iter().copied().find(|v| !live.contains(v));
    if !r.voters.iter().any(|v| live.contains(v)) {
        return None; // no leader can act on it
    }
    if live.contains(&learner) && (dead.is_some() || r.voters.len() < want) {
        return Some(ChangeReplicas { region: r.id, add: Some(learner), add_addr: None, remove: dead });
    }
    Some(ChangeReplicas { region: r.id, add: None, add_addr: None, remove: Some(learner) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::NodeRecord;

    fn meta(nodes: &[NodeId], regions: &[&[NodeId]]) -> MetaState {
        let mut m = MetaState::default();
        for n in nodes {
            m.nodes.insert(*n, NodeRecord { name: format!("n{n}"), addr: format!("127.0.0.1:{n}") });
        }
        for (i, voters) in regions.iter().enumerate() {
            let id = i as u64 + 1;
            m.regions.insert(
                id,
                RegionDescriptor {
                    id,
                    start: vec![i as u8],
                    end: Some(vec![i as u8 + 1]),
                    version: 1,
                    conf_ver: 1,
                    voters: voters.to_vec(),
                    learners: vec![],
                },
            );
        }
        m
    }

    fn live(n: &[NodeId]) -> BTreeSet<NodeId> {
        n.iter().copied().collect()
    }

    #[test]
    fn a_replica_is_called_stale_only_once_its_regions_membership_settled() {
        let window = Duration::from_millis(150);
        let p = Placement::new(window);
        let mut m = meta(&[1, 2, 3, 4], &[&[1, 2, 3]]);
        m.regions.get_mut(&1).unwrap().conf_ver = 3;
        // Node 4 kept a replica from before it was replaced (conf_ver 2).
        let mut old = m.regions[&1].clone();
        (old.conf_ver, old.voters) = (2, vec![1, 2, 4]);
        let hb = Heartbeat {
            id: 4,
            name: "n4".into(),
            addr: "127.0.0.1:4".into(),
            replicas: vec![crate::api::ReplicaReport { desc: old, leader: false, approximate_keys: 0 }],
            empty: vec![],
        };
        let destroyed = |p: &Placement| p.on_heartbeat(1, &m, &hb).1.destroy;
        assert!(destroyed(&p).is_empty(), "a new meta term: an earlier leader's change may be in flight");
        std::thread::sleep(window);
        assert_eq!(destroyed(&p), vec![1]);
        // A change of the region (which may be re-adding node 4 with the replica it kept).
        p.state(1).in_flight.insert(1, Instant::now());
        assert!(destroyed(&p).is_empty(), "a change is in flight");
        p.change_done(1, 1);
        assert!(destroyed(&p).is_empty(), "the region's leader has not reported the new membership yet");
        std::thread::sleep(window);
        assert_eq!(destroyed(&p), vec![1]);
    }

    #[test]
    fn an_empty_replica_of_a_region_that_dropped_the_node_is_stale() {
        let window = Duration::from_millis(150);
        let p = Placement::new(window);
        // Region 1 no longer counts node 4; node 4 still holds an empty replica of it (a leader
        // contacted it before the change, no snapshot came), and one of region 9, unknown yet.
        let m = meta(&[1, 2, 3, 4], &[&[1, 2, 3]]);
        let hb =
            Heartbeat { id: 4, name: "n4".into(), addr: "127.0.0.1:4".into(), replicas: vec![], empty: vec![1, 9] };
        assert!(p.on_heartbeat(1, &m, &hb).1.destroy.is_empty(), "a new meta term settles first");
        std::thread::sleep(window);
        assert_eq!(p.on_heartbeat(1, &m, &hb).1.destroy, vec![1]);
        // A member's empty replica (a snapshot on its way) is kept.
        let member = Heartbeat { id: 3, empty: vec![1], ..hb.clone() };
        assert!(p.on_heartbeat(1, &m, &member).1.destroy.is_empty());
    }

    #[test]
    fn a_dead_replica_is_replaced_on_the_emptiest_live_node() {
        let m = meta(&[1, 2, 3, 4], &[&[1, 2, 3], &[1, 2, 4]]);
        let changes = plan(&m, &live(&[1, 2, 4]), 3, &BTreeSet::new());
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].region, changes[0].add, changes[0].remove), (1, Some(4), Some(3)));
    }

    #[test]
    fn small_clusters_grow_regions_up_to_the_replication_factor() {
        let m = meta(&[1, 2], &[&[1]]);
        let c = plan(&m, &live(&[1, 2]), 3, &BTreeSet::new());
        assert_eq!((c[0].add, c[0].remove), (Some(2), None));
        let m = meta(&[1, 2, 3], &[&[1, 2, 3]]);
        assert!(plan(&m, &live(&[1, 2, 3]), 3, &BTreeSet::new()).is_empty(), "nothing to do");
    }

    #[test]
    fn a_new_node_receives_replicas_by_balancing() {
        let m = meta(&[1, 2, 3, 4], &[&[1, 2, 3], &[1, 2, 3], &[1, 2, 3]]);
        let c = plan(&m, &live(&[1, 2, 3, 4]), 3, &BTreeSet::new());
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].add, Some(4));
        assert!(
            plan(&m, &live(&[1, 2, 3, 4]), 3, &[c[0].region].into_iter().collect())
                .iter()
                .all(|x| x.region != c[0].region)
        );
    }

    #[test]
    fn a_learner_left_by_a_dead_leader_is_promoted_or_dropped() {
        let mut m = meta(&[1, 2, 3, 4], &[&[1, 2, 4]]);
        m.regions.get_mut(&1).unwrap().learners = vec![3];
        // Voter 2 died after learner 3 was added: finish the replacement.
        let c = plan(&m, &live(&[1, 3, 4]), 3, &BTreeSet::new());
        assert_eq!((c[0].region, c[0].add, c[0].remove), (1, Some(3), Some(2)));
        // Every voter alive and enough of them: the learner is surplus.
        let c = plan(&m, &live(&[1, 2, 3, 4]), 3, &BTreeSet::new());
        assert_eq!((c[0].add, c[0].remove), (None, Some(3)));
        // The learner itself is dead: drop it.
        let c = plan(&m, &live(&[1, 2, 4]), 3, &BTreeSet::new());
        assert_eq!((c[0].add, c[0].remove), (None, Some(3)));
        // A change in flight is left alone.
        assert!(plan(&m, &live(&[1, 3, 4]), 3, &[1].into_iter().collect()).is_empty());
    }

    #[test]
    fn without_a_spare_node_a_dead_replica_stays_unless_the_region_is_over_replicated() {
        let m = meta(&[1, 2, 3], &[&[1, 2, 3]]);
        assert!(plan(&m, &live(&[1, 2]), 3, &BTreeSet::new()).is_empty(), "three nodes, one down: wait for it");
        let m = meta(&[1, 2, 3, 4], &[&[1, 2, 3, 4]]);
        let c = plan(&m, &live(&[1, 2, 3]), 3, &BTreeSet::new());
        assert_eq!((c[0].add, c[0].remove), (None, Some(4)), "four voters for three wanted: the dead one goes");
        let c = plan(&m, &live(&[1, 2]), 3, &BTreeSet::new());
        assert!(c.is_empty(), "two of four cannot change membership");
    }
}
