//! `roachlab net …`: network faults on a netns lab (partition, isolate, delay, loss, heal)
//! and `net status`, who reaches whom, probed.

use std::time::Duration;

use clap::Subcommand;

use super::stream;
use crate::api::{Client, PartitionRequest, ShapeRequest, StatusReport};
use crate::lab::Lab;
use crate::node::NodeId;
use crate::supervisor::NetStatus;
use crate::topology::Peer;
use crate::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Cut node N off from every other node, both ways (HAProxy still reaches it unless
    /// --from-clients).
    Isolate {
        id: NodeId,
        /// Also cut HAProxy and the daemon off from it.
        #[arg(long)]
        from_clients: bool,
    },
    /// Split the nodes into sides (comma lists, e.g. `1,2 3,4,5`); traffic between sides is
    /// dropped, both ways. A new partition replaces the one in force.
    Partition {
        /// The sides, e.g. `1,2 3,4,5` (or `1,2 3,4 5`); nodes named nowhere keep every link.
        #[arg(required = true, value_parser = parse_side)]
        sides: Vec<Vec<NodeId>>,
        /// Asymmetric: the (single) side given cannot send to these nodes; they can still send
        /// to it (over TCP, which needs both directions, connections fail either way).
        #[arg(long, value_parser = parse_one_side)]
        one_way: Option<Side>,
        /// Also cut HAProxy and the daemon off from every side without a majority.
        #[arg(long)]
        from_clients: bool,
    },
    /// Add latency to node N's outgoing traffic (needs the kernel's sch_netem).
    Delay {
        id: NodeId,
        #[arg(value_parser = crate::config::parse_duration)]
        delay: Duration,
        /// Random variation around the delay.
        #[arg(long, default_value = "0ms", value_parser = crate::config::parse_duration)]
        jitter: Duration,
    },
    /// Drop a share of node N's outgoing packets, e.g. `5%` (needs the kernel's sch_netem).
    Loss {
        id: NodeId,
        #[arg(value_parser = parse_percent)]
        percent: f64,
    },
    /// Remove every partition, delay and loss: everything reachable again.
    Heal,
    /// Who reaches whom now (TCP connects from the host and from inside every node's
    /// namespace, probed), the partition in force, and which side holds quorum.
    Status {
        #[arg(long)]
        json: bool,
    },
}

/// One side given as a single value (`--one-way 1,2`). A newtype, so clap takes the whole
/// list as one value: an `Option<Vec<_>>` field is read by clap's derive as many values of
/// one id each, which does not match `parse_side`'s list (it panicked with "Mismatch between
/// definition and access of `one_way`").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side(pub Vec<NodeId>);

fn parse_one_side(s: &str) -> std::result::Result<Side, String> {
    parse_side(s).map(Side)
}

/// `1,2,3` → `[1, 2, 3]`.
pub fn parse_side(s: &str) -> std::result::Result<Vec<NodeId>, String> {
    s.split(',')
        .map(|p| {
            p.trim()
                .parse::<NodeId>()
                .map_err(|_| format!("`{p}` in `{s}` is not a node id; write a side as ids joined by commas, e.g. 1,2"))
        })
        .collect()
}

/// `5%` or `5` → 5.0, within 0–100.
pub fn parse_percent(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.trim_end_matches('%').parse().map_err(|_| format!("`{s}` is not a percentage like 5%"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("`{s}`: a loss from 0% to 100%"));
    }
    Ok(v)
}

