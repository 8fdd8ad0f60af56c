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
