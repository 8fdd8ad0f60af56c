//! Redis-specific supersession behaviour: `list` over a store written
//! before the targets index existed.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use stowage_core::{Digest, SigningKey, Supersession, SupersessionDraft, SupersessionKind};
use stowage_core::{SupersessionCursor, Timestamp};

fn sup(key: &SigningKey, n: u64) -> Supersession {
    Supersession::sign(
        key,
        SupersessionDraft::new(
            Digest::of(format!("t{n}").as_bytes()),
            None,
            SupersessionKind::Outdated,
            String::new(),
            Timestamp::from_millis(n),
        ),
    )
}

/// Records stored before the targets index existed (simulated by deleting
/// it) are listed: `list` completes the index first, exactly once each.
#[tokio::test]
async fn list_completes_an_index_written_by_an_older_version() {
    let prefix = redis_server::unique_prefix("suplist");
    let url = redis_server::with_params(&redis_server::base_url(), &format!("prefix={prefix}"));
    let s = stowage_backends::open(&url).await.unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let mut all = Vec::new();
    for n in 0..1200 {
        let rec = sup(&key, n);
        s.supersessions.put(rec.clone()).await.unwrap();
        all.push(rec);
    }
    all.sort_by_key(|r| r.target);
    let client = redis::Client::open(redis_server::base_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let idx = format!("{{{prefix}:sup}}:targets");
    let removed: i64 = redis::cmd("DEL")
        .arg(&idx)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(removed, 1, "the put script maintains the targets index");
    // Only some entries left, as after a partial earlier completion.
    let _: i64 = redis::cmd("ZADD")
        .arg(&idx)
        .arg(0)
        .arg(all[7].target.to_string())
        .query_async(&mut c)
        .await
        .unwrap();

    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = s.supersessions.list(after, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.target);
        listed.extend(page);
    }
    assert_eq!(listed, all, "every record once, ascending by target");
    let card: i64 = redis::cmd("ZCARD")
        .arg(&idx)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(card, 1200, "the index is complete again");

    // by_agent uses its own index, untouched by the above.
    let newest = s
        .supersessions
        .by_agent(
            &stowage_core::AgentKey::of(&key),
            Timestamp::ZERO,
            None,
            Some(SupersessionCursor::of(&sup(&key, 3))),
            10,
        )
        .await
        .unwrap();
    let stamps: Vec<u64> = newest.iter().map(|r| r.timestamp.as_millis()).collect();
    assert_eq!(stamps, vec![2, 1, 0]);
}
