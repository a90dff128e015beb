//! Port checks: every port a node or HAProxy needs is checked free on 127.0.0.1 before the
//! process starts, and a taken port is reported with the process holding it where readable.

use std::net::{Ipv4Addr, TcpListener};

use crate::{Error, Result};

/// A port and what roachlab wants it for (e.g. `node 2 SQL/RPC`), for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortClaim {
    pub port: u16,
    pub role: String,
}

impl PortClaim {
    pub fn new(port: u16, role: impl Into<String>) -> Self {
        Self { port, role: role.into() }
    }
}

/// True if a TCP listener could bind `127.0.0.1:port` now.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Checks every claim; the first taken port fails with [`Error::PortInUse`] naming the port,
/// its role and (from `/proc`, via the `listeners` crate) the holder's PID and name.
pub fn check_free(claims: &[PortClaim]) -> Result<()> {
    for c in claims {
        if !is_free(c.port) {
            return Err(Error::PortInUse { port: c.port, role: c.role.clone(), holder: holder(c.port) });
        }
    }
    Ok(())
}

/// `pid N (name)` of the process listening on `port`, when the OS lets us see it.
pub fn holder(port: u16) -> Option<String> {
    listeners::get_process_by_port(port, listeners::Protocol::TCP).ok().map(|p| format!("pid {} ({})", p.pid, p.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_names_its_role_and_holder() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let err = check_free(&[PortClaim::new(port, "node 2 SQL/RPC")]).unwrap_err().to_string();
        assert!(err.contains(&format!("port {port} (node 2 SQL/RPC) is already in use")), "{err}");
        assert!(err.contains(&format!("pid {}", std::process::id())), "holder missing: {err}");
        drop(l);
        assert!(check_free(&[PortClaim::new(port, "x")]).is_ok());
    }
}
