//! TLS for `sslmode=` (rustls with the ring provider, as `rediss://`):
//! what each mode checks, and the connector every connection of a pool
//! uses.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use stowage_core::{Error, Result};
use tokio_postgres::config::SslMode as DriverSslMode;
use tokio_postgres::{Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::client::{self, Client};
use super::options::{PostgresOptions, SslMode};

/// How a pool's connections are made: plain, or through rustls.
#[derive(Clone)]
pub(super) enum Connector {
    /// `sslmode=disable`.
    Plain,
    /// Every other mode (the driver's `sslmode` says whether TLS may be
    /// skipped when the server has none: only `prefer`).
    Tls(MakeRustlsConnect),
}

impl Connector {
    /// The connector for `opts`, its root certificates read (blocking I/O).
    ///
    /// # Errors
    /// `InvalidInput` when `sslrootcert` cannot be read or holds no
    /// certificate; `Internal` if rustls refuses its own defaults.
    pub(super) fn new(opts: &PostgresOptions) -> Result<Connector> {
        let mode = opts.effective_ssl_mode();
        if mode == SslMode::Disable {
            return Ok(Connector::Plain);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::internal(format!("postgres: rustls defaults: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match mode {
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = roots(opts)?;
                let webpki = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                )
                .build()
                .map_err(|e| {
                    Error::invalid_input(format!(
                        "postgres: sslrootcert {:?}: {e}",
                        opts.ssl_root_cert
                    ))
                })?;
                if mode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
            _ => Arc::new(Unverified(provider)),
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match client_cert(opts)? {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::invalid_input(format!(
                    "postgres: sslcert={:?} and sslkey={:?} do not make a client \
                     certificate: {e}",
                    opts.ssl_cert, opts.ssl_key
                ))
            })?,
            None => builder.with_no_client_auth(),
        };
        Ok(Connector::Tls(MakeRustlsConnect::new(config)))
    }

    /// Connects with `config` (whose `ssl_mode` [`driver_mode`] set),
    /// within its connect timeout (see [`client::connect`]).
    ///
    /// # Errors
    /// As [`client::connect`], saying `doing`.
    pub(super) fn connect(&self, config: &Config, doing: &str) -> Result<Client> {
        match self {
            Connector::Plain => client::connect(config, NoTls, doing),
            Connector::Tls(tls) => client::connect(config, tls.clone(), doing),
        }
    }
}

/// The driver's `sslmode` for ours: it only knows whether TLS is off,
/// optional or required; what is checked is our verifier's business.
pub(super) fn driver_mode(mode: SslMode) -> DriverSslMode {
    match mode {
        SslMode::Disable => DriverSslMode::Disable,
        SslMode::Prefer => DriverSslMode::Prefer,
        _ => DriverSslMode::Require,
    }
}

/// The certificates of the `sslrootcert` PEM file.
fn roots(opts: &PostgresOptions) -> Result<RootCertStore> {
    let Some(path) = &opts.ssl_root_cert else {
        return Err(Error::invalid_input(
            "postgres: sslmode=verify-ca and verify-full need sslrootcert=PATH \
             (a PEM file of the CA certificates to trust)",
        ));
    };
    let bad = |why: String| {
        Error::invalid_input(format!("postgres: sslrootcert={}: {why}", path.display()))
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read the file: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("a certificate cannot be used as a root: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("the file holds no certificate".into()));
    }
    Ok(roots)
}

/// The client certificate chain and key of `sslcert`/`sslkey`, if set.
fn client_cert(
    opts: &PostgresOptions,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>> {
    let (Some(cert), Some(key)) = (&opts.ssl_cert, &opts.ssl_key) else {
        return Ok(None);
    };
    let bad = |option: &str, path: &std::path::Path, why: String| {
        Error::invalid_input(format!("postgres: {option}={}: {why}", path.display()))
    };
    let read = |option: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| bad(option, path, format!("cannot read the file: {e}")))
    };
    let chain = CertificateDer::pem_slice_iter(&read("sslcert", cert)?)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad("sslcert", cert, format!("not a PEM certificate file: {e}")))?;
    if chain.is_empty() {
        return Err(bad("sslcert", cert, "the file holds no certificate".into()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read("sslkey", key)?)
        .map_err(|e| bad("sslkey", key, format!("no private key in the file: {e}")))?;
    Ok(Some((chain, key_der)))
}

/// `verify-ca`: the chain must lead to a trusted root; the host name is
/// not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain (and revocation) before the name: a
        // name error means everything else passed.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` (without `sslrootcert`), as libpq: encrypted,
/// but any certificate is accepted (no protection against an active
/// man in the middle). The handshake's signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
