//! The engine's command lines, ports and addresses, without a binary.

use super::*;
use crate::config::Overrides;

fn engine() -> (Cockroach, Lab) {
    let spec = LabSpec::load(None, &Overrides::default()).unwrap();
    (Cockroach::new(&spec, None), Lab::new("/lab").unwrap())
}

fn members(e: &Cockroach, n: u32) -> Vec<Member> {
    (1..=n).map(|id| Member { id, ports: e.node_ports(id), engine_id: None }).collect()
}

#[test]
fn start_command_line() {
    let (e, lab) = engine();
    let ms = members(&e, 4);
    let ctx = StartContext { lab: &lab, node: ms[3], members: &ms, mode: super::super::StartMode::Join };
    insta::assert_snapshot!(e.start_args(&ctx).join(" \\\n  "));
}

#[test]
fn in_the_netns_topology_every_address_is_the_nodes_own() {
    // Node N listens on .(10+N) of the lab's subnet; --join and `node drain --host` name
    // those addresses, never loopback (docs: `cockroach start` --listen-addr/--http-addr/--join).
    let spec = LabSpec::load(None, &Overrides { topology: Some(crate::topology::TopologyKind::Netns), ..Default::default() }).unwrap();
    let e = Cockroach::new(&spec, None);
    let lab = Lab::new("/lab").unwrap();
    let ms: Vec<Member> =
        (1..=3).map(|id| Member { id, ports: crate::topology::Topology::node_ports(&spec, &e, id), engine_id: None }).collect();
    let args = e.start_args(&StartContext { lab: &lab, node: ms[1], members: &ms, mode: super::super::StartMode::Initial });
    assert!(args.contains(&"--listen-addr=198.18.7.12:26259".to_string()), "{args:?}");
    assert!(args.contains(&"--http-addr=198.18.7.12:8082".to_string()), "{args:?}");
    assert!(args.contains(&"--join=198.18.7.11:26258,198.18.7.12:26259,198.18.7.13:26260".to_string()), "{args:?}");
    assert_eq!(Cockroach::host_flag(&ms[2]), "--host=198.18.7.13:26260");
    assert_eq!(quorum::node_url(&ms[0]), "postgresql://root@198.18.7.11:26258/defaultdb?sslmode=disable");
}

#[test]
fn localities_cycle_over_nodes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/cockroach-5-localities.toml");
    let spec = LabSpec::load(Some(&path), &Overrides::default()).unwrap();
    let e = Cockroach::new(&spec, None);
    let lab = Lab::new("/lab").unwrap();
    let ms = members(&e, 5);
    let ctx = StartContext { lab: &lab, node: ms[3], members: &ms, mode: super::super::StartMode::Initial };
    assert!(e.start_args(&ctx).contains(&"--locality=region=us-east1,zone=a".to_string()));
}

#[test]
fn drain_wait_exceeds_haproxy_down_window() {
    assert_eq!(Cockroach::drain_wait_for(Duration::from_secs(2)), Duration::from_secs(3));
    assert_eq!(Cockroach::drain_wait_for(Duration::from_millis(2500)), Duration::from_secs(4));
}
