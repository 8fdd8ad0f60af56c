//! `rediss://` (TLS) against a private TLS-only `redis-server` on loopback,
//! with a throwaway CA and server certificate made at test time by the
//! `openssl` CLI (see `support/redis_tls_server.rs`). The client
//! trusts that CA through `?tls_ca=`; without it, or with another CA, the
//! handshake must fail.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::json;
use stowage_core::{
    Digest, ErrorKind, LogKind, NewEvent, NewLogEntry, PutOutcome, ReleaseMetadata, RunMetadata,
    RunSummary, SigningKey, Supersession, SupersessionDraft, SupersessionKind, Timestamp,
};

/// This binary's TLS server (stopped when the binary exits).
fn server() -> &'static redis_server::tls::TlsServer {
    static SERVER: OnceLock<redis_server::tls::TlsServer> = OnceLock::new();
    SERVER.get_or_init(redis_server::tls::spawn_tls)
}

async fn tls_harness() -> redis_server::RedisHarness {
    redis_server::RedisHarness::tls(server())
}

// The whole conformance suite, over TLS.
stowage_conformance::conformance_tests!(tls_harness);

/// Fails fast: one connection attempt.
fn quick(url: &str) -> String {
    redis_server::with_params(url, "reconnect_retries=0&connect_timeout_ms=2000")
}

#[tokio::test]
async fn every_store_round_trips_over_tls() {
    let url = server().fresh_url("rt");
    assert!(url.starts_with("rediss://127.0.0.1:"), "{url}");
    round_trip(&url).await;
}

/// This binary's TLS cluster (started by the one test that needs it).
fn cluster() -> &'static redis_server::tls::TlsCluster {
    static CLUSTER: OnceLock<redis_server::tls::TlsCluster> = OnceLock::new();
    CLUSTER.get_or_init(redis_server::tls::spawn_tls_cluster)
}

#[tokio::test]
async fn every_store_round_trips_over_a_tls_cluster() {
    let url = |tag: &str| {
        redis_server::with_params(
            &cluster().base_url(),
            &format!("prefix={}", redis_server::unique_prefix(tag)),
        )
    };
    round_trip(&url("tcl")).await;
    // Blobs hash to many slots, so this reaches every node over TLS.
    let s = stowage_backends::open(&url("tcl-blobs")).await.unwrap();
    let mut digests = Vec::new();
    for i in 0..30u32 {
        let d = s
            .cas
            .put(Bytes::from(i.to_be_bytes().to_vec()))
            .await
            .unwrap();
        digests.push(d);
    }
    for (i, d) in (0u32..).zip(&digests) {
        assert_eq!(&s.cas.get(d).await.unwrap()[..], &i.to_be_bytes());
    }
    digests.sort();
    assert_eq!(s.cas.list(None, 100).await.unwrap(), digests);
}

/// Opens `url` and round-trips every store, then reopens and reads back.
async fn round_trip(url: &str) {
    let s = stowage_backends::open(url)
        .await
        .expect("open rediss store");
    assert_eq!(s.capabilities.backend, "redis");

    let d = s.cas.put(Bytes::from_static(b"over tls")).await.unwrap();
    assert_eq!(&s.cas.get(&d).await.unwrap()[..], b"over tls");

    let run = s
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
        .await
        .unwrap();
    for i in 0..3 {
        let e = s
            .runs
            .append_event(run, NewEvent::new("step", json!({ "i": i })))
            .await
            .unwrap();
        assert_eq!(e.seq, i);
    }
    s.runs
        .complete_run(run, RunSummary::new("ok"))
        .await
        .unwrap();
    assert_eq!(s.runs.verify_run(run).await.unwrap().len, 3);

    s.releases
        .promote(
            "svc",
            Digest::of(b"v1"),
            ReleaseMetadata::new("v1", "ci"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        s.releases.current("svc").await.unwrap().spec_digest,
        Digest::of(b"v1")
    );

    s.sessions
        .create_session("chat", json!({ "a": 1 }))
        .await
        .unwrap();
    s.sessions
        .append_log(
            "chat",
            NewLogEntry::new(LogKind::Incoming, "u", "text", "hi"),
        )
        .await
        .unwrap();
    assert_eq!(s.sessions.verify_log("chat").await.unwrap().len, 1);

    let key = SigningKey::from_bytes(&[7; 32]);
    let sup = Supersession::sign(
        &key,
        SupersessionDraft::new(
            Digest::of(b"old"),
            Some(Digest::of(b"new")),
            SupersessionKind::Correction,
            "r",
            Timestamp::from_millis(1),
        ),
    );
    assert_eq!(s.supersessions.put(sup).await.unwrap(), PutOutcome::Stored);
    assert!(s
        .supersessions
        .is_superseded(&Digest::of(b"old"))
        .await
        .unwrap());

    // A second, separately opened client over TLS sees it all.
    drop(s);
    let again = stowage_backends::open(url).await.unwrap();
    assert_eq!(&again.cas.get(&d).await.unwrap()[..], b"over tls");
    assert_eq!(again.runs.get_run(run).await.unwrap().event_count, 3);
    assert!(again.sessions.load_session("chat").await.unwrap().is_some());
}

#[tokio::test]
async fn a_wrong_ca_fails_the_handshake_clearly() {
    let url = quick(&format!(
        "{}?tls_ca={}",
        server().base_url(),
        server().wrong_ca.display()
    ));
    let err = stowage_backends::open(&url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn the_system_roots_do_not_trust_a_private_ca() {
    let err = stowage_backends::open(&quick(&server().base_url()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn a_host_name_the_certificate_does_not_name_fails() {
    // The server also listens on 127.0.0.2; its certificate names only
    // 127.0.0.1 and localhost.
    let port = server().process.port;
    let ok = format!(
        "rediss://localhost:{port}/0?tls_ca={}",
        server().ca.display()
    );
    stowage_backends::open(&ok)
        .await
        .expect("localhost is named");
    let url = format!(
        "rediss://127.0.0.2:{port}/0?tls_ca={}",
        server().ca.display()
    );
    let err = stowage_backends::open(&quick(&url)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn turning_verification_off_is_refused() {
    let url = format!("{}#insecure", quick(&server().base_url()));
    let err = stowage_backends::open(&url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn plain_redis_to_a_tls_port_is_unavailable() {
    let url = format!("redis://127.0.0.1:{}/0", server().process.port);
    let err = stowage_backends::open(&quick(&url)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn bad_tls_ca_values_are_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, b"hello, no certificate here\n").unwrap();
    let key_only = dir.path().join("key.pem");
    std::fs::write(
        &key_only,
        std::fs::read(server().ca.with_file_name("ca.key")).unwrap(),
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    let base = server().base_url();
    for url in [
        format!("{base}?tls_ca="),
        format!("{base}?tls_ca={}", missing.display()),
        format!("{base}?tls_ca={}", not_pem.display()),
        format!("{base}?tls_ca={}", key_only.display()),
        // A CA file means nothing without TLS.
        format!(
            "redis://127.0.0.1:{}/0?tls_ca={}",
            server().process.port,
            server().ca.display()
        ),
    ] {
        let err = stowage_backends::open(&url).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url}: {err}");
    }
}
