//! What a real deployment does to a PostgreSQL store that a fresh test
//! database does not: a DBA's default isolation level, a database that is
//! not UTF-8, another process upgrading the schema under a running one,
//! pooled connections the server closed (a restart, an idle timeout).
//! (Each found by review.) Every test works in its own schema or its own
//! database, and drops it.
#![cfg(feature = "postgres")]

#[path = "support/postgres_server.rs"]
mod postgres_server;

use std::time::Duration;

use serde_json::json;
use stowage_backends::postgres::SCHEMA_VERSION;
use stowage_core::{Digest, ErrorKind, NewEvent, ReleaseMetadata, RunMetadata};

/// A schema dropped when the guard goes away.
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        postgres_server::drop_schema(&self.0);
    }
}

/// A database of the test's own, dropped when the guard goes away.
struct Database(String);

impl Database {
    /// Creates it with `options` (`ENCODING …`), then runs `setup`.
    fn create(tag: &str, options: &str, setup: &str) -> Database {
        let name = postgres_server::unique_schema(tag);
        postgres_server::exec(&format!("CREATE DATABASE {name} {options}"))
            .expect("creating the test database");
        let db = Database(name);
        if !setup.is_empty() {
            postgres_server::exec(&setup.replace("{db}", &db.0)).expect("setting it up");
        }
        db
    }

    /// The store URL of schema `schema` in this database.
    fn url(&self, schema: &str, extra: &str) -> String {
        let mut url = url::Url::parse(&postgres_server::base_url()).expect("the server's URL");
        url.set_path(&self.0);
        let sep = if url.query().is_some() { '&' } else { '?' };
        format!("{url}{sep}schema={schema}{extra}")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) =
            postgres_server::exec(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0))
        {
            eprintln!("dropping test database {}: {e}", self.0);
        }
    }
}

/// A DBA may set `default_transaction_isolation = 'repeatable read'` for a
/// database or role. Write jobs must still run at `READ COMMITTED` (they
/// read after their locks are granted); under the server's default their
/// snapshot predated the lock, and appends to one run from two processes
/// failed with serialization errors (126 of 160 before the fix).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_race_cleanly_under_a_repeatable_read_default() {
    let db = Database::create(
        "rr",
        "",
        "ALTER DATABASE {db} SET default_transaction_isolation = 'repeatable read'",
    );
    let url = db.url("rr", "&pool_size=16");
    let a = stowage_backends::open(&url).await.expect("open a");
    let b = stowage_backends::open(&url).await.expect("open b");
    let run = a
        .runs
        .create_run(Digest::of(b"rr"), RunMetadata::new("rr"))
        .await
        .expect("run");
    let mut tasks = Vec::new();
    for task in 0..8 {
        let stores = if task % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..20 {
                let event = NewEvent::new("tick", json!({"t": task, "i": i}));
                match stores.runs.append_event(run, event).await {
                    Ok(e) => seqs.push(e.seq),
                    Err(e) => return Err(format!("{:?}: {e}", e.kind())),
                }
            }
            Ok(seqs)
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.expect("task").expect("an append failed"));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..160).collect::<Vec<u64>>());
    assert_eq!(a.runs.verify_run(run).await.expect("verify").len, 160);
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

/// A process that has the store open while another, newer one upgrades
/// the schema must stop: it would write its own layout into the upgraded
/// schema. Every transaction checks the version, reads included.
#[tokio::test]
async fn a_running_store_refuses_a_schema_another_process_upgraded() {
    let schema = Schema(postgres_server::unique_schema("upgraded"));
    let stores = stowage_backends::open(&postgres_server::url(&schema.0, ""))
        .await
        .expect("open");
    let run = stores
        .runs
        .create_run(Digest::of(b"up"), RunMetadata::new("up"))
        .await
        .expect("run");
    stores
        .runs
        .append_event(run, NewEvent::new("tick", json!(0)))
        .await
        .expect("an append before the upgrade");
    postgres_server::exec(&format!(
        "UPDATE {}.schema_version SET version = {}",
        schema.0,
        SCHEMA_VERSION + 1
    ))
    .expect("upgrading the schema, as a newer build would");
    let appended = stores
        .runs
        .append_event(run, NewEvent::new("tick", json!(1)))
        .await
        .expect_err("an append into the upgraded schema");
    assert_eq!(appended.kind(), ErrorKind::Unsupported, "{appended}");
    let read = stores
        .runs
        .read_events(run, None, 10)
        .await
        .expect_err("a read of the upgraded schema");
    assert_eq!(read.kind(), ErrorKind::Unsupported, "{read}");
    // A job that reads nothing first (a blob reference) is refused too.
    let created = stores
        .runs
        .create_run(Digest::of(b"up2"), RunMetadata::new("up"))
        .await
        .expect_err("a run created in the upgraded schema");
    assert_eq!(created.kind(), ErrorKind::Unsupported, "{created}");
    postgres_server::exec(&format!(
        "UPDATE {}.schema_version SET version = {SCHEMA_VERSION}",
        schema.0
    ))
    .expect("restoring the version");
    let len = stores.runs.verify_run(run).await.expect("verify").len;
    assert_eq!(len, 1, "the refused append left something behind");
    stores.close().await.expect("close");
}

