//! Checks for [`CasStore`](stowage_core::CasStore) (SPEC §3).

use bytes::Bytes;
use futures::StreamExt;
use stowage_core::validate::MAX_PAGE;
use stowage_core::{BlobReader, Digest, ErrorKind};
use tokio::io::AsyncReadExt;

use crate::harness::Harness;
use crate::util::{assert_unchanged, expect_kind, ok, open, race, skipped, snapshot};

/// Largest `max_blob_size` for which the oversize check allocates a blob
/// one byte larger (rejected before hashing, so cheap).
const MAX_ALLOCATED_BLOB: u64 = 256 * 1024 * 1024 + 1;
/// Largest `max_blob_size` for which the check also stores a blob of
/// exactly that size (hashing it in a debug build takes time).
const MAX_EXACT_BLOB: u64 = 8 * 1024 * 1024;

/// `put` returns the SHA-256; `get`, `contains`, `stat` and `verify` agree.
pub async fn put_get_round_trip(h: &dyn Harness) {
    let s = open(h).await;
    let bytes = Bytes::from_static(b"prompt v1");
    let d = ok(s.cas.put(bytes.clone()).await, "cas.put");
    assert_eq!(
        d,
        Digest::of(&bytes),
        "cas.put must return the SHA-256 of the bytes"
    );
    assert_eq!(
        ok(s.cas.get(&d).await, "cas.get"),
        bytes,
        "cas.get must return the bytes put"
    );
    assert!(
        ok(s.cas.contains(&d).await, "cas.contains"),
        "contains after put"
    );
    assert_eq!(ok(s.cas.stat(&d).await, "cas.stat").size, 9, "stat size");
    ok(s.cas.verify(&d).await, "cas.verify of an intact blob");
}

/// The empty blob is valid and has the well-known SHA-256.
pub async fn empty_blob(h: &dyn Harness) {
    let s = open(h).await;
    let d = ok(s.cas.put(Bytes::new()).await, "cas.put of the empty blob");
    assert_eq!(d, Digest::of(b""), "the empty blob's digest");
    assert!(ok(s.cas.get(&d).await, "cas.get of the empty blob").is_empty());
    assert_eq!(ok(s.cas.stat(&d).await, "stat").size, 0, "empty blob size");
    ok(s.cas.verify(&d).await, "verify of the empty blob");
    assert_eq!(
        ok(s.cas.list(None, 10).await, "list"),
        vec![d],
        "list holds the empty blob"
    );
}

/// Every byte value round-trips, and sizes are reported exactly.
pub async fn binary_content_and_sizes(h: &dyn Harness) {
    let s = open(h).await;
    let all: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    for blob in [vec![0u8], vec![0xff; 3], all] {
        let d = ok(s.cas.put(Bytes::from(blob.clone())).await, "put");
        assert_eq!(
            ok(s.cas.get(&d).await, "get").as_ref(),
            &blob[..],
            "binary round trip"
        );
        assert_eq!(
            ok(s.cas.stat(&d).await, "stat").size,
            blob.len() as u64,
            "stat size"
        );
    }
}

/// Storing the same bytes twice stores them once.
pub async fn same_bytes_twice(h: &dyn Harness) {
    let s = open(h).await;
    let a = ok(s.cas.put(Bytes::from_static(b"twice")).await, "first put");
    let b = ok(s.cas.put(Bytes::from_static(b"twice")).await, "second put");
    assert_eq!(a, b, "same bytes, same digest");
    assert_eq!(
        ok(s.cas.list(None, 10).await, "list"),
        vec![a],
        "stored once"
    );
}

/// 32 concurrent puts of the same bytes all succeed with one digest, stored once.
pub async fn concurrent_identical_puts(h: &dyn Harness) {
    let s = open(h).await;
    let blob = Bytes::from(vec![7u8; 100_000]);
    let cas = s.cas.clone();
    let digests = race(32, |_| {
        let (cas, blob) = (cas.clone(), blob.clone());
        async move { cas.put(blob).await }
    })
    .await;
    for d in digests {
        assert_eq!(
            ok(d, "concurrent put"),
            Digest::of(&blob),
            "concurrent put digest"
        );
    }
    assert_eq!(
        ok(s.cas.list(None, 10).await, "list").len(),
        1,
        "stored once"
    );
    assert_eq!(
        ok(s.cas.get(&Digest::of(&blob)).await, "get"),
        blob,
        "intact after racing puts"
    );
}

