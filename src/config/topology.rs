//! The topology part of a lab's spec: which topology (`topology = "netns"`) and the netns
//! subnet (`[netns] subnet`), validated. The code that lays nodes out on it is
//! [`crate::topology`], above the configuration layer.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::node::NodeId;

/// Which topology a lab runs (`topology = "netns"` in the config, or `up --topology netns`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TopologyKind {
    /// Every node on 127.0.0.1, its own ports (no network faults).
    #[default]
    Loopback,
    /// Every node in its own network namespace with its own address (needs root or
    /// CAP_NET_ADMIN + CAP_SYS_ADMIN).
    Netns,
}

impl std::fmt::Display for TopologyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TopologyKind::Loopback => "loopback",
            TopologyKind::Netns => "netns",
        })
    }
}

/// An IPv4 subnet such as `198.18.7.0/24`: the bridge takes `.1`, node N takes `.(10 + N)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    /// The network address (host bits zero).
    pub network: Ipv4Addr,
    /// Prefix length, 16 to 25 (a /25 holds the bridge and 64 nodes at `.11`…`.74`).
    pub prefix: u8,
}

/// The default subnet: in RFC 2544's benchmarking range `198.18.0.0/15`, which is never
/// routed on the Internet, so it cannot shadow a real network.
pub const DEFAULT_SUBNET: Subnet = Subnet { network: Ipv4Addr::new(198, 18, 7, 0), prefix: 24 };

/// Ranges that cannot hold a lab's unicast addresses (RFC 6890's special-purpose registry):
/// "this network", loopback, link-local, multicast, and the reserved block with the limited
/// broadcast address.
const RESERVED: [(Subnet, &str); 5] = [
    (Subnet { network: Ipv4Addr::new(0, 0, 0, 0), prefix: 8 }, "\"this network\", RFC 791"),
    (Subnet { network: Ipv4Addr::new(127, 0, 0, 0), prefix: 8 }, "loopback, RFC 1122"),
    (Subnet { network: Ipv4Addr::new(169, 254, 0, 0), prefix: 16 }, "link-local, RFC 3927"),
    (Subnet { network: Ipv4Addr::new(224, 0, 0, 0), prefix: 4 }, "multicast, RFC 5771"),
    (Subnet { network: Ipv4Addr::new(240, 0, 0, 0), prefix: 4 }, "reserved, with the broadcast address, RFC 1112"),
];

impl Subnet {
    fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix as u32)
    }

    /// The host side's address on the bridge (`.1`): HAProxy, the daemon and workloads.
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Node `id`'s address: `.(10 + id)`.
    pub fn node_addr(&self, id: NodeId) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 10 + id)
    }

    /// True when `ip` lies in this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    /// True when the two subnets share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let m = self.mask() & other.mask();
        u32::from(self.network) & m == u32::from(other.network) & m
    }
}

impl std::str::FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (addr, prefix) =
            s.split_once('/').ok_or_else(|| format!("`{s}` is not a subnet like 198.18.7.0/24 (address/prefix length)"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("`{addr}` in `{s}` is not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("`/{prefix}` in `{s}` is not a prefix length"))?;
        if !(16..=25).contains(&prefix) {
            return Err(format!(
                "`{s}`: use a prefix length from /16 to /25 (the bridge takes .1 and node N takes .(10+N), up to {} nodes)",
                super::MAX_NODES
            ));
        }
        let subnet = Subnet { network: addr, prefix };
        if u32::from(addr) & !subnet.mask() != 0 {
            let net = Ipv4Addr::from(u32::from(addr) & subnet.mask());
            return Err(format!("`{s}` has host bits set; write {net}/{prefix}"));
        }
        if let Some((range, what)) = RESERVED.iter().find(|(r, _)| r.overlaps(&subnet)) {
            return Err(format!(
                "`{s}` lies in {range} ({what}), where a bridge and its nodes cannot have unicast addresses; use a private or \
                 benchmarking range no interface of this host uses, e.g. {DEFAULT_SUBNET} or 10.77.0.0/24"
            ));
        }
        Ok(subnet)
    }
}

impl TryFrom<String> for Subnet {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A lab's topology, as resolved from its config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopologySpec {
    pub kind: TopologyKind,
    /// The netns topology's addresses (unused by loopback).
    pub subnet: Subnet,
}

impl Default for TopologySpec {
    fn default() -> Self {
        Self { kind: TopologyKind::Loopback, subnet: DEFAULT_SUBNET }
    }
}
