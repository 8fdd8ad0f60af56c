//! Redis: typed options ([`RedisOptions`]) and `Stores::close`, against a
//! private server (see `support/redis_server.rs`). Kept apart from the
//! embedded backends' close-and-reopen tests because starting the server
//! forks this process, and a child inherits lock file descriptors until it
//! execs.
#![cfg(feature = "redis")]

#[path = "support/after_close.rs"]
mod after_close;
#[path = "support/redis_server.rs"]
mod redis_server;

use after_close::refused_after_close;

use std::time::Duration;

use bytes::Bytes;
use stowage_backends::open;
use stowage_backends::options::StoreOptions;
use stowage_core::ErrorKind;

#[test]
fn redis_options_equal_their_url_and_hide_the_password() {
    use stowage_backends::options::{RedisOptions, RedisWait};
    let mut typed = RedisOptions::new("redis://:hunter2@127.0.0.1:1/3");
    typed.prefix = "app".into();
    typed.wait = RedisWait::Replicas(2);
    typed.response_timeout = Duration::from_millis(2500);
    let url = "redis://:hunter2@127.0.0.1:1/3?prefix=app&wait=replicas:2&response_timeout_ms=2500";
    assert_eq!(RedisOptions::from_url(url).unwrap(), typed);
    assert_eq!(
        StoreOptions::parse(url).unwrap(),
        StoreOptions::Redis(typed.clone())
    );
    let shown = format!("{typed:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("***"),
        "{shown}"
    );
    let err = RedisOptions::from_url("file:///x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// A parameter given twice is refused by `RedisOptions::from_url` as by
/// `open`: the last one used to win, so `prefix=tenant_a&prefix=tenant_b`
/// opened tenant_b's store.
#[test]
fn redis_from_url_refuses_a_parameter_given_twice() {
    use stowage_backends::options::RedisOptions;
    let url = "redis://127.0.0.1:6379/0?prefix=tenant_a&prefix=tenant_b";
    for err in [
        RedisOptions::from_url(url).unwrap_err(),
        StoreOptions::parse(url).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(
            err.message().contains("parameter `prefix` is given twice"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn redis_options_are_checked_before_connecting() {
    use stowage_backends::options::{RedisOptions, RedisWait};
    let mut bad_prefix = RedisOptions::new("redis://127.0.0.1:1/0");
    bad_prefix.prefix = String::new();
    let err = bad_prefix.open().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("prefix"), "{err}");
    let mut tls_ca = RedisOptions::new("redis://127.0.0.1:1/0");
    tls_ca.tls_ca = Some("/ca.pem".into());
    let err = tls_ca.open().await.unwrap_err();
    assert!(err.message().contains("rediss://"), "{err}");
    let mut cluster_wait = RedisOptions::new("redis://127.0.0.1:1/0");
    cluster_wait.cluster = true;
    cluster_wait.wait = RedisWait::Aof;
    let err = cluster_wait.open().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let err = RedisOptions::new("redis://h:1/0?prefix=x")
        .open()
        .await
        .unwrap_err();
    assert!(err.message().contains("without a query"), "{err}");
    // A zero timeout fails writes that were applied (response), fails
    // every connection, or makes WAIT block forever: refused, in code as
    // in a URL.
    let mut zero = RedisOptions::new("redis://127.0.0.1:1/0");
    zero.response_timeout = Duration::ZERO;
    let err = zero.open().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("response_timeout"), "{err}");
    let mut zero = RedisOptions::new("redis://127.0.0.1:1/0");
    zero.wait = RedisWait::Replicas(1);
    zero.wait_timeout = Duration::from_micros(300);
    let err = zero.open().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("wait_timeout"), "{err}");
}

#[tokio::test]
async fn redis_opens_from_typed_options() {
    use stowage_backends::options::RedisOptions;
    let typed = RedisOptions::from_url(&redis_server::fresh_url("typed")).unwrap();
    let stores = typed.clone().open().await.unwrap();
    let d = stores.cas.put(Bytes::from_static(b"typed")).await.unwrap();
    stores.close().await.unwrap();
    let stores = typed.open().await.unwrap();
    assert_eq!(&stores.cas.get(&d).await.unwrap()[..], b"typed");
}

#[tokio::test]
async fn redis_close_drops_the_connections() {
    let url = redis_server::fresh_url("close");
    let stores = open(&url).await.unwrap();
    let kept = stores.clone();
    let digest = stores.cas.put(Bytes::from_static(b"closed")).await.unwrap();
    stores.close().await.unwrap();
    refused_after_close(&kept, digest).await;
    kept.close().await.unwrap();
    let again = open(&url).await.unwrap();
    assert_eq!(&again.cas.get(&digest).await.unwrap()[..], b"closed");
}
