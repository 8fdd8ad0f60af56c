//! The lifecycle commands on a file store: each one's effect checked
//! in-process afterwards, and bad input refused with the flag named.

mod support;

use bytes::Bytes;
use serde_json::{json, Value};
use stowage_core::{
    Digest, ErrorKind, NewEvent, RunFilter, RunId, RunMetadata, RunSummary, SessionState, Stores,
    Timestamp,
};
use support::*;

fn json_doc(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A run of `agent` with `events` events, finished at `finished` (ms) or
/// still running.
async fn run(stores: &Stores, agent: &str, events: u64, finished: Option<u64>) -> RunId {
    let id = stores
        .runs
        .create_run(Digest::of(agent.as_bytes()), RunMetadata::new(agent))
        .await
        .unwrap();
    for i in 0..events {
        stores
            .runs
            .append_event(id, NewEvent::new("step", json!(i)))
            .await
            .unwrap();
    }
    if let Some(ms) = finished {
        let mut s = RunSummary::new("done");
        s.finished_at = Some(Timestamp::from_millis(ms));
        stores.runs.complete_run(id, s).await.unwrap();
    }
    id
}

async fn run_ids(stores: &Stores) -> Vec<RunId> {
    let mut ids: Vec<RunId> = stores
        .runs
        .list_runs(&RunFilter::all(), None, 1000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    ids
}

/// 2001-09-09: older than the cut-off used below.
const OLD: u64 = 1_000_000_000_000;
/// 2033-05-18: newer than it.
const NEW: u64 = 2_000_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_runs_deletes_what_the_dry_run_lists_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    let (a1, a2, a3, b1, _b2, running) = with_store(&url, async |s| {
        (
            run(s, "a", 3, Some(OLD)).await,
            run(s, "a", 4, Some(OLD)).await,
            run(s, "a", 5, Some(OLD)).await, // newest of a: kept
            run(s, "b", 2, Some(OLD)).await,
            run(s, "b", 1, Some(NEW)).await, // finished after the cut-off
            run(s, "a", 7, None).await,
        )
    })
    .await;
    let all = with_store(&url, async |s| run_ids(s).await).await;
    let policy = [
        "--finished-before",
        "2020-01-01T00:00:00Z",
        "--keep-newest",
        "2",
    ];
    // The running run is among a's newest two (by creation), so a3 is
    // the only one kept by the rule among the finished old runs of a;
    // a1 and a2 are older than both.
    let mut args = vec!["prune-runs", url.as_str()];
    args.extend(policy);
    args.extend(["--dry-run", "--json"]);
    let dry = json_doc(&ok(&stowage(&args)));
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["examined"], 6, "{dry}");
    assert_eq!(dry["deleted"], 2, "{dry}");
    assert_eq!(dry["events"], 3 + 4, "{dry}");
    let listed: Vec<String> = dry["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, vec![a1.to_string(), a2.to_string()]);
    assert_eq!(with_store(&url, async |s| run_ids(s).await).await, all);

    let human = ok(&stowage(&[
        "prune-runs",
        &url,
        "--older-than",
        "1d",
        "--dry-run",
    ]));
    assert!(human.contains(&b1.to_string()), "{human}");
    assert!(
        human.contains("dry run: would have deleted 4 runs (14 events); 6 runs examined"),
        "{human}"
    );

    let mut args = vec!["prune-runs", url.as_str()];
    args.extend(policy);
    args.extend(["--batch", "2", "--json", "--quiet"]);
    let done = json_doc(&ok(&stowage(&args)));
    assert_eq!(done["deleted"], 2, "{done}");
    assert_eq!(done["events"], 7, "{done}");
    assert_eq!(done["examined"], 6, "{done}");
    // Three full batches of two, then an empty one that ends the sweep.
    assert_eq!(done["batches"], 4, "{done}");
    let left = with_store(&url, async |s| run_ids(s).await).await;
    let expect: Vec<RunId> = all
        .into_iter()
        .filter(|id| ![a1, a2].contains(id))
        .collect();
    assert_eq!(left, expect);
    assert!(left.contains(&a3) && left.contains(&running));

    // Only b's old completed runs (the sweep walks b's index only); text
    // output.
    let out = ok(&stowage(&[
        "prune-runs",
        &url,
        "--agent",
        "b",
        "--status",
        "completed",
        "--finished-before",
        "2020-01-01T01:00:00+01:00",
    ]));
    assert_eq!(
        out.trim(),
        "deleted 1 runs (2 events); 2 runs examined in 1 batch",
        "{out}"
    );
    let err = with_store(&url, async |s| s.runs.get_run(b1).await.unwrap_err()).await;
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_runs_refuses_bad_input_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    with_store(&url, async |s| run(s, "a", 1, Some(OLD)).await).await;
    let cases: [(&[&str], &str); 6] = [
        (&["--older-than", "3x"], "--older-than"),
        (&["--finished-before", "last tuesday"], "--finished-before"),
        (&["--status", "done"], "--status"),
        (&["--older-than", "1d", "--batch", "0"], "--batch"),
        (
            &[
                "--older-than",
                "1d",
                "--finished-before",
                "2020-01-01T00:00:00Z",
            ],
            "cannot be used with",
        ),
        (&[], "required"),
    ];
    for (flags, named) in cases {
        let mut args = vec!["prune-runs", url.as_str()];
        args.extend(flags);
        let err = fails(&stowage(&args), 2);
        assert!(err.contains(named), "{flags:?}: {err}");
    }
    let err = fails(&stowage(&["prune-runs", &url, "--status", "running"]), 1);
    assert!(err.contains("--include-running"), "{err}");
    assert_eq!(with_store(&url, async |s| run_ids(s).await).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_then_prune_by_state() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    with_store(&url, async |s| populate(s).await).await;
    // chat-1 (open, 4 entries), "done session" (resolved, 1), empty (open).
    let none = ok(&stowage(&["expire-sessions", &url, "--idle-for", "30d"]));
    assert_eq!(
        none.trim(),
        "expired 0 sessions; 3 sessions examined in 1 batch"
    );
    // Idle for more than 0 ms: everything was touched before this process
    // started.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let expired = json_doc(&ok(&stowage(&[
        "expire-sessions",
        &url,
        "--idle-for",
        "0s",
        "--json",
    ])));
    assert_eq!(expired, json!({"examined": 3, "expired": 2, "batches": 1}));
    let state = with_store(&url, async |s| {
        s.sessions
            .load_session("chat-1")
            .await
            .unwrap()
            .unwrap()
            .state
    })
    .await;
    assert_eq!(state, SessionState::Expired);

    std::thread::sleep(std::time::Duration::from_millis(5));
    let pruned = json_doc(&ok(&stowage(&[
        "prune-sessions",
        &url,
        "--idle-for",
        "0s",
        "--json",
        "--batch",
        "1",
    ])));
    assert_eq!(
        pruned,
        json!({"examined": 3, "deleted": 2, "log_entries": 4, "batches": 4})
    );
    let out = ok(&stowage(&[
        "prune-sessions",
        &url,
        "--idle-for",
        "0s",
        "--state",
        "Resolved",
    ]));
    assert_eq!(
        out.trim(),
        "deleted 1 sessions (1 log entries); 1 sessions examined in 1 batch"
    );
    let left = with_store(&url, async |s| {
        s.sessions.list_sessions(None, 10).await.unwrap().len()
    })
    .await;
    assert_eq!(left, 0);

    let err = fails(&stowage(&["expire-sessions", &url]), 2);
    assert!(err.contains("--idle-for"), "{err}");
    let err = fails(
        &stowage(&[
            "prune-sessions",
            &url,
            "--idle-for",
            "1d",
            "--state",
            "closed",
        ]),
        2,
    );
    assert!(err.contains("--state"), "{err}");
    let err = fails(
        &stowage(&["expire-sessions", &url, "--idle-for", "soon"]),
        2,
    );
    assert!(err.contains("--idle-for"), "{err}");
}

