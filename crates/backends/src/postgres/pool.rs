//! A small pool of blocking clients (see `client.rs`), each used on a
//! blocking thread (`spawn_blocking`) for one job at a time.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use stowage_core::{Error, Result};
use tokio::sync::Semaphore;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Config, Row, Statement};

use super::client::Client;
use super::errors;
use super::options::PostgresOptions;
use super::tls::{self, Connector};

/// One connection and the statements prepared on it.
pub(super) struct Conn {
    pub(super) client: Client,
    config: Config,
    connector: Connector,
    statements: HashMap<&'static str, Statement>,
    /// Whether staged writes fill the readable columns
    /// (`PostgresOptions::readable_columns`).
    pub(super) readable: bool,
    /// Whether `sql::prepare_all` ran on this connection.
    pub(super) prepared: bool,
    /// Set when the connection is in an unknown state (a failed rollback,
    /// a session lock that could not be released): it is not pooled again.
    pub(super) broken: bool,
}

impl Conn {
    fn statement(&mut self, text: &'static str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.get(text) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(text)?;
        self.statements.insert(text, s.clone());
        Ok(s)
    }

    /// Runs a prepared `text` and returns its rows.
    pub(super) fn query(
        &mut self,
        text: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let s = self.statement(text)?;
        self.client.query(&s, params)
    }

    /// Replaces a connection the server closed (a restart, an idle
    /// timeout) with a new one, its statements prepared again. Only for a
    /// connection with no transaction open: nothing was lost.
    ///
    /// # Errors
    /// `Unavailable` when the server cannot be reached or does not answer
    /// within `connect_timeout`.
    pub(super) fn reconnect(&mut self) -> Result<()> {
        let mut client = self.connector.connect(&self.config, "reconnecting")?;
        self.statements.clear();
        self.prepared = false;
        client.setting_up(|client| {
            client
                .batch_execute(&super::sql::prepare_all())
                .map_err(|e| errors::map(e, "preparing statements"))
        })?;
        self.client = client;
        self.prepared = true;
        Ok(())
    }

    /// Sends a transaction's opening statements with `send`, and once more
    /// on a new connection when the server had closed this pooled one (a
    /// restart, an idle timeout, a killed backend): no transaction was
    /// open on it, so nothing was lost and nothing can apply twice.
    ///
    /// # Errors
    /// `send`'s, from the new connection when there was one.
    pub(super) fn send_first<T>(
        &mut self,
        mut send: impl FnMut(&mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, tokio_postgres::Error> {
        let sent = send(&mut self.client);
        if sent.as_ref().is_err_and(errors::is_connection_lost) && self.reconnect().is_ok() {
            return send(&mut self.client);
        }
        sent
    }

    /// Whether the connection is worth keeping: not marked broken and not
    /// closed by the server.
    pub(super) fn usable(&self) -> bool {
        !self.broken && !self.client.is_closed()
    }

    /// Prepares the statements jobs `EXECUTE` (once per connection). A
    /// connection the server closed while it was idle (no transaction was
    /// open on it) is replaced once.
    pub(super) fn prepare(&mut self) -> Result<()> {
        if self.prepared {
            return Ok(());
        }
        match self.send_prepare() {
            Err(e) if errors::is_connection_lost(&e) => self.reconnect(),
            sent => sent.map_err(|e| errors::map(e, "preparing statements")),
        }
    }

    fn send_prepare(&mut self) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute(&super::sql::prepare_all())?;
        self.prepared = true;
        Ok(())
    }

    /// Ends whatever transaction is open; marks the connection broken if
    /// even that fails.
    pub(super) fn rollback(&mut self) {
        if self.client.batch_execute("ROLLBACK").is_err() {
            self.broken = true;
        }
    }
}

/// The driver configuration for `opts`: the store's schema is every
/// connection's `search_path`.
pub(super) fn config(opts: &PostgresOptions) -> Config {
    let mut config = Config::new();
    config
        .host(&opts.host)
        .port(opts.port)
        .user(&opts.user)
        .dbname(&opts.dbname)
        // `stowage:SCHEMA` in `pg_stat_activity` (cut to 63 bytes).
        .application_name(format!("stowage:{}", opts.schema))
        .connect_timeout(opts.connect_timeout)
        .ssl_mode(tls::driver_mode(opts.effective_ssl_mode()))
        .keepalives(true);
    if let Some(password) = &opts.password {
        config.password(password);
    }
    // The staged writes splice literals that are safe only under
    // `standard_conforming_strings=on` (see `literal`).
    let mut options = format!(
        "-c search_path={} -c standard_conforming_strings=on -c bytea_output=hex",
        opts.schema
    );
    if let Some(t) = opts.statement_timeout {
        options.push_str(&format!(" -c statement_timeout={}", t.as_millis()));
    }
    config.options(&options);
    config
}

/// Whether the database stores text as UTF-8. The readable columns hold
/// event kinds and payloads as `text` and `jsonb`, which any other server
/// encoding cannot hold for every character (an emoji in a `LATIN1`
/// database): there they stay `NULL`, and the `value` column, `bytea`,
/// keeps everything.
///
/// # Errors
/// The server's, mapped.
fn utf8(client: &mut Client) -> Result<bool> {
    let rows = client
        .simple_query("SHOW server_encoding")
        .map_err(|e| errors::map(e, "reading the server encoding"))?;
    Ok(rows.iter().any(|message| match message {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0) == Some("UTF8"),
        _ => false,
    }))
}

