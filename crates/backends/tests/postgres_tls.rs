//! `sslmode=` against a private server started with `ssl=on` and a
//! certificate made at test time by the `openssl` CLI (a throwaway CA;
//! the certificate names only `DNS:localhost`). Which connections really
//! are encrypted is read from the server's `pg_stat_ssl`. The whole
//! conformance suite runs over `verify-full` too.
#![cfg(feature = "postgres")]

#[path = "support/pki.rs"]
mod pki;
#[path = "support/postgres_harness.rs"]
mod postgres_harness;
#[path = "support/postgres_server.rs"]
mod postgres_server;

use std::process::Command;
use std::sync::OnceLock;

use bytes::Bytes;
use postgres_server::PrivateServer;
use serde_json::json;
use stowage_core::{Digest, ErrorKind, NewEvent, RunMetadata, Stores};

/// The user that must present a client certificate.
const CERT_USER: &str = "certuser";

/// This binary's TLS server (stopped when the binary exits).
fn server() -> &'static PrivateServer {
    static SERVER: OnceLock<PrivateServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = PrivateServer::init();
        let pki = server.dir.join("pki");
        std::fs::create_dir_all(&pki).expect("pki dir");
        pki::make_pki(&pki, "DNS:localhost");
        let (cert, key) = (pki.join("server.pem"), pki.join("server.key"));
        // The server's key must belong to the server's user, mode 0600.
        let mut chown = Command::new("chown");
        chown.arg("postgres:").arg(&cert).arg(&key);
        if Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        {
            assert!(chown.status().expect("chown").success(), "chown the key");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        // `certuser` logs in by client certificate only (over TLS, with a
        // certificate of `ca` naming it); everyone else as before.
        pki::make_client_cert(&pki, "ca", CERT_USER, "client-certuser");
        pki::make_client_cert(&pki, "wrong-ca", CERT_USER, "client-certuser-wrong-ca");
        pki::make_client_cert(&pki, "ca", "someone", "client-someone");
        let hba = server.dir.join("data/pg_hba.conf");
        let rest = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        std::fs::write(
            &hba,
            format!(
                "hostssl all {CERT_USER} 127.0.0.1/32 cert\n\
                 host all {CERT_USER} 127.0.0.1/32 reject\n{rest}"
            ),
        )
        .expect("write pg_hba.conf");
        server.start(&format!(
            "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c ssl_ca_file={}",
            cert.display(),
            key.display(),
            pki.join("ca.pem").display()
        ));
        postgres_server::query_text_at(
            &server.url,
            &format!("CREATE ROLE {CERT_USER} LOGIN SUPERUSER"),
        )
        .expect("create the certificate user");
        server
    })
}

fn ca() -> String {
    server().dir.join("pki/ca.pem").display().to_string()
}

fn wrong_ca() -> String {
    server().dir.join("pki/wrong-ca.pem").display().to_string()
}

/// A store URL on the TLS server at `host`, in a schema of its own.
fn url(host: &str, schema: &str, query: &str) -> String {
    format!(
        "postgres://postgres@{host}:{}/postgres?schema={schema}&connect_timeout_ms=5000&{query}",
        server().port
    )
}

/// (encrypted, all) connections of the store in `schema`, as the server
/// sees them.
fn encrypted(server_url: &str, schema: &str) -> (u64, u64) {
    let text = postgres_server::query_text_at(
        server_url,
        &format!(
            "SELECT format('%s %s', count(*) FILTER (WHERE s.ssl), count(*)) \
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'stowage:{schema}'"
        ),
    )
    .expect("pg_stat_ssl")
    .expect("a row");
    let mut parts = text.split(' ').map(|n| n.parse().expect("count"));
    (parts.next().expect("ssl"), parts.next().expect("all"))
}

