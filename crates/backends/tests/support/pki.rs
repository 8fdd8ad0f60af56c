//! A throwaway PKI made by the `openssl` CLI for TLS tests: a CA, another
//! CA that signed nothing, a server certificate signed by the first, and
//! client certificates on demand.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("the TLS tests need the openssl CLI ({e})"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA (`NAME.pem`, `NAME.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    let (key, pem, subj) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN=stowage test {name}"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// Makes, in `dir`, `ca.pem`/`ca.key`, `wrong-ca.pem`/`wrong-ca.key` and
/// `server.pem`/`server.key` (signed by `ca`, naming `san`, e.g.
/// `DNS:localhost`).
pub fn make_pki(dir: &Path, san: &str) {
    make_ca(dir, "ca");
    make_ca(dir, "wrong-ca");
    sign(
        dir,
        "ca",
        "server",
        "/CN=stowage test server",
        &format!(
            "subjectAltName={san}\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth,clientAuth\n"
        ),
    );
}

/// Makes `NAME.pem`/`NAME.key` in `dir` (after [`make_pki`]): a client
/// certificate for common name `cn` (PostgreSQL's `cert` authentication
/// takes it as the user name) signed by the CA `ca_name`.
pub fn make_client_cert(dir: &Path, ca_name: &str, cn: &str, name: &str) {
    sign(
        dir,
        ca_name,
        name,
        &format!("/CN={cn}"),
        "basicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=clientAuth\n",
    );
}

/// A key and a certificate `NAME.key`/`NAME.pem` for `subj` with the
/// extensions `ext`, signed by the CA `ca_name`.
fn sign(dir: &Path, ca_name: &str, name: &str, subj: &str, ext: &str) {
    let (key, csr, pem, ext_file) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subj,
        ],
    );
    std::fs::write(dir.join(&ext_file), ext).expect("write the extensions file");
    let (ca_pem, ca_key) = (format!("{ca_name}.pem"), format!("{ca_name}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext_file,
        ],
    );
}
