//! The netns topology: one network namespace per node, joined to the host by veth pairs on a
//! bridge, all made with iproute2's `ip` (and `tc` for latency and loss), the tools every
//! Linux distribution ships and whose behaviour is documented in `ip-netns(8)`,
//! `ip-link(8)`, `ip-route(8)` and `tc-netem(8)`.
//!
//! Names are derived from the lab directory (a 6-hex-digit tag), recorded in `DIR/net.json`
//! *before* anything is created, and checked free first: the lab only ever removes what its
//! record names, and refuses to adopt a namespace or interface it did not make.
//!
//! Partitions are blackhole routes inside the namespaces (`ip route add blackhole ADDR/32`):
//! the kernel discards the packets, a local sender gets `EINVAL`, the remote one hears
//! nothing — no netfilter module needed. Latency and loss need the `sch_netem` qdisc, which
//! some kernels lack (including this project's CI): then `net delay`/`net loss` are refused
//! with the reason, never silently ignored.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::iproute::{
    effective_caps, host_subnets, ip, ip_remove, is_absent, link_exists, missing_caps, netem_args, run, IPROUTE2_HINT, NODE_IF,
};
use super::record::{partition_cuts, Cut, NetRecord, NodeNet, Peer, Shaping};
use super::Subnet;
use crate::lab::Lab;
use crate::node::NodeId;
use crate::{Error, Result};

/// A lab's namespaces, bridge and faults.
#[derive(Debug)]
pub struct Netns {
    record_path: PathBuf,
    tag: String,
    subnet: Subnet,
    /// Serializes changes to the record and the network.
    lock: Mutex<()>,
}

/// One reachability probe: a TCP connect from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reach {
    pub from: Peer,
    pub to: Peer,
    /// A TCP handshake completed, or the peer's kernel refused it (RST): packets flow both ways.
    pub ok: bool,
    /// `connected in 1 ms`, `refused (nothing listens) in 0 ms`, `dropped at the sender (no route)`, `timed out after 300 ms`.
    pub detail: String,
}