/// Missing blobs: `get` (naming the digest), `stat`, `verify`, `get_stream` are `NotFound`; `contains` is false.
pub async fn missing_blob_not_found(h: &dyn Harness) {
    let s = open(h).await;
    let d = Digest::of(b"never stored");
    let err = expect_kind(
        s.cas.get(&d).await,
        ErrorKind::NotFound,
        "cas.get of a missing blob",
    );
    assert!(
        err.message().contains(d.short().as_str()),
        "the NotFound message names the blob ({}): {err}",
        d.short()
    );
    expect_kind(
        s.cas.stat(&d).await,
        ErrorKind::NotFound,
        "cas.stat of a missing blob",
    );
    expect_kind(
        s.cas.verify(&d).await,
        ErrorKind::NotFound,
        "cas.verify of a missing blob",
    );
    assert!(
        s.cas
            .get_stream(&d)
            .await
            .is_err_and(|e| e.kind() == ErrorKind::NotFound),
        "cas.get_stream of a missing blob must be NotFound"
    );
    assert!(
        !ok(s.cas.contains(&d).await, "contains"),
        "contains of a missing blob"
    );
}

/// `delete` is idempotent: true, then false; the blob is gone; it can be put again.
pub async fn delete_idempotent(h: &dyn Harness) {
    let s = open(h).await;
    let keep = ok(s.cas.put(Bytes::from_static(b"keep")).await, "put");
    let d = ok(s.cas.put(Bytes::from_static(b"gone")).await, "put");
    assert!(
        ok(s.cas.delete(&d).await, "delete"),
        "first delete returns true"
    );
    assert!(
        !ok(s.cas.delete(&d).await, "delete"),
        "second delete returns false"
    );
    assert!(
        !ok(s.cas.delete(&Digest::of(b"never")).await, "delete"),
        "deleting a never-stored blob returns false"
    );
    expect_kind(s.cas.get(&d).await, ErrorKind::NotFound, "get after delete");
    assert!(
        !ok(s.cas.contains(&d).await, "contains"),
        "contains after delete"
    );
    assert_eq!(
        ok(s.cas.list(None, 10).await, "list"),
        vec![keep],
        "only the other blob is left"
    );
    ok(
        s.cas.put(Bytes::from_static(b"gone")).await,
        "put again after delete",
    );
    assert_eq!(
        ok(s.cas.get(&d).await, "get").as_ref(),
        b"gone",
        "re-put blob reads back"
    );
}

/// `list` is ascending by digest; `limit` applies after ordering; `after` is exclusive.
pub async fn list_ascending_paginated(h: &dyn Harness) {
    let s = open(h).await;
    let mut all = Vec::new();
    for i in 0..25u32 {
        all.push(ok(
            s.cas.put(Bytes::from(i.to_be_bytes().to_vec())).await,
            "put",
        ));
    }
    all.sort();
    assert_eq!(
        ok(s.cas.list(None, MAX_PAGE).await, "list"),
        all,
        "ascending digest order"
    );
    assert_eq!(
        ok(s.cas.list(None, 3).await, "list"),
        all[..3],
        "limit takes the 3 smallest"
    );
    assert!(
        ok(s.cas.list(None, 0).await, "list").is_empty(),
        "limit 0 returns nothing"
    );
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = ok(s.cas.list(after.as_ref(), 7).await, "list page");
        assert!(page.len() <= 7, "a page is at most `limit` long");
        match page.last() {
            Some(last) => after = Some(*last),
            None => break,
        }
        paged.extend(page);
    }
    assert_eq!(paged, all, "pages joined by the exclusive `after` cursor");
    // A cursor that is not a stored digest still splits the order.
    let mid = Digest::from_array([0x80; 32]);
    let expected: Vec<_> = all.iter().copied().filter(|d| *d > mid).collect();
    assert_eq!(
        ok(s.cas.list(Some(&mid), MAX_PAGE).await, "list"),
        expected,
        "after a foreign cursor"
    );
}

/// `put_stream`/`get_stream` round-trip a blob of several chunks.
pub async fn stream_round_trip(h: &dyn Harness) {
    let s = open(h).await;
    // Crosses the default 64 KiB stream chunk and 1 MiB storage chunks.
    let len = 2 * 1024 * 1024 + 3 * stowage_core::cas::STREAM_CHUNK_BYTES + 17;
    if (len as u64) > s.cas.max_blob_size() {
        skipped(
            "cas::stream_round_trip",
            "max_blob_size is below a multi-chunk blob",
        );
        return;
    }
    let blob: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let reader: BlobReader = Box::pin(std::io::Cursor::new(blob.clone()));
    let d = ok(s.cas.put_stream(reader).await, "cas.put_stream");
    assert_eq!(d, Digest::of(&blob), "put_stream returns the SHA-256");
    let mut stream = ok(s.cas.get_stream(&d).await, "cas.get_stream");
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&ok(chunk, "get_stream chunk"));
    }
    assert!(
        got == blob,
        "get_stream must yield exactly the bytes put ({} vs {len} bytes)",
        got.len()
    );
    assert_eq!(
        ok(s.cas.get(&d).await, "get").len(),
        len,
        "get of a streamed blob"
    );
    let empty: BlobReader = Box::pin(std::io::Cursor::new(Vec::<u8>::new()));
    assert_eq!(
        ok(s.cas.put_stream(empty).await, "put_stream empty"),
        Digest::of(b""),
        "empty stream"
    );
}

