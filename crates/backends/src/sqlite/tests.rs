//! URL and option errors, schema-version refusal, foreign files, close.

use std::time::Duration;

use stowage_core::{Durability, DurabilityLevel, ErrorKind, StoreEnv};

use super::*;
use crate::options::StoreOptions;

fn parse(url: &str) -> Result<SqliteOptions> {
    SqliteOptions::from_url(url)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn absolute_and_relative_urls_parse() {
    let o = parse("sqlite:///srv/a%20b/agents.db").unwrap();
    assert_eq!(o.path, PathBuf::from("/srv/a b/agents.db"));
    assert_eq!(o.durability, Durability::Sync);
    assert_eq!(o.busy_timeout, DEFAULT_BUSY_TIMEOUT);
    assert_eq!(o.readers, DEFAULT_READERS);
    let cwd = std::env::current_dir().unwrap();
    let o =
        parse("sqlite:data/agents.db?durability=buffered&readers=2&busy_timeout_ms=250").unwrap();
    assert_eq!(o.path, cwd.join("data/agents.db"));
    assert_eq!(o.durability, Durability::Buffered);
    assert_eq!(o.readers, 2);
    assert_eq!(o.busy_timeout, Duration::from_millis(250));
    assert_eq!(
        parse("sqlite:///x.db?durability=durable")
            .unwrap()
            .durability,
        Durability::Sync
    );
    assert_eq!(
        parse("sqlite:///x.db?durability=sync").unwrap().durability,
        Durability::Sync
    );
}

/// A relative path keeps its `..` segments: `sqlite:../x.db` is the file
/// one directory up, not `<cwd>/x.db` (they were lost when the path was
/// decoded through a `file:///` URL, which resolves them against its root).
#[test]
fn relative_urls_keep_dot_dot_segments() {
    let cwd = std::env::current_dir().unwrap();
    let up = cwd.parent().expect("the test's cwd has a parent");
    for (url, rel) in [
        ("sqlite:../x.db", "../x.db"),
        ("sqlite:a/../../x.db", "a/../../x.db"),
        ("sqlite:../../y/x.db?readers=2", "../../y/x.db"),
        ("sqlite:%2E%2E/my%20x.db", "../my x.db"),
    ] {
        let o = parse(url).unwrap();
        assert_eq!(o.path, cwd.join(rel), "{url}");
    }
    // What the OS makes of them: one directory up, not the cwd.
    let lexical = |p: &std::path::Path| -> PathBuf {
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                other => out.push(other),
            }
        }
        out
    };
    assert_eq!(
        lexical(&parse("sqlite:../x.db").unwrap().path),
        up.join("x.db")
    );
    assert_eq!(
        lexical(&parse("sqlite:a/../../x.db").unwrap().path),
        up.join("x.db")
    );
    let err = parse("sqlite:%ff.db").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[test]
fn bad_urls_and_options_name_the_option_and_its_values() {
    let cases = [
        ("sqlite:", "empty"),
        ("sqlite://", "empty"),
        ("sqlite:///", "empty"),
        ("sqlite://host/x.db", "host"),
        ("sqlite:///dir/", "directory"),
        ("sqlite:///x.db#frag", "fragment"),
        (
            "sqlite:///x.db?durability=fast",
            "durable (or sync) or buffered",
        ),
        ("sqlite:///x.db?readers=0", "from 1 to 64"),
        ("sqlite:///x.db?readers=65", "from 1 to 64"),
        ("sqlite:///x.db?readers=many", "from 1 to 64"),
        ("sqlite:///x.db?busy_timeout_ms=-1", "milliseconds"),
        ("sqlite:///x.db?busy_timeout_ms=3600001", "milliseconds"),
        ("sqlite:///x.db?colour=blue", "unknown option colour=blue"),
        ("sqlite:///x.db?require=fast", "durability level"),
    ];
    for (url, needle) in cases {
        let err = parse(url).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url}: {err}");
        assert!(err.message().contains(needle), "{url}: {err}");
    }
    let err = parse("sqlite:///x.db?colour=blue").unwrap_err();
    for option in ["durability", "busy_timeout_ms", "readers"] {
        assert!(err.message().contains(option), "{err}");
    }
}

