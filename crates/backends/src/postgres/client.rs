//! A blocking PostgreSQL client: a `tokio-postgres` connection driven by a
//! current-thread runtime of its own, on the blocking thread that uses it
//! — what the `postgres` crate's `Client` is, with one difference: the
//! whole connect (TCP, TLS handshake, startup, authentication) is bounded
//! by `connect_timeout`.
//!
//! The driver's own `connect_timeout` bounds the TCP connect only, so a
//! server that accepts the connection and never answers (a hung postmaster
//! whose kernel still accepts, a port forward to the wrong service) hung
//! the `postgres` crate's connect for ever; and that connect cannot be
//! bounded from outside, since it blocks on a runtime of its own. Here the
//! connect future runs under `tokio::time::timeout` on the connection's
//! runtime (whose timer it needs: the caller is a blocking thread, not an
//! async task), and on expiry it is dropped, which closes the socket:
//! nothing lingers.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Instant;

use stowage_core::{Error, ErrorKind, Result};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::runtime::Runtime;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Config, Row, SimpleQueryMessage, Socket, Statement};

use super::errors;
use super::options::DEFAULT_CONNECT_TIMEOUT;

/// A driver result.
type PgResult<T> = std::result::Result<T, tokio_postgres::Error>;

/// Connects with `config` and `tls`, the whole connect bounded by
/// `config`'s connect timeout (blocking: call it on a blocking thread, not
/// in an async task).
///
/// # Errors
/// `Unavailable` when no answer came within the connect timeout (nothing
/// was applied) or no runtime could be made; the driver's error, mapped
/// (see [`errors::map`]), saying `doing`.
pub(super) fn connect<T>(config: &Config, tls: T, doing: &str) -> Result<Client>
where
    T: MakeTlsConnect<Socket> + Send + 'static,
    T::Stream: Send,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    // The driver gives each host its own connect timeout for the TCP
    // connect (as libpq does), so the whole connect gets one per host: an
    // unreachable first host still leaves the next one its turn.
    let per_host = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let hosts = u32::try_from(config.get_hosts().len().max(1)).unwrap_or(u32::MAX);
    let timeout = per_host.saturating_mul(hosts);
    let deadline = Instant::now() + timeout;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("postgres: {doing} failed: no runtime for the connection: {e}"),
            )
            .with_source(e)
        })?;
    // The timer is made inside `block_on`, so it is this runtime's: made
    // outside, it would be the caller's (a blocking thread of the store's
    // runtime has its context) or none (a plain thread: a panic).
    let connected =
        runtime.block_on(async { tokio::time::timeout(timeout, config.connect(tls)).await });
    let silent = format!(
        "postgres: {doing} failed: no answer from the server within \
         connect_timeout_ms={} (the TCP connection, TLS handshake, startup, login \
         and the connection's first queries together, per host; nothing was applied)",
        per_host.as_millis()
    );
    match connected {
        Ok(Ok((client, connection))) => Ok(Client {
            client,
            driving: Driving {
                link: Link {
                    connection: Some(Box::new(connection)),
                    ended: false,
                },
                runtime,
                deadline: None,
            },
            connected_by: deadline,
            silent,
        }),
        Ok(Err(e)) => Err(errors::map(e, doing)),
        Err(_) => Err(Error::new(ErrorKind::Unavailable, silent)),
    }
}

/// One connection: the client and what drives its connection. Dropping it
/// ends the session (a `Terminate` is sent): blocking I/O, which panics on
/// an async worker thread.
pub(super) struct Client {
    // Dropped first: the connection then sends `Terminate` and ends.
    client: tokio_postgres::Client,
    driving: Driving,
    /// When the connect, with its first queries ([`Client::setting_up`]),
    /// must be done.
    connected_by: Instant,
    /// The message of a connect that passed `connected_by`.
    silent: String,
}

impl Client {
    /// Runs `setup` (the connection's first queries) within what is left
    /// of the connect timeout: a server that logged us in and then stays
    /// silent fails the connect with `Unavailable` instead of holding it
    /// for ever. The connection is dropped when the time is up.
    ///
    /// # Errors
    /// `setup`'s; `Unavailable` when the time ran out.
    pub(super) fn setting_up<T>(
        &mut self,
        setup: impl FnOnce(&mut Client) -> Result<T>,
    ) -> Result<T> {
        self.driving.deadline = Some(self.connected_by);
        let outcome = setup(self);
        self.driving.deadline = None;
        match outcome {
            Err(_) if self.driving.link.abandoned() => {
                Err(Error::new(ErrorKind::Unavailable, self.silent.clone()))
            }
            outcome => outcome,
        }
    }

    /// Runs the statements of `query` as one simple query.
    ///
    /// # Errors
    /// The driver's.
    pub(super) fn batch_execute(&mut self, query: &str) -> PgResult<()> {
        self.driving.block_on(self.client.batch_execute(query))
    }

    /// Runs `query` as one simple query and returns its messages.
    ///
    /// # Errors
    /// The driver's.
    pub(super) fn simple_query(&mut self, query: &str) -> PgResult<Vec<SimpleQueryMessage>> {
        self.driving.block_on(self.client.simple_query(query))
    }

