//! Honest failures: a connection cut after the request was forwarded (a
//! tiny TCP proxy that drops the reply), a reply slower than the response
//! timeout, and a server that is gone. Proves `OutcomeUnknown`, that
//! nothing is retried blindly, and exactly-once retries with idempotency
//! keys.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use stowage_core::{Digest, ErrorKind, LogKind, NewEvent, NewLogEntry, RunMetadata, Stores};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const PASS: u8 = 0;
/// Forward the next request, swallow its reply, cut the connection.
const CUT: u8 = 1;
/// Forward the next request, hold its reply for 1.5 s.
const DELAY: u8 = 2;
/// Forward the next request, swallow its reply, then close every
/// connection and the listening port (the server "died": new connections
/// are refused).
const CUT_THEN_REFUSE: u8 = 3;
/// Forward the next request and its reply, then close every connection
/// and the listening port.
const PASS_THEN_REFUSE: u8 = 4;

/// Forward the next request, swallow its reply, wait 300 ms, then cut
/// the connection (another client can act in between).
const CUT_LATE: u8 = 5;

/// A loopback proxy in front of the test server.
struct Proxy {
    port: u16,
    mode: Arc<AtomicU8>,
    kill: Arc<watch::Sender<bool>>,
    /// When not empty, only a request holding these bytes takes the mode.
    only: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(PASS));
        let (kill, killed) = watch::channel(false);
        let kill = Arc::new(kill);
        let (m, k) = (mode.clone(), kill.clone());
        let only = Arc::new(std::sync::Mutex::new(Vec::new()));
        let o = only.clone();
        tokio::spawn(async move {
            let mut stop = killed.clone();
            loop {
                // Killed: drop the listener, so connecting is refused.
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.wait_for(|k| *k) => return,
                };
                let Ok((client, _)) = accepted else {
                    return;
                };
                if *killed.borrow() {
                    return;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let modes = Modes {
                    mode: m.clone(),
                    only: o.clone(),
                };
                tokio::spawn(pump(client, server, modes, killed.clone(), k.clone()));
            }
        });
        Proxy {
            port,
            mode,
            kill,
            only,
        }
    }

    fn arm(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// Arms `mode` for the next request that holds `needle`.
    fn arm_on(&self, mode: u8, needle: &[u8]) {
        *self.only.lock().unwrap() = needle.to_vec();
        self.arm(mode);
    }
}

/// The armed mode and the request it waits for.
struct Modes {
    mode: Arc<AtomicU8>,
    only: Arc<std::sync::Mutex<Vec<u8>>>,
}

async fn pump(
    client: TcpStream,
    server: TcpStream,
    modes: Modes,
    mut killed: watch::Receiver<bool>,
    kill: Arc<watch::Sender<bool>>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let armed = Arc::new(AtomicU8::new(PASS));
    let armed2 = armed.clone();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let wanted = {
                let needle = modes.only.lock().unwrap();
                needle.is_empty() || buf[..n].windows(needle.len()).any(|w| w == &needle[..])
            };
            let m = if wanted {
                modes.mode.swap(PASS, Ordering::SeqCst)
            } else {
                PASS
            };
            if m != PASS {
                armed.store(m, Ordering::SeqCst);
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            match armed2.swap(PASS, Ordering::SeqCst) {
                CUT => return,
                CUT_LATE => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    return;
                }
                CUT_THEN_REFUSE => {
                    let _ = kill.send(true);
                    return;
                }
                PASS_THEN_REFUSE => {
                    let _ = cw.write_all(&buf[..n]).await;
                    let _ = kill.send(true);
                    return;
                }
                DELAY => tokio::time::sleep(Duration::from_millis(1500)).await,
                _ => {}
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = killed.wait_for(|k| *k) => {}
    }
}

fn server_port() -> u16 {
    let base = redis_server::base_url();
    let url = url::Url::parse(&base).unwrap();
    url.port().unwrap_or(6379)
}

async fn through(proxy: &Proxy, params: &str) -> (Stores, Stores) {
    let prefix = redis_server::unique_prefix("fault");
    let via = format!(
        "redis://127.0.0.1:{}/0?prefix={prefix}&{params}",
        proxy.port
    );
    let direct = redis_server::with_params(&redis_server::base_url(), &format!("prefix={prefix}"));
    let a = stowage_backends::open(&via).await.unwrap();
    let b = stowage_backends::open(&direct).await.unwrap();
    (a, b)
}

