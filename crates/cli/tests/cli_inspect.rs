//! `stowage inspect` against real stores, through the built binary.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shows_every_store_as_tables_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    let p = with_store(&url, async |s| populate(s).await).await;

    let runs = ok(&stowage(&["inspect", &url, "runs"]));
    let lines: Vec<&str> = runs.lines().collect();
    assert!(lines[0].starts_with("RUN  "), "{runs}");
    assert!(
        lines[0].contains("AGENT") && lines[0].contains("STATUS"),
        "{runs}"
    );
    assert_eq!(lines.len(), 4, "header + 3 runs:\n{runs}");
    // Columns line up: every row has STATUS where the header has it.
    let col = lines[0].find("STATUS").unwrap();
    assert!(
        lines[1..].iter().all(|l| ["Running", "Completed", "Failed"]
            .iter()
            .any(|s| l[col..].starts_with(s))),
        "{runs}"
    );
    // Newest first.
    assert!(lines[1].contains("Failed"), "{runs}");

    let page = ok(&stowage(&[
        "inspect", &url, "runs", "--limit", "1", "--json",
    ]));
    let first: serde_json::Value = serde_json::from_str(page.trim()).unwrap();
    let after = first["id"].as_str().unwrap().to_owned();
    let next = ok(&stowage(&[
        "inspect", &url, "runs", "--after", &after, "--json",
    ]));
    assert_eq!(next.lines().count(), 2, "{next}");
    assert!(!next.contains(&after));

    let run = ok(&stowage(&[
        "inspect",
        &url,
        "run",
        &p.completed_run.to_string(),
    ]));
    assert!(run.contains("Completed") && run.contains("abc123"), "{run}");
    assert!(
        run.contains("TAMPERME4") && run.contains("1970-01-01 00:00:01.234Z"),
        "{run}"
    );
    let events = ok(&stowage(&[
        "inspect",
        &url,
        "run",
        &p.completed_run.to_string(),
        "--after",
        "2",
        "--json",
    ]));
    let docs: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 3, "run + events 3 and 4");
    assert_eq!(docs[1]["event"]["seq"], 3);

    let sessions = ok(&stowage(&["inspect", &url, "sessions"]));
    assert!(
        sessions.contains("chat-1") && sessions.contains("Resolved"),
        "{sessions}"
    );
    let chat = ok(&stowage(&["inspect", &url, "session", "chat-1", "--json"]));
    assert_eq!(chat.lines().count(), 5, "{chat}");
    assert!(chat
        .lines()
        .nth(2)
        .unwrap()
        .contains("\"idempotency_key\":\"msg-1\""));

    let names = ok(&stowage(&["inspect", &url, "releases"]));
    assert!(
        names.contains("planner") && names.contains("router/éü 🚀"),
        "{names}"
    );
    let history = ok(&stowage(&["inspect", &url, "releases", "planner"]));
    assert!(
        history.lines().nth(1).unwrap().starts_with("4 "),
        "{history}"
    );
    assert!(
        history.contains("rollback to #2") && history.contains("first"),
        "{history}"
    );

    let blobs = ok(&stowage(&["inspect", &url, "blobs", "--json"]));
    assert_eq!(blobs.lines().count(), 3);
    assert!(blobs.contains(&format!(
        "{{\"digest\":\"{}\",\"size\":{BIG_BLOB}}}",
        p.big_blob
    )));
    let human = ok(&stowage(&["inspect", &url, "blobs"]));
    assert!(human.contains("195.3 KiB"), "{human}");

    let by_agent = ok(&stowage(&[
        "inspect",
        &url,
        "supersessions",
        "--agent",
        &p.agent.to_string(),
    ]));
    assert!(
        by_agent.contains("Correction") && by_agent.contains("fixed a typo"),
        "{by_agent}"
    );
    // Every supersession, ascending by target.
    let all = ok(&stowage(&["inspect", &url, "supersessions"]));
    assert_eq!(all, by_agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_memory_and_errors_are_one_line() {
    assert_eq!(
        ok(&stowage(&["inspect", "memory://", "runs"])),
        "(no runs)\n"
    );
    assert_eq!(
        ok(&stowage(&["inspect", "memory://", "blobs", "--json"])),
        ""
    );
    let err = fails(&stowage(&["inspect", "ftp://x", "runs"]), 1);
    assert!(err.starts_with("error: invalid_input: "), "{err}");
    let err = fails(&stowage(&["inspect", "memory://", "run", "nope"]), 1);
    assert!(err.contains("not a UUID"), "{err}");
    let missing = "0193c1d2-7a40-7c3e-9a51-3f0e6c7b1a22";
    let err = fails(&stowage(&["inspect", "memory://", "run", missing]), 1);
    assert!(
        err.starts_with("error: not_found: ") && err.contains(missing),
        "{err}"
    );
    let err = fails(
        &stowage(&["inspect", "memory://", "blobs", "--after", "zz"]),
        1,
    );
    assert!(err.starts_with("error: invalid_input: "), "{err}");
    // Usage errors are clap's, exit 2.
    fails(&stowage(&["inspect"]), 2);
    let help = ok(&stowage(&["inspect", "--help"]));
    assert!(
        help.contains("Examples:") && help.contains("stowage inspect file:///"),
        "{help}"
    );
}