    /// Prepares `query` on this connection.
    ///
    /// # Errors
    /// The driver's.
    pub(super) fn prepare(&mut self, query: &str) -> PgResult<Statement> {
        self.driving.block_on(self.client.prepare(query))
    }

    /// Runs `statement` (a prepared statement or SQL text) with `params`.
    ///
    /// # Errors
    /// The driver's.
    pub(super) fn query<S>(
        &mut self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> PgResult<Vec<Row>>
    where
        S: ?Sized + tokio_postgres::ToStatement,
    {
        self.driving.block_on(self.client.query(statement, params))
    }

    /// Runs `statement` with `params`; it must return exactly one row.
    ///
    /// # Errors
    /// The driver's (also when the row count is not one).
    pub(super) fn query_one<S>(
        &mut self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> PgResult<Row>
    where
        S: ?Sized + tokio_postgres::ToStatement,
    {
        self.driving
            .block_on(self.client.query_one(statement, params))
    }

    /// Whether the connection is closed (the server closed it, or it failed).
    pub(super) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// The connection's message loop, whatever its stream type.
trait Connection: Send {
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<PgResult<AsyncMessage>>>;
}

impl<S, T> Connection for tokio_postgres::Connection<S, T>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<PgResult<AsyncMessage>>> {
        tokio_postgres::Connection::poll_message(self, cx)
    }
}

/// The connection and the runtime it runs on.
struct Driving {
    // Dropped before the runtime whose I/O driver its socket uses.
    link: Link,
    runtime: Runtime,
    /// When set, a request still waiting then drops the connection (its
    /// answer is then the driver's "closed" error).
    deadline: Option<Instant>,
}

impl Driving {
    /// Runs `future` (a request of the client) while driving the
    /// connection, as the `postgres` crate does: a connection that fails
    /// answers with its own error (a `FATAL` with its SQLSTATE, say).
    fn block_on<T>(&mut self, future: impl Future<Output = PgResult<T>>) -> PgResult<T> {
        let mut future = pin!(future);
        let Driving {
            link,
            runtime,
            deadline,
        } = self;
        let deadline = *deadline;
        runtime.block_on(async {
            // Made inside `block_on`: the timer is this runtime's.
            let mut expiry = pin!(deadline.map(|at| tokio::time::sleep_until(at.into())));
            poll_fn(|cx| {
                if let Some(expiry) = expiry.as_mut().as_pin_mut() {
                    if expiry.poll(cx).is_ready() {
                        link.abandon();
                    }
                }
                match link.drive(cx) {
                    Some(e) => Poll::Ready(Err(e)),
                    None => future.as_mut().poll(cx),
                }
            })
            .await
        })
    }
}

impl Drop for Driving {
    /// Lets the connection send `Terminate` and end (the client, dropped
    /// before, told it to).
    fn drop(&mut self) {
        let Driving { link, runtime, .. } = self;
        runtime.block_on(poll_fn(|cx| {
            let _ = link.drive(cx);
            if link.ended {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
    }
}

/// A connection and whether it ended.
struct Link {
    /// `None` once abandoned (dropped: its requests then fail as closed).
    connection: Option<Box<dyn Connection>>,
    /// Set once the connection ended: it must not be polled again.
    ended: bool,
}

impl Link {
    /// Drops the connection, unanswered.
    fn abandon(&mut self) {
        self.connection = None;
        self.ended = true;
    }

    fn abandoned(&self) -> bool {
        self.connection.is_none()
    }

    /// Polls the connection until it has nothing to do; its error, if it
    /// failed.
    fn drive(&mut self, cx: &mut Context<'_>) -> Option<tokio_postgres::Error> {
        while !self.ended {
            let Some(connection) = self.connection.as_mut() else {
                self.ended = true;
                break;
            };
            match connection.poll_message(cx) {
                // Notices and notifications: nothing here listens.
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(e))) => {
                    self.ended = true;
                    return Some(e);
                }
                Poll::Ready(None) => self.ended = true,
                Poll::Pending => break,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    use super::*;

    /// A server that accepts and never answers fails the connect with
    /// `Unavailable` after `connect_timeout`, and the abandoned attempt's
    /// socket is closed (the server reads EOF): nothing lingers. No
    /// PostgreSQL needed.
    #[test]
    fn a_silent_server_fails_the_connect_in_time_and_the_socket_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (eof, closed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // The startup message arrives, is never answered; then EOF.
            let mut buf = [0; 1024];
            while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
            let _ = eof.send(());
        });
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user("u")
            .dbname("db")
            .connect_timeout(Duration::from_millis(200));
        let started = Instant::now();
        let e = match connect(&config, tokio_postgres::NoTls, "connecting") {
            Ok(_) => panic!("connected to a server that never answered"),
            Err(e) => e,
        };
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.message().contains("connect_timeout_ms=200"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5), "{e}");
        closed
            .recv_timeout(Duration::from_secs(5))
            .expect("the abandoned connection was not closed");
    }
}

#[cfg(test)]
#[path = "client_review_tests.rs"]
mod review_tests;
