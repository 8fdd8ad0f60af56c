//! A tour of all five stowage stores on the embedded default backend: the
//! file engine, in a fresh directory under the system temp dir.
//!
//! ```text
//! cargo run -p stowage-examples --example quickstart              # embedded default
//! cargo run -p stowage-examples --example quickstart -- memory://  # any store URL
//! ```

use bytes::Bytes;
use serde_json::json;
use stowage::{
    Digest, LogKind, NewEvent, NewLogEntry, ReleaseMetadata, Resolution, RunMetadata, RunSummary,
    SigningKey, Supersession, SupersessionCursor, SupersessionDraft, SupersessionKind, Timestamp,
};

/// The embedded default when no URL is given: a new file store in the
/// system temp dir (so the tour can run again and again).
fn default_url() -> String {
    let dir = std::env::temp_dir().join(format!(
        "stowage-quickstart-{}-{}",
        std::process::id(),
        Timestamp::now().as_millis()
    ));
    format!("file://{}", dir.display())
}

#[tokio::main]
async fn main() -> stowage::Result<()> {
    let url = std::env::args().nth(1).unwrap_or_else(default_url);
    let stores = stowage::open(&url).await?;
    let caps = &stores.capabilities;
    println!(
        "opened {url} (backend {}, durability: {}, shared: {})\n",
        caps.backend, caps.durability, caps.shared
    );

    // 1. Content-addressed blobs: store a prompt, get its SHA-256 back.
    println!("1. CasStore: content-addressed blobs");
    let prompt = Bytes::from_static(b"You are a careful planning agent.");
    let spec = stores.cas.put(prompt.clone()).await?;
    println!("   put {} bytes -> digest {}", prompt.len(), spec.short());
    let again = stores.cas.put(prompt).await?;
    println!(
        "   put the same bytes again -> same digest: {}",
        again == spec
    );
    let bytes = stores.cas.get(&spec).await?;
    println!(
        "   get {} -> {:?}\n",
        spec.short(),
        String::from_utf8_lossy(&bytes)
    );

    // 2. A run: a record plus an append-only, hash-chained event log.
    println!("2. RunLedger: a run and its events");
    let run = stores
        .runs
        .create_run(spec, RunMetadata::new("planner"))
        .await?;
    println!("   created run {run}");
    for (kind, payload) in [
        ("thought", json!({"text": "look up the weather"})),
        ("tool_call", json!({"tool": "weather", "city": "Oslo"})),
        ("tool_result", json!({"celsius": -3})),
    ] {
        let event = stores
            .runs
            .append_event(run, NewEvent::new(kind, payload))
            .await?;
        println!(
            "   event #{} {:<11} hash {}",
            event.seq,
            event.kind,
            event.hash.short()
        );
    }
    let done = stores
        .runs
        .complete_run(run, RunSummary::new("answered the user"))
        .await?;
    println!("   run is now {}", done.status);
    let report = stores.runs.verify_run(run).await?;
    println!("   verify_run: {} events, chain intact\n", report.len);

    // 3. Releases: named pointers with history and rollback.
    println!("3. ReleaseRegistry: promote and roll back");
    let v2 = stores
        .cas
        .put(Bytes::from_static(b"You are a bold planning agent."))
        .await?;
    stores
        .releases
        .promote("planner", spec, ReleaseMetadata::new("v1", "ci"), None)
        .await?;
    stores
        .releases
        .promote("planner", v2, ReleaseMetadata::new("v2", "ci"), None)
        .await?;
    let current = stores.releases.current("planner").await?;
    println!(
        "   planner is at #{} ({})",
        current.seq, current.metadata.version_label
    );
    let back = stores.releases.rollback("planner", "oncall").await?;
    println!(
        "   rollback by {} -> #{} restores #{} ({})\n",
        back.metadata.promoted_by,
        back.seq,
        back.restored.unwrap_or_default(),
        back.metadata.version_label
    );

    // 4. Sessions: a record plus a replayable message log.
    println!("4. SessionStore: a session and its log");
    stores
        .sessions
        .create_session("chat-42", json!({"user": "ada"}))
        .await?;
    let mut hello = NewLogEntry::new(LogKind::Incoming, "ada", "text", "hello!");
    hello.idempotency_key = Some("msg-1".into());
    let first = stores.sessions.append_log("chat-42", hello.clone()).await?;
    let retried = stores.sessions.append_log("chat-42", hello).await?;
    println!(
        "   appended #{}; the retried message came back as #{} (stored once)",
        first.seq, retried.seq
    );
    stores
        .sessions
        .append_log(
            "chat-42",
            NewLogEntry::new(LogKind::Internal, "planner", "text", "hi Ada"),
        )
        .await?;
    for entry in stores.sessions.read_log("chat-42", None, 10).await? {
        println!(
            "   replay #{} {}: {}",
            entry.seq,
            entry.sender,
            String::from_utf8_lossy(&entry.payload)
        );
    }
    println!();

    // 5. Supersessions: signed records saying "this assertion is no longer valid".
    println!("5. SupersessionStore: signed supersessions");
    let key = SigningKey::from_bytes(&[42; 32]);
    let (old, new) = (Digest::of(b"Oslo is warm"), Digest::of(b"Oslo is cold"));
    let record = Supersession::sign(
        &key,
        SupersessionDraft::new(
            old,
            Some(new),
            SupersessionKind::Correction,
            "the tool said -3 C",
            Timestamp::now(),
        ),
    );
    stores.supersessions.put(record).await?;
    // This agent's records, newest first, one page at a time: the cursor is
    // the position of the last record seen, so paging stays exact while
    // the agent keeps writing.
    let agent = stowage::AgentKey::of(&key);
    let mut after: Option<SupersessionCursor> = None;
    loop {
        let page = stores
            .supersessions
            .by_agent(&agent, Timestamp::ZERO, None, after, 100)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(SupersessionCursor::of(last));
        println!("   by_agent page: {} record(s)", page.len());
    }
    println!(
        "   all supersessions: {}",
        stores.supersessions.list(None, 100).await?.len()
    );
    println!(
        "   {} superseded: {}",
        old.short(),
        stores.supersessions.is_superseded(&old).await?
    );
    if let Resolution::Current { hash, hops } = stores.supersessions.resolve(&old).await? {
        println!(
            "   resolve({}) -> {} after {hops} hop(s)",
            old.short(),
            hash.short()
        );
    }
    // Flush and release the store (its lock file) now, reporting errors,
    // rather than in `Drop`.
    stores.close().await?;
    println!("\ndone.");
    Ok(())
}
