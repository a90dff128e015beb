//! Quorum in CockroachDB's terms: each range is its own Raft group of `num_replicas` voting
//! replicas (3 by default; 5 for some system ranges once a cluster has 5 or more nodes) and
//! needs a majority of *its* replicas. There is no cluster-wide majority of nodes
//! (contract §5 "Quorum is per range").
//!
//! - [`rule`]: the theory a drill states, from the replication factor.
//! - [`predict`]: which ranges would lose their majority if given nodes went down, from the
//!   replica placement observed before the fault (`crdb_internal.ranges_no_leases`, and
//!   `SHOW RANGES FROM TABLE` for the bank's own tables).
//! - [`probe`]: quorum *observed*: a timed SQL write through each live node, which commits only
//!   once a majority of its range's replicas have appended it to their Raft logs. On v20.1
//!   quorum loss is invisible in `ranges_unavailable` (it stays 0: no store counts the
//!   ranges), while `/health?ready=1` says `node is not healthy` and SQL hangs (fixtures
//!   05-quorum-loss).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::version::Facts;
use crate::engine::Member;
use crate::node::NodeId;
use crate::sql::{self, TypedSql};
use crate::watch::{groups_losing_majority, LossPrediction, Quorum, Takeover, Writes};
use crate::{Error, Result};
use tokio_postgres::error::SqlState;

/// The SQL URL of one node (not through HAProxy: the prediction and the probe are about that
/// node).
pub fn node_url(m: &Member) -> String {
    // A secure lab's process speaks its TLS ([`crate::tls`]): `require` takes it.
    let mode = if crate::tls::client().is_some() { "require" } else { "disable" };
    format!("postgresql://root@{}/defaultdb?sslmode={mode}", m.ports.service_addr())
}

/// The probe's table, in a database of roachlab's own: one row per node and second of the
/// minute (`slot`), so a probe abandoned at its timeout during quorum loss (which may leave
/// an intent behind) never holds up the next probes, which write other keys; 60 rows per node
/// at most. Created by `up` ([`super::Cockroach`]'s `configure`), and by the probe itself on a
/// lab made before it existed.
pub const PROBE_SCHEMA: &str = "CREATE DATABASE IF NOT EXISTS roachlab; \
    CREATE TABLE IF NOT EXISTS roachlab.quorum_probe (node_id INT8 NOT NULL, slot INT8 NOT NULL, \
    written_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (node_id, slot))";

/// The probe: a write, not a read. A read is served by the range's leaseholder alone for as
/// long as its lease is valid — an epoch-based lease lasts as long as the holder's liveness
/// record, up to 9 s on v20.1 after its last heartbeat (docs "Replication layer": leases;
/// seen on v20.1.5: `SELECT count(*) FROM system.users` still answered through the survivor
/// after two of three nodes were SIGKILLed) — so a read can answer without any majority. A
/// write commits only once a majority of the range's replicas have appended it to their Raft
/// logs (docs "Replication layer": Raft), so its answer means "a majority agreed" at once.
/// `$1` node, `$2` slot (INT8).
const PROBE: &str = "UPSERT INTO roachlab.quorum_probe (node_id, slot, written_at) VALUES ($1, $2, now())";

fn probe_statement() -> TypedSql {
    TypedSql::fixed(PROBE, &[tokio_postgres::types::Type::INT8, tokio_postgres::types::Type::INT8])
}

/// The slot a probe writes now: the second of the minute.
fn probe_slot() -> i64 {
    (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) % 60) as i64
}

/// One probe through `m`, bounded by the connection's statement timeout (`timeout`): the
/// write, after creating the table if this lab has none yet.
async fn probe_one(m: &Member, timeout: Duration) -> std::result::Result<(), String> {
    let c = sql::connect(&node_url(m), timeout).await.map_err(|e| e.to_string())?;
    let stmt = probe_statement();
    let node = i64::from(m.id);
    match stmt.run(&c, &[&node, &probe_slot()]).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.code(), Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_CATALOG_NAME) => {
            c.batch_execute(PROBE_SCHEMA).await.map_err(|e| sql::describe(&e))?;
            stmt.run(&c, &[&node, &probe_slot()]).await.map(drop).map_err(|e| sql::describe(&e))
        }
        Err(e) => Err(sql::describe(&e)),
    }
}

