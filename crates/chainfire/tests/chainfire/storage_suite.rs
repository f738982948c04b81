//! openraft's storage conformance suite against chainfire's redb log store and state machine.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use ultracloud_chainfire::lessor::Lessor;
use ultracloud_chainfire::mvcc::Mvcc;
use ultracloud_chainfire::raft::LogStore;
use ultracloud_chainfire::raft::state_machine::StateMachine;
use ultracloud_chainfire::raft::types::{StorageError, TypeConfig};
use ultracloud_chainfire::watch_hub::WatchHub;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("db.redb")).unwrap());
        let log = LogStore::open(db.clone()).unwrap();
        let mvcc = Mvcc::open(db).unwrap();
        let sm = StateMachine::new(mvcc, WatchHub::new(1, 0), Arc::new(Lessor::default()), dir.path().join("snap.bin"));
        Ok((dir, log, sm))
    }
}

// A plain #[test]: the suite starts its own runtime for each case.
#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("every case of the suite passes");
}