/// The 6-hex-digit tag of a lab directory (FNV-1a of its path): stable, short enough for
/// 15-byte interface names, distinct for distinct labs with overwhelming likelihood (and
/// names are checked free before use anyway).
pub fn tag_of(dir: &Path) -> String {
    let mut h: u32 = 0x811c9dc5;
    for b in dir.as_os_str().as_encoded_bytes() {
        h ^= *b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    format!("{:06x}", h & 0xff_ffff)
}

impl Netns {
    /// The netns topology of `lab` on `subnet`.
    pub fn new(lab: &Lab, subnet: Subnet) -> Self {
        Self { record_path: lab.net_record(), tag: tag_of(lab.dir()), subnet, lock: Mutex::new(()) }
    }

    fn netns_name(&self, id: NodeId) -> String {
        format!("roachlab-{}-n{id}", self.tag)
    }

    fn bridge_name(&self) -> String {
        format!("rl{}br", self.tag)
    }

    fn veth_name(&self, id: NodeId) -> String {
        format!("rl{}n{id}", self.tag)
    }

    /// `/run/netns/NAME` of node `id` (where `ip netns add` bind-mounts it).
    pub fn netns_path(&self, id: NodeId) -> PathBuf {
        Path::new("/run/netns").join(self.netns_name(id))
    }

    /// The subnet.
    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    /// The record as it stands.
    pub fn record(&self) -> Result<NetRecord> {
        NetRecord::load(&self.record_path)
    }

    /// Applies `f` to the record and saves it, under the lock.
    fn change<T>(&self, f: impl FnOnce(&mut NetRecord) -> T) -> Result<T> {
        let mut r = NetRecord::load(&self.record_path)?;
        let out = f(&mut r);
        r.save(&self.record_path)?;
        Ok(out)
    }

    /// See [`super::Topology::check_prerequisites`].
    pub fn check_prerequisites(&self) -> Result<()> {
        let missing = missing_caps(effective_caps());
        if !missing.is_empty() {
            return Err(Error::Privilege {
                what: "the netns topology (a network namespace, veth pair and bridge per lab)".into(),
                missing: missing.join(" and "),
                how: "run it as root (`sudo roachlab up --topology netns`), or use the default loopback topology \
                      (`roachlab up` without --topology), which needs no privileges but offers no network faults"
                    .into(),
            });
        }
        which::which("ip").map_err(|_| Error::BinaryNotFound {
            name: "ip".into(),
            env_var: "PATH".into(),
            install: IPROUTE2_HINT.into(),
        })?;
        let bridge = self.record()?.bridge;
        let json = ip(&["-j", "-4", "addr", "show"])?;
        for (ifname, net) in host_subnets(&json) {
            if Some(&ifname) == bridge.as_ref() {
                continue; // the lab's own bridge, from an earlier `up`
            }
            if net.overlaps(&self.subnet) {
                return Err(Error::Refused(format!(
                    "the netns subnet {} overlaps {net} on interface {ifname}; choose another with `[netns] subnet = \"…\"` \
                     (e.g. 198.18.{}.0/24)",
                    self.subnet,
                    (u32::from(self.subnet.network) >> 8 & 0xff) + 1
                )));
            }
        }
        Ok(())
    }

    /// See [`super::Topology::prepare_node`].
    pub fn prepare_node(&self, id: NodeId) -> Result<()> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let rec = self.record()?;
        let bridge = self.bridge_name();
        if rec.bridge.is_none() || !link_exists(&bridge) {
            if rec.bridge.is_none() && link_exists(&bridge) {
                return Err(self.not_ours("interface", &bridge));
            }
            self.change(|r| r.bridge = Some(bridge.clone()))?;
            ip(&["link", "add", &bridge, "type", "bridge"])?;
            let host = format!("{}/{}", self.subnet.host_addr(), self.subnet.prefix);
            ip(&["addr", "add", &host, "dev", &bridge])?;
            ip(&["link", "set", &bridge, "up"])?;
        }
        let (ns, veth, addr) = (self.netns_name(id), self.veth_name(id), self.subnet.node_addr(id));
        let recorded = rec.nodes.contains_key(&id);
        let present = (self.netns_path(id).exists(), link_exists(&veth));
        if recorded && present == (true, true) {
            return Ok(());
        }
        if !recorded && (present.0 || present.1) {
            return Err(self.not_ours(if present.0 { "network namespace" } else { "interface" }, if present.0 { &ns } else { &veth }));
        }
        // Recorded but partly gone (a reboot, a hand-deleted piece): rebuild it whole.
        if recorded {
            ip_remove(&["link", "del", &veth])?;
            ip_remove(&["netns", "del", &ns])?;
        }
        self.change(|r| r.nodes.insert(id, NodeNet { netns: ns.clone(), veth: veth.clone(), addr }))?;
        ip(&["netns", "add", &ns])?;
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", NODE_IF, "netns", &ns])?;
        ip(&["link", "set", &veth, "master", &bridge, "up"])?;
        ip(&["-n", &ns, "addr", "add", &format!("{addr}/{}", self.subnet.prefix), "dev", NODE_IF])?;
        ip(&["-n", &ns, "link", "set", NODE_IF, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn not_ours(&self, what: &str, name: &str) -> Error {
        Error::Refused(format!(
            "a {what} named {name} exists but this lab's record ({}) does not name it: roachlab will not take over or \
             remove what it did not create. If it is left from this lab's earlier run, remove it (`ip netns del` / \
             `ip link del`); if another lab in a directory with the same tag made it, use another --dir",
            self.record_path.display()
        ))
    }

    /// See [`super::Topology::remove_node`].
    pub fn remove_node(&self, id: NodeId) -> Result<()> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(n) = self.record()?.nodes.get(&id).cloned() else { return Ok(()) };
        ip_remove(&["link", "del", &n.veth])?;
        ip_remove(&["netns", "del", &n.netns])?;
        self.change(|r| {
            r.nodes.remove(&id);
            r.cuts.retain(|c| c.from != id && c.to != Peer::Node(id));
            r.shaped.remove(&id);
            for s in &mut r.sides {
                s.retain(|n| *n != id);
            }
        })
    }

    fn addr_of(&self, r: &NetRecord, p: Peer) -> Option<Ipv4Addr> {
        match p {
            Peer::Node(n) => r.nodes.get(&n).map(|x| x.addr),
            Peer::Clients => Some(self.subnet.host_addr()),
        }
    }

    /// Removes every cut and every delay/loss in force (those in the record); a route or
    /// qdisc already gone is fine. Returns what was undone, in words.
    pub fn heal(&self) -> Result<Vec<String>> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.heal_locked()
    }

    fn heal_locked(&self) -> Result<Vec<String>> {
        let mut done = self.remove_cuts_locked()?;
        done.extend(self.remove_shaping_locked()?);
        Ok(done)
    }

    /// Removes the partition in force (routes, then their record); delay and loss stay.
    fn remove_cuts_locked(&self) -> Result<Vec<String>> {
        let r = self.record()?;
        for c in &r.cuts {
            let (Some(n), Some(addr)) = (r.nodes.get(&c.from), self.addr_of(&r, c.to)) else { continue };
            ip_remove(&["-n", &n.netns, "route", "del", "blackhole", &format!("{addr}/32")])?;
        }
        self.change(|r| {
            r.cuts.clear();
            r.sides.clear();
        })?;
        Ok(if r.cuts.is_empty() { Vec::new() } else { vec![format!("removed {} cut(s)", r.cuts.len())] })
    }

    /// Removes every delay/loss in force (qdiscs, then their record).
    fn remove_shaping_locked(&self) -> Result<Vec<String>> {
        let r = self.record()?;
        let mut done = Vec::new();
        for id in r.shaped.keys() {
            let Some(n) = r.nodes.get(id) else { continue };
            match run("tc", &["-n", &n.netns, "qdisc", "del", "dev", NODE_IF, "root"]) {
                Ok(_) => {}
                Err(e) if is_absent(&e) || e.contains("Cannot delete qdisc with handle of zero") => {}
                Err(e) => return Err(Error::Network { command: format!("tc -n {} qdisc del dev {NODE_IF} root", n.netns), message: e }),
            }
            done.push(format!("node {id}: delay/loss removed"));
        }
        self.change(|r| r.shaped.clear())?;
        Ok(done)
    }

    /// Partitions the nodes into `sides` (see [`partition_cuts`]), replacing any partition in
    /// force (delay and loss stay). Every node named must have a namespace. On a failure
    /// half-way the cuts made are removed again. Returns the cuts made.
    pub fn partition(&self, sides: &[Vec<NodeId>], one_way: bool, from_clients: bool, members: usize) -> Result<Vec<Cut>> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let rec = self.record()?;
        for id in sides.iter().flatten() {
            if !rec.nodes.contains_key(id) {
                return Err(no_namespace(&rec, *id));
            }
        }
        // A new partition replaces the one in force (delay and loss stay).
        self.remove_cuts_locked()?;
        let cuts = partition_cuts(sides, one_way, from_clients, members);
        // Recorded first: a crash half-way leaves a record that `heal` undoes.
        self.change(|r| {
            r.cuts = cuts.clone();
            r.sides = sides.to_vec();
        })?;
        let rec = self.record()?;
        for c in &cuts {
            let n = &rec.nodes[&c.from];
            let addr = self.addr_of(&rec, c.to).expect("checked above");
            if let Err(e) = ip(&["-n", &n.netns, "route", "replace", "blackhole", &format!("{addr}/32")]) {
                let _ = self.remove_cuts_locked();
                return Err(e);
            }
        }
        Ok(cuts)
    }

    /// Adds latency and loss to node `id`'s outgoing traffic (`tc qdisc replace … netem`).
    /// Refused with the reason when the kernel has no `sch_netem`; nothing is left recorded then.
    pub fn shape(&self, id: NodeId, s: Shaping) -> Result<()> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let rec = self.record()?;
        let n = rec.nodes.get(&id).cloned().ok_or_else(|| no_namespace(&rec, id))?;
        which::which("tc").map_err(|_| Error::BinaryNotFound {
            name: "tc".into(),
            env_var: "PATH".into(),
            install: IPROUTE2_HINT.into(),
        })?;
        self.change(|r| r.shaped.insert(id, s))?;
        let args = netem_args(&n.netns, s);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(e) = run("tc", &argv) {
            self.change(|r| r.shaped.remove(&id))?;
            if e.contains("qdisc kind is unknown") || e.contains("Unknown qdisc") {
                return Err(Error::Refused(format!(
                    "this kernel has no netem qdisc (module sch_netem; `tc` said: {e}), so `net delay` and `net loss` \
                     cannot be applied. Load it with `sudo modprobe sch_netem` where the kernel ships it; partitions \
                     (`net partition`, `net isolate`) need no module and work here"
                )));
            }
            return Err(Error::Network { command: format!("tc {}", args.join(" ")), message: e });
        }
        Ok(())
    }

    /// Probes who reaches whom: a TCP connect (bounded by `timeout`) from the host and from
    /// inside each node's namespace to each node's `(address, port)`. Runs on threads of its
    /// own (a thread enters a namespace with `setns`; it ends with the probe).
    pub fn reachability(&self, targets: &[(NodeId, SocketAddr)], timeout: Duration) -> Result<Vec<Reach>> {
        let rec = self.record()?;
        let mut sources: Vec<(Peer, Option<PathBuf>)> = vec![(Peer::Clients, None)];
        sources.extend(
            targets.iter().filter(|(id, _)| rec.nodes.contains_key(id)).map(|(id, _)| (Peer::Node(*id), Some(self.netns_path(*id)))),
        );
        let handles: Vec<_> = sources
            .into_iter()
            .map(|(from, ns)| {
                let targets: Vec<(NodeId, SocketAddr)> = targets.iter().filter(|(id, _)| Peer::Node(*id) != from).copied().collect();
                std::thread::spawn(move || probe_from(from, ns.as_deref(), &targets, timeout))
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.extend(h.join().map_err(|_| Error::Refused("a reachability probe thread panicked".into()))??);
        }
        Ok(out)
    }

    /// Checks that packets cross the bridge: a TCP connect from the first node's namespace to
    /// the second node, and from the host to the first (a refused connection counts: an RST
    /// came back). Bridged traffic can be dropped by the host's firewall when
    /// `net.bridge.bridge-nf-call-iptables` is 1 (Docker hosts set it, with a FORWARD policy
    /// of DROP); the error says how to allow it.
    pub fn check_paths(&self, targets: &[(NodeId, SocketAddr)]) -> Result<()> {
        if targets.len() < 2 {
            return Ok(());
        }
        let reach = self.reachability(&targets[..2], Duration::from_secs(1))?;
        let blocked: Vec<&Reach> = reach
            .iter()
            .filter(|r| !r.ok && (r.from == Peer::Clients && r.to == Peer::Node(targets[0].0) || r.from == Peer::Node(targets[0].0)))
            .collect();
        if blocked.is_empty() {
            return Ok(());
        }
        let bridge = self.bridge_name();
        let nf = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables").map(|s| s.trim() == "1").unwrap_or(false);
        let why: Vec<String> = blocked.iter().map(|r| format!("{} → {}: {}", r.from, r.to, r.detail)).collect();
        Err(Error::Refused(format!(
            "packets do not cross the lab's bridge {bridge} ({}).{} Allow traffic on it, e.g. `iptables -I FORWARD -i {bridge} \
             -o {bridge} -j ACCEPT`, then run `roachlab up` again (the nodes started so far are kept)",
            why.join("; "),
            if nf {
                " net.bridge.bridge-nf-call-iptables is 1 here, so bridged traffic passes the host's iptables FORWARD chain \
                 (a Docker host drops it by default)."
            } else {
                ""
            }
        )))
    }

    /// See [`super::Topology::teardown`]: heals, then removes every namespace, veth and the
    /// bridge the record names, then the record.
    pub fn teardown(&self) -> Result<Vec<String>> {
        let mut done = self.heal()?;
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let rec = self.record()?;
        for (id, n) in &rec.nodes {
            ip_remove(&["link", "del", &n.veth])?;
            ip_remove(&["netns", "del", &n.netns])?;
            self.change(|r| r.nodes.remove(id))?;
            done.push(format!("removed namespace {} and veth {}", n.netns, n.veth));
        }
        if let Some(b) = &rec.bridge {
            ip_remove(&["link", "del", b])?;
            done.push(format!("removed bridge {b}"));
        }
        match std::fs::remove_file(&self.record_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("cannot remove {}", self.record_path.display()), e)),
        }
        Ok(done)
    }
}