/// The theory of a cluster of `members` nodes at replication factor `rf`.
pub fn rule(rf: u32, members: usize) -> Vec<String> {
    let rf = rf as usize;
    let needed = rf / 2 + 1;
    let tolerated = rf - needed;
    let mut lines = vec![format!(
        "replication factor {rf}: each range is its own Raft group of {rf} replicas and needs {needed} of them to commit; \
         there is no cluster-wide majority of nodes."
    )];
    if members <= rf {
        lines.push(format!(
            "with {members} nodes every node holds a replica of every range: any {tolerated} node(s) may fail; \
             {} failures make every range unavailable.",
            tolerated + 1
        ));
    } else {
        lines.push(format!(
            "with {members} nodes any {tolerated} node(s) may fail without losing a range; {} failures make unavailable \
             every range with {} of its replicas on them (which ranges: predicted from the placement before each fault).",
            tolerated + 1,
            tolerated + 1
        ));
    }
    lines
}

fn engine_err(e: &tokio_postgres::Error) -> Error {
    Error::engine("cockroach", sql::describe(e))
}

/// `(range_id, replicas)` rows: node IDs as CockroachDB numbers them.
async fn placement(client: &tokio_postgres::Client, query: &str) -> Result<Vec<(u64, Vec<u64>)>> {
    let rows =
        TypedSql::new(query, &[]).map_err(|e| Error::engine("cockroach", e))?.fetch(client, &[]).await.map_err(|e| engine_err(&e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: i64 = r.get(0);
            let replicas: Vec<i64> = r.try_get::<_, Option<Vec<i64>>>(1).ok().flatten().unwrap_or_default();
            (id as u64, replicas.into_iter().map(|v| v as u64).collect())
        })
        .collect())
}

/// Predicts the ranges that lose their majority with `down` (our ids) down, asking the first
/// of `ask` that answers. `all` maps our ids to CockroachDB node IDs.
pub async fn predict(facts: &Facts, ask: &[Member], all: &[Member], down: &[NodeId]) -> Result<LossPrediction> {
    let engine_ids: HashSet<u64> = all.iter().filter(|m| down.contains(&m.id)).map(|m| m.engine_id.unwrap_or(m.id as u64)).collect();
    let mut last_err = Error::Refused("no ready node to read the replica placement from".into());
    for m in ask {
        let attempt = async {
            let client = sql::connect(&node_url(m), Duration::from_secs(10)).await?;
            let cluster = placement(&client, &facts.placement_query()).await?;
            // The bank's tables, in the column every version's SHOW RANGES has (`replicas`;
            // non-voters, which a lab never configures, would be listed there too from v21.1).
            let mut bank = Vec::new();
            let mut bank_known = true;
            for table in ["bank.bank", "bank.transfers"] {
                match placement(&client, &format!("SELECT range_id, replicas FROM [SHOW RANGES FROM TABLE {table}]")).await {
                    Ok(p) => bank.push(p),
                    Err(_) => bank_known = false,
                }
            }
            Ok::<_, Error>((cluster, bank_known.then_some(bank)))
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok((cluster, bank))) => return Ok(verdict(&cluster, bank.as_deref(), &engine_ids, down)),
            Ok(Err(e)) => last_err = e,
            Err(_) => last_err = Error::Timeout { what: format!("the replica placement from node {}", m.id), after_ms: 10_000 },
        }
    }
    Err(last_err)
}

