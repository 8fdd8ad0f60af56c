//! The engine's own promises, below the stores: group commit isolates a
//! failing (or panicking) job, a queued job runs even when its caller's
//! future is dropped, and a read job sees one snapshot.

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use stowage_core::engine::{Direction, Engine, Scope, Table, Txn};
use stowage_core::ErrorKind;

use super::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn engine(dir: &tempfile::TempDir) -> Arc<SqliteEngine> {
    SqliteEngine::open(SqliteOptions::new(dir.path().join("engine.db")))
        .await
        .expect("open")
}

fn key(i: u32) -> Vec<u8> {
    i.to_be_bytes().to_vec()
}

async fn get(engine: &SqliteEngine, table: Table, k: Vec<u8>) -> Option<Vec<u8>> {
    let (tx, rx) = std_mpsc::channel();
    engine
        .read(Box::new(move |r| {
            let _ = tx.send(r.get(table, &k)?);
            Ok(())
        }))
        .await
        .expect("read");
    rx.recv().expect("read result")
}

#[test]
fn a_failing_or_panicking_job_is_rolled_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let engine = engine(&dir).await;
        let mut calls = Vec::new();
        for i in 0..120u32 {
            let engine = Arc::clone(&engine);
            calls.push(tokio::spawn(async move {
                let job = move |txn: &mut dyn Txn| {
                    txn.put(Table::Meta, key(i), b"v".to_vec())?;
                    match i % 3 {
                        0 => Ok(()),
                        1 => Err(stowage_core::Error::conflict(format!("job {i} refuses"))),
                        _ if i % 2 == 0 => panic!("job {i} panics"),
                        _ => Ok(()),
                    }
                };
                let result = match engine.write(Scope::Unshared, Box::new(job)).await {
                    Ok(durable) => durable.wait().await,
                    Err(e) => Err(e),
                };
                (i, result)
            }));
        }
        for call in calls {
            let (i, result) = call.await.unwrap();
            let stored = get(&engine, Table::Meta, key(i)).await;
            match i % 3 {
                1 => {
                    assert_eq!(result.unwrap_err().kind(), ErrorKind::Conflict);
                    assert_eq!(stored, None, "job {i} failed; its write must be gone");
                }
                2 if i % 2 == 0 => {
                    assert_eq!(result.unwrap_err().kind(), ErrorKind::Internal);
                    assert_eq!(stored, None, "job {i} panicked; its write must be gone");
                }
                _ => {
                    result.unwrap();
                    assert_eq!(stored.as_deref(), Some(&b"v"[..]), "job {i}");
                }
            }
        }
        // The writer thread survived the panics.
        engine
            .write(
                Scope::Unshared,
                Box::new(|txn| txn.put(Table::Meta, key(999), vec![])),
            )
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
    });
}

#[test]
fn a_queued_job_runs_even_if_its_future_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let engine = engine(&dir).await;
        for i in 0..20u32 {
            // Never polled.
            let future = engine.write(
                Scope::Unshared,
                Box::new(move |txn| txn.put(Table::Runs, key(i), b"ran".to_vec())),
            );
            drop(future);
        }
        // A later job is behind them in the queue.
        engine
            .write(Scope::Unshared, Box::new(|_| Ok(())))
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        for i in 0..20u32 {
            assert_eq!(
                get(&engine, Table::Runs, key(i)).await.as_deref(),
                Some(&b"ran"[..])
            );
        }
    });
}