/// After the server closed the pooled connections, `create_run` and
/// `promote` — whose first write job (a blob reference) reads nothing —
/// must find out before anything was sent that could have been applied,
/// and go on on a new connection; they answered `OutcomeUnknown`.
#[tokio::test]
async fn writes_that_read_nothing_survive_closed_pooled_connections() {
    let schema = Schema(postgres_server::unique_schema("stale"));
    let stores = stowage_backends::open(&postgres_server::url(&schema.0, "&pool_size=2"))
        .await
        .expect("open");
    stores
        .runs
        .create_run(Digest::of(b"r"), RunMetadata::new("stale"))
        .await
        .expect("a first run");
    let kill = || {
        postgres_server::query_text(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'stowage:{}'",
            schema.0
        ))
        .expect("terminating the store's connections");
        // The backends exit asynchronously.
        std::thread::sleep(Duration::from_millis(200));
    };
    kill();
    let run = stores
        .runs
        .create_run(Digest::of(b"r"), RunMetadata::new("stale"))
        .await
        .expect("create_run on closed pooled connections");
    kill();
    stores
        .releases
        .promote(
            "planner",
            Digest::of(b"spec"),
            ReleaseMetadata::new("v1", "ci"),
            None,
        )
        .await
        .expect("promote on closed pooled connections");
    assert!(stores.runs.get_run(run).await.is_ok());
    stores.close().await.expect("close");
}

/// In a `LATIN1` database an event kind with a character `LATIN1` lacks
/// must still be stored: only the readable columns are `text`, and they
/// stay `NULL` there (the `value` column keeps everything).
#[tokio::test]
async fn a_latin1_database_stores_any_identifier() {
    let db = Database::create(
        "latin1",
        "ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
        "",
    );
    let stores = stowage_backends::open(&db.url("l1", ""))
        .await
        .expect("open");
    let run = stores
        .runs
        .create_run(Digest::of(b"l1"), RunMetadata::new("l1"))
        .await
        .expect("run");
    let event = stores
        .runs
        .append_event(run, NewEvent::new("tool✓🚀", json!({"note": "✓"})))
        .await
        .expect("an emoji event kind in a LATIN1 database");
    let page = stores.runs.read_events(run, None, 10).await.expect("read");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].kind, "tool✓🚀");
    assert_eq!(page[0].hash, event.hash);
    stores.close().await.expect("close");
}

/// An application role with only its tables' rights (no `CREATE` on the
/// database or the schema) opens a store another role created: opening
/// must not run DDL when the schema is up to date (PostgreSQL checks the
/// right to `CREATE … IF NOT EXISTS` before whether the object exists).
#[tokio::test]
async fn a_role_without_ddl_rights_opens_an_existing_store() {
    let schema = Schema(postgres_server::unique_schema("app_role"));
    let owner = stowage_backends::open(&postgres_server::url(&schema.0, ""))
        .await
        .expect("the owner creates the store");
    owner.close().await.expect("close");
    let role = format!("{}_r", schema.0);
    postgres_server::exec(&format!(
        "CREATE ROLE {role} LOGIN; GRANT USAGE ON SCHEMA {s} TO {role}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {role}; \
         REVOKE CREATE ON SCHEMA public FROM {role}",
        s = schema.0
    ))
    .expect("creating the application role");
    let dropped = drop_role_later(&role);
    let mut url = url::Url::parse(&postgres_server::url(&schema.0, "")).expect("url");
    url.set_username(&role).expect("a user name");
    url.set_password(None).expect("no password");
    let app = stowage_backends::open(url.as_str())
        .await
        .expect("the application role opens the store");
    let run = app
        .runs
        .create_run(Digest::of(b"app"), RunMetadata::new("app"))
        .await
        .expect("the application role writes");
    app.runs
        .append_event(run, NewEvent::new("tick", json!(1)))
        .await
        .expect("and appends");
    app.close().await.expect("close");
    drop(dropped);
}

/// Drops the role `name` (and its grants) when dropped.
fn drop_role_later(name: &str) -> impl Drop {
    struct Role(String);
    impl Drop for Role {
        fn drop(&mut self) {
            let r = &self.0;
            if let Err(e) = postgres_server::exec(&format!("DROP OWNED BY {r}; DROP ROLE {r}")) {
                eprintln!("dropping test role {r}: {e}");
            }
        }
    }
    Role(name.to_owned())
}

/// A schema where another application keeps a table under one of
/// stowage's names is refused at open, unchanged, instead of adopted
/// (`CREATE TABLE IF NOT EXISTS` skipped it, and every call on it failed
/// `Internal` on its columns); so is another application's
/// `schema_version`.
#[tokio::test]
async fn a_schema_of_another_application_is_refused_unchanged() {
    for (tag, setup) in [
        (
            "foreign_runs",
            "CREATE TABLE {s}.runs (id serial PRIMARY KEY, name text)",
        ),
        (
            "foreign_version",
            "CREATE TABLE {s}.schema_version (major int, minor int)",
        ),
    ] {
        let schema = Schema(postgres_server::unique_schema(tag));
        postgres_server::exec(&format!(
            "CREATE SCHEMA {s}; {}",
            setup.replace("{s}", &schema.0),
            s = schema.0
        ))
        .expect("the other application's schema");
        let tables = || {
            postgres_server::query_text(&format!(
                "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables \
                 WHERE schemaname = '{}'",
                schema.0
            ))
            .expect("listing tables")
        };
        let before = tables();
        let err = stowage_backends::open(&postgres_server::url(&schema.0, ""))
            .await
            .err()
            .unwrap_or_else(|| panic!("{tag}: the foreign schema was adopted"));
        assert_eq!(err.kind(), ErrorKind::Corrupted, "{tag}: {err}");
        assert!(err.message().contains("another application"), "{err}");
        assert_eq!(tables(), before, "{tag}: the schema changed");
    }
}