/// Writes and reads every kind of record through `stores`.
async fn round_trip(stores: &Stores) {
    let run = stores
        .runs
        .create_run(Digest::of(b"tls"), RunMetadata::new("tls"))
        .await
        .expect("run");
    for i in 0..10 {
        let key = format!("k{i}");
        let e = stores
            .runs
            .append_event(
                run,
                NewEvent::new("tick", json!({"i": i})).with_idempotency_key(key),
            )
            .await
            .expect("append");
        assert_eq!(e.seq, i);
    }
    let events = stores.runs.read_events(run, None, 100).await.expect("read");
    assert_eq!(events.len(), 10);
    assert_eq!(stores.runs.verify_run(run).await.expect("verify").len, 10);
    let blob = Bytes::from(vec![7u8; 3 << 20]);
    let digest = stores.cas.put(blob.clone()).await.expect("put");
    assert_eq!(stores.cas.get(&digest).await.expect("get"), blob);
}

async fn open(url: &str) -> Stores {
    stowage_backends::open(url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e:?}"))
}

async fn refused(url: &str, kind: ErrorKind, says: &str) {
    let err = stowage_backends::open(url)
        .await
        .expect_err("must not connect");
    eprintln!("refused as expected: {err}");
    assert_eq!(err.kind(), kind, "{url}: {err:?}");
    assert!(err.to_string().contains(says), "{url}: {err}");
}

async fn tls_harness() -> postgres_harness::PgHarness {
    postgres_harness::PgHarness::new(
        |schema| {
            url(
                "localhost",
                schema,
                &format!("sslmode=verify-full&sslrootcert={}", ca()),
            )
        },
        // The server (a private one of this binary) goes away whole.
        false,
    )
}

