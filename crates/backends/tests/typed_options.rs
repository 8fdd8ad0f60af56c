//! Every backend opens from a typed options struct as well as from a URL,
//! and the URL parses into that struct. Redis: `redis_options.rs` (it
//! starts a server, which must not run beside close-and-reopen tests).

#[cfg(any(feature = "file", feature = "sled", feature = "rocksdb"))]
use bytes::Bytes;
use stowage_backends::options::StoreOptions;
#[cfg(any(feature = "file", feature = "sled", feature = "rocksdb"))]
use stowage_core::Durability;
use stowage_core::ErrorKind;

#[cfg(feature = "memory")]
#[test]
fn memory_urls_parse_into_the_memory_variant() {
    assert_eq!(
        StoreOptions::parse("memory://").unwrap(),
        StoreOptions::Memory
    );
    let err = StoreOptions::parse("memory://x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[cfg(feature = "file")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_options_equal_their_url_and_open_the_same_store() {
    use stowage_backends::options::FileOptions;
    let dir = tempfile::tempdir().unwrap();
    let mut typed = FileOptions::new(dir.path().join("store"));
    typed.durability = Durability::Buffered;
    typed.segment_size = 1 << 20;
    typed.max_record_size = 1 << 20;
    typed.checkpoint_interval = 0;
    typed.salvage = true;
    typed.max_blob_size = 1000;
    let url = format!(
        "file://{}/store?durability=buffered&segment_size=1048576&max_record_size=1048576\
         &checkpoint_interval=0&salvage=true&max_blob_size=1000",
        dir.path().display()
    );
    assert_eq!(FileOptions::from_url(&url).unwrap(), typed);
    assert_eq!(
        StoreOptions::parse(&url).unwrap(),
        StoreOptions::File(typed.clone())
    );

    let stores = typed.clone().open().await.unwrap();
    assert_eq!(stores.capabilities.max_blob_size, 1000);
    let d = stores.cas.put(Bytes::from_static(b"typed")).await.unwrap();
    stores.close().await.unwrap();
    let stores = stowage_backends::open(&url).await.unwrap();
    assert_eq!(&stores.cas.get(&d).await.unwrap()[..], b"typed");
    stores.close().await.unwrap();

    let mut bad = typed;
    bad.segment_size = 12;
    let err = bad.open().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("segment_size"), "{err}");
    let err = FileOptions::from_url("memory://").unwrap_err();
    assert!(err.message().contains("not a file: URL"), "{err}");
}

#[cfg(feature = "file")]
#[tokio::test]
async fn file_options_resolve_a_relative_directory() {
    use stowage_backends::options::FileOptions;
    // Under the workspace's (ignored) target directory.
    let rel = format!("../../target/typed-options-{}", std::process::id());
    let typed = FileOptions::from_url(&format!("file:{rel}")).unwrap();
    assert_eq!(typed.dir, std::env::current_dir().unwrap().join(&rel));
    let stores = FileOptions::new(&rel).open().await.unwrap();
    stores.close().await.unwrap();
    assert!(typed.dir.is_dir());
    std::fs::remove_dir_all(&typed.dir).unwrap();
}

#[cfg(feature = "sled")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_options_equal_their_url_and_open_the_same_store() {
    use stowage_backends::options::SledOptions;
    let dir = tempfile::tempdir().unwrap();
    let mut typed = SledOptions::new(dir.path().join("store"));
    typed.max_blob_size = 77;
    let url = format!("sled://{}/store?max_blob_size=77", dir.path().display());
    assert_eq!(SledOptions::from_url(&url).unwrap(), typed);
    let stores = typed.clone().open().await.unwrap();
    assert_eq!(stores.capabilities.max_blob_size, 77);
    let d = stores.cas.put(Bytes::from_static(b"typed")).await.unwrap();
    stores.close().await.unwrap();
    let stores = stowage_backends::open(&url).await.unwrap();
    assert_eq!(&stores.cas.get(&d).await.unwrap()[..], b"typed");
    stores.close().await.unwrap();
    let mut buffered = typed;
    buffered.durability = Durability::Buffered;
    let err = buffered.open().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
}

#[cfg(feature = "rocksdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksdb_options_equal_their_url_and_open_the_same_store() {
    use stowage_backends::options::RocksDbOptions;
    let dir = tempfile::tempdir().unwrap();
    let mut typed = RocksDbOptions::new(dir.path().join("store"));
    typed.durability = Durability::Buffered;
    let url = format!(
        "rocksdb://{}/store?durability=buffered",
        dir.path().display()
    );
    assert_eq!(RocksDbOptions::from_url(&url).unwrap(), typed);
    let stores = typed.open().await.unwrap();
    let d = stores.cas.put(Bytes::from_static(b"typed")).await.unwrap();
    stores.close().await.unwrap();
    let stores = stowage_backends::open(&url).await.unwrap();
    assert_eq!(&stores.cas.get(&d).await.unwrap()[..], b"typed");
}
