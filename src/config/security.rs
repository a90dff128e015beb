//! `[security]` of a lab's config, as written ([`RawSecurity`]) and validated
//! ([`SecuritySpec`]): whether every hop speaks TLS with the lab's own certificates (`up
//! --secure`), and the address HAProxy's frontends listen on (`up --bind ADDR`; the nodes stay
//! on their own addresses). Making and using the certificates is [`crate::certs`]'s and the
//! engines', above the configuration layer.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// `[security]` as written: every field optional, unknown fields rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurity {
    /// TLS on every hop with the lab's own CA, node and client certificates (default false;
    /// `up --secure`).
    pub secure: Option<bool>,
    /// The address HAProxy's frontends (clients, admin UI, stats) listen on (default
    /// `127.0.0.1`; `up --bind 0.0.0.0` to reach them from other machines).
    pub bind: Option<IpAddr>,
    /// Allow an insecure lab's frontends beyond loopback (default false; `up
    /// --insecure-public`): anyone who reaches the address owns the database.
    pub insecure_public: Option<bool>,
}

/// The validated security settings of a lab (persisted in its spec; labs made before them are
/// insecure, on loopback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecuritySpec {
    pub secure: bool,
    pub bind: IpAddr,
    #[serde(default)]
    pub insecure_public: bool,
}

impl Default for SecuritySpec {
    fn default() -> Self {
        Self { secure: false, bind: IpAddr::from([127, 0, 0, 1]), insecure_public: false }
    }
}

/// The flags over `[security]`: `up --secure`, `--bind ADDR`, `--insecure-public`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SecurityFlags {
    pub secure: bool,
    pub bind: Option<IpAddr>,
    pub insecure_public: bool,
}

impl RawSecurity {
    /// Applies the flags over the file and checks the result. The message names the flag or
    /// key to change.
    pub fn resolve(self, flags: SecurityFlags) -> Result<SecuritySpec, String> {
        let spec = SecuritySpec {
            secure: flags.secure || self.secure.unwrap_or(false),
            bind: flags.bind.or(self.bind).unwrap_or(SecuritySpec::default().bind),
            insecure_public: flags.insecure_public || self.insecure_public.unwrap_or(false),
        };
        if !spec.bind.is_loopback() && !spec.secure && !spec.insecure_public {
            return Err(format!(
                "bind = {}: an insecure lab beyond loopback lets anyone who reaches that address own the database; \
                 add --secure (TLS and certificates on every hop), or --insecure-public if you mean it",
                spec.bind
            ));
        }
        if spec.bind.is_multicast() {
            return Err(format!("bind = {}: a multicast address is not one to listen on", spec.bind));
        }
        Ok(spec)
    }
}

impl SecuritySpec {
    /// `host:port` for a frontend on the bind address (`[::1]:26257` for IPv6).
    pub fn frontend_addr(&self, port: u16) -> String {
        std::net::SocketAddr::new(self.bind, port).to_string()
    }

    /// The host clients on this machine use for the frontends: the bind address, or
    /// 127.0.0.1 when it listens on every address.
    pub fn local_host(&self) -> String {
        if self.bind.is_unspecified() {
            "127.0.0.1".into()
        } else {
            self.bind.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_loopback_needs_tls_or_an_explicit_yes() {
        let raw = |t: &str| toml::from_str::<RawSecurity>(t).unwrap();
        assert_eq!(raw("").resolve(SecurityFlags::default()).unwrap(), SecuritySpec::default());
        let open = SecurityFlags { bind: Some("0.0.0.0".parse().unwrap()), ..Default::default() };
        let e = raw("").resolve(open).unwrap_err();
        assert!(e.contains("--secure") && e.contains("--insecure-public"), "{e}");
        let secure = raw("").resolve(SecurityFlags { secure: true, ..open }).unwrap();
        assert_eq!((secure.secure, secure.local_host()), (true, "127.0.0.1".to_string()));
        assert!(raw("insecure_public = true").resolve(open).is_ok());
        assert!(raw("bind = \"::1\"").resolve(SecurityFlags::default()).is_ok(), "IPv6 loopback needs nothing more");
        assert_eq!(raw("bind = \"::1\"").resolve(SecurityFlags::default()).unwrap().frontend_addr(26257), "[::1]:26257");
        assert!(toml::from_str::<RawSecurity>("bind = \"nowhere\"").is_err());
        assert!(raw("secure = true\nbind = \"224.0.0.1\"").resolve(SecurityFlags::default()).unwrap_err().contains("multicast"));
    }
}