// The whole conformance suite, over verify-full TLS.
stowage_conformance::conformance_tests!(tls_harness);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_round_trips_over_tls() {
    let schema = "tls_full";
    let stores = open(&url(
        "localhost",
        schema,
        &format!("sslmode=verify-full&sslrootcert={}", ca()),
    ))
    .await;
    round_trip(&stores).await;
    let (ssl, all) = encrypted(&server().url, schema);
    assert!(all > 0, "the store's connections are seen");
    assert_eq!(ssl, all, "every connection is encrypted");
    stores.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    // The certificate names `localhost`, not 127.0.0.1.
    let root = format!("sslrootcert={}", ca());
    refused(
        &url(
            "127.0.0.1",
            "tls_name",
            &format!("sslmode=verify-full&{root}"),
        ),
        ErrorKind::Unavailable,
        "TLS",
    )
    .await;
    let schema = "tls_ca";
    let stores = open(&url(
        "127.0.0.1",
        schema,
        &format!("sslmode=verify-ca&{root}"),
    ))
    .await;
    round_trip(&stores).await;
    let (ssl, all) = encrypted(&server().url, schema);
    assert!(all > 0 && ssl == all, "{ssl} of {all} encrypted");
    stores.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let root = format!("sslrootcert={}", wrong_ca());
    for mode in ["verify-full", "verify-ca", "require"] {
        // `require` with a root file checks the chain (libpq's rule).
        refused(
            &url("localhost", "tls_wrong", &format!("sslmode={mode}&{root}")),
            ErrorKind::Unavailable,
            "UnknownIssuer",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_and_prefer_encrypt_and_disable_does_not() {
    for (mode, want_ssl) in [("require", true), ("prefer", true), ("disable", false)] {
        let schema = format!("tls_mode_{}", mode);
        let stores = open(&url("127.0.0.1", &schema, &format!("sslmode={mode}"))).await;
        round_trip(&stores).await;
        let (ssl, all) = encrypted(&server().url, &schema);
        assert!(all > 0, "{mode}");
        assert_eq!(
            ssl,
            if want_ssl { all } else { 0 },
            "{mode}: {ssl} of {all}"
        );
        stores.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_against_a_server_without_tls_is_unavailable() {
    let plain = PrivateServer::started();
    let at = |mode: &str| format!("{}?schema=tls_plain&sslmode={mode}", plain.url);
    refused(
        &at("require"),
        ErrorKind::Unavailable,
        "server does not support TLS",
    )
    .await;
    // `prefer` falls back to a plain connection.
    let stores = open(&at("prefer")).await;
    round_trip(&stores).await;
    let (ssl, all) = encrypted(&plain.url, "tls_plain");
    assert_eq!((ssl, all > 0), (0, true));
    stores.close().await.expect("close");
}

#[tokio::test]
async fn bad_tls_options_are_invalid_input() {
    let missing = server().dir.join("pki/missing.pem");
    refused(
        &url(
            "localhost",
            "tls_bad",
            &format!("sslmode=verify-full&sslrootcert={}", missing.display()),
        ),
        ErrorKind::InvalidInput,
        "sslrootcert",
    )
    .await;
    let not_pem = server().dir.join("pki/server.ext");
    refused(
        &url(
            "localhost",
            "tls_bad",
            &format!("sslmode=verify-ca&sslrootcert={}", not_pem.display()),
        ),
        ErrorKind::InvalidInput,
        "sslrootcert",
    )
    .await;
    refused(
        &url("localhost", "tls_bad", "sslmode=verify-full"),
        ErrorKind::InvalidInput,
        "sslrootcert",
    )
    .await;
    refused(
        &url("localhost", "tls_bad", "sslmode=allow"),
        ErrorKind::InvalidInput,
        "verify-full",
    )
    .await;
}

/// A URL for [`CERT_USER`] over verify-full, with `query` appended.
fn cert_user_url(schema: &str, query: &str) -> String {
    format!(
        "postgres://{CERT_USER}@localhost:{}/postgres?schema={schema}&connect_timeout_ms=5000\
         &sslmode=verify-full&sslrootcert={}{query}",
        server().port,
        ca()
    )
}

/// `&sslcert=…&sslkey=…` for the client certificate `name` of the PKI.
fn client_cert(name: &str) -> String {
    let pki = server().dir.join("pki");
    format!(
        "&sslcert={}&sslkey={}",
        pki.join(format!("{name}.pem")).display(),
        pki.join(format!("{name}.key")).display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_logs_in_where_the_server_demands_one() {
    let schema = "tls_client_cert";
    let stores = open(&cert_user_url(schema, &client_cert("client-certuser"))).await;
    round_trip(&stores).await;
    let (ssl, all) = encrypted(&server().url, schema);
    assert!(all > 0 && ssl == all, "{ssl} of {all} encrypted");
    stores.close().await.expect("close");
    // No certificate, one of another CA, one naming another user: the
    // server refuses (`Unavailable`, its reason in the message).
    for (query, says) in [
        (String::new(), "certificate"),
        (client_cert("client-certuser-wrong-ca"), "UnknownCA"),
        (client_cert("client-someone"), "certificate"),
    ] {
        refused(
            &cert_user_url("tls_client_cert_no", &query),
            ErrorKind::Unavailable,
            says,
        )
        .await;
    }
}

#[tokio::test]
async fn bad_client_certificate_options_are_invalid_input() {
    let pki = server().dir.join("pki");
    let cert = pki.join("client-certuser.pem").display().to_string();
    let key = pki.join("client-certuser.key").display().to_string();
    let missing = pki.join("missing.pem").display().to_string();
    for (query, says) in [
        (format!("&sslcert={cert}"), "sslkey"),
        (format!("&sslkey={key}"), "sslcert"),
        (format!("&sslcert=&sslkey={key}"), "sslcert"),
        (format!("&sslcert={missing}&sslkey={key}"), "sslcert"),
        (format!("&sslcert={cert}&sslkey={missing}"), "sslkey"),
        // A certificate is no key, nor a key a certificate.
        (format!("&sslcert={cert}&sslkey={cert}"), "sslkey"),
        (format!("&sslcert={key}&sslkey={key}"), "sslcert"),
    ] {
        refused(
            &cert_user_url("tls_client_bad", &query),
            ErrorKind::InvalidInput,
            says,
        )
        .await;
    }
    refused(
        &format!(
            "postgres://{CERT_USER}@localhost:{}/postgres?sslmode=disable&sslcert={cert}&sslkey={key}",
            server().port
        ),
        ErrorKind::InvalidInput,
        "sslcert",
    )
    .await;
}