/// A run with one event appended (the connection and scripts warmed up).
async fn warm_run(s: &Stores) -> stowage_core::RunId {
    let run = s
        .runs
        .create_run(Digest::of(b"x"), RunMetadata::new("a"))
        .await
        .unwrap();
    s.runs
        .append_event(run, NewEvent::new("warm", json!(0)))
        .await
        .unwrap();
    run
}

fn keyed(key: &str) -> NewEvent {
    let mut e = NewEvent::new("tool_call", json!({"k": key}));
    e.idempotency_key = Some(key.into());
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_after_send_is_outcome_unknown_and_keyed_retry_is_exactly_once() {
    let proxy = Proxy::start(server_port()).await;
    let (s, direct) = through(&proxy, "idempotent_retries=0").await;
    let run = warm_run(&s).await;

    proxy.arm(CUT);
    let err = s.runs.append_event(run, keyed("k1")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert!(!err.is_retryable());
    // The server did apply it: a retry with the same key returns it, once.
    let retried = s.runs.append_event(run, keyed("k1")).await.unwrap();
    assert_eq!(retried.seq, 1);
    assert_eq!(direct.runs.get_run(run).await.unwrap().event_count, 2);
    direct.runs.verify_run(run).await.unwrap();

    // Without a key nothing is retried: the cut append happened exactly once.
    s.runs
        .append_event(run, NewEvent::new("warm", json!(1)))
        .await
        .unwrap();
    proxy.arm(CUT);
    let err = s
        .runs
        .append_event(run, NewEvent::new("plain", json!(2)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert_eq!(direct.runs.get_run(run).await.unwrap().event_count, 4);
    direct.runs.verify_run(run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_calls_retry_themselves_exactly_once() {
    let proxy = Proxy::start(server_port()).await;
    let (s, direct) = through(&proxy, "idempotent_retries=3").await;
    let run = s
        .runs
        .create_run(Digest::of(b"x"), RunMetadata::new("a"))
        .await
        .unwrap();
    s.sessions.create_session("chat", json!({})).await.unwrap();
    s.runs
        .append_event(run, NewEvent::new("warm", json!(0)))
        .await
        .unwrap();
    proxy.arm(CUT);
    let e = s.runs.append_event(run, keyed("k2")).await.unwrap();
    assert_eq!(e.seq, 1);
    assert_eq!(direct.runs.get_run(run).await.unwrap().event_count, 2);

    let mut m = NewLogEntry::new(LogKind::Incoming, "user", "text", "hello");
    m.idempotency_key = Some("msg-1".into());
    proxy.arm(CUT);
    let entry = s.sessions.append_log("chat", m).await.unwrap();
    assert_eq!(entry.seq, 0);
    assert_eq!(
        direct
            .sessions
            .read_log("chat", None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_slower_than_the_timeout_is_outcome_unknown_not_a_duplicate() {
    let proxy = Proxy::start(server_port()).await;
    let (s, direct) = through(&proxy, "idempotent_retries=0&response_timeout_ms=300").await;
    let run = warm_run(&s).await;
    proxy.arm(DELAY);
    let err = s.runs.append_event(run, keyed("slow")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let again = s.runs.append_event(run, keyed("slow")).await.unwrap();
    assert_eq!(again.seq, 1);
    assert_eq!(direct.runs.get_run(run).await.unwrap().event_count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_gone_is_unavailable() {
    let proxy = Proxy::start(server_port()).await;
    let (s, _direct) = through(&proxy, "reconnect_retries=0&connect_timeout_ms=200").await;
    let run = s
        .runs
        .create_run(Digest::of(b"x"), RunMetadata::new("a"))
        .await
        .unwrap();
    let _ = proxy.kill.send(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let read = s.runs.get_run(run).await.unwrap_err();
    assert_eq!(read.kind(), ErrorKind::Unavailable, "{read}");
    assert!(read.is_retryable());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let write = s
        .runs
        .append_event(run, NewEvent::new("k", json!(1)))
        .await
        .unwrap_err();
    assert_eq!(write.kind(), ErrorKind::Unavailable, "{write}");
}

/// A keyed append whose first attempt ran but lost its reply, and whose
/// automatic retries then met a refused connection, is `OutcomeUnknown`
/// (the event is stored), never `Unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_refused_after_a_lost_reply_are_outcome_unknown() {
    let proxy = Proxy::start(server_port()).await;
    let (s, direct) = through(
        &proxy,
        "idempotent_retries=3&reconnect_retries=0&connect_timeout_ms=200",
    )
    .await;
    let run = warm_run(&s).await;
    proxy.arm(CUT_THEN_REFUSE);
    let err = s.runs.append_event(run, keyed("k-lost")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert!(!err.is_retryable(), "{err}");
    let stored = direct.runs.read_events(run, None, 10).await.unwrap();
    assert_eq!(stored.len(), 2, "the first attempt was applied");
    assert_eq!(stored[1].idempotency_key.as_deref(), Some("k-lost"));
}

/// A `cas.put` is one apply: when its reply is lost the outcome is
/// unknown, yet the blob is either whole and listed or absent, never half
/// stored; with resends on, the same cut put simply succeeds, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_cas_put_is_all_or_nothing_and_resends_make_it_exactly_once() {
    let proxy = Proxy::start(server_port()).await;
    let (s, direct) = through(&proxy, "idempotent_retries=0").await;
    s.cas.put(Bytes::from_static(b"warm")).await.unwrap();
    let data = Bytes::from_static(b"stored, then the reply was lost");
    let d = Digest::of(&data);
    proxy.arm_on(CUT, b"then the reply was lost");
    let err = s.cas.put(data.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert!(direct.cas.contains(&d).await.unwrap(), "the apply ran");
    assert!(direct.cas.list(None, 100).await.unwrap().contains(&d));
    assert_eq!(direct.cas.get(&d).await.unwrap(), data);

    let (s, direct) = through(&proxy, "idempotent_retries=2").await;
    let data = Bytes::from_static(b"resent after the reply was lost");
    proxy.arm_on(CUT, b"resent after the reply was lost");
    let d = s.cas.put(data.clone()).await.unwrap();
    assert_eq!(direct.cas.get(&d).await.unwrap(), data);
    direct.cas.verify(&d).await.unwrap();
}

/// A put whose reply was lost landed, and another process deleted the
/// blob before the resend: the header is absent again, so a copy of the
/// put would pass its guard and store the blob a second time, undoing a
/// delete acknowledged after the put. Nothing is resent; the put is
/// `OutcomeUnknown` and the blob stays deleted. (Found by review.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_put_deleted_by_another_process_is_not_stored_again() {
    let proxy = Proxy::start(server_port()).await;
    let (s, direct) = through(&proxy, "idempotent_retries=2").await;
    s.cas.put(Bytes::from_static(b"warm")).await.unwrap();
    let data = Bytes::from_static(b"put, lost, deleted elsewhere");
    let d = Digest::of(&data);
    proxy.arm_on(CUT_LATE, b"put, lost, deleted elsewhere");
    let lost = tokio::spawn({
        let cas = s.cas.clone();
        let data = data.clone();
        async move { cas.put(data).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(direct.cas.delete(&d).await.unwrap(), "the put had landed");
    let err = lost.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert!(
        !direct.cas.contains(&d).await.unwrap(),
        "stored again after the delete"
    );
}

/// An append whose reply was lost landed, and another process appended
/// to the same run before the resend: the resend is refused by its guards
/// and the original's writes are no longer all there (the head moved on).
/// That cannot be told from an original that never landed, so the call is
/// `OutcomeUnknown` — running the job again would append it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_append_overtaken_by_another_process_is_outcome_unknown_not_twice() {
    let proxy = Proxy::start(server_port()).await;
    let (s, direct) = through(&proxy, "idempotent_retries=2").await;
    let run = warm_run(&s).await;
    proxy.arm(CUT_LATE);
    let lost = tokio::spawn({
        let runs = s.runs.clone();
        async move {
            runs.append_event(run, NewEvent::new("plain", json!(1)))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    direct
        .runs
        .append_event(run, NewEvent::new("other", json!(2)))
        .await
        .unwrap();
    let err = lost.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    let events = direct.runs.read_events(run, None, 10).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["warm", "plain", "other"], "appended once");
    direct.runs.verify_run(run).await.unwrap();
}
