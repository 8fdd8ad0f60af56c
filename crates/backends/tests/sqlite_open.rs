//! Which SQLite files a `sqlite:` URL may open: a new file, an empty
//! database and a stowage database open; a database of another
//! application (no `stowage_schema` table, tables of its own) is refused
//! at open with `Corrupted` and left byte for byte as it was, instead of
//! having stowage's tables added to it (and a table of its own named like
//! one of stowage's failing every later call with `Internal`).
#![cfg(feature = "sqlite")]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use stowage_backends::open;
use stowage_core::{Digest, ErrorKind};

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// The schema objects of the database at `path` (SQLite's own aside).
fn objects(path: &Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT type, name FROM sqlite_master ORDER BY type, name")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    rows
}

/// The files in `dir` with their bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

/// Opens `path`, expects `Corrupted` saying it is not a stowage store and
/// naming `table`, and checks that nothing in its directory changed.
async fn refused(path: &Path, table: &str) {
    let dir = path.parent().unwrap();
    let before = files(dir);
    let objects_before = objects(path);
    let err = open(&url(path)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(!err.is_retryable(), "{err}");
    for want in ["not a stowage store", table, &path.display().to_string()] {
        assert!(err.message().contains(want), "lacks {want:?}: {err}");
    }
    assert_eq!(objects(path), objects_before, "the schema changed");
    assert!(files(dir) == before, "the refused open changed the files");
}

#[tokio::test]
async fn a_database_of_another_application_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        // `runs` is one of stowage's table names, with other columns.
        c.execute_batch(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT NOT NULL); \
             CREATE INDEX runs_by_name ON runs (name); \
             INSERT INTO runs (name) VALUES ('theirs');",
        )
        .unwrap();
    }
    refused(&path, "runs").await;
    // Still theirs, still readable by them.
    let c = rusqlite::Connection::open(&path).unwrap();
    let name: String = c
        .query_row("SELECT name FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(name, "theirs");
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete", "the journal mode was switched to WAL");
}

/// Any table, view or trigger of its own makes a database foreign, not
/// only one that collides with a stowage name; one already in WAL mode is
/// refused too.
#[tokio::test]
async fn any_schema_object_of_its_own_makes_a_database_foreign() {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql, shown) in [
        ("table.db", "CREATE TABLE notes (t TEXT)", "notes"),
        ("view.db", "CREATE VIEW v AS SELECT 1 AS one", "v"),
        (
            "wal.db",
            "PRAGMA journal_mode=WAL; CREATE TABLE customers (id INTEGER PRIMARY KEY)",
            "customers",
        ),
    ] {
        let path = dir.path().join(name);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        refused(&path, shown).await;
    }
}

/// A missing file, an empty file and a SQLite database without schema
/// objects are all new stores; a stowage database opens again with its
/// data (also with a table someone added beside stowage's).
#[tokio::test]
async fn new_empty_and_stowage_databases_open() {
    let dir = tempfile::tempdir().unwrap();
    let blob = Bytes::from_static(b"kept");
    let empty_file = dir.path().join("empty.db");
    std::fs::write(&empty_file, b"").unwrap();
    let empty_db = dir.path().join("empty-sqlite.db");
    rusqlite::Connection::open(&empty_db)
        .unwrap()
        .execute_batch("PRAGMA user_version = 7; VACUUM")
        .unwrap();
    for path in [dir.path().join("new.db"), empty_file, empty_db] {
        let s = open(&url(&path)).await.unwrap();
        s.cas.put(blob.clone()).await.unwrap();
        s.close().await.unwrap();
        let s = open(&url(&path)).await.unwrap();
        assert_eq!(s.cas.get(&Digest::of(&blob)).await.unwrap(), blob);
        s.close().await.unwrap();
    }
    let path = dir.path().join("new.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE audit (t TEXT)")
        .unwrap();
    let s = open(&url(&path)).await.unwrap();
    assert_eq!(s.cas.get(&Digest::of(&blob)).await.unwrap(), blob);
    s.close().await.unwrap();
}

/// Many openers of one new file at once (independent engines, as separate
/// processes would be; `sqlite_race.rs` uses real processes) all succeed:
/// the first creates the schema, the others find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_opens_of_a_new_file_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let url = url(&dir.path().join("shared.db"));
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().unwrap());
    }
    let d = stores[0].cas.put(Bytes::from_static(b"x")).await.unwrap();
    for s in &stores {
        assert!(s.cas.contains(&d).await.unwrap());
    }
    for s in stores {
        s.close().await.unwrap();
    }
}
