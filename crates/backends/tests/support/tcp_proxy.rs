//! A TCP proxy for fault tests: forwards every connection to an upstream
//! address and, when armed, cuts the connection that sends a PostgreSQL
//! simple query holding a write job's staged writes and `COMMIT` — either
//! before forwarding it (the server never sees it) or after the server
//! answered it (the server committed; the client never hears so). It can
//! also go down (listener closed, every connection cut: connecting is
//! refused) and come back up on the same port. It reads the plain
//! protocol: connections that ask for TLS are forwarded untouched and
//! never cut (the store under test uses `sslmode=disable`).
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy does with the next write job's `COMMIT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Forward everything.
    Never,
    /// Drop the statements and close the connection: nothing is applied.
    BeforeCommit,
    /// Forward the statements, swallow the server's answer up to its
    /// `ReadyForQuery`, then close: the writes are committed.
    AfterCommit,
}

struct State {
    upstream: SocketAddr,
    cut: Mutex<Cut>,
    cuts: AtomicUsize,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The proxy; stops (every task aborted) when dropped.
pub struct Proxy {
    /// The address clients connect to.
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

/// The bytes that end a write job's batch (`sql.rs` stages `EXECUTE
/// stowage_put_…` statements and appends `COMMIT`).
const WRITES: &[u8] = b"EXECUTE stowage_put_";
const COMMIT: &[u8] = b"COMMIT";
/// A `ReadyForQuery` message header (`Z`, length 5).
const READY: &[u8] = b"Z\0\0\0\x05";

/// The length of the first message in `bytes`, if it is complete.
fn message_len(bytes: &[u8], untyped: bool) -> Option<usize> {
    let at = usize::from(!untyped);
    let len: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    let len = at + u32::from_be_bytes(len) as usize;
    (bytes.len() >= len).then_some(len)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

impl Proxy {
    /// A proxy on a free loopback port in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let state = Arc::new(State {
            upstream,
            cut: Mutex::new(Cut::Never),
            cuts: AtomicUsize::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        let proxy = Proxy {
            addr,
            state,
            accept: Mutex::new(None),
        };
        proxy.listen(listener);
        proxy
    }

    fn listen(&self, listener: TcpListener) {
        let state = Arc::clone(&self.state);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let task = tokio::spawn(pump(client, Arc::clone(&state)));
                state.tasks.lock().push(task);
            }
        });
        *self.accept.lock() = Some(accept);
    }

    /// Arms the proxy: the next write job's `COMMIT` is cut as `cut` says
    /// (once; then it forwards again).
    pub fn arm(&self, cut: Cut) {
        *self.state.cut.lock() = cut;
    }

    /// How many connections were cut by an armed proxy.
    pub fn cuts(&self) -> usize {
        self.state.cuts.load(Ordering::SeqCst)
    }

    /// Closes the listener and every connection: connecting is refused.
    pub fn down(&self) {
        if let Some(accept) = self.accept.lock().take() {
            accept.abort();
        }
        for task in self.state.tasks.lock().drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                // The aborted accept task may not have dropped its
                // listener yet.
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::task::yield_now().await;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(e) => panic!("proxy: binding {} again: {e}", self.addr),
            }
        };
        self.listen(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}

/// Forwards one connection both ways, cutting it when armed.
async fn pump(client: TcpStream, state: Arc<State>) {
    let Ok(server) = TcpStream::connect(state.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set before the cut statements are forwarded: the answer to them is
    // swallowed and ends the connection.
    let swallow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swallowing = Arc::clone(&swallow);
    let back = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut seen: Vec<u8> = Vec::new();
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if swallowing.load(Ordering::SeqCst) {
                seen.extend_from_slice(&buf[..n]);
                if contains(&seen, READY) {
                    // The server answered the COMMIT; the client never
                    // hears it. Dropping both halves closes the sockets.
                    return;
                }
                continue;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    // The first message has no type byte.
    let mut untyped = true;
    // After an SSL or GSS request the stream may be encrypted: forwarded
    // as it comes, never cut (clients under test use sslmode=disable).
    let mut opaque = false;
    loop {
        let n = match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if opaque {
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        // Whole messages only: a partial one waits for its rest.
        while let Some(len) = message_len(&pending, untyped) {
            let message: Vec<u8> = pending.drain(..len).collect();
            if untyped {
                untyped = false;
                // An SSLRequest / GSSENCRequest.
                opaque = len == 8 && matches!(&message[4..8], [4, 210, 22, 47] | [4, 210, 22, 48]);
            } else if message[0] == b'Q' {
                let armed = *state.cut.lock();
                if armed != Cut::Never && contains(&message, WRITES) && contains(&message, COMMIT) {
                    *state.cut.lock() = Cut::Never;
                    state.cuts.fetch_add(1, Ordering::SeqCst);
                    if armed == Cut::BeforeCommit {
                        back.abort();
                        return;
                    }
                    swallow.store(true, Ordering::SeqCst);
                    let _ = server_write.write_all(&message).await;
                    // Wait for the swallowed answer, then close.
                    let _ = back.await;
                    return;
                }
            }
            if server_write.write_all(&message).await.is_err() {
                back.abort();
                return;
            }
            if opaque {
                let rest = std::mem::take(&mut pending);
                if server_write.write_all(&rest).await.is_err() {
                    back.abort();
                    return;
                }
                break;
            }
        }
    }
    back.abort();
}