/// A blob of `max_blob_size + 1` bytes is `InvalidInput` (put and put_stream) and stores nothing.
pub async fn oversized_blob_rejected(h: &dyn Harness) {
    let s = open(h).await;
    let max = s.cas.max_blob_size();
    assert_eq!(
        max, s.capabilities.max_blob_size,
        "CasStore::max_blob_size must match Capabilities::max_blob_size"
    );
    if max >= MAX_ALLOCATED_BLOB {
        skipped(
            "cas::oversized_blob_rejected",
            format!("max_blob_size is {max} bytes; the suite allocates blobs of at most {MAX_ALLOCATED_BLOB} bytes"),
        );
        return;
    }
    let before = snapshot(&s, &[], &[]).await;
    let too_big = Bytes::from(vec![1u8; max as usize + 1]);
    expect_kind(
        s.cas.put(too_big).await,
        ErrorKind::InvalidInput,
        "cas.put of max_blob_size + 1 bytes",
    );
    let reader: BlobReader = Box::pin(tokio::io::repeat(1).take(max + 1));
    expect_kind(
        s.cas.put_stream(reader).await,
        ErrorKind::InvalidInput,
        "cas.put_stream of max_blob_size + 1 bytes",
    );
    assert_unchanged(&before, &snapshot(&s, &[], &[]).await, "an oversized blob");
    if max > MAX_EXACT_BLOB {
        skipped(
            "cas::oversized_blob_rejected (the exactly-max part)",
            format!("max_blob_size is {max} bytes; hashing more than {MAX_EXACT_BLOB} bytes would slow the suite"),
        );
        return;
    }
    let exact = Bytes::from(vec![2u8; max as usize]);
    let d = ok(
        s.cas.put(exact).await,
        "cas.put of exactly max_blob_size bytes",
    );
    assert_eq!(
        ok(s.cas.stat(&d).await, "stat").size,
        max,
        "a blob of max size is stored"
    );
}

/// Digests of the wrong length or not hex are `InvalidInput`; parsing is
/// case-insensitive and display is 64 lower-case hex.
pub async fn digest_parsing_hostile(h: &dyn Harness) {
    let s = open(h).await;
    for len in [0usize, 1, 31, 33, 64] {
        expect_kind(
            Digest::from_slice(&vec![0u8; len]),
            ErrorKind::InvalidInput,
            "Digest::from_slice of the wrong length",
        );
    }
    let d = Digest::of(b"x");
    let hex = d.to_string();
    assert_eq!(hex, hex.to_lowercase(), "digests display in lower case");
    assert_eq!(hex.len(), 64, "digests display as 64 hex characters");
    assert_eq!(
        d.short(),
        hex[..12],
        "short() is the first 12 hex characters"
    );
    assert_eq!(
        serde_json::to_string(&d).ok(),
        Some(format!("\"{hex}\"")),
        "digests serialise (serde) as their hex string"
    );
    assert_eq!(
        ok(hex.to_uppercase().parse::<Digest>(), "parse upper case"),
        d,
        "parse upper case"
    );
    for bad in [
        "",
        &hex[..63],
        &format!("{hex}0"),
        &"g".repeat(64),
        &"é".repeat(32),
        &format!("{}\0", &hex[..63]),
    ] {
        expect_kind(
            bad.parse::<Digest>(),
            ErrorKind::InvalidInput,
            "parsing a malformed digest",
        );
    }
    // Nothing a caller could not even construct reaches the store.
    assert!(
        ok(s.cas.list(None, 1).await, "list").is_empty(),
        "store stays empty"
    );
}

/// An [`AsyncRead`](tokio::io::AsyncRead) that always fails, as a dropped
/// connection or a broken pipe would.
struct FailingReader;

impl tokio::io::AsyncRead for FailingReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        _buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(std::io::Error::other(
            "conformance: the reader failed mid-way",
        )))
    }
}

/// A `put_stream` reader that fails (at once, or after 1.5 MiB) is `InvalidInput` and stores nothing.
pub async fn failing_stream_reader_rejected(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.cas.put(Bytes::from_static(b"kept")).await, "cas.put");
    let before = snapshot(&s, &[], &[]).await;
    let max = s.cas.max_blob_size();
    // Past the 64 KiB stream chunk and a 1 MiB storage chunk, when allowed.
    let prefix_len = (3 * 1024 * 1024 / 2).min(max) as usize;
    for len in [0, prefix_len] {
        let prefix: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let reader: BlobReader =
            Box::pin(std::io::Cursor::new(prefix.clone()).chain(FailingReader));
        expect_kind(
            s.cas.put_stream(reader).await,
            ErrorKind::InvalidInput,
            &format!("cas.put_stream of a reader failing after {len} bytes"),
        );
        assert!(
            !ok(s.cas.contains(&Digest::of(&prefix)).await, "cas.contains"),
            "put_stream stored the {len} bytes read before its reader failed"
        );
    }
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "cas.put_stream of a failing reader",
    );
}