/// A damaged session record stops neither `expire-sessions` nor
/// `prune-sessions`: it is left for reads and `verify` to report, and the
/// sessions after it are swept, batch after batch. Found by review: one
/// record that failed to decode failed every session sweep for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_session_does_not_stop_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    with_store(&url, async |s| {
        for id in ["a-damaged", "b-fine"] {
            s.sessions.create_session(id, json!({})).await.unwrap();
        }
        s.sessions
            .set_session_state("a-damaged", SessionState::Suspended, None)
            .await
            .unwrap();
    })
    .await;
    assert!(tamper_wal(dir.path(), b"Suspended", b"Suspendex") >= 1);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let sweep = |command: &str| {
        let args = [
            command,
            url.as_str(),
            "--idle-for",
            "0s",
            "--batch",
            "1",
            "--json",
        ];
        json_doc(&ok(&stowage(&args)))
    };
    assert_eq!(sweep("expire-sessions")["expired"], json!(1));
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(sweep("prune-sessions")["deleted"], json!(1));
    with_store(&url, async |s| {
        let damaged = s.sessions.load_session("a-damaged").await.unwrap_err();
        assert_eq!(damaged.kind(), ErrorKind::Corrupted);
        assert!(s.sessions.load_session("b-fine").await.unwrap().is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_unreferenced_blobs_and_keeps_pinned_and_referenced_ones() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    let (loose, pinned, spec, run_id) = with_store(&url, async |s| {
        let loose = s
            .cas
            .put(Bytes::from_static(b"nobody wants me"))
            .await
            .unwrap();
        let pinned = s.cas.put(Bytes::from_static(b"golden set")).await.unwrap();
        let spec = s
            .cas
            .put(Bytes::from_static(b"planner spec"))
            .await
            .unwrap();
        let run_id = s
            .runs
            .create_run(spec, RunMetadata::new("planner"))
            .await
            .unwrap();
        (loose, pinned, spec, run_id)
    })
    .await;
    let (pinned_hex, spec_hex) = (pinned.to_string(), spec.to_string());
    let out = ok(&stowage(&["pin", &url, &pinned_hex, "golden"]));
    assert!(out.starts_with("pinned"), "{out}");
    let out = ok(&stowage(&["referrers", &url, &pinned_hex]));
    assert!(
        out.lines()
            .any(|l| l.starts_with("pin") && l.ends_with("golden")),
        "{out}"
    );
    let refs = ok(&stowage(&["referrers", &url, &spec_hex, "--json"]));
    assert_eq!(
        json_doc(&refs),
        json!({"kind": "run", "id": run_id.to_string()})
    );
    let loose_hex = loose.to_string();
    let none = ok(&stowage(&["referrers", &url, &loose_hex]));
    assert_eq!(none.trim(), "(no referrers)");

    // Within the default grace period (24 h) nothing goes.
    let kept = json_doc(&ok(&stowage(&["gc", &url, "--json"])));
    assert_eq!(kept["deleted"], 0, "{kept}");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let swept = json_doc(&ok(&stowage(&["gc", &url, "--grace", "0s", "--json"])));
    assert_eq!(swept["examined"], 3, "{swept}");
    assert_eq!(swept["deleted"], 1, "{swept}");
    let held = with_store(&url, async |s| {
        (
            s.cas.stat(&loose).await.map(|_| ()).unwrap_err().kind(),
            s.cas.get(&pinned).await.is_ok(),
            s.cas.get(&spec).await.is_ok(),
        )
    })
    .await;
    assert_eq!(held, (ErrorKind::NotFound, true, true));

    ok(&stowage(&["unpin", &url, &pinned_hex, "golden"]));
    let err = fails(&stowage(&["unpin", &url, &pinned_hex, "golden"]), 1);
    assert!(err.contains("not_found") && err.contains("golden"), "{err}");
    let out = ok(&stowage(&["gc", &url, "--grace", "0s", "--batch", "1"]));
    assert!(
        out.starts_with("deleted 1 blobs (") && out.contains("2 blobs examined in 3 batches"),
        "{out}"
    );

    let err = fails(&stowage(&["pin", &url, "feed", "golden"]), 2);
    assert!(err.contains("DIGEST") || err.contains("digest"), "{err}");
    let err = fails(&stowage(&["gc", &url, "--grace", "a while"]), 2);
    assert!(err.contains("--grace"), "{err}");
    let err = fails(&stowage(&["pin", &url, &spec_hex, ""]), 1);
    assert!(err.contains("invalid_input"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forks_copy_sessions_and_releases() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    with_store(&url, async |s| populate(s).await).await;
    let out = ok(&stowage(&["fork-session", &url, "chat-1", "chat-2"]));
    assert!(
        out.starts_with("forked session \"chat-1\" to \"chat-2\""),
        "{out}"
    );
    let rel = json_doc(&ok(&stowage(&[
        "fork-release",
        &url,
        "planner",
        "planner-canary",
        "--json",
    ])));
    assert_eq!(rel["name"], "planner-canary");
    assert_eq!(rel["seq"], 4, "{rel}");
    let (log, history) = with_store(&url, async |s| {
        s.sessions.verify_log("chat-2").await.unwrap();
        (
            s.sessions.read_log("chat-2", None, 10).await.unwrap().len(),
            s.releases
                .history("planner-canary", None, 10)
                .await
                .unwrap()
                .len(),
        )
    })
    .await;
    assert_eq!((log, history), (4, 5));

    let err = fails(&stowage(&["fork-session", &url, "chat-1", "chat-2"]), 1);
    assert!(err.contains("already_exists"), "{err}");
    let err = fails(&stowage(&["fork-release", &url, "nope", "nope-2"]), 1);
    assert!(err.contains("not_found"), "{err}");
    fails(&stowage(&["fork-session", &url, "chat-1"]), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_reads_the_indexes_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    with_store(&url, async |s| populate(s).await).await;
    let doc = json_doc(&ok(&stowage(&["stats", &url, "--json"])));
    let expect = [
        ("blobs", 3),
        ("runs", 3),
        ("run_events", 6),
        ("sessions", 3),
        ("log_entries", 5),
        ("release_names", 2),
        ("release_records", 6),
        ("supersessions", 1),
    ];
    for (field, n) in expect {
        assert_eq!(doc[field], n, "{field} in {doc}");
    }
    assert!(
        doc["blob_bytes"].as_u64().unwrap() >= BIG_BLOB as u64,
        "{doc}"
    );
    assert!(doc["stored_bytes"].as_u64().unwrap() > doc["blob_bytes"].as_u64().unwrap());
    let human = ok(&stowage(&["stats", &url]));
    assert!(human.starts_with("STORE"), "{human}");
    assert!(
        human.contains("6 events") && human.contains("6 records") && human.contains("total"),
        "{human}"
    );
}

/// The same commands through the SQLite backend: prune, gc beside a pin,
/// stats.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_commands_work_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let (kept, pinned) = with_store(&url, async |s| {
        run(s, "a", 2, Some(OLD)).await;
        let kept = run(s, "a", 3, Some(NEW)).await;
        s.cas.put(Bytes::from_static(b"loose")).await.unwrap();
        let pinned = s.cas.put(Bytes::from_static(b"pinned")).await.unwrap();
        (kept, pinned)
    })
    .await;
    let pruned = json_doc(&ok(&stowage(&[
        "prune-runs",
        &url,
        "--finished-before",
        "2020-01-01T00:00:00Z",
        "--json",
    ])));
    assert_eq!(pruned["deleted"], 1, "{pruned}");
    assert_eq!(pruned["events"], 2, "{pruned}");
    assert_eq!(
        with_store(&url, async |s| run_ids(s).await).await,
        vec![kept]
    );
    ok(&stowage(&["pin", &url, &pinned.to_string(), "keep"]));
    std::thread::sleep(std::time::Duration::from_millis(5));
    let gc = json_doc(&ok(&stowage(&["gc", &url, "--grace", "0s", "--json"])));
    assert_eq!(gc["deleted"], 1, "{gc}");
    let stats = json_doc(&ok(&stowage(&["stats", &url, "--json"])));
    assert_eq!(stats["runs"], 1, "{stats}");
    assert_eq!(stats["run_events"], 3, "{stats}");
    // The spec digests of the runs are not blobs here: only the pinned one is left.
    assert_eq!(stats["blobs"], 1, "{stats}");
}
