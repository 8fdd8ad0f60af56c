//! `stowage migrate` file → Redis → file with a parity report, and a
//! migration interrupted part-way then resumed. Needs Redis (see
//! `support/redis_server.rs`).
#![cfg(feature = "redis")]

mod support;

use support::redis_server::fresh_url;
use support::*;

async fn fingerprint_of(url: &str) -> stowage_cli::migrate::Fingerprint {
    with_store(url, async |s| {
        stowage_cli::migrate::fingerprint(s).await.unwrap()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_to_redis_to_file_keeps_parity() {
    let dir = tempfile::tempdir().unwrap();
    let src = file_url(&dir.path().join("src"));
    with_store(&src, async |s| populate(s).await).await;
    let redis = fresh_url("migrate");
    let back = file_url(&dir.path().join("back"));

    let there = ok(&stowage(&["migrate", &src, &redis]));
    assert!(there.contains("ok: all 12 entities match"), "{there}");
    let report = ok(&stowage(&["migrate", &redis, &back, "--json"]));
    let doc: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(doc["differences"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(doc["counts"][2], serde_json::json!(["runs", 3, 3]));

    let source_print = fingerprint_of(&src).await;
    assert_eq!(fingerprint_of(&redis).await, source_print);
    assert_eq!(fingerprint_of(&back).await, source_print);
    let v = ok(&stowage(&["verify", &redis]));
    assert!(v.contains("ok: no damage found"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_migration_resumes_and_a_differing_target_fails_parity() {
    let dir = tempfile::tempdir().unwrap();
    let src = file_url(&dir.path().join("src"));
    with_store(&src, async |s| populate(s).await).await;
    let full = dir.path().join("full.jsonl");
    ok(&stowage(&["export", &src, full.to_str().unwrap()]));
    let text = std::fs::read_to_string(&full).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    let cut = 1 + nanos % (lines.len() - 2);
    println!("interrupted after line {cut} of {}", lines.len());
    // The interruption: the first part of the copy landed, then it stopped.
    let redis = fresh_url("resume");
    let part = dir.path().join("part.jsonl");
    std::fs::write(&part, lines[..cut].join("\n")).unwrap();
    fails(&stowage(&["import", &redis, part.to_str().unwrap()]), 1);
    // Resuming is running the migration again.
    let out = ok(&stowage(&["migrate", &src, &redis]));
    assert!(
        out.contains("ok: all 12 entities match"),
        "cut {cut}: {out}"
    );
    assert_eq!(fingerprint_of(&redis).await, fingerprint_of(&src).await);

    // A target with an extra entity fails parity with exit 3, naming it.
    with_store(&redis, async |s| {
        s.cas
            .put(bytes::Bytes::from_static(b"extra"))
            .await
            .unwrap();
    })
    .await;
    let out = stowage(&["migrate", &src, &redis]);
    fails(&out, 3);
    let extra = stowage_core::Digest::of(b"extra");
    let report = stdout(&out);
    assert!(report.contains("1 entities differ:"), "{report}");
    assert!(report.contains(&format!("blob {extra}")), "{report}");
}
