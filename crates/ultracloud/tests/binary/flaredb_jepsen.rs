//! Checks in the style of Jepsen on real processes: concurrent clients run bank transfers,
//! snapshot reads and atomic increments while a nemesis SIGKILLs and restarts nodes.
//!
//! - bank: the total of all accounts never changes, and every snapshot read sees it whole;
//! - counter: N acknowledged increments give exactly N (one-phase writes carry tokens, so a
//!   retry after an ambiguous failure is never applied twice).

use crate::flaredb_support;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flaredb_support::FCluster;
use rand::Rng;

const ACCOUNTS: usize = 8;
const START_BALANCE: i64 = 100;
/// How long the clients run while nodes are killed.
const RUN: Duration = Duration::from_secs(30);

fn account(i: usize) -> Vec<u8> {
    format!("acct/{i}").into_bytes()
}

fn balance(v: &[u8]) -> i64 {
    std::str::from_utf8(v).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_and_counter_hold_while_nodes_are_killed() {
    let _heavy = crate::HEAVY.write().await;
    // Nodes come back before they count as down: this test is about leader changes and
    // restarts, not re-replication (the cluster test covers that).
    let mut cluster = FCluster::start(3, &["--heartbeat-ms=300", "--node-down-after-ms=60000"]);
    let c = cluster.ready().await;
    c.transact(async |t| {
        for i in 0..ACCOUNTS {
            t.put(&account(i), START_BALANCE.to_string().as_bytes());
        }
        Ok(())
    })
    .await
    .unwrap();
    // Accounts spread over three regions, so transfers are cross-region two-phase commits.
    c.split_at(&account(3)).await.unwrap();
    c.split_at(&account(6)).await.unwrap();
    let total = START_BALANCE * ACCOUNTS as i64;

    let stop = Arc::new(AtomicBool::new(false));
    let transfers = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let increments = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let (c, stop, transfers, failures) = (c.clone(), stop.clone(), transfers.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (from, to, amount) = {
                    let mut r = rand::rng();
                    let from = r.random_range(0..ACCOUNTS);
                    (from, (from + r.random_range(1..ACCOUNTS)) % ACCOUNTS, r.random_range(1..=20i64))
                };
                let result = c
                    .transact(async move |t| {
                        let a = balance(&t.get(&account(from)).await?.unwrap());
                        let b = balance(&t.get(&account(to)).await?.unwrap());
                        if a >= amount {
                            t.put(&account(from), (a - amount).to_string().as_bytes());
                            t.put(&account(to), (b + amount).to_string().as_bytes());
                        }
                        Ok(())
                    })
                    .await;
                match result {
                    Ok(()) => transfers.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("transfer failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    {
        let (c, stop, reads) = (c.clone(), stop.clone(), reads.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(rows) = c.scan(b"acct/", Some(b"acct0"), 0, false).await else { continue };
                assert_eq!(rows.len(), ACCOUNTS, "every account is visible in every snapshot");
                let sum: i64 = rows.iter().map(|p| balance(&p.value)).sum();
                assert_eq!(sum, total, "a snapshot saw money appear or vanish: {rows:?}");
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for _ in 0..2 {
        let (c, stop, increments, failures) = (c.clone(), stop.clone(), increments.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.increment(b"counter", 1).await {
                    Ok(_) => increments.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("increment failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }

    // The nemesis: kill a random node, keep it down for a while, bring it back.
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < RUN {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let victim = rand::rng().random_range(0..cluster.nodes.len());
        eprintln!("nemesis: SIGKILL {}", cluster.nodes[victim].name);
        cluster.nodes[victim].kill();
        kills += 1;
        tokio::time::sleep(Duration::from_secs(3)).await;
        cluster.restart(victim);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        // A worker's panic (an invariant broken) fails the test here.
        tokio::time::timeout(Duration::from_secs(60), w).await.expect("a worker hung").unwrap();
    }

    let rows = c.scan(b"acct/", Some(b"acct0"), 0, false).await.unwrap();
    let sum: i64 = rows.iter().map(|p| balance(&p.value)).sum();
    let counter = balance(&c.get(b"counter").await.unwrap().unwrap_or_else(|| b"0".to_vec()));
    let (t, r, i, f) = (
        transfers.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed),
        increments.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    eprintln!("{kills} kills; {t} transfers, {r} snapshot reads, {i} increments acknowledged, {f} failures");
    assert_eq!(sum, total, "the bank's total changed");
    assert_eq!(counter as u64, i, "acknowledged increments and the counter differ");
    assert_eq!(f, 0, "operations failed although a quorum was always up\n{}", cluster.logs());
    assert!(t > 0 && r > 0 && i > 0, "the workload made progress");
}