/// The prediction from observed placements: every range of the cluster, and (when known) the
/// ranges of each bank table (`[bank.bank, bank.transfers]`). A transfer writes two accounts
/// and one history row: it stops when every range of either table is lost, and may stall when
/// some are.
pub fn verdict(
    cluster: &[(u64, Vec<u64>)],
    bank: Option<&[Vec<(u64, Vec<u64>)>]>,
    down_engine: &HashSet<u64>,
    down: &[NodeId],
) -> LossPrediction {
    let (groups, groups_lost, lost_ids) = groups_losing_majority(cluster, down_engine);
    let per_table: Option<Vec<(u64, u64)>> =
        bank.map(|tables| tables.iter().map(|p| groups_losing_majority(p, down_engine)).map(|(g, l, _)| (g, l)).collect());
    let workload_groups = per_table.as_ref().map(|t| t.iter().fold((0, 0), |acc, (g, l)| (acc.0 + g, acc.1 + l)));
    let writes = match &per_table {
        Some(t) if t.iter().any(|(g, l)| *g > 0 && l == g) => Writes::Stop,
        Some(t) if t.iter().any(|(_, l)| *l > 0) => Writes::Some,
        Some(_) => Writes::Continue,
        // Without the bank's placement, judge by the whole cluster.
        None if groups_lost == 0 => Writes::Continue,
        None if groups_lost == groups => Writes::Stop,
        None => Writes::Some,
    };
    let nodes = down.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ");
    let bank_text = match workload_groups {
        Some((g, l)) => format!("; the bank's tables: {l} of {g} range(s) lost"),
        None => String::new(),
    };
    let outcome = match writes {
        Writes::Continue => "transfers keep committing",
        Writes::Some => "transfers that touch a lost range stall and fail, the others commit",
        Writes::Stop => "every transfer stalls and fails until the nodes return",
    };
    LossPrediction {
        down: down.to_vec(),
        groups,
        groups_lost,
        lost_ids,
        workload_groups,
        writes,
        text: format!("with node(s) {nodes} down, {groups_lost} of {groups} range(s) keep fewer than a majority of their replicas{bank_text}: {outcome}"),
    }
}

/// How long the others take to route around a node that stops answering with leases in hand
/// (SIGKILL, SIGSTOP, cut off): its epoch-based leases stay valid until its liveness record
/// expires, `liveness_expiry_s` after its last heartbeat (9 s up to v22.2, 6 s from v23.1;
/// contract §4), then the next request to each of its ranges makes a live replica bump its
/// epoch and take the lease, and the ranges' Raft groups elect a new leader. Observed on
/// v20.1.5: throughput at 0 for about 7 s after a SIGKILL, 10 s at most (contract §9). Give
/// it the expiry plus a heartbeat interval and the lease acquisition: expiry × 1.5, rounded up.
pub fn takeover(facts: &Facts, release: &str) -> Takeover {
    let expiry = facts.liveness_expiry_s;
    Takeover {
        expected: Duration::from_secs_f64((expiry * 1.5).ceil()),
        why: format!(
            "a node that stops answering keeps its leases until its liveness record expires ({expiry:.0} s after its last \
             heartbeat on {release}); then another replica of each of its ranges takes the lease and the range serves again"
        ),
    }
}

/// One node's probe answer: the time it took, or why it failed.
pub type ProbeAnswer = (NodeId, std::result::Result<Duration, String>);