fn probe_from(from: Peer, ns: Option<&Path>, targets: &[(NodeId, SocketAddr)], timeout: Duration) -> Result<Vec<Reach>> {
    if let Some(ns) = ns {
        let f = std::fs::File::open(ns).map_err(|e| Error::io(format!("cannot open {}", ns.display()), e))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::io(format!("cannot enter {}", ns.display()), e.into()))?;
    }
    Ok(targets
        .iter()
        .map(|(id, addr)| {
            let start = Instant::now();
            let (ok, detail) = match TcpStream::connect_timeout(addr, timeout) {
                Ok(_) => (true, format!("connected in {} ms", start.elapsed().as_millis())),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    (true, format!("refused in {} ms (reachable; nothing listens)", start.elapsed().as_millis()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => (false, format!("timed out after {} ms", timeout.as_millis())),
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => (false, "dropped at the sender (blackhole route)".into()),
                Err(e) => (false, e.to_string()),
            };
            Reach { from, to: Peer::Node(*id), ok, detail }
        })
        .collect())
}

/// Removes what the record in `lab` names, without a spec: for `down --wipe` when no daemon
/// and no readable state are left.
pub fn teardown_recorded(lab: &Lab) -> Result<Vec<String>> {
    if !lab.net_record().exists() {
        return Ok(Vec::new());
    }
    Netns::new(lab, super::DEFAULT_SUBNET).teardown()
}

/// Node `id` has no namespace in the record: with none at all, the lab's network is down
/// (after `down`), which is what to say, not "unknown node".
fn no_namespace(rec: &NetRecord, id: NodeId) -> Error {
    if rec.nodes.is_empty() {
        Error::Refused(format!(
            "node {id} has no network namespace: the lab's network is down (after `roachlab down`); `roachlab up` first"
        ))
    } else {
        Error::UnknownNode { id, known: rec.nodes.keys().copied().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_stable_short_and_fit_interface_names() {
        let t = tag_of(Path::new("/labs/a"));
        assert_eq!(t.len(), 6);
        assert_eq!(t, tag_of(Path::new("/labs/a")));
        assert_ne!(t, tag_of(Path::new("/labs/b")));
        let n = Netns { record_path: "/x".into(), tag: t, subnet: super::super::DEFAULT_SUBNET, lock: Mutex::new(()) };
        assert!(n.veth_name(64).len() <= 15 && n.bridge_name().len() <= 15, "IFNAMSIZ is 16 with the NUL");
    }
}