pub async fn run(lab: &Lab, command: NetCommand) -> Result<i32> {
    let client = crate::launch::ensure_daemon(lab).await?;
    match command {
        NetCommand::Isolate { id, from_clients } => {
            let rest = others(&client, id).await?;
            let req = PartitionRequest { sides: vec![vec![id], rest], one_way: false, from_clients };
            stream(&client, "/v1/net/partition", &req).await?;
        }
        NetCommand::Partition { sides, one_way, from_clients } => {
            let req = match one_way {
                Some(Side(to)) if sides.len() == 1 => PartitionRequest { sides: vec![sides[0].clone(), to], one_way: true, from_clients },
                Some(_) => return Err(Error::Refused("--one-way takes one side, e.g. `net partition 3 --one-way 1`".into())),
                None => PartitionRequest { sides, one_way: false, from_clients },
            };
            stream(&client, "/v1/net/partition", &req).await?;
        }
        NetCommand::Delay { id, delay, jitter } => {
            let req = ShapeRequest { node: id, delay_ms: ms(delay)?, jitter_ms: ms(jitter)?, loss_pct: 0.0 };
            stream(&client, "/v1/net/shape", &req).await?;
        }
        NetCommand::Loss { id, percent } => {
            stream(&client, "/v1/net/shape", &ShapeRequest { node: id, loss_pct: percent, ..Default::default() }).await?;
        }
        NetCommand::Heal => {
            stream(&client, "/v1/net/heal", &serde_json::json!({})).await?;
        }
        NetCommand::Status { json } => {
            let s: NetStatus = client.get("/v1/net").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s).expect("serializes"));
            } else {
                print!("{}", status_text(&s));
            }
        }
    }
    Ok(0)
}

fn ms(d: Duration) -> Result<u32> {
    u32::try_from(d.as_millis()).ok().filter(|v| *v <= 60_000).ok_or_else(|| Error::Refused("a delay of at most 60s".into()))
}

/// Every member but `id`.
async fn others(client: &Client, id: NodeId) -> Result<Vec<NodeId>> {
    let s: StatusReport = client.get("/v1/status").await?;
    let members: Vec<NodeId> = s.nodes.iter().filter(|n| !n.decommissioned).map(|n| n.id).collect();
    if !members.contains(&id) {
        return Err(Error::UnknownNode { id, known: members });
    }
    Ok(members.into_iter().filter(|n| *n != id).collect())
}

/// `net status` as text.
pub fn status_text(s: &NetStatus) -> String {
    let mut out = format!("topology {}", s.topology);
    if let Some(sub) = &s.subnet {
        out.push_str(&format!(", subnet {sub} (clients on the host side)"));
    }
    out.push('\n');
    if s.topology != "netns" {
        out.push_str("every node listens on 127.0.0.1: no network faults (use `--topology netns`)\n");
        return out;
    }
    for (id, addr) in &s.addresses {
        out.push_str(&format!("  node {id}: {addr}\n"));
    }
    if s.sides.is_empty() {
        out.push_str("partition: none\n");
    } else {
        let sides: Vec<String> = s.sides.iter().map(|x| x.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")).collect();
        out.push_str(&format!("partition: {} ({} directed cut(s))\n", sides.join(" | "), s.cuts.len()));
    }
    for (id, sh) in &s.shaped {
        out.push_str(&format!("node {id}: delay {} ms ± {} ms, loss {}%\n", sh.delay_ms, sh.jitter_ms, sh.loss_pct));
    }
    out.push_str("reaches (a TCP connect to each running node's client port, probed now):\n");
    let mut froms: Vec<Peer> = s.reach.iter().map(|r| r.from).collect();
    froms.dedup();
    for from in froms {
        let row: Vec<String> = s
            .reach
            .iter()
            .filter(|r| r.from == from)
            .map(|r| {
                let to = match r.to {
                    Peer::Node(n) => n.to_string(),
                    Peer::Clients => "clients".into(),
                };
                if r.ok {
                    format!("{to} ok")
                } else {
                    format!("{to} CUT ({})", r.detail)
                }
            })
            .collect();
        let name = match from {
            Peer::Node(n) => format!("node {n}"),
            Peer::Clients => "clients".into(),
        };
        out.push_str(&format!("  {name:<8} → {}\n", row.join(", ")));
    }
    if s.quorum_side.is_empty() {
        out.push_str("quorum: no node's quorum read answered at the last poll (no side holds a majority)\n");
    } else {
        out.push_str(&format!(
            "quorum: reads answer through node(s) {} (the side holding a majority)\n",
            s.quorum_side.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_and_percentages_parse_with_clear_errors() {
        assert_eq!(parse_side("1,2,3").unwrap(), vec![1, 2, 3]);
        assert!(parse_side("1,x").unwrap_err().contains("`x` in `1,x` is not a node id"));
        assert_eq!(parse_percent("5%").unwrap(), 5.0);
        assert!(parse_percent("150%").unwrap_err().contains("0% to 100%"));
        assert!(parse_percent("lots").unwrap_err().contains("not a percentage"));
    }
}
