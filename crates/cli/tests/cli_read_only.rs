//! Commands that only read a store — `inspect`, `verify`, `stats`,
//! `referrers`, `export`, `migrate`'s source and every `--dry-run` — change
//! nothing in it: a `file:` store is opened with `mode=read_only`.

mod support;

use std::path::Path;

use support::*;

/// The store's files, names and sizes.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Before, every command opened read-write: the lock file was written and
/// closing checkpointed (a new `.ckp`), so a dry run or a `verify` of a
/// backup changed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_commands_and_dry_runs_leave_the_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let populated = with_store(&file_url(dir.path()), async |s| populate(s).await).await;
    // No `checkpoint_interval=0`: a read-write close would checkpoint.
    let url = format!("file://{}", dir.path().display());
    let blob = populated.big_blob.to_string();
    let out = tempfile::tempdir().unwrap();
    let exported = out.path().join("out.jsonl");
    let migrated = out.path().join("copy");
    let target = format!("file://{}", migrated.display());
    let before = listing(dir.path());
    for args in [
        vec!["verify", url.as_str()],
        vec!["stats", url.as_str()],
        vec!["stats", url.as_str(), "--scan"],
        vec!["inspect", url.as_str(), "runs"],
        vec!["inspect", url.as_str(), "releases", "planner"],
        vec!["referrers", url.as_str(), blob.as_str()],
        vec!["export", url.as_str(), exported.to_str().unwrap()],
        vec!["migrate", url.as_str(), target.as_str()],
        vec![
            "prune-runs",
            url.as_str(),
            "--status",
            "failed",
            "--dry-run",
        ],
    ] {
        ok(&stowage(&args));
        assert_eq!(
            listing(dir.path()),
            before,
            "{args:?} changed the store's files"
        );
    }
    // A command that writes still does.
    ok(&stowage(&["prune-runs", &url, "--status", "failed"]));
    assert_ne!(listing(dir.path()), before);
}

/// `salvage=true` asks for a repair, which writes: such a URL is opened
/// for writing even by a read command, as the file engine refuses
/// `salvage` with `mode=read_only`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_command_with_salvage_opens_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    with_store(&file_url(dir.path()), async |s| populate(s).await).await;
    let url = format!("file://{}?salvage=true", dir.path().display());
    ok(&stowage(&["verify", &url]));
}
