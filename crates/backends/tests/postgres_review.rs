//! Review of the PostgreSQL backend: contract gaps a demanding user hits
//! (error kinds for a read-only server, bad URL values, connect timeouts).
//! Each test works in a schema (and role) of its own and drops only those.
#![cfg(feature = "postgres")]

#[path = "support/postgres_server.rs"]
mod postgres_server;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use stowage_backends::postgres::PostgresOptions;
use stowage_core::{Digest, ErrorKind, NewEvent, RunMetadata};

/// A schema dropped when the guard goes away.
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        postgres_server::drop_schema(&self.0);
    }
}

/// Drops the role `name` (and its grants) when dropped.
struct Role(String);

impl Drop for Role {
    fn drop(&mut self) {
        let r = &self.0;
        if let Err(e) = postgres_server::exec(&format!("DROP OWNED BY {r}; DROP ROLE {r}")) {
            eprintln!("dropping test role {r}: {e}");
        }
    }
}

/// A store on a server that refuses writes (a hot standby after a
/// failover, or `default_transaction_read_only = on` for the role or the
/// database) answers every write with SQLSTATE 25006
/// `read_only_sql_transaction`. That is not a bug in stowage (`Internal`):
/// the project's rule for a medium that refuses writes is `Unsupported`
/// naming it (SQLite, file, sled), and `Unavailable` would at least say
/// "nothing was applied, retry later". Either way nothing may change.
#[tokio::test]
async fn a_read_only_server_refusal_is_not_internal() {
    let schema = Schema(postgres_server::unique_schema("ro"));
    let owner = stowage_backends::open(&postgres_server::url(&schema.0, ""))
        .await
        .expect("the owner creates the store");
    let run = owner
        .runs
        .create_run(Digest::of(b"ro"), RunMetadata::new("ro"))
        .await
        .expect("a run");
    owner.close().await.expect("close");
    let role = Role(format!("{}_r", schema.0));
    postgres_server::exec(&format!(
        "CREATE ROLE {r} LOGIN; ALTER ROLE {r} SET default_transaction_read_only = on; \
         GRANT USAGE ON SCHEMA {s} TO {r}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}",
        r = role.0,
        s = schema.0
    ))
    .expect("creating the read-only role");
    let mut url = url::Url::parse(&postgres_server::url(&schema.0, "")).expect("url");
    url.set_username(&role.0).expect("a user name");
    url.set_password(None).expect("no password");
    let ro = stowage_backends::open(url.as_str())
        .await
        .expect("an up-to-date store opens without DDL");
    assert_eq!(ro.runs.get_run(run).await.expect("reads work").id, run);

    let created = ro
        .runs
        .create_run(Digest::of(b"ro2"), RunMetadata::new("ro"))
        .await;
    let appended = ro
        .runs
        .append_event(run, NewEvent::new("tick", json!(1)))
        .await;
    let mut kinds = Vec::new();
    for (what, result) in [
        ("create_run", created.map(drop)),
        ("append_event", appended.map(drop)),
    ] {
        let e = result.expect_err("a read-only server refuses writes");
        assert!(e.message().contains("read-only"), "{what}: {e}");
        kinds.push((what, e.kind(), e.to_string()));
    }
    ro.close().await.expect("close");
    drop(role);
    for (what, kind, shown) in &kinds {
        assert!(
            matches!(kind, ErrorKind::Unsupported | ErrorKind::Unavailable),
            "{what} on a read-only server answered {kind:?}, not Unsupported/Unavailable: {shown}"
        );
    }
}

/// The user, database and password of a URL are percent-decoded; a NUL
/// byte in one of them cannot be sent to PostgreSQL (its startup message
/// holds C strings). That is bad input — `InvalidInput` naming the URL,
/// as every other bad URL value — not `Unavailable` ("transient, safe to
/// retry"; a retry loop would spin on it forever).
#[tokio::test]
async fn a_nul_byte_in_the_url_is_invalid_input() {
    let base = url::Url::parse(&postgres_server::base_url()).expect("the server's URL");
    let host = base.host_str().expect("host").to_owned();
    let port = base.port().unwrap_or(5432);
    let user = if base.username().is_empty() {
        "postgres".to_owned()
    } else {
        base.username().to_owned()
    };
    let db = base.path().trim_start_matches('/').to_owned();
    let schema = postgres_server::unique_schema("nul");
    let mut failures = Vec::new();
    for url in [
        format!("postgres://{user}@{host}:{port}/te%00st?schema={schema}&sslmode=disable"),
        format!("postgres://ro%00ot@{host}:{port}/{db}?schema={schema}&sslmode=disable"),
    ] {
        match stowage_backends::open(&url).await {
            Ok(_) => failures.push(format!("{url}: opened")),
            Err(e) if e.kind() == ErrorKind::InvalidInput => {}
            Err(e) => failures.push(format!("{url}: {:?}: {e}", e.kind())),
        }
    }
    // The typed options take the same values.
    let mut typed = PostgresOptions::new(host.clone(), "te\0st");
    typed.port = port;
    typed.user = user.clone();
    typed.schema = schema.clone();
    match typed.open().await {
        Ok(_) => failures.push("typed dbname with NUL: opened".into()),
        Err(e) if e.kind() == ErrorKind::InvalidInput => {}
        Err(e) => failures.push(format!("typed dbname with NUL: {:?}: {e}", e.kind())),
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// `connect_timeout_ms` is documented as "how long opening a connection
/// may take". A server that accepts the TCP connection but never answers
/// the startup (a hung or stopped postmaster whose kernel still accepts,
/// a port forward to the wrong service) must fail the open with
/// `Unavailable` about then — not hang for ever: the driver's
/// `connect_timeout` covers the TCP connect only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_bounds_a_server_that_never_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
    let keep = Arc::clone(&held);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // Accepted, never answered.
            keep.lock().unwrap().push(stream);
        }
    });
    let url = format!(
        "postgres://postgres@127.0.0.1:{port}/test?schema=stowage_t_hang&connect_timeout_ms=300\
         &sslmode=disable"
    );
    let started = Instant::now();
    let opened = tokio::time::timeout(Duration::from_secs(15), stowage_backends::open(&url)).await;
    let took = started.elapsed();
    // Let the blocked connection attempt end (EOF), so the runtime can
    // shut down.
    held.lock().unwrap().clear();
    match opened {
        Err(_) => panic!(
            "open with connect_timeout_ms=300 still hung after {took:?} against a server \
             that accepts TCP but never answers"
        ),
        Ok(Ok(_)) => panic!("opened a store on a server that never answered"),
        Ok(Err(e)) => assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}"),
    }
}

/// `PostgresOptions::validate` refuses an empty host or database, but not
/// an empty user: the server then refuses the login ("no PostgreSQL user
/// name specified in startup packet", SQLSTATE 28000), which is mapped to
/// `Unavailable` — "transient, safe to retry" — for a value that can never
/// work. It is bad input: `InvalidInput` naming `PostgresOptions::user`.
#[tokio::test]
async fn an_empty_typed_user_is_invalid_input() {
    let base = url::Url::parse(&postgres_server::base_url()).expect("the server's URL");
    let mut typed = PostgresOptions::new(
        base.host_str().expect("host"),
        base.path().trim_start_matches('/'),
    );
    typed.port = base.port().unwrap_or(5432);
    typed.user = String::new();
    typed.schema = postgres_server::unique_schema("nouser");
    match typed.open().await {
        Ok(_) => panic!("opened with an empty user"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.message().contains("user"), "{e}");
        }
    }
}