#[test]
fn an_option_given_twice_is_refused_by_the_parser_itself() {
    // Not only by `open`'s check: the parser refuses it whoever calls it.
    for query in [
        "durability=durable&durability=buffered",
        "readers=2&busy_timeout_ms=5&readers=8",
    ] {
        let url = url::Url::parse(&format!("sqlite:///x.db?{query}")).unwrap();
        let err = parse_url(&url).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{query}: {err}");
        assert!(err.message().contains("is given twice"), "{query}: {err}");
    }
    let err = parse("sqlite:///x.db?readers=1&readers=2").unwrap_err();
    assert!(err.message().contains("`readers`"), "{err}");
}

#[test]
fn struct_options_are_checked_too() {
    let mut o = SqliteOptions::new("/tmp/x.db");
    o.readers = 0;
    assert_eq!(o.validate().unwrap_err().kind(), ErrorKind::InvalidInput);
    let o = SqliteOptions::new("");
    assert_eq!(o.validate().unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[test]
fn require_is_checked_against_the_durability_setting() {
    assert!(StoreOptions::parse("sqlite:///x.db?require=power_loss").is_ok());
    let err =
        StoreOptions::parse("sqlite:///x.db?durability=buffered&require=power_loss").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(
        StoreOptions::parse("sqlite:///x.db?durability=buffered&require=process_crash").is_ok()
    );
    let caps = capabilities(&parse("sqlite:///x.db?durability=buffered").unwrap());
    assert_eq!(caps.durability, DurabilityLevel::ProcessCrash);
    assert!(caps.shared);
    assert_eq!(caps.max_blob_size, MAX_BLOB_SIZE);
}

/// Another process, of a newer build, upgrades the file while this engine
/// has it open: every later read and write is refused, not run against a
/// layout this build does not know. (Found by review.)
#[test]
fn a_running_engine_refuses_a_file_another_process_upgraded() {
    use stowage_core::engine::{Engine, Scope, Table};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    runtime().block_on(async {
        let engine = SqliteEngine::open(SqliteOptions::new(&path)).await.unwrap();
        let put = |value: &'static [u8]| -> stowage_core::engine::WriteJob {
            Box::new(move |txn| txn.put(Table::Meta, b"k".to_vec(), value.to_vec()))
        };
        let durable = engine.write(Scope::Unshared, put(b"v1")).await.unwrap();
        durable.wait().await.unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        let newer = super::schema::SCHEMA_VERSION + 1;
        conn.execute(
            "UPDATE stowage_schema SET value = ?1 WHERE name = 'version'",
            [newer],
        )
        .unwrap();
        let err = engine.write(Scope::Unshared, put(b"v2")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        let err = engine
            .read(Box::new(|reader| reader.get(Table::Meta, b"k").map(drop)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        let stored: Vec<u8> = conn
            .query_row("SELECT value FROM meta WHERE key = x'6b'", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(stored, b"v1", "the refused write changed nothing");
        engine.close().await.unwrap();
    });
}

#[test]
fn a_newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    runtime().block_on(async {
        let engine = SqliteEngine::open(SqliteOptions::new(&path)).await.unwrap();
        engine.close().await.unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let newer = super::schema::SCHEMA_VERSION + 1;
        conn.execute(
            "UPDATE stowage_schema SET value = ?1 WHERE name = 'version'",
            [newer],
        )
        .unwrap();
        drop(conn);
        let err = SqliteEngine::open(SqliteOptions::new(&path))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        assert!(
            err.message().contains(&format!("schema version {newer}")),
            "{err}"
        );
        assert!(err.message().contains("newer stowage"), "{err}");

        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE stowage_schema SET value = 'x' WHERE name = 'version'",
            [],
        )
        .unwrap();
        drop(conn);
        let err = SqliteEngine::open(SqliteOptions::new(&path))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    });
}

/// A version-1 file (no session heads) is upgraded at open: the table is
/// added and the version raised, so a version-1 build refuses it after.
#[test]
fn a_version_1_file_is_upgraded_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    runtime().block_on(async {
        let engine = SqliteEngine::open(SqliteOptions::new(&path)).await.unwrap();
        engine.close().await.unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE session_heads; \
             UPDATE stowage_schema SET value = 1 WHERE name = 'version'",
        )
        .unwrap();
        drop(conn);
        let engine = SqliteEngine::open(SqliteOptions::new(&path)).await.unwrap();
        engine.close().await.unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row(
                "SELECT value FROM stowage_schema WHERE name = 'version'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(version, super::schema::SCHEMA_VERSION);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'session_heads'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1);
    });
}

/// The check inside the schema's write transaction (the one that makes
/// concurrent openers race-free) refuses a foreign database on its own,
/// and rolls back: nothing is created in it.
#[test]
fn ensure_refuses_a_foreign_database_inside_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE sessions (id INTEGER PRIMARY KEY)")
        .unwrap();
    let err = super::schema::ensure(&conn).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.message().contains("table sessions"), "{err}");
    let count: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
        .unwrap();
    assert_eq!(count, 1, "the refused schema transaction created tables");
    assert!(conn.is_autocommit(), "the transaction was left open");
    // An empty database gets the schema; a second `ensure` finds it.
    let fresh = rusqlite::Connection::open(dir.path().join("fresh.db")).unwrap();
    super::schema::ensure(&fresh).unwrap();
    super::schema::ensure(&fresh).unwrap();
}

