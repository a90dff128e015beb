//! The host side of the netns topology: running iproute2's `ip` and `tc` (their own words in
//! every error; "not there" is done for removals), this process's capabilities, the host's
//! subnets, and `tc-netem(8)`'s arguments.

use std::net::Ipv4Addr;
use std::process::Command;

use super::record::Shaping;
use super::Subnet;
use crate::{Error, Result};

/// How to install iproute2 when `ip` or `tc` is missing.
pub const IPROUTE2_HINT: &str = "Install iproute2 (`sudo apt-get install iproute2`).";

/// The interface name inside every node's namespace.
pub(super) const NODE_IF: &str = "eth0";

pub(super) fn run(program: &str, args: &[&str]) -> std::result::Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Runs `ip ARGS`; the error names the command and carries `ip`'s own words.
pub(super) fn ip(args: &[&str]) -> Result<String> {
    run("ip", args).map_err(|e| Error::Network { command: format!("ip {}", args.join(" ")), message: e })
}

/// Runs `ip ARGS`, treating "it is not there" as done (for removals).
pub(super) fn ip_remove(args: &[&str]) -> Result<()> {
    match run("ip", args) {
        Ok(_) => Ok(()),
        Err(e) if is_absent(&e) => Ok(()),
        Err(e) => Err(Error::Network { command: format!("ip {}", args.join(" ")), message: e }),
    }
}

/// `ip`'s and `tc`'s words for "no such object".
pub(super) fn is_absent(stderr: &str) -> bool {
    ["Cannot find device", "No such file or directory", "No such process", "does not exist", "Cannot open network namespace"]
        .iter()
        .any(|w| stderr.contains(w))
}

pub(super) fn link_exists(name: &str) -> bool {
    run("ip", &["link", "show", "dev", name]).is_ok()
}

/// Effective capabilities of this process (`CapEff` in `/proc/self/status`).
pub(super) fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string())))
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(0)
}

/// The capabilities the netns topology needs that `caps` lacks: CAP_NET_ADMIN (12: links,
/// addresses, routes, qdiscs) and CAP_SYS_ADMIN (21: `ip netns add` mounts, `setns`).
pub fn missing_caps(caps: u64) -> Vec<&'static str> {
    [(12, "CAP_NET_ADMIN"), (21, "CAP_SYS_ADMIN")].into_iter().filter(|(bit, _)| caps & (1 << bit) == 0).map(|(_, n)| n).collect()
}

/// Subnets (address/prefix) configured on the host's interfaces, from `ip -j -4 addr show`
/// output, with the interface that holds each.
pub fn host_subnets(json: &str) -> Vec<(String, Subnet)> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { return Vec::new() };
    let mut out = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        let name = link["ifname"].as_str().unwrap_or("?").to_string();
        for a in link["addr_info"].as_array().into_iter().flatten() {
            let (Some(local), Some(prefix)) = (a["local"].as_str(), a["prefixlen"].as_u64()) else { continue };
            let Ok(ip) = local.parse::<Ipv4Addr>() else { continue };
            let prefix = prefix.min(32) as u8;
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix as u32) };
            out.push((name.clone(), Subnet { network: Ipv4Addr::from(u32::from(ip) & mask), prefix }));
        }
    }
    out
}

/// `tc -n NS qdisc replace dev eth0 root netem delay Dms [Jms] [loss L%]` (tc-netem(8)).
pub fn netem_args(netns: &str, s: Shaping) -> Vec<String> {
    let mut a: Vec<String> = ["-n", netns, "qdisc", "replace", "dev", NODE_IF, "root", "netem"].iter().map(|s| s.to_string()).collect();
    if s.delay_ms > 0 || s.jitter_ms > 0 {
        a.push("delay".into());
        a.push(format!("{}ms", s.delay_ms));
        if s.jitter_ms > 0 {
            a.push(format!("{}ms", s.jitter_ms));
        }
    }
    if s.loss_pct > 0.0 {
        a.push("loss".into());
        a.push(format!("{}%", s.loss_pct));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_read_bit_by_bit() {
        assert!(missing_caps(u64::MAX).is_empty());
        assert_eq!(missing_caps(0), vec!["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]);
        assert_eq!(missing_caps(1 << 21), vec!["CAP_NET_ADMIN"]);
    }

    #[test]
    fn host_subnets_from_ip_json() {
        // `ip -j -4 addr show` (iproute2 6.1), trimmed.
        let json = r#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
            {"ifindex":2,"ifname":"eth0","addr_info":[{"family":"inet","local":"198.18.7.200","prefixlen":24}]}]"#;
        let s = host_subnets(json);
        assert_eq!(s[1], ("eth0".to_string(), "198.18.7.0/24".parse().unwrap()));
        assert!(s[1].1.overlaps(&super::super::DEFAULT_SUBNET));
        assert!(host_subnets("not json").is_empty());
    }

    #[test]
    fn netem_arguments() {
        let a = netem_args("ns", Shaping { delay_ms: 100, jitter_ms: 10, loss_pct: 2.5 });
        assert_eq!(a.join(" "), "-n ns qdisc replace dev eth0 root netem delay 100ms 10ms loss 2.5%");
        let a = netem_args("ns", Shaping { delay_ms: 0, jitter_ms: 0, loss_pct: 5.0 });
        assert_eq!(a.join(" "), "-n ns qdisc replace dev eth0 root netem loss 5%");
    }
}
