//! What a first user sees when a store URL is wrong: every error names the
//! URL, says what a store URL looks like, and names a bad option together
//! with the values it accepts. One `check` per case, across every backend
//! compiled in (parsing fails before anything is created or connected).

use stowage_backends::open;
use stowage_core::ErrorKind;

/// Opens `url`, expects an error of `kind` whose message contains every
/// one of `expected`.
async fn check(url: &str, kind: ErrorKind, expected: &[&str]) {
    let err = match open(url).await {
        Ok(_) => panic!("{url:?} opened, expected {kind}"),
        Err(err) => err,
    };
    assert_eq!(err.kind(), kind, "{url:?}: {err}");
    for want in expected {
        assert!(
            err.message().contains(want),
            "{url:?}: the message lacks {want:?}: {err}"
        );
    }
}

/// The schemes this test binary was built with.
fn compiled() -> Vec<&'static str> {
    [
        ("memory", cfg!(feature = "memory")),
        ("file", cfg!(feature = "file")),
        ("rocksdb", cfg!(feature = "rocksdb")),
        ("sled", cfg!(feature = "sled")),
        ("redis", cfg!(feature = "redis")),
        ("rediss", cfg!(feature = "redis")),
        ("sqlite", cfg!(feature = "sqlite")),
        ("postgres", cfg!(feature = "postgres")),
        ("postgresql", cfg!(feature = "postgres")),
    ]
    .into_iter()
    .filter_map(|(scheme, on)| on.then_some(scheme))
    .collect()
}

#[tokio::test]
async fn urls_without_a_scheme_say_what_a_store_url_looks_like() {
    let list = format!("schemes compiled in: {}", compiled().join(", "));
    let list = list.as_str();
    let bad = ErrorKind::InvalidInput;
    check("", bad, &["store URL \"\"", "is empty", list]).await;
    check(
        "memory",
        bad,
        &["\"memory\"", "did you mean memory://?", list],
    )
    .await;
    check("sled", bad, &["\"sled\"", "did you mean sled://?", list]).await;
    check("not a url", bad, &["\"not a url\"", "has no scheme", list]).await;
    check(
        "/srv/store",
        bad,
        &["\"/srv/store\"", "has no scheme", list],
    )
    .await;
    check(
        "ftp://x",
        bad,
        &["\"ftp://x\"", "unknown scheme \"ftp\"", list],
    )
    .await;
    if cfg!(feature = "memory") {
        check("x", bad, &["a store URL looks like", "memory://"]).await;
    }
    if cfg!(feature = "file") {
        check("x", bad, &["file:///abs/dir or file:rel/dir"]).await;
    }
}

#[tokio::test]
async fn backends_not_compiled_in_name_the_url_and_the_feature() {
    for (scheme, feature) in [
        ("memory", "memory"),
        ("file", "file"),
        ("rocksdb", "rocksdb"),
        ("sled", "sled"),
        ("redis", "redis"),
        ("rediss", "redis"),
        ("sqlite", "sqlite"),
        ("postgres", "postgres"),
        ("postgresql", "postgres"),
    ] {
        if compiled().contains(&feature) {
            continue;
        }
        let url = format!("{scheme}:///x");
        let feature = format!("`{feature}` feature");
        check(
            &url,
            ErrorKind::Unsupported,
            &[&format!("{url:?}"), &feature],
        )
        .await;
    }
}

#[cfg(feature = "memory")]
#[tokio::test]
async fn memory_urls_with_extras_name_the_url() {
    let bad = ErrorKind::InvalidInput;
    check(
        "memory://host",
        bad,
        &["\"memory://host\"", "exactly `memory://`"],
    )
    .await;
    check(
        "memory://?durability=sync",
        bad,
        &["durability=sync", "a query"],
    )
    .await;
}

/// The option errors every embedded backend shares, for `scheme`; `own`
/// are options only that backend knows (listed when one is unknown).
#[cfg(any(feature = "file", feature = "sled", feature = "rocksdb"))]
async fn check_embedded(scheme: &str, own: &[&str]) {
    let bad = ErrorKind::InvalidInput;
    let dir = format!("{scheme}:///nonexistent-stowage-test/x");
    let url = format!("{dir}?durability=sometimes");
    let named = format!("{url:?}");
    check(
        &url,
        bad,
        &[
            &named,
            "option durability=sometimes is not valid",
            "sync or buffered",
        ],
    )
    .await;
    let url = format!("{dir}?max_blob_size=big");
    check(&url, bad, &["max_blob_size=big", "a whole number of bytes"]).await;
    let url = format!("{dir}?colour=blue");
    let mut known = vec![
        format!("{url:?}"),
        "unknown option colour=blue".into(),
        "durability (sync or buffered)".into(),
        "max_blob_size".into(),
    ];
    known.extend(own.iter().map(|o| o.to_string()));
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    check(&url, bad, &known).await;
    let url = format!("{scheme}://somehost/dir");
    check(&url, bad, &[&format!("{url:?}"), "a host is not allowed"]).await;
    let url = format!("{scheme}:///");
    check(&url, bad, &[&format!("{url:?}"), "the directory is empty"]).await;
}