/// Quorum observed: [`PROBE`], a write, through every live node at once, each bounded by
/// `timeout` (the statement timeout and a client-side one). Ok when any node's write
/// committed: the probe's range had a majority of its replicas (and the node could reach
/// them). `needed` is a range's majority at replication factor `rf`. Also returns each node's
/// answer (its own view: under a partition, the minority's writes cannot commit).
pub async fn probe(live: &[Member], rf: u32, timeout: Duration) -> Option<(Quorum, Vec<ProbeAnswer>)> {
    if live.is_empty() {
        return None;
    }
    let answers = futures_util::future::join_all(live.iter().map(|m| async move {
        let start = Instant::now();
        let r = match tokio::time::timeout(timeout, probe_one(m, timeout)).await {
            Ok(Ok(())) => Ok(start.elapsed()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
        };
        (m.id, r)
    }))
    .await;
    let up = answers.iter().filter(|(_, r)| r.is_ok()).count();
    let needed = rf as usize / 2 + 1;
    let detail = match answers.iter().find_map(|(id, r)| r.as_ref().ok().map(|d| (id, d))) {
        Some((id, d)) => {
            format!("SQL write probe committed through {up} of {} node(s) (node {id} in {} ms)", live.len(), d.as_millis())
        }
        None => {
            let why: Vec<String> =
                answers.iter().map(|(id, r)| format!("node {id}: {}", r.as_ref().err().map(String::as_str).unwrap_or(""))).collect();
            format!("SQL write probe failed on every live node ({})", why.join("; "))
        }
    };
    Some((Quorum { up, needed, ok: up > 0, detail: Some(detail) }, answers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_speaks_of_ranges_and_replicas() {
        let r = rule(3, 3);
        assert!(r[0].starts_with("replication factor 3: each range is its own Raft group of 3 replicas and needs 2"), "{r:?}");
        assert!(r[1].contains("any 1 node(s) may fail; 2 failures make every range unavailable"), "{r:?}");
        let r = rule(3, 5);
        assert!(r[1].contains("2 failures make unavailable every range with 2 of its replicas on them"), "{r:?}");
        assert!(rule(5, 5)[0].contains("needs 3 of them"));
    }

    fn ids(v: &[u64]) -> HashSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn predictions_from_placement() {
        // 3 nodes, rf 3 (the recorded 01-healthy-3 layout: every range on nodes 1, 2, 3).
        let three: Vec<(u64, Vec<u64>)> = (1..=42).map(|r| (r, vec![1, 2, 3])).collect();
        let bank = vec![vec![(40, vec![1, 2, 3]), (41, vec![1, 2, 3])], vec![(42, vec![1, 2, 3])]];
        let p = verdict(&three, Some(&bank), &ids(&[3]), &[3]);
        assert_eq!((p.groups, p.groups_lost, p.writes, p.workload_groups), (42, 0, Writes::Continue, Some((3, 0))));
        let p = verdict(&three, Some(&bank), &ids(&[2, 3]), &[2, 3]);
        assert_eq!((p.groups_lost, p.writes), (42, Writes::Stop));
        assert!(p.text.starts_with("with node(s) 2, 3 down, 42 of 42 range(s)"), "{}", p.text);
        assert_eq!(p.lost_ids.len(), 20, "ids are capped");
        // 5 nodes: only the ranges with two replicas on nodes 4 and 5 are lost.
        let five = vec![(1, vec![1, 2, 3]), (2, vec![3, 4, 5]), (3, vec![1, 4, 5])];
        let bank = vec![vec![(2, vec![3, 4, 5]), (4, vec![1, 2, 3])], vec![(5, vec![1, 2, 4])]];
        let p = verdict(&five, Some(&bank), &ids(&[4, 5]), &[4, 5]);
        assert_eq!((p.groups_lost, p.lost_ids.clone(), p.writes), (2, vec![2, 3], Writes::Some));
        // Without the bank's placement, the cluster decides.
        assert_eq!(verdict(&five, None, &ids(&[4, 5]), &[4, 5]).writes, Writes::Some);
        assert_eq!(verdict(&five, None, &ids(&[1]), &[1]).writes, Writes::Continue);
    }

    #[test]
    fn takeover_waits_for_the_liveness_record_of_the_release() {
        use super::super::version::{facts_for, Version};
        let v20 = facts_for(Version::new(20, 1, 5)).facts().unwrap();
        let t = takeover(v20, "v20.1.5");
        assert_eq!(t.expected, Duration::from_secs(14));
        assert!(t.why.contains("expires (9 s after its last heartbeat on v20.1.5)"), "{}", t.why);
        let v23 = facts_for(Version::new(23, 1, 0)).facts().unwrap();
        assert_eq!(takeover(v23, "v23.1.0").expected, Duration::from_secs(9));
        assert_eq!(t.wait_bound(), Duration::from_secs(42));
    }

    #[test]
    fn the_probe_writes_one_typed_row_per_node_and_slot() {
        let s = probe_statement();
        assert!(s.sql().starts_with("UPSERT INTO roachlab.quorum_probe"), "a write, not a read: {}", s.sql());
        assert_eq!(s.types().len(), 2);
        assert!((0..60).contains(&probe_slot()));
        assert!(PROBE_SCHEMA.contains("PRIMARY KEY (node_id, slot)"));
    }
}
