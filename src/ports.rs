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

/// Binds `127.0.0.1:port` for the daemon's own servers (the console, the alert webhook).
///
/// Errors: the port is taken ([`Error::PortInUse`], naming `role` and the holder), or it
/// cannot be bound for another reason.
pub async fn bind_loopback(port: u16, role: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Error::PortInUse { port, role: role.to_string(), holder: holder(port) }
        } else {
            Error::io(format!("cannot listen on 127.0.0.1:{port}"), e)
        }
    })
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

/// `pid N (name)` of the process listening on `port`, when the OS lets us see it; else what
/// the kernel's socket table (`/proc/net/tcp`, `tcp6`) says holds it.
pub fn holder(port: u16) -> Option<String> {
    if let Ok(p) = listeners::get_process_by_port(port, listeners::Protocol::TCP) {
        return Some(format!("pid {} ({})", p.pid, p.name));
    }
    let states: Vec<u8> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|f| socket_states(&std::fs::read_to_string(f).unwrap_or_default(), port))
        .collect();
    describe_states(&states)
}

/// TCP states (`st`, hex) of the sockets bound to local `port` in a `/proc/net/tcp` table.
fn socket_states(table: &str, port: u16) -> Vec<u8> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let local = f.nth(1)?;
            let st = f.nth(1)?;
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (p == port).then(|| u8::from_str_radix(st, 16).ok()).flatten()
        })
        .collect()
}

/// Words for sockets that hold a port without a listener (Linux `tcp_states.h`: 01
/// ESTABLISHED, 06 TIME_WAIT, ...).
fn describe_states(states: &[u8]) -> Option<String> {
    if states.is_empty() {
        return None;
    }
    if states.iter().all(|s| *s == 0x06) {
        return Some(format!(
            "{} socket(s) in TIME-WAIT from earlier connections (no process; the kernel frees them within 60 s)",
            states.len()
        ));
    }
    Some(format!(
        "the local end of {} connection(s) (the kernel's ephemeral port range, /proc/sys/net/ipv4/ip_local_port_range, may cover it)",
        states.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_without_a_listener_are_described_from_the_kernel_table() {
        // Two lines of /proc/net/tcp: port 0x5CF1 = 23793 in TIME_WAIT (06), 0x1F90 = 8080 ESTABLISHED (01).
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:5CF1 0100007F:D431 06 00000000:00000000 03:00000AF1 00000000     0        0 0 3 0000000000000000\n\
   1: 0100007F:1F90 0100007F:A0B2 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(socket_states(table, 23793), vec![6]);
        assert!(describe_states(&socket_states(table, 23793)).unwrap().contains("TIME-WAIT"));
        assert!(describe_states(&socket_states(table, 8080)).unwrap().contains("local end of 1 connection"));
        assert_eq!(describe_states(&socket_states(table, 1)), None);
        assert_eq!(socket_states("garbage\n\n  x y", 1), Vec::<u8>::new());
    }

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
