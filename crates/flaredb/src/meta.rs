//! The placement component's replicated state: nodes, the region map, the ID allocator and the
//! oracle's high-water mark. It lives in the meta group's state machine; the meta group's
//! leader acts on it (see `placement` and `tso`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::raft::types::{MetaCommand, Outcome};
use crate::region::{NodeId, RegionDescriptor, RegionId};
use crate::ts::Ts;

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its name (`--name`).
    pub name: String,
    /// `host:port` of its HTTP listener.
    pub addr: String,
}

/// The placement component's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    /// Every node that ever joined, by ID.
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    /// The newest known descriptor of every region, by ID.
    pub regions: BTreeMap<RegionId, RegionDescriptor>,
    /// The next unallocated region ID.
    pub next_id: u64,
    /// No timestamp at or above this was handed out by an earlier oracle leader.
    pub tso_high_water: Ts,
}

impl MetaState {
    /// Applies one command.
    pub fn apply(&mut self, cmd: MetaCommand) -> Outcome {
        match cmd {
            MetaCommand::PutNode { id, name, addr } => {
                self.nodes.insert(id, NodeRecord { name, addr });
                Outcome::Done
            }
            MetaCommand::PutRegion(desc) => {
                let newer = self.regions.get(&desc.id).is_none_or(|known| desc.newer_than(known));
                if newer {
                    self.regions.insert(desc.id, desc);
                }
                Outcome::Done
            }
            MetaCommand::AllocIds { count } => {
                let first = self.next_id;
                self.next_id = self.next_id.saturating_add(count);
                Outcome::Id(first)
            }
            MetaCommand::AdvanceTso { high_water } => {
                self.tso_high_water = self.tso_high_water.max(high_water);
                Outcome::Done
            }
        }
    }

    /// The region whose range contains `key`.
    pub fn region_of(&self, key: &[u8]) -> Option<&RegionDescriptor> {
        self.regions.values().find(|r| r.contains(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_descriptors_do_not_replace_newer_ones() {
        let mut m = MetaState::default();
        let d = |version, conf_ver| RegionDescriptor {
            id: 7,
            start: vec![],
            end: None,
            version,
            conf_ver,
            voters: vec![1],
            learners: vec![],
        };
        m.apply(MetaCommand::PutRegion(d(2, 1)));
        m.apply(MetaCommand::PutRegion(d(1, 5)));
        assert_eq!(m.regions[&7].version, 2);
        m.apply(MetaCommand::PutRegion(d(2, 2)));
        assert_eq!(m.regions[&7].conf_ver, 2);
        assert_eq!(m.apply(MetaCommand::AllocIds { count: 3 }), Outcome::Id(0));
        assert_eq!(m.apply(MetaCommand::AllocIds { count: 1 }), Outcome::Id(3));
        m.apply(MetaCommand::AdvanceTso { high_water: 9 });
        m.apply(MetaCommand::AdvanceTso { high_water: 4 });
        assert_eq!(m.tso_high_water, 9, "the mark never goes back");
    }
}
