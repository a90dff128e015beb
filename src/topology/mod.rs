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

use crate::config::LabSpec;
use crate::lab::Lab;
use crate::node::NodeId;
use crate::Result;

pub mod iproute;
pub mod netns;
pub mod record;
pub mod strays;

pub use record::{Cut, NetRecord, NodeNet, Peer, Shaping};

pub use crate::config::topology::{Subnet, TopologyKind, TopologySpec, DEFAULT_SUBNET};

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
