//! flaredb as real processes on loopback: regions split under load and keep serving, a killed
//! node's replicas are re-created elsewhere, a restarted node catches up, and bad input gets
//! clear errors.

use crate::flaredb_support;
use std::time::{Duration, Instant};

use flaredb_support::FCluster;
use ultracloud_flaredb::error::FlareError;

const FAST: &[&str] = &["--heartbeat-ms=300", "--node-down-after-ms=3000"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_split_under_load_and_keep_serving() {
    let _heavy = crate::HEAVY.read().await;
    let mut flags = FAST.to_vec();
    flags.push("--region-split-keys=30");
    let cluster = FCluster::start(3, &flags);
    let c = cluster.ready().await;
    // Four writers and a scanning reader at once, while regions split underneath them.
    let mut tasks = Vec::new();
    for w in 0..4 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..60 {
                let k = format!("key/{w}/{i:03}");
                c.put(k.as_bytes(), format!("v{w}-{i}").as_bytes()).await.unwrap();
            }
        }));
    }
    let reader = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for _ in 0..20 {
                let rows = c.scan(b"key/", Some(b"key0"), 0, false).await.unwrap();
                assert!(rows.windows(2).all(|w| w[0].key < w[1].key), "a scan is in key order");
                assert!(rows.len() >= last, "writes are never lost: {} after {last}", rows.len());
                last = rows.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    reader.await.unwrap();
    let map = cluster.wait_regions(&c, 30, "at least 4 regions", |r| r.regions.len() >= 4).await;
    // The map tiles the key space: sorted, contiguous, open at both ends.
    assert!(map.regions[0].desc.start.is_empty() && map.regions.last().unwrap().desc.end.is_none());
    for w in map.regions.windows(2) {
        assert_eq!(w[0].desc.end.as_deref(), Some(w[1].desc.start.as_slice()), "regions are contiguous");
    }
    for w in 0..4 {
        for i in 0..60 {
            let k = format!("key/{w}/{i:03}");
            assert_eq!(c.get(k.as_bytes()).await.unwrap(), Some(format!("v{w}-{i}").into_bytes()), "{k}");
        }
    }
    let all = c.scan(b"key/", Some(b"key0"), 0, false).await.unwrap();
    assert_eq!(all.len(), 240);
    let back = c.scan(b"key/", Some(b"key0"), 0, true).await.unwrap();
    assert_eq!(back.iter().rev().map(|p| &p.key).collect::<Vec<_>>(), all.iter().map(|p| &p.key).collect::<Vec<_>>());
    let first_ten = c.scan(b"key/", None, 10, true).await.unwrap();
    assert_eq!(first_ten.len(), 10);
    assert_eq!(first_ten[0].key, b"key/3/059");
    // A transaction across the first and the last region commits atomically.
    c.transact(async |t| {
        t.put(b"a-first", b"1");
        t.put(b"z-last", b"1");
        t.delete(b"key/0/000");
        Ok(())
    })
    .await
    .unwrap();
    let ts = c.timestamp().await.unwrap();
    assert_eq!(c.get_at(b"a-first", Some(ts)).await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(c.get_at(b"z-last", Some(ts)).await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(c.get(b"key/0/000").await.unwrap(), None);

    // A request a peer forwarded is answered by the meta leader or refused with a hint, never
    // forwarded a second time (two nodes bouncing it once piled up thousands of connections).
    let http = reqwest::Client::new();
    let mut served = 0;
    for node in &cluster.nodes {
        for path in ["/v1/regions", "/v1/ts"] {
            let reply = http
                .post(format!("http://{}{path}", node.addr))
                .header(ultracloud_flaredb::node::PEER_HEADER, "1")
                .send()
                .await
                .unwrap();
            match reply.status().as_u16() {
                200 => served += 1,
                421 => {
                    let e: ultracloud_flaredb::error::ErrorResponse = reply.json().await.unwrap();
                    assert!(matches!(e.error, FlareError::NotLeader { .. }), "{path}: {}", e.message);
                }
                other => panic!("{path} on {}: unexpected HTTP {other}", node.name),
            }
        }
    }
    assert_eq!(served, 2, "exactly the meta leader serves peers' requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_replaced_and_a_restarted_node_catches_up() {
    let _heavy = crate::HEAVY.read().await;
    let mut flags = FAST.to_vec();
    flags.push("--region-split-keys=25");
    let mut cluster = FCluster::start(3, &flags);
    let c = cluster.ready().await;
    cluster.join("n4");
    for i in 0..100 {
        c.put(format!("k{i:03}").as_bytes(), b"x").await.unwrap();
    }
    let n4 = cluster.node_id(3);
    cluster
        .wait_regions(&c, 40, "the joined node to receive replicas", |r| {
            r.regions.len() >= 3 && r.regions.iter().any(|g| g.desc.voters.contains(&n4))
        })
        .await;

    // A short outage: n3 misses writes and catches up from its peers' logs.
    let n3 = cluster.node_id(2);
    cluster.nodes[2].kill();
    for i in 0..50 {
        if let Err(e) = c.put(format!("k{i:03}").as_bytes(), b"y").await {
            let map = c.regions().await.map(|m| format!("{:?}", m.regions)).unwrap_or_else(|e| e.to_string());
            panic!("a write with n3 down: {e}\nregions: {map}\n{}", cluster.logs());
        }
    }
    cluster.restart(2);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lag = lag(&cluster, &c, 2, n3).await;
        let Some(lag) = lag else { break };
        assert!(Instant::now() < deadline, "n3 did not catch up: {lag}\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A long outage: n2's replicas are re-created on the other nodes.
    let n2 = cluster.node_id(1);
    cluster.nodes[1].kill();
    let map = cluster
        .wait_regions(&c, 120, "n2's replicas to be replaced", |r| {
            r.regions
                .iter()
                .all(|g| !g.desc.voters.contains(&n2) && g.desc.voters.len() == 3 && g.desc.learners.is_empty())
        })
        .await;
    assert!(map.nodes.iter().any(|n| n.id == n2 && !n.up), "n2 is reported down");
    for i in 0..100 {
        let want: &[u8] = if i < 50 { b"y" } else { b"x" };
        assert_eq!(c.get(format!("k{i:03}").as_bytes()).await.unwrap().as_deref(), Some(want), "k{i:03}");
    }
    // Back again: it is told its replicas are stale, drops them, and is counted up again.
    cluster.restart(1);
    cluster.wait_regions(&c, 30, "n2 up again", |r| r.nodes.iter().any(|n| n.id == n2 && n.up)).await;
    c.put(b"after", b"1").await.unwrap();
    assert_eq!(c.get(b"after").await.unwrap(), Some(b"1".to_vec()));
}

/// What node `i` still lacks, if anything: a replica of every region that counts it as a voter
/// (a region split while it was down reaches it only through the new region's leader), each
/// replica on it applied as far as its region's leader.
async fn lag(cluster: &FCluster, c: &ultracloud_flaredb::Client, i: usize, id: u64) -> Option<String> {
    let status = |addr: String| async move {
        let r = reqwest::get(format!("http://{addr}/v1/status")).await.ok()?;
        r.json::<ultracloud_flaredb::api::StatusResponse>().await.ok()
    };
    let Some(mine) = status(cluster.nodes[i].addr.clone()).await else { return Some("no status".into()) };
    let map = match c.regions().await {
        Ok(m) => m,
        Err(e) => return Some(format!("no region map: {e}")),
    };
    let missing: Vec<u64> = map
        .regions
        .iter()
        .filter(|r| r.desc.voters.contains(&id) && !mine.replicas.iter().any(|m| m.group == r.desc.id))
        .map(|r| r.desc.id)
        .collect();
    if !missing.is_empty() {
        let regions: Vec<String> = map
            .regions
            .iter()
            .map(|r| format!("{}: voters {:?} learners {:?}", r.desc.id, r.desc.voters, r.desc.learners))
            .collect();
        return Some(format!(
            "no replica of regions {missing:?} that count it as a voter (map: {})",
            regions.join("; ")
        ));
    }
    let mut others = Vec::new();
    for (j, n) in cluster.nodes.iter().enumerate() {
        if j != i
            && n.is_running()
            && let Some(s) = status(n.addr.clone()).await
        {
            others.push(s);
        }
    }
    let behind: Vec<String> = mine
        .replicas
        .iter()
        .filter(|r| {
            let leader_applied = others
                .iter()
                .flat_map(|s| s.replicas.iter())
                .find(|o| o.group == r.group && o.role == "leader")
                .map(|o| o.applied);
            let caught_up =
                r.leader.is_some() && r.leader != Some(id) && leader_applied.is_some_and(|a| r.applied >= a)
                    || r.role == "leader";
            !caught_up
        })
        .map(|r| format!("group {} ({}, applied {}, leader {:?})", r.group, r.role, r.applied, r.leader))
        .collect();
    (!behind.is_empty()).then(|| format!("replicas behind: {}", behind.join(", ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let _heavy = crate::HEAVY.read().await;
    let cluster = FCluster::start(1, FAST);
    let c = cluster.ready().await;
    let big_key = vec![b'k'; 8 * 1024 + 1];
    let e = c.put(&big_key, b"v").await.unwrap_err();
    assert!(matches!(&e, FlareError::Invalid(m) if m.contains("exceeds the limit")), "{e}");
    let e = c.put(b"", b"v").await.unwrap_err();
    assert!(e.to_string().contains("empty key"), "{e}");
    let big_value = vec![0u8; 4 * 1024 * 1024 + 1];
    let e = c.put(b"k", &big_value).await.unwrap_err();
    assert!(e.to_string().contains("exceeds the limit"), "{e}");
    c.put(b"n", b"not a number").await.unwrap();
    let e = c.increment(b"n", 1).await.unwrap_err();
    assert!(e.to_string().contains("not a decimal integer"), "{e}");

    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", cluster.nodes[0].addr);
    let post =
        |p: &str, body: &str| http.post(url(p)).header("content-type", "application/json").body(body.to_owned()).send();
    let r = post("/v1/region/get", "{not json").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid", "{body}");
    let r = post("/v1/region/get", r#"{"region": 1, "key": "%%%"}"#).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("base64"));
    let r = post("/v1/region/get", r#"{"region": 999, "key": "aw=="}"#).await.unwrap();
    assert_eq!(r.status(), 421);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"]["code"], "region_not_found");
    // Committing a transaction that never prewrote: refused, nothing written.
    let r =
        post("/v1/region/commit", r#"{"region": 1, "keys": ["aw=="], "start_ts": 5, "commit_ts": 9}"#).await.unwrap();
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "mvcc", "{body}");
    assert!(body["message"].as_str().unwrap().contains("rolled back"), "{body}");
    let r =
        post("/v1/region/commit", r#"{"region": 1, "keys": ["aw=="], "start_ts": 9, "commit_ts": 5}"#).await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http.get(url("/v1/ts?count=0")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http.get(url("/v1/openapi.json")).send().await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["openapi"], "3.0.3");
    // One answer is bounded whatever the limit asks; the client pages past it.
    c.transact(async |t| {
        for i in 0..2100 {
            t.put(format!("page/{i:05}").as_bytes(), b"v");
        }
        Ok(())
    })
    .await
    .unwrap();
    let r = post("/v1/region/scan", r#"{"region": 1, "start": "cGFnZS8=", "limit": 0}"#).await.unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!((body["pairs"].as_array().unwrap().len(), &body["more"]), (1000, &serde_json::json!(true)));
    let all = c.scan(b"page/", Some(b"page0"), 0, false).await.unwrap();
    assert_eq!(all.len(), 2100);
    assert!(all.windows(2).all(|w| w[0].key < w[1].key));
    let back = c.scan(b"page/", Some(b"page0"), 0, true).await.unwrap();
    assert_eq!(back.len(), 2100);
    assert_eq!(back[0].key, b"page/02099");
    assert_eq!(c.scan(b"page/", Some(b"page0"), 1500, false).await.unwrap().len(), 1500);
    // The server is still fine and nothing refused was written.
    assert_eq!(c.get(b"n").await.unwrap(), Some(b"not a number".to_vec()));
    assert_eq!(c.get(b"k").await.unwrap(), None, "the oversized value was not stored");
}