#[test]
fn a_read_job_sees_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let engine = engine(&dir).await;
        let both = |v: &'static [u8]| {
            Box::new(move |txn: &mut dyn Txn| {
                txn.put(Table::Sessions, b"a".to_vec(), v.to_vec())?;
                txn.put(Table::Sessions, b"b".to_vec(), v.to_vec())
            })
        };
        engine
            .write(Scope::Unshared, both(b"old"))
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        let (first_read, read_done) = std_mpsc::channel();
        let (write_done, wait_write) = std_mpsc::channel::<()>();
        let reader = {
            let engine = Arc::clone(&engine);
            tokio::spawn(async move {
                let (tx, rx) = std_mpsc::channel();
                engine
                    .read(Box::new(move |r| {
                        let a = r.get(Table::Sessions, b"a")?;
                        let _ = first_read.send(());
                        // The write below commits while this job runs.
                        let _ = wait_write.recv_timeout(Duration::from_secs(10));
                        let b = r.scan(Table::Sessions, b"b", None, Direction::Forward, 10)?;
                        let _ = tx.send((a, b));
                        Ok(())
                    }))
                    .await
                    .unwrap();
                rx.recv().unwrap()
            })
        };
        tokio::task::spawn_blocking(move || read_done.recv().unwrap())
            .await
            .unwrap();
        engine
            .write(Scope::Unshared, both(b"new"))
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        write_done.send(()).unwrap();
        let (a, b) = reader.await.unwrap();
        assert_eq!(a.as_deref(), Some(&b"old"[..]));
        assert_eq!(b, vec![(b"b".to_vec(), b"old".to_vec())]);
        assert_eq!(
            get(&engine, Table::Sessions, b"b".to_vec())
                .await
                .as_deref(),
            Some(&b"new"[..])
        );
    });
}

#[test]
fn scans_bound_order_and_limit_like_the_seam_says() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let engine = engine(&dir).await;
        engine
            .write(
                Scope::Unshared,
                Box::new(|txn| {
                    for k in [
                        &b""[..],
                        b"\x00",
                        b"a",
                        b"a\x00",
                        b"a\xff",
                        b"b",
                        b"\xff\xff",
                    ] {
                        txn.put(Table::Blobs, k.to_vec(), k.to_vec())?;
                    }
                    txn.delete_range(Table::Blobs, b"b".to_vec(), b"c".to_vec())?;
                    txn.delete(Table::Blobs, b"\x00".to_vec())
                }),
            )
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        let (tx, rx) = std_mpsc::channel();
        engine
            .read(Box::new(move |r| {
                let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<Vec<u8>> {
                    v.into_iter().map(|(k, _)| k).collect()
                };
                let all = keys(r.scan(Table::Blobs, b"", None, Direction::Forward, usize::MAX)?);
                let a = keys(r.scan(Table::Blobs, b"a", Some(b"b"), Direction::Reverse, 2)?);
                let none = r.scan(Table::Blobs, b"b", Some(b"a"), Direction::Forward, 10)?;
                let zero = r.scan(Table::Blobs, b"", None, Direction::Forward, 0)?;
                let other = r.scan(Table::Runs, b"", None, Direction::Forward, 10)?;
                let _ = tx.send((all, a, none.len() + zero.len() + other.len()));
                Ok(())
            }))
            .await
            .unwrap();
        let (all, a, empty) = rx.recv().unwrap();
        let want: Vec<Vec<u8>> = [&b""[..], b"a", b"a\x00", b"a\xff", b"\xff\xff"]
            .iter()
            .map(|k| k.to_vec())
            .collect();
        assert_eq!(all, want);
        assert_eq!(a, vec![b"a\xff".to_vec(), b"a\x00".to_vec()]);
        assert_eq!(empty, 0);
    });
}

/// `close` releases everything the engine holds, a `compact` running on a
/// connection of its own included: when `close` returns, that compact has
/// ended (it finished first, or it was refused as closed).
#[test]
fn close_waits_for_a_running_compact() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let engine = engine(&dir).await;
        // Enough data for VACUUM to take a while.
        for batch in 0..16u32 {
            engine
                .write(
                    Scope::Unshared,
                    Box::new(move |txn: &mut dyn Txn| {
                        for i in 0..64 {
                            txn.put(Table::Blobs, key(batch * 64 + i), vec![7; 16 * 1024])?;
                        }
                        Ok(())
                    }),
                )
                .await
                .expect("write")
                .wait()
                .await
                .expect("durable");
        }
        let compacting = tokio::spawn({
            let engine = Arc::clone(&engine);
            async move { engine.compact().await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        engine.close().await.expect("close");
        assert!(
            compacting.is_finished(),
            "close returned while a compact still held a connection"
        );
        match compacting.await.expect("compact task") {
            Ok(()) => {}
            Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e}"),
        }
    });
}
