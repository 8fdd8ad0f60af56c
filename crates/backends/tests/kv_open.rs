//! Opening the RocksDB and sled backends by URL through the public API.
#![cfg(any(feature = "rocksdb", feature = "sled"))]

#[path = "support/reopen.rs"]
mod reopen;

use bytes::Bytes;
use stowage_backends::open;
use stowage_core::{DurabilityLevel, ErrorKind};

fn schemes() -> Vec<&'static str> {
    [
        ("rocksdb", cfg!(feature = "rocksdb")),
        ("sled", cfg!(feature = "sled")),
    ]
    .into_iter()
    .filter_map(|(scheme, on)| on.then_some(scheme))
    .collect()
}

#[tokio::test]
async fn bad_urls_are_invalid_input() {
    for scheme in schemes() {
        for url in [
            format!("{scheme}:relative/dir"),
            format!("{scheme}://"),
            format!("{scheme}:///"),
            format!("{scheme}://somehost/dir"),
            format!("{scheme}:///tmp/x?durability=sometimes"),
            format!("{scheme}:///tmp/x?unknown=1"),
        ] {
            let err = open(&url).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url}: {err}");
        }
    }
}

#[tokio::test]
async fn stores_open_by_url_and_declare_their_capabilities() {
    for scheme in schemes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "{scheme}://{}/store?max_blob_size=100",
            dir.path().display()
        );
        let stores = open(&url).await.unwrap();
        let caps = &stores.capabilities;
        assert_eq!(caps.backend, scheme);
        assert!(caps.survives_kill() && caps.streaming && !caps.shared);
        // sled 0.34's flush never calls fsync: kill -9 only.
        let level = match scheme {
            "sled" => DurabilityLevel::ProcessCrash,
            _ => DurabilityLevel::PowerLoss,
        };
        assert_eq!(caps.durability, level, "{scheme}");
        assert_eq!(caps.max_blob_size, 100);
        let err = stores.cas.put(Bytes::from(vec![0; 101])).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let d = stores.cas.put(Bytes::from(vec![0; 100])).await.unwrap();
        assert_eq!(stores.cas.stat(&d).await.unwrap().size, 100);
    }
}

#[cfg(feature = "sled")]
#[tokio::test]
async fn sled_refuses_buffered_durability() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sled://{}?durability=buffered", dir.path().display());
    let err = open(&url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
}

#[cfg(feature = "rocksdb")]
#[tokio::test]
async fn rocksdb_buffered_durability_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("rocksdb://{}?durability=buffered", dir.path().display());
    let stores = open(&url).await.unwrap();
    let d = stores.cas.put(Bytes::from_static(b"x")).await.unwrap();
    drop(stores);
    let stores = open(&url).await.unwrap();
    assert_eq!(&stores.cas.get(&d).await.unwrap()[..], b"x");
}

/// `?require=` refuses a store whose durability level is weaker, before
/// anything is created, naming what the backend offers.
#[tokio::test]
async fn require_refuses_a_weaker_durability_level_before_creating_anything() {
    for scheme in schemes() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let url = |query: &str| format!("{scheme}://{}?{query}", store.display());
        let offered = if scheme == "sled" {
            "process_crash"
        } else {
            "power_loss"
        };
        // The refused opens first: a store opened by an accepted one
        // would exist already.
        for query in [
            "durability=buffered&require=power_loss",
            "require=power_loss",
        ] {
            if scheme == "sled" && query.contains("buffered") {
                continue; // sled refuses buffered on its own
            }
            let weaker = scheme == "sled" || query.contains("buffered");
            match open(&url(query)).await {
                Err(e) if weaker => {
                    assert_eq!(e.kind(), ErrorKind::Unsupported, "{scheme} {query}: {e}");
                    let offered = if query.contains("buffered") {
                        "process_crash"
                    } else {
                        offered
                    };
                    assert!(
                        e.message().contains(&format!("durability {offered}")),
                        "{e}"
                    );
                    assert!(
                        !store.exists(),
                        "{scheme} {query}: a refused open created the store"
                    );
                }
                Ok(s) if !weaker => assert_eq!(s.capabilities.durability.name(), offered),
                other => panic!("{scheme} {query}: {other:?}"),
            }
        }
        let s = open(&url("require=process_crash")).await.unwrap();
        assert!(s.capabilities.survives_kill());
    }
}

/// As for the file engine: sled's lock belongs to the open file, which a
/// child being spawned shares until it execs, so a store this process has
/// just closed must still reopen at once (its own lock is retried briefly).
#[cfg(feature = "sled")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_sled_store_reopens_while_the_process_spawns_children() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sled://{}/store", dir.path().display());
    reopen::reopens_while_spawning(&url, 50).await;
}