#[cfg(feature = "file")]
#[tokio::test]
async fn file_url_errors_name_the_option_and_its_values() {
    let own = [
        "segment_size",
        "max_record_size",
        "checkpoint_interval",
        "salvage",
    ];
    check_embedded("file", &own).await;
    let bad = ErrorKind::InvalidInput;
    let dir = "file:///nonexistent-stowage-test/x";
    let url = format!("{dir}?segment_size=12");
    check(
        &url,
        bad,
        &[&format!("{url:?}"), "segment_size=12", "at least 4096"],
    )
    .await;
    let url = format!("{dir}?max_record_size=5");
    check(&url, bad, &["max_record_size=5", "from 1024 to"]).await;
    let url = format!("{dir}?salvage=maybe");
    check(&url, bad, &["salvage=maybe", "true or false"]).await;
    let url = format!("{dir}?checkpoint_interval=-1");
    check(&url, bad, &["checkpoint_interval=-1", "whole number"]).await;
    // A relative URL is resolved, but the message still shows its path.
    let url = "file:nonexistent-stowage-test/rel?durability=fast";
    check(
        url,
        bad,
        &["nonexistent-stowage-test/rel", "durability=fast"],
    )
    .await;
    check("file:", bad, &["\"file:\"", "the directory is empty"]).await;
}

#[cfg(feature = "sled")]
#[tokio::test]
async fn sled_url_errors_name_the_option_and_its_values() {
    check_embedded("sled", &[]).await;
    let url = "sled:///nonexistent-stowage-test/x?segment_size=4096";
    check(
        url,
        ErrorKind::InvalidInput,
        &["unknown option segment_size"],
    )
    .await;
}

#[cfg(feature = "rocksdb")]
#[tokio::test]
async fn rocksdb_url_errors_name_the_option_and_its_values() {
    check_embedded("rocksdb", &[]).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_url_errors_name_the_parameter_and_list_the_known_ones() {
    let bad = ErrorKind::InvalidInput;
    // Port 1: nothing is ever contacted, parsing fails first.
    let base = "redis://127.0.0.1:1/0";
    let url = format!("{base}?colour=blue");
    let known = [
        "prefix",
        "cluster",
        "response_timeout_ms",
        "connect_timeout_ms",
        "reconnect_retries",
        "idempotent_retries",
        "wait (none, aof or replicas:N)",
        "wait_timeout_ms",
        "tls_ca",
    ];
    let mut expected = vec![
        "store URL \"redis://127.0.0.1:1/0?colour=blue\"",
        "unknown redis URL parameter \"colour\"",
    ];
    expected.extend(known);
    check(&url, bad, &expected).await;
    let url = format!("{base}?cluster=maybe");
    check(&url, bad, &["cluster=\"maybe\"", "true or false"]).await;
    let url = format!("{base}?wait=sometimes");
    check(
        &url,
        bad,
        &["wait=\"sometimes\"", "none, aof or replicas:N"],
    )
    .await;
    let url = format!("{base}?response_timeout_ms=soon");
    check(&url, bad, &["response_timeout_ms", "milliseconds", base]).await;
    let url = format!("{base}?wait_timeout_ms=0");
    check(
        &url,
        bad,
        &["wait_timeout_ms=\"0\"", "milliseconds ≥ 1", base],
    )
    .await;
    let url = format!("{base}?prefix=");
    check(&url, bad, &[base, "prefix=\"\""]).await;
    let url = format!("{base}?tls_ca=/ca.pem");
    check(&url, bad, &[base, "only valid with rediss://"]).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_url_errors_hide_the_password() {
    let err = open("redis://:hunter2@127.0.0.1:1/0?colour=blue")
        .await
        .expect_err("an unknown parameter is refused");
    assert!(err.message().contains("***@127.0.0.1:1/0"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[cfg(feature = "sled")]
#[tokio::test]
async fn a_second_sled_opener_is_told_who_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sled://{}/store", dir.path().display());
    let _first = open(&url).await.unwrap();
    let pid = std::process::id().to_string();
    check(
        &url,
        ErrorKind::Unavailable,
        &["already open by this process", &pid, "store"],
    )
    .await;
}
