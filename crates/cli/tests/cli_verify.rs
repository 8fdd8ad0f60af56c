//! `stowage verify` and `stowage stats` on a file store, clean and then
//! tampered with behind the SDK's back.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_a_clean_store_and_names_tampered_records() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    let p = with_store(&url, async |s| populate(s).await).await;

    let clean = ok(&stowage(&["verify", &url]));
    assert!(clean.contains("ok: no damage found"), "{clean}");
    assert!(
        clean
            .lines()
            .any(|l| l.starts_with("runs") && l.contains(" 3 ")),
        "{clean}"
    );
    assert!(
        clean
            .lines()
            .any(|l| l.starts_with("supersessions") && l.contains(" 1 ")),
        "{clean}"
    );

    assert_eq!(tamper_wal(dir.path(), b"TAMPERME2", b"TAMPERED2"), 1);
    assert_eq!(tamper_wal(dir.path(), b"prompt v1", b"prompt v2"), 1);

    let out = stowage(&["verify", &url]);
    let err = fails(&out, 3);
    let report = stdout(&out);
    assert!(err.is_empty(), "{err}");
    assert!(report.contains("2 damaged:"), "{report}");
    let run_line = report
        .lines()
        .find(|l| l.contains(&format!("run {}", p.completed_run)))
        .unwrap_or_else(|| panic!("the run is named:\n{report}"));
    assert!(
        run_line.contains("corrupted") && run_line.contains("seq 2"),
        "{run_line}"
    );
    let blob = stowage_core::Digest::of(b"prompt v1");
    assert!(
        report.contains(&format!("blob {blob}: corrupted")),
        "{report}"
    );

    let json = stowage(&["verify", &url, "--json"]);
    fails(&json, 3);
    let doc: serde_json::Value = serde_json::from_str(stdout(&json).trim()).unwrap();
    assert_eq!(doc["problems"].as_array().unwrap().len(), 2);
    assert_eq!(doc["problems"][0]["error_kind"], "corrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_counts_every_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    with_store(&url, async |s| populate(s).await).await;
    let json = ok(&stowage(&["stats", &url, "--scan", "--json"]));
    let doc: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let expect = [
        ("blobs", 3),
        ("blob_bytes", BIG_BLOB as u64 + 9),
        ("release_names", 2),
        ("releases", 6),
        ("runs", 3),
        ("events", 6),
        ("sessions", 3),
        ("log_entries", 5),
        ("log_bytes", 10 + 11 + 12 + 13 + 9),
    ];
    for (field, n) in expect {
        assert_eq!(doc[field], n, "{field} in {json}");
    }
    assert_eq!(doc["supersessions_listable"], true);
    assert_eq!(doc["supersessions"], 1, "{json}");
    let human = ok(&stowage(&["stats", &url, "--scan"]));
    assert!(human.starts_with("STORE"), "{human}");
    assert!(
        human.contains("6 events") && human.contains("5 log entries"),
        "{human}"
    );
}

/// A mistyped path is an error, and no store appears there: only
/// `import` creates a store.
#[test]
fn commands_on_a_missing_store_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let url = file_url(&missing);
    for args in [
        vec!["verify", url.as_str()],
        vec!["stats", url.as_str()],
        vec!["gc", url.as_str(), "--grace", "0s"],
    ] {
        let err = fails(&stowage(&args), 1);
        assert!(err.contains("not_found"), "{args:?}: {err}");
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
}

/// A directory that exists but holds no store (or something else) is no
/// store either: every command refuses it with `not_found` and leaves it
/// as it was. Before, the engine made a new, empty store there (`LOCK`, a
/// first segment) and `verify` called it healthy.
#[test]
fn commands_on_a_directory_without_a_store_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not a store").unwrap();
    let url = format!("file://{}", dir.path().display());
    let digest = "0".repeat(64);
    let export_to = tempfile::tempdir().unwrap();
    let export_file = export_to.path().join("out.jsonl");
    let export_file = export_file.to_str().unwrap();
    for args in [
        vec!["verify", url.as_str()],
        vec!["stats", url.as_str()],
        vec!["inspect", url.as_str(), "runs"],
        vec!["referrers", url.as_str(), digest.as_str()],
        vec!["export", url.as_str(), export_file],
        vec![
            "prune-runs",
            url.as_str(),
            "--status",
            "failed",
            "--dry-run",
        ],
        vec!["prune-runs", url.as_str(), "--status", "failed"],
        vec!["gc", url.as_str(), "--grace", "0s"],
        vec!["pin", url.as_str(), digest.as_str(), "keep"],
        vec!["compact", url.as_str()],
    ] {
        let err = fails(&stowage(&args), 1);
        assert!(
            err.contains("not_found") && err.contains("there is no store"),
            "{args:?}: {err}"
        );
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, ["notes.txt"], "{args:?} wrote into the directory");
    }
}

/// An empty SQLite file is no store either.
#[cfg(feature = "sqlite")]
#[test]
fn commands_on_an_empty_sqlite_file_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("empty.db");
    std::fs::write(&db, b"").unwrap();
    let url = format!("sqlite://{}", db.display());
    for args in [
        vec!["verify", url.as_str()],
        vec!["gc", url.as_str(), "--grace", "0s"],
    ] {
        let err = fails(&stowage(&args), 1);
        assert!(err.contains("not_found"), "{args:?}: {err}");
        assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "{args:?}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "{args:?}"
        );
    }
}
