//! URL configuration, durability waits and error mapping of the Redis
//! backend against a real `redis-server`.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use bytes::Bytes;
use serde_json::json;
use stowage_core::{Digest, ErrorKind, NewEvent, ReleaseMetadata, RunMetadata};

#[tokio::test]
async fn bad_urls_are_rejected() {
    let base = redis_server::base_url();
    for params in [
        "prefix=",
        "nope=1",
        "wait=sometimes",
        "response_timeout_ms=x",
        // 0 ms: applied writes reported failed, no connection, or a WAIT
        // that blocks forever.
        "response_timeout_ms=0",
        "connect_timeout_ms=0",
        "wait=replicas:1&wait_timeout_ms=0",
        // An empty hash tag would spread one store over many slots.
        "cluster=true&prefix=%7Dx",
    ] {
        let err = stowage_backends::open(&redis_server::with_params(&base, params))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{params}: {err}");
    }
}

#[tokio::test]
async fn a_tls_url_with_no_server_is_unavailable() {
    let err = stowage_backends::open("rediss://127.0.0.1:1/0?reconnect_retries=0")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn a_key_of_the_wrong_type_is_corrupted() {
    let h = redis_server::RedisHarness::standalone();
    let s = stowage_conformance::Harness::open(&h).await.unwrap();
    s.releases
        .promote("r", Digest::of(b"a"), ReleaseMetadata::new("v", "ci"), None)
        .await
        .unwrap();
    // The hash of every value of the store.
    let key = format!("{{{}}}:v", h.prefix());
    let client = redis::Client::open(redis_server::base_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("x")
        .query_async(&mut c)
        .await
        .unwrap();
    let err = s.releases.current("r").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let url = format!("redis://127.0.0.1:{port}/0?connect_timeout_ms=300&reconnect_retries=0");
    let err = stowage_backends::open(&url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn durability_waits_are_opt_in_and_honest() {
    let base = redis_server::fresh_url("wait");
    // WAIT 0: nothing to wait for, every write is acknowledged.
    let s = stowage_backends::open(&format!("{base}&wait=replicas:0"))
        .await
        .unwrap();
    let run = s
        .runs
        .create_run(Digest::of(b"w"), RunMetadata::new("a"))
        .await
        .unwrap();
    s.runs
        .append_event(run, NewEvent::new("k", json!(1)))
        .await
        .unwrap();
    // WAIT 1 on a server without replicas: applied, but not confirmed.
    let strict = stowage_backends::open(&format!(
        "{base}&wait=replicas:1&wait_timeout_ms=50&idempotent_retries=0"
    ))
    .await
    .unwrap();
    let err = strict
        .runs
        .append_event(run, NewEvent::new("k", json!(2)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert_eq!(s.runs.get_run(run).await.unwrap().event_count, 2);
    // WAITAOF needs Redis >= 7.2: refused at open, never after a write.
    match stowage_backends::open(&format!("{base}&wait=aof")).await {
        Ok(aof) => {
            aof.cas
                .put(Bytes::from_static(b"x"))
                .await
                .unwrap_or_else(|e| {
                    assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{e}");
                    Digest::of(b"x")
                });
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}"),
    }
}
