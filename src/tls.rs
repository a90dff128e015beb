//! The TLS every client of a secure lab speaks: one rustls `ClientConfig` (ring's provider)
//! that trusts only the lab's CA and presents the lab's `root` client certificate
//! ([`crate::certs`]), for the HTTP clients (reqwest: readiness probes, the engines' admin
//! endpoints, etcd's gateway and the bank over it) and the SQL clients (tokio-postgres through
//! tokio-postgres-rustls: workloads, quorum probes, the drill's `sql` steps).
//!
//! A process acts for one lab at a time (the CLI for its `--dir`, the daemon for its lab), so
//! the lab's client TLS is set once per process ([`use_lab`]) and every client made after it
//! uses it for `https://` and `sslmode=require` URLs; an insecure lab sets none, and such URLs
//! then fail naming the missing certificates.

use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::certs::CertPaths;
use crate::{Error, Result};

static CLIENT: RwLock<Option<Arc<rustls::ClientConfig>>> = RwLock::new(None);

/// The client TLS of the lab in `paths`: trust its CA only, present its `root` certificate.
///
/// Errors: a file is missing or does not parse (named, with `roachlab up` to make it).
pub fn client_config(paths: &CertPaths) -> Result<rustls::ClientConfig> {
    let read = |p: std::path::PathBuf| {
        std::fs::read(&p).map_err(|e| Error::io(format!("cannot read {} (a secure lab's `roachlab up` makes it)", p.display()), e))
    };
    let bad = |p: std::path::PathBuf, e: &dyn std::fmt::Display| Error::Refused(format!("{} does not parse: {e}", p.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read(paths.ca_crt())?) {
        roots.add(cert.map_err(|e| bad(paths.ca_crt(), &e))?).map_err(|e| bad(paths.ca_crt(), &e))?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(paths.client_crt())?)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(paths.client_crt(), &e))?;
    let key = PrivateKeyDer::from_pem_slice(&read(paths.client_key())?).map_err(|e| bad(paths.client_key(), &e))?;
    // ring, not aws-lc-rs: no C toolchain beyond cc to build it. rustls deprecates ring's
    // provider for lacking post-quantum key exchange, which a lab's own CA does not need.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Refused(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad(paths.client_key(), &e))
}

/// Sets this process's client TLS for `spec`'s lab in `lab` (none for an insecure lab).
pub fn use_lab(spec: &crate::config::LabSpec, lab: &crate::lab::Lab) -> Result<()> {
    let config = if spec.security.secure { Some(Arc::new(client_config(&CertPaths::of(lab))?)) } else { None };
    *CLIENT.write().unwrap_or_else(|e| e.into_inner()) = config;
    Ok(())
}

/// This process's client TLS, if its lab is secure.
pub fn client() -> Option<Arc<rustls::ClientConfig>> {
    CLIENT.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Makes ring this process's rustls provider, once: reqwest's clients (plain HTTP ones
/// included) build their TLS configuration from it.
pub fn ensure_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// An HTTP client builder that speaks the lab's TLS (when it has one); plain HTTP otherwise.
pub fn http(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    ensure_provider();
    match client() {
        Some(config) => builder.tls_backend_preconfigured((*config).clone()),
        None => builder,
    }
}

/// The SQL connector for `sslmode=require` URLs: the lab's TLS, or an error saying the lab
/// (or this client) has none.
pub fn postgres() -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let config = client().ok_or_else(|| {
        Error::Refused("this URL asks for TLS (sslmode=require), but the lab is not secure: no certificates to connect with".into())
    })?;
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new((*config).clone()))
}

/// `https` for a secure lab's process, `http` otherwise: the scheme of every node endpoint.
pub fn scheme() -> &'static str {
    if client().is_some() {
        "https"
    } else {
        "http"
    }
}

/// `{scheme}://{addr}{path}`: a node endpoint (`addr` is `host:port`).
pub fn url(addr: &str, path: &str) -> String {
    format!("{}://{addr}{path}", scheme())
}
