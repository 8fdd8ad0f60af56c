//! PostgreSQL servers for the tests.
//!
//! * `STOWAGE_TEST_POSTGRES_URL` set (`postgres://user@host:port/db`):
//!   every test uses that server, each under a schema of its own that it
//!   drops at the end; nothing else is ever dropped or truncated.
//! * Otherwise a private server is started once per test binary: `initdb`
//!   into a temp dir, then `pg_ctl start` on a free loopback port with its
//!   socket in that dir (`fsync=off`: the tests check logic, not disks).
//!   Run as root, both run as the `postgres` user (`runuser`), since
//!   `initdb` refuses root. A `sh` watchdog stops the server and removes
//!   the dir when the test binary exits (our stdin pipe closes), even if
//!   the binary was killed.
//! * Otherwise the tests fail loudly, naming both options.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

const HELP: &str = "the PostgreSQL tests need a server: set \
STOWAGE_TEST_POSTGRES_URL=postgres://user@host:port/db (a database the tests may create \
schemas in; each test drops only its own), or install PostgreSQL (initdb and pg_ctl on PATH, \
e.g. `apt-get install postgresql`; /usr/lib/postgresql/VERSION/bin is searched too) so the \
tests can start a private one";

/// The environment variable naming an external server.
pub const URL_ENV: &str = "STOWAGE_TEST_POSTGRES_URL";

static SERVER: OnceLock<PrivateServer> = OnceLock::new();

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    l.local_addr().expect("local addr").port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program` (`initdb`, `pg_ctl`): from `PATH`, else from Debian's
/// `/usr/lib/postgresql/VERSION/bin` (the newest), which the `postgresql`
/// package does not put on `PATH`.
fn server_binary(program: &str) -> String {
    let on_path = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if let Some(path) = on_path.filter(|p| !p.is_empty()) {
        return path;
    }
    let mut found: Vec<(u32, String)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin").join(program);
            bin.exists().then(|| (version, bin.display().to_string()))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, path)| path)
        .unwrap_or_else(|| panic!("{program} not found; {HELP}"))
}

/// `program args…`, as the `postgres` user when we are root.
fn as_server_user(root: bool, program: &str) -> Command {
    let program = &server_binary(program);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}; {HELP}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}; {HELP}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private server in a temp dir of its own, which a test may restart,
/// stop and start again (it always listens on the same port). Dropping it
/// (or the test binary exiting, even killed) stops the server and removes
/// the dir: a `sh` watchdog does it once our end of its stdin closes.
pub struct PrivateServer {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
    /// The server's port.
    pub port: u16,
    /// The temp dir: `data/`, `log`, the socket, and whatever the test
    /// puts there (certificates).
    pub dir: std::path::PathBuf,
    root: bool,
    watchdog: Option<Child>,
}

impl PrivateServer {
    /// `initdb` into a fresh temp dir (owned by `postgres` when we are
    /// root); not started yet.
    pub fn init() -> PrivateServer {
        let root = is_root();
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("stowage-pg-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the server dir");
        if root {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres:").arg(&dir);
                    c
                },
                "chown the server dir to postgres",
            );
        }
        let mut initdb = as_server_user(root, "initdb");
        initdb
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(dir.join("data"));
        run(initdb, "initdb");
        let pg_ctl = server_binary("pg_ctl");
        let stop = if root {
            format!("runuser -u postgres -- {pg_ctl} -D \"$1/data\" -m immediate stop")
        } else {
            format!("{pg_ctl} -D \"$1/data\" -m immediate stop")
        };
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "read _ignored; {stop} >/dev/null 2>&1; rm -rf \"$1\""
            ))
            .arg("sh")
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server watchdog");
        let port = free_port();
        PrivateServer {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            dir,
            root,
            watchdog: Some(watchdog),
        }
    }

    /// [`init`](Self::init) and [`start`](Self::start) with no extra
    /// server options.
    pub fn started() -> PrivateServer {
        let server = PrivateServer::init();
        server.start("");
        server
    }

    /// Starts the server (`pg_ctl start -w`) with `extra` server options
    /// (`-c name=value …`) after the usual ones.
    pub fn start(&self, extra: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 {extra}",
            self.port,
            self.dir.display()
        );
        let mut start = self.pg_ctl();
        start
            .args(["-w", "-t", "60", "-l"])
            .arg(self.dir.join("log"))
            .args(["-o", &opts, "-D"])
            .arg(self.dir.join("data"))
            .arg("start")
            .stdout(Stdio::null());
        run(start, "pg_ctl start");
    }

    /// `pg_ctl restart -m fast`: clients are disconnected, the server
    /// comes back on the same port with the same options.
    pub fn restart(&self) {
        let mut restart = self.pg_ctl();
        restart
            .args(["-w", "-t", "60", "-m", "fast", "-l"])
            .arg(self.dir.join("log"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("restart")
            .stdout(Stdio::null());
        run(restart, "pg_ctl restart");
    }

    /// `pg_ctl stop -m fast`.
    pub fn stop(&self) {
        let mut stop = self.pg_ctl();
        stop.args(["-w", "-t", "60", "-m", "fast", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .stdout(Stdio::null());
        run(stop, "pg_ctl stop");
    }

    /// Runs `cmd args…` as the server's user (to hand it files).
    pub fn as_server_user(&self, program: &str) -> Command {
        if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            Command::new(program)
        }
    }

    fn pg_ctl(&self) -> Command {
        as_server_user(self.root, "pg_ctl")
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

/// The base URL (no query) of the server every test of this binary uses.
pub fn base_url() -> String {
    if let Ok(url) = std::env::var(URL_ENV) {
        return url;
    }
    SERVER.get_or_init(PrivateServer::started).url.clone()
}

/// A fresh schema name, unique across processes and runs.
pub fn unique_schema(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "stowage_t_{tag}_{}_{}_{stamp}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The URL of `schema` on the test server, with `extra` query options.
pub fn url(schema: &str, extra: &str) -> String {
    let base = base_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}schema={schema}{extra}")
}

/// Runs `sql` on the test server through a plain connection, off any
/// async runtime (the sync client has its own).
pub fn exec(sql: &str) -> Result<(), String> {
    let base = base_url();
    let sql = sql.to_owned();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&base, postgres::NoTls)
            .map_err(|e| format!("connect: {e}"))?;
        client.batch_execute(&sql).map_err(|e| format!("{e}"))
    })
    .join()
    .unwrap_or_else(|_| Err("panicked".into()))
}

/// The first column of the first row of `sql`, as text (`NULL`: `None`).
pub fn query_text(sql: &str) -> Result<Option<String>, String> {
    query_text_at(&base_url(), sql)
}

/// [`query_text`] on the server at `url` (a plain connection).
pub fn query_text_at(url: &str, sql: &str) -> Result<Option<String>, String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)
            .map_err(|e| format!("connect: {e}"))?;
        let rows = client.simple_query(&sql).map_err(|e| format!("{e}"))?;
        Ok(rows
            .into_iter()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
                _ => None,
            })
            .flatten())
    })
    .join()
    .unwrap_or_else(|_| Err("panicked".into()))
}

/// Drops `schema` (only names made by [`unique_schema`]).
pub fn drop_schema(schema: &str) {
    assert!(
        schema.starts_with("stowage_t_"),
        "refusing to drop {schema}"
    );
    if let Err(e) = exec(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")) {
        eprintln!("dropping test schema {schema}: {e}");
    }
}
