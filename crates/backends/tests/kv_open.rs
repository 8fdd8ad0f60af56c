//! Opening the RocksDB and sled backends by URL through the public API.
#![cfg(any(feature = "rocksdb", feature = "sled"))]

use bytes::Bytes;
use stowage_backends::open;
use stowage_core::ErrorKind;

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
        assert!(caps.durable && caps.streaming && !caps.shared);
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
