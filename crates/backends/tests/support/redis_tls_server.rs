//! A private TLS-only `redis-server` (`--port 0 --tls-port P`) on loopback,
//! with a throwaway CA and server certificate made by the `openssl` CLI
//! (a submodule of `redis_server.rs`, which launches and stops it).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, launch, unique_prefix, Process};

#[path = "pki.rs"]
mod pki;

/// A private TLS-only `redis-server` and the throwaway PKI it trusts.
pub struct TlsServer {
    pub process: Process,
    /// PEM of the CA that signed the server's certificate.
    pub ca: PathBuf,
    /// PEM of another CA, which did not sign it.
    pub wrong_ca: PathBuf,
}

impl TlsServer {
    /// `rediss://127.0.0.1:PORT/0` (no query).
    pub fn base_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.process.port)
    }

    /// A fresh store URL trusting the right CA, with a unique prefix.
    pub fn fresh_url(&self, tag: &str) -> String {
        format!(
            "{}?tls_ca={}&prefix={}",
            self.base_url(),
            self.ca.display(),
            unique_prefix(tag)
        )
    }
}

/// The TLS options of a node using the PKI in `pki`.
fn tls_args(pki: &Path, tls_port: &str) -> Vec<String> {
    let file = |n: &str| pki.join(n).to_string_lossy().into_owned();
    vec![
        "--port".into(),
        "0".into(),
        "--tls-port".into(),
        tls_port.into(),
        "--tls-cert-file".into(),
        file("server.pem"),
        "--tls-key-file".into(),
        file("server.key"),
        "--tls-ca-cert-file".into(),
        file("ca.pem"),
        "--tls-auth-clients".into(),
        "no".into(),
    ]
}

/// Starts a TLS-only `redis-server` (`--port 0 --tls-port P`) on loopback
/// with a CA and a server certificate generated now by the `openssl` CLI
/// ([`make_pki`]), once per call; stopped (and its directory removed) on
/// drop or when the test binary exits.
pub fn spawn_tls() -> TlsServer {
    let dir = std::env::temp_dir().join(unique_prefix("tls"));
    std::fs::create_dir_all(&dir).expect("create TLS server dir");
    pki::make_pki(&dir, "IP:127.0.0.1,DNS:localhost");
    let port = free_port();
    let port_s = port.to_string();
    let args = tls_args(&dir, &port_s);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let process = launch(
        port,
        &args,
        // Also on 127.0.0.2, an address the certificate does not name.
        &["--bind", "127.0.0.1", "127.0.0.2"],
        Some(dir.clone()),
        listening,
    )
    .unwrap_or_else(|| panic!("the TLS redis-server on port {port} did not start"));
    TlsServer {
        process,
        ca: dir.join("ca.pem"),
        wrong_ca: dir.join("wrong-ca.pem"),
    }
}

/// The port accepts TCP connections (a TLS server cannot answer a plain PING).
fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A 3-node TLS-only Redis Cluster (`--tls-cluster yes`: the cluster bus
/// is TLS too), made with `redis-cli --tls --cluster create`.
pub struct TlsCluster {
    pub nodes: Vec<Process>,
    /// PEM of the CA that signed every node's certificate.
    pub ca: PathBuf,
}

impl TlsCluster {
    /// `rediss://` seed-node URL with `cluster=true` and `tls_ca`.
    pub fn base_url(&self) -> String {
        format!(
            "rediss://127.0.0.1:{}/?cluster=true&tls_ca={}",
            self.nodes[0].port,
            self.ca.display()
        )
    }
}

/// Starts a [`TlsCluster`]; its PKI lives in the first node's directory
/// (the nodes read their certificates at start-up).
pub fn spawn_tls_cluster() -> TlsCluster {
    let dirs: Vec<PathBuf> = (0..3)
        .map(|_| {
            let d = std::env::temp_dir().join(unique_prefix("tls-cluster-node"));
            std::fs::create_dir_all(&d).expect("create TLS cluster node dir");
            d
        })
        .collect();
    let pki = dirs[0].clone();
    pki::make_pki(&pki, "IP:127.0.0.1,DNS:localhost");
    let ca = pki.join("ca.pem");
    let mut nodes = Vec::new();
    for dir in dirs {
        let port = free_port();
        let port_s = port.to_string();
        let bus = free_port().to_string();
        let mut args = tls_args(&pki, &port_s);
        args.extend(["--tls-cluster".into(), "yes".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        nodes.push(
            launch(
                port,
                &args,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                    "--cluster-config-file",
                    "nodes.conf",
                    "--dir",
                    ".",
                ],
                Some(dir),
                listening,
            )
            .unwrap_or_else(|| panic!("TLS cluster node on port {port} did not start")),
        );
    }
    let ca_s = ca.to_string_lossy().into_owned();
    let cli = |args: &[&str]| {
        Command::new("redis-cli")
            .args(["--tls", "--cacert", &ca_s])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("redis-cli failed to start ({e})"))
    };
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addrs.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    let out = cli(&create);
    assert!(
        out.status.success(),
        "redis-cli --tls --cluster create failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in &nodes {
        loop {
            let out = cli(&["-p", &n.port.to_string(), "cluster", "info"]);
            let info = String::from_utf8_lossy(&out.stdout).into_owned();
            if info.contains("cluster_state:ok") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "TLS cluster did not become ok: {info}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    TlsCluster { nodes, ca }
}