#[test]
fn a_file_that_is_not_a_database_is_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let err = runtime()
        .block_on(SqliteEngine::open(SqliteOptions::new(&path)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
}

#[test]
fn values_of_the_wrong_type_are_corrupted_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    runtime().block_on(async {
        let opts = SqliteOptions::new(&path);
        let stores = opts.clone().open().await.unwrap();
        stores
            .sessions
            .create_session("s", serde_json::json!({"a": 1}))
            .await
            .unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE sessions SET value = 'text'", [])
            .unwrap();
        drop(conn);
        let err = stores.sessions.load_session("s").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE sessions SET value = x'00ff'", [])
            .unwrap();
        drop(conn);
        let err = stores.sessions.load_session("s").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
        stores.close().await.unwrap();
    });
}

#[test]
fn calls_after_close_are_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let engine = SqliteEngine::open(SqliteOptions::new(dir.path().join("a/b/store.db")))
            .await
            .unwrap();
        let stores = stowage_core::engine::stores(engine.clone(), StoreEnv::default());
        let d = stores
            .cas
            .put(bytes::Bytes::from_static(b"kept"))
            .await
            .unwrap();
        stores.clone().close().await.unwrap();
        let err = stores.cas.get(&d).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        let err = stores
            .cas
            .put(bytes::Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        // Closing again is harmless (`Stores::close` promises `Ok`).
        engine.close().await.unwrap();
        let again = SqliteOptions::new(dir.path().join("a/b/store.db"))
            .open()
            .await
            .unwrap();
        assert_eq!(&again.cas.get(&d).await.unwrap()[..], b"kept");
    });
}

#[test]
fn a_busy_writer_times_out_as_unavailable_with_nothing_applied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    runtime().block_on(async {
        let mut opts = SqliteOptions::new(&path);
        opts.busy_timeout = Duration::from_millis(100);
        let stores = opts.open().await.unwrap();
        let blocker = rusqlite::Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let err = stores
            .sessions
            .create_session("s", serde_json::json!({}))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.is_retryable());
        blocker.execute_batch("ROLLBACK").unwrap();
        assert!(stores.sessions.load_session("s").await.unwrap().is_none());
        stores
            .sessions
            .create_session("s", serde_json::json!({}))
            .await
            .unwrap();
    });
}
