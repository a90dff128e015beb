//! A secure lab's certificates (`up --secure`), in `DIR/certs` as CockroachDB's `--certs-dir`
//! lays them out (its docs, "cockroach cert"): `ca.crt`, `node.crt`/`node.key` (one node
//! certificate naming every address a node is reached by), `client.root.crt`/`client.root.key`
//! (the `root` user's client certificate, which roachlab's probes, workloads and shells
//! present), and `client.root.pem` (the client certificate and key in one file, as HAProxy's
//! `crt` takes it for its health checks). The CA's key stays out of the certs directory, in
//! `DIR/certs-ca/ca.key`, as the docs keep it in a "safe directory". Every key is 0600.
//!
//! CockroachDB labs make them with CockroachDB's own `cockroach cert create-ca /
//! create-node / create-client root` (the way its docs and users do); etcd labs with
//! [`rcgen`] ([`generate`]): an ECDSA P-256 CA valid 10 years, node and client certificates
//! valid 5 years (CockroachDB's defaults for `--ca-lifetime` and `--cert-lifetime`).

use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::LabSpec;
use crate::lab::Lab;
use crate::{Error, Result};

/// Where a secure lab's certificates are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// `DIR/certs`: what nodes (`--certs-dir`) and clients read.
    pub dir: PathBuf,
    /// `DIR/certs-ca`: the CA's key, apart.
    pub ca_key_dir: PathBuf,
}

impl CertPaths {
    pub fn of(lab: &Lab) -> Self {
        Self { dir: lab.dir().join("certs"), ca_key_dir: lab.dir().join("certs-ca") }
    }
    pub fn ca_crt(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.ca_key_dir.join("ca.key")
    }
    pub fn node_crt(&self) -> PathBuf {
        self.dir.join("node.crt")
    }
    pub fn node_key(&self) -> PathBuf {
        self.dir.join("node.key")
    }
    pub fn client_crt(&self) -> PathBuf {
        self.dir.join("client.root.crt")
    }
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.root.key")
    }
    /// The client certificate followed by its key (HAProxy's `crt`).
    pub fn client_pem(&self) -> PathBuf {
        self.dir.join("client.root.pem")
    }

    /// Whether the CA, node and client certificates all exist.
    pub fn complete(&self) -> bool {
        [self.ca_crt(), self.node_crt(), self.node_key(), self.client_crt(), self.client_key(), self.client_pem()]
            .iter()
            .all(|p| p.exists())
    }
}

/// Every name and address a node of this lab is reached by, for its certificate: `localhost`,
/// 127.0.0.1, in the netns topology every address a node of its subnet can have (nodes added
/// later included), and HAProxy's bind address — for `0.0.0.0`, every address of this
/// host's interfaces and its host name (clients from other machines reach the nodes through
/// HAProxy's TCP pass-through, so they verify the node's certificate against the name they
/// dialled).
pub fn hosts(spec: &LabSpec) -> Vec<String> {
    let mut out = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if spec.topology.kind == crate::config::topology::TopologyKind::Netns {
        out.extend((1..=crate::config::MAX_NODES).map(|id| spec.topology.subnet.node_addr(id).to_string()));
    }
    let bind = spec.security.bind;
    if bind.is_unspecified() {
        if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
            for a in addrs {
                let ip: Option<IpAddr> = a.address.and_then(|s| s.as_sockaddr_in().map(|v4| IpAddr::V4(v4.ip())));
                if let Some(ip) = ip.filter(|ip| !ip.is_loopback()) {
                    out.push(ip.to_string());
                }
            }
        }
        if let Ok(name) = nix::unistd::gethostname() {
            out.push(name.to_string_lossy().into_owned());
        }
    } else {
        out.push(bind.to_string());
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|h| seen.insert(h.clone()));
    out
}