/// Connections, opened lazily up to `size`, at most `size` in use.
pub(super) struct Pool {
    config: Config,
    connector: Connector,
    readable: bool,
    shown: String,
    size: u32,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    pub(super) fn new(
        config: Config,
        connector: Connector,
        shown: String,
        size: usize,
        readable: bool,
    ) -> Pool {
        let size = u32::try_from(size).unwrap_or(1).max(1);
        Pool {
            config,
            connector,
            readable,
            shown,
            size,
            permits: Arc::new(Semaphore::new(size as usize)),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A new connection.
    ///
    /// # Errors
    /// The server's refusal, mapped (`Unavailable` when unreachable or
    /// silent for `connect_timeout`).
    fn connect(&self) -> Result<Conn> {
        let mut client = self
            .connector
            .connect(&self.config, &format!("connecting to {}", self.shown))?;
        let readable = self.readable && client.setting_up(utf8)?;
        Ok(Conn {
            client,
            config: self.config.clone(),
            connector: self.connector.clone(),
            statements: HashMap::new(),
            readable,
            prepared: false,
            broken: false,
        })
    }

    /// The idle connection used last, or a new one (blocking I/O).
    ///
    /// # Errors
    /// As [`Pool::connect`].
    pub(super) fn checkout(&self) -> Result<Conn> {
        let idle = self.idle.lock().pop();
        match idle {
            Some(conn) if conn.usable() => Ok(conn),
            _ => self.connect(),
        }
    }

    /// Keeps `conn` for the next [`Pool::checkout`], unless it broke.
    pub(super) fn checkin(&self, conn: Conn) {
        if conn.usable() {
            self.idle.lock().push(conn);
        }
    }

    /// Runs `f` with a pooled connection on a blocking thread. Once a
    /// connection was taken, `f` runs even if this future is dropped.
    ///
    /// # Errors
    /// `closed()` once the pool is closed; `Unavailable` when no
    /// connection can be opened; `f`'s error.
    pub(super) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Conn) -> Result<T> + Send + 'static,
        closed: impl Fn() -> Error,
    ) -> Result<T> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let pool = Arc::clone(self);
        // The permit lives as long as the job, so `close` waits for every
        // job that holds a connection.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut conn = pool.checkout()?;
            let result = f(&mut conn);
            pool.checkin(conn);
            result
        })
        .await
        .map_err(|e| Error::internal("postgres: a job panicked").with_source(e))?
    }

    /// Waits for the jobs in flight, refuses new ones and closes every
    /// connection.
    pub(super) async fn close(&self) {
        if let Ok(all) = self.permits.acquire_many(self.size).await {
            all.forget();
        }
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock());
        if !idle.is_empty() {
            // Closing sends a Terminate message: blocking I/O.
            let _ = tokio::task::spawn_blocking(move || drop(idle)).await;
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Dropping a sync client blocks on its own runtime, which panics on
        // an async worker thread: idle connections are dropped on a thread
        // of their own.
        let idle = std::mem::take(&mut *self.idle.lock());
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("stowage-postgres-close".into())
                .spawn(move || drop(idle));
        }
    }
}
