//! The topology seam: where a lab's node processes live on the network.
//!
//! - `loopback` (the default): every node listens on 127.0.0.1 with its own ports; faults are
//!   process faults only.
//! - `netns`: every node runs in its own network namespace with its own address, joined to
//!   the host by a veth pair on a bridge the lab creates ([`netns`]). HAProxy, the daemon and
//!   workloads stay in the host namespace. This is what makes network faults possible:
//!   partitions (blackhole routes inside the namespaces), and latency and loss where the
//!   kernel has `sch_netem`.
//!
//! [`Topology`] is the one place the supervisor asks "where does node N listen, what must
//! exist before it starts, which namespace does it enter, and what is undone at `down`"; it
//! never branches on the topology itself.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::LabSpec;
use crate::lab::Lab;
use crate::node::NodeId;
use crate::Result;

pub mod netns;
pub mod record;

pub use record::{Cut, NetRecord, NodeNet, Peer, Shaping};

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
                crate::config::MAX_NODES
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

/// The topology of one lab: the seam the supervisor talks to. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Topology {
    Loopback,
    Netns(std::sync::Arc<netns::Netns>),
}

impl Topology {
    /// The topology `spec` asks for, in `lab`.
    pub fn for_lab(spec: &LabSpec, lab: &Lab) -> Self {
        match spec.topology.kind {
            TopologyKind::Loopback => Topology::Loopback,
            TopologyKind::Netns => Topology::Netns(std::sync::Arc::new(netns::Netns::new(lab, spec.topology.subnet))),
        }
    }

    /// The kind.
    pub fn kind(&self) -> TopologyKind {
        match self {
            Topology::Loopback => TopologyKind::Loopback,
            Topology::Netns(_) => TopologyKind::Netns,
        }
    }

    /// Where node `id` listens.
    pub fn node_host(spec: &LabSpec, id: NodeId) -> Ipv4Addr {
        match spec.topology.kind {
            TopologyKind::Loopback => Ipv4Addr::LOCALHOST,
            TopologyKind::Netns => spec.topology.subnet.node_addr(id),
        }
    }

    /// Node `id`'s address and ports: the engine's port layout at the topology's address.
    pub fn node_ports(spec: &LabSpec, engine: &dyn crate::engine::Engine, id: NodeId) -> crate::node::NodePorts {
        crate::node::NodePorts { host: Self::node_host(spec, id), ..engine.node_ports(id) }
    }

    /// Whether node ports share the host's port space (loopback), so they must be checked
    /// free there before a node starts. In netns every node has its own.
    pub fn nodes_share_host_ports(&self) -> bool {
        matches!(self, Topology::Loopback)
    }

    /// Checks, before anything starts, that this topology can be built here: for netns,
    /// the privileges (CAP_NET_ADMIN, CAP_SYS_ADMIN), the `ip` tool, and that the subnet is
    /// not in use on the host. Errors say why and how to fix it.
    pub fn check_prerequisites(&self) -> Result<()> {
        match self {
            Topology::Loopback => Ok(()),
            Topology::Netns(n) => n.check_prerequisites(),
        }
    }

    /// Creates what node `id` needs before it starts (its namespace, veth pair and address;
    /// the bridge with the first node). Idempotent: what the lab already made is kept.
    pub fn prepare_node(&self, id: NodeId) -> Result<()> {
        match self {
            Topology::Loopback => Ok(()),
            Topology::Netns(n) => n.prepare_node(id),
        }
    }

    /// The network namespace node `id` enters before exec (`/run/netns/NAME`), if any.
    pub fn netns_path(&self, id: NodeId) -> Option<PathBuf> {
        match self {
            Topology::Loopback => None,
            Topology::Netns(n) => Some(n.netns_path(id)),
        }
    }

    /// Checks, once nodes' network exists, that packets flow between them and from the host
    /// (`targets`: node id and service address); a firewall dropping bridged traffic is
    /// named with the way to allow it. Nothing to check on loopback.
    pub fn check_paths(&self, targets: &[(NodeId, std::net::SocketAddr)]) -> Result<()> {
        match self {
            Topology::Loopback => Ok(()),
            Topology::Netns(n) => n.check_paths(targets),
        }
    }

    /// Removes what node `id` had (a decommissioned node's namespace), once its process is gone.
    pub fn remove_node(&self, id: NodeId) -> Result<()> {
        match self {
            Topology::Loopback => Ok(()),
            Topology::Netns(n) => n.remove_node(id),
        }
    }

    /// Undoes every network fault (partitions, delay, loss); nothing to do on loopback.
    pub fn heal(&self) -> Result<Vec<String>> {
        match self {
            Topology::Loopback => Ok(Vec::new()),
            Topology::Netns(n) => n.heal(),
        }
    }

    /// Removes everything the lab created on the network (after its processes are gone):
    /// `down`. Returns what was removed, in words.
    pub fn teardown(&self) -> Result<Vec<String>> {
        match self {
            Topology::Loopback => Ok(Vec::new()),
            Topology::Netns(n) => n.teardown(),
        }
    }

    /// The network topology, for network-fault requests; refuses on loopback, saying how to
    /// get one.
    pub fn netns(&self) -> Result<&netns::Netns> {
        match self {
            Topology::Netns(n) => Ok(n),
            Topology::Loopback => Err(crate::Error::Refused(
                "network faults need the netns topology (every node in its own network namespace); this lab runs on \
                 loopback. Start one with `roachlab down` and then `sudo roachlab up --topology netns` (or \
                 `topology = \"netns\"` in the config)"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_lay_out_addresses() {
        let s: Subnet = "198.18.7.0/24".parse().unwrap();
        assert_eq!(s, DEFAULT_SUBNET);
        assert_eq!(s.host_addr(), Ipv4Addr::new(198, 18, 7, 1));
        assert_eq!(s.node_addr(3), Ipv4Addr::new(198, 18, 7, 13));
        assert_eq!(s.node_addr(64), Ipv4Addr::new(198, 18, 7, 74));
        assert!(s.contains(Ipv4Addr::new(198, 18, 7, 200)) && !s.contains(Ipv4Addr::new(198, 18, 8, 1)));
        assert!(s.overlaps(&"198.18.0.0/16".parse().unwrap()));
        assert!(!s.overlaps(&"198.18.8.0/24".parse().unwrap()));
        assert_eq!(s.to_string(), "198.18.7.0/24");
    }

    #[test]
    fn bad_subnets_say_what_to_write() {
        assert!("198.18.7.0".parse::<Subnet>().unwrap_err().contains("address/prefix length"));
        assert!("198.18.7.5/24".parse::<Subnet>().unwrap_err().contains("write 198.18.7.0/24"));
        assert!("10.0.0.0/30".parse::<Subnet>().unwrap_err().contains("/16 to /25"));
        assert!("300.1.1.0/24".parse::<Subnet>().unwrap_err().contains("not an IPv4 address"));
        for (bad, what) in [
            ("224.0.0.0/24", "multicast"),
            ("239.255.0.0/16", "multicast"),
            ("255.255.255.0/24", "broadcast"),
            ("169.254.1.0/24", "link-local"),
            ("127.1.0.0/24", "loopback"),
            ("0.0.7.0/24", "this network"),
        ] {
            let e = bad.parse::<Subnet>().unwrap_err();
            assert!(e.contains(what) && e.contains("198.18.7.0/24"), "{bad}: {e}");
        }
        assert!("10.77.0.0/24".parse::<Subnet>().is_ok() && "100.64.3.0/24".parse::<Subnet>().is_ok());
    }
}