/// Writes `data` to `path` whole (through a temporary file renamed into place), created with
/// `mode` (never wider in between): keys, the admin password.
pub(crate) fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
    std::io::Write::write_all(&mut f, data).map_err(|e| Error::io(format!("cannot write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// Creates `DIR/certs` (0755) and `DIR/certs-ca` (0700).
pub fn make_dirs(paths: &CertPaths) -> Result<()> {
    for (dir, mode) in [(&paths.dir, 0o755), (&paths.ca_key_dir, 0o700)] {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(format!("cannot chmod {}", dir.display()), e))?;
    }
    Ok(())
}

/// `client.root.pem` from the client certificate and key, 0600 (HAProxy's `crt`).
pub fn write_client_pem(paths: &CertPaths) -> Result<()> {
    let read = |p: PathBuf| std::fs::read(&p).map_err(|e| Error::io(format!("cannot read {}", p.display()), e));
    let mut pem = read(paths.client_crt())?;
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend(read(paths.client_key())?);
    write_file(&paths.client_pem(), &pem, 0o600)
}

fn rcgen_error(what: &str, e: rcgen::Error) -> Error {
    Error::Refused(format!("cannot make the lab's {what}: {e}"))
}

/// Makes the CA, the node certificate for `hosts` and the `root` client certificate with
/// [`rcgen`] (etcd labs; a CockroachDB lab uses `cockroach cert`). Keys are ECDSA P-256.
pub fn generate(paths: &CertPaths, hosts: &[String]) -> Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
    make_dirs(paths)?;
    let now = time::OffsetDateTime::now_utc();
    let years = |n: i64| now + time::Duration::days(365 * n);

    let ca_key = KeyPair::generate().map_err(|e| rcgen_error("CA key", e))?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::OrganizationName, "roachlab");
    ca.distinguished_name.push(DnType::CommonName, "roachlab lab CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (ca.not_before, ca.not_after) = (now - time::Duration::hours(1), years(10));
    let ca_cert = ca.self_signed(&ca_key).map_err(|e| rcgen_error("CA", e))?;
    let issuer = rcgen::Issuer::new(ca, &ca_key);

    // The node certificate serves (server auth) and also dials its peers (client auth), as
    // `cockroach cert create-node` makes it.
    let node_key = KeyPair::generate().map_err(|e| rcgen_error("node key", e))?;
    let mut node = CertificateParams::new(hosts.to_vec()).map_err(|e| rcgen_error("node certificate's names", e))?;
    node.distinguished_name.push(DnType::OrganizationName, "roachlab");
    node.distinguished_name.push(DnType::CommonName, "node");
    node.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    node.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    (node.not_before, node.not_after) = (now - time::Duration::hours(1), years(5));
    let node_cert = node.signed_by(&node_key, &issuer).map_err(|e| rcgen_error("node certificate", e))?;

    let client_key = KeyPair::generate().map_err(|e| rcgen_error("client key", e))?;
    let mut client = CertificateParams::default();
    client.distinguished_name.push(DnType::OrganizationName, "roachlab");
    client.distinguished_name.push(DnType::CommonName, "root");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    (client.not_before, client.not_after) = (now - time::Duration::hours(1), years(5));
    let client_cert = client.signed_by(&client_key, &issuer).map_err(|e| rcgen_error("client certificate", e))?;

    write_file(&paths.ca_key(), ca_key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&paths.ca_crt(), ca_cert.pem().as_bytes(), 0o644)?;
    write_file(&paths.node_key(), node_key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&paths.node_crt(), node_cert.pem().as_bytes(), 0o644)?;
    write_file(&paths.client_key(), client_key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&paths.client_crt(), client_cert.pem().as_bytes(), 0o644)?;
    write_client_pem(paths)
}

/// When the certificate in `pem_file` expires (its `notAfter`).
pub fn expiry(pem_file: &Path) -> Result<time::OffsetDateTime> {
    let text = std::fs::read(pem_file).map_err(|e| Error::io(format!("cannot read {}", pem_file.display()), e))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text)
        .map_err(|e| Error::Refused(format!("{} is not a PEM certificate: {e}", pem_file.display())))?;
    let cert = pem.parse_x509().map_err(|e| Error::Refused(format!("{} does not parse as X.509: {e}", pem_file.display())))?;
    time::OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
        .map_err(|e| Error::Refused(format!("{}: its expiry is out of range: {e}", pem_file.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_node_and_client_certificate_are_made_private_and_named() {
        let tmp = tempfile::tempdir().unwrap();
        let lab = Lab::new(tmp.path()).unwrap();
        let paths = CertPaths::of(&lab);
        generate(&paths, &["localhost".into(), "127.0.0.1".into(), "198.18.7.11".into()]).unwrap();
        assert!(paths.complete());
        for key in [paths.ca_key(), paths.node_key(), paths.client_key(), paths.client_pem()] {
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        assert_eq!(std::fs::metadata(&paths.ca_key_dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(!paths.dir.join("ca.key").exists(), "the CA key is kept out of the certs dir");
        // Names and lifetimes, read back.
        let text = std::fs::read(paths.node_crt()).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&text).unwrap();
        let cert = pem.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap().value.general_names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        // 198.18.7.11 as an IP address name (c6:12:07:0b), not a DNS name.
        assert_eq!(san, ["DNSName(localhost)", "IPAddress(7f:00:00:01)", "IPAddress(c6:12:07:0b)"]);
        let left = expiry(&paths.node_crt()).unwrap() - time::OffsetDateTime::now_utc();
        assert!(left > time::Duration::days(365 * 5 - 2) && left < time::Duration::days(365 * 5 + 1), "{left}");
        let ca_left = expiry(&paths.ca_crt()).unwrap() - time::OffsetDateTime::now_utc();
        assert!(ca_left > time::Duration::days(365 * 10 - 2), "{ca_left}");
        let pem = std::fs::read_to_string(paths.client_pem()).unwrap();
        assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("PRIVATE KEY"), "HAProxy's crt holds both");
        assert!(expiry(&paths.ca_key()).is_err(), "a key is not a certificate");
    }

    #[test]
    fn a_node_certificate_names_loopback_every_netns_address_and_the_bind_address() {
        let mut spec = crate::config::LabSpec::load(None, &Default::default()).unwrap();
        let h = hosts(&spec);
        assert_eq!(h, ["localhost", "127.0.0.1"]);
        spec.topology.kind = crate::config::topology::TopologyKind::Netns;
        spec.security.bind = "10.1.2.3".parse().unwrap();
        let h = hosts(&spec);
        assert!(h.contains(&spec.topology.subnet.node_addr(1).to_string()) && h.contains(&spec.topology.subnet.node_addr(64).to_string()));
        assert_eq!(h.last().unwrap(), "10.1.2.3");
        spec.security.bind = "0.0.0.0".parse().unwrap();
        assert!(hosts(&spec).len() > 2 + 64, "every address of this host");
    }
}
