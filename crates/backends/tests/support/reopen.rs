//! Closing and reopening a store while the process spawns children, whose
//! fork shares the store's lock file until they exec.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;

/// Opens `url`, puts a blob and closes, `cycles` times, while a thread
/// spawns processes; every open must succeed.
pub async fn reopens_while_spawning(url: &str, cycles: u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let spawner = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = std::process::Command::new("true").status();
            }
        })
    };
    for i in 0..cycles {
        let stores = stowage_backends::open(url)
            .await
            .unwrap_or_else(|e| panic!("reopen {i}: {e}"));
        stores
            .cas
            .put(Bytes::from(i.to_be_bytes().to_vec()))
            .await
            .unwrap();
        stores.close().await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    spawner.join().unwrap();
}
