//! The whole conformance suite against a real 3-node Redis Cluster on
//! loopback ports, started by the test tooling (`redis-server
//! --cluster-enabled yes` ×3 + `redis-cli --cluster create`), through the
//! cluster client (`?cluster=true`).
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

async fn redis_cluster_harness() -> redis_server::RedisHarness {
    redis_server::RedisHarness::cluster()
}

stowage_conformance::conformance_tests!(redis_cluster_harness);

/// Keys of different entities really land on different nodes, and a
/// multi-client race still holds there.
#[test]
fn entities_spread_over_nodes_and_races_hold() {
    stowage_conformance::__run(async {
        use serde_json::json;
        use stowage_core::{Digest, NewEvent, RunMetadata};
        let url = redis_server::with_params(
            &redis_server::cluster_url(),
            &format!("prefix={}", redis_server::unique_prefix("spread")),
        );
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(stowage_backends::open(&url).await.unwrap());
        }
        let mut runs = Vec::new();
        for i in 0..16u8 {
            runs.push(
                clients[0]
                    .runs
                    .create_run(Digest::of(&[i]), RunMetadata::new("a"))
                    .await
                    .unwrap(),
            );
        }
        let tasks = clients.iter().cloned().map(|c| {
            let runs = runs.clone();
            tokio::spawn(async move {
                for r in &runs {
                    for j in 0..5 {
                        c.runs
                            .append_event(*r, NewEvent::new("k", json!(j)))
                            .await
                            .unwrap();
                    }
                }
            })
        });
        for t in futures::future::join_all(tasks).await {
            t.unwrap();
        }
        for r in &runs {
            assert_eq!(clients[1].runs.verify_run(*r).await.unwrap().len, 40);
        }
        let listed = clients[2]
            .runs
            .list_runs(&Default::default(), None, 100)
            .await
            .unwrap();
        assert_eq!(listed.len(), 16);
        let busy = redis_server::cluster_ports()
            .into_iter()
            .filter(|port| {
                let out = std::process::Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "DBSIZE"])
                    .output()
                    .expect("redis-cli");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0)
                    > 0
            })
            .count();
        assert!(
            busy >= 2,
            "runs must spread over the cluster's nodes, {busy} node(s) hold keys"
        );
    });
}
