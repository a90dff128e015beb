//! The built-in drills of faults beyond death, generated for the lab in the scenario format
//! users write: `pause-leader` (a gray failure), `zone-failure` (every node of a locality at
//! once), `self-healing` (a crash undone by the restart policy, against a restart by hand).

use super::{expect, header, toml_str, writes_resumed_step};
use crate::node::NodeId;
use crate::watch::Takeover;

/// `pause-leader`: SIGSTOP the node leading the workload's writes (etcd's Raft leader,
/// CockroachDB's leaseholder of the bank's first row; or `node`): it keeps its sockets and
/// answers nothing; the rest must notice by timeouts alone.
pub fn pause_leader_scenario(members: usize, node: Option<NodeId>, takeover: &Takeover) -> String {
    let needed = members / 2 + 1;
    let target = node.map(|n| n.to_string()).unwrap_or_else(|| "\"leader\"".into());
    let mut s = header(
        "pause-leader",
        "Pause the leader (SIGSTOP: it holds its sockets and leases and answers nothing): the others notice only by \
         timeouts, elect a new leader (etcd) or take over its leases (CockroachDB, after its liveness expires) and keep \
         writing; HAProxy marks it DOWN after its checks time out. Then resume it: it rejoins as a follower.",
    );
    s += &expect(
        None,
        "paused",
        "committed",
        ">",
        0,
        &format!("{} of {members} members still form a majority ({needed} needed): writes continue once the pause is noticed", members - 1),
    );
    s += &expect(
        Some("etcd"),
        "paused",
        "new_leader_after_fault_ms",
        "<=",
        15000,
        "followers stop hearing heartbeats and campaign after an election timeout (1 s, randomized up to 2 s)",
    );
    s += &expect(None, "resumed", "committed", ">", 0, "resumed: the old leader rejoins as a follower, writes continue");
    s += &format!(
        "[[step]]\naction = \"phase\"\nname = \"paused\"\n[[step]]\naction = \"pause\"\nnode = {target}\n\
         [[step]]\naction = \"wait_until\"\ncondition = \"leader != same\"\ntimeout = \"{bound}s\"\nwhy = {why}\n{resumed}\
         [[step]]\naction = \"wait\"\nduration = \"5s\"\n\
         [[step]]\naction = \"phase\"\nname = \"resumed\"\n[[step]]\naction = \"resume\"\nnode = \"same\"\n\
         [[step]]\naction = \"wait_until\"\ncondition = \"node same ready\"\ntimeout = \"60s\"\n\
         [[step]]\naction = \"wait\"\nduration = \"5s\"\n",
        bound = takeover.wait_bound().as_secs().max(45),
        why = toml_str(&takeover.why),
        resumed = writes_resumed_step(takeover)
    );
    s
}

/// The zones of a lab: `(zone selector, nodes)` by the `zone=` tier of each member's locality
/// (or the whole locality when it has no zone tier), largest first, ties by name.
pub fn zones(localities: &[(NodeId, String)]) -> Vec<(String, Vec<NodeId>)> {
    let mut out: Vec<(String, Vec<NodeId>)> = Vec::new();
    for (id, loc) in localities {
        let key = loc.split(',').find(|t| t.starts_with("zone=")).unwrap_or(loc).to_string();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, ids)) => ids.push(*id),
            None => out.push((key, vec![*id])),
        }
    }
    out.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    out
}

/// `zone-failure`: lose the largest zone, then the next; theory first, from the topology:
/// members left against the majority (etcd), and — CockroachDB spreading each range's
/// replicas over the zones — replicas left per range; the engine's prediction before each
/// loss is checked too. Needs at least two zones.
pub fn zone_failure_scenario(localities: &[(NodeId, String)], takeover: &Takeover) -> Result<String, String> {
    let zs = zones(localities);
    if zs.len() < 2 {
        return Err(format!(
            "zone-failure needs members in at least two zones; this lab has {}. Set `localities` in its config, e.g. \
             `[etcd] localities = [\"zone=a\", \"zone=b\", \"zone=c\"]` (node N takes entry (N−1) mod len), then `roachlab down --wipe` and `up`",
            if zs.is_empty() { "no localities".to_string() } else { format!("one ({})", zs[0].0) }
        ));
    }
    let n = localities.len();
    let needed = n / 2 + 1;
    let layout: Vec<String> =
        zs.iter().map(|(z, ids)| format!("{z}({})", ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","))).collect();
    let (first, second) = (&zs[0], &zs[1]);
    let left1 = n - first.1.len();
    let left2 = left1 - second.1.len();
    let verdict = |left: usize| if left >= needed { "a majority: writes continue" } else { "not a majority: writes stop" };
    let mut s = header(
        "zone-failure",
        &format!(
            "{n} members in zones {}: lose zone {} (every node of it at the same instant), then {} too; restore both. \
             etcd: members left against the majority of {needed}. CockroachDB with 3 replicas per range spread one per zone: \
             losing one zone of three leaves every range 2 of 3 replicas (writes continue); losing two leaves 1 of 3 (ranges \
             unavailable). The engine's prediction before each loss is checked as well.",
            layout.join(", "),
            first.0,
            second.0
        ),
    );
    let cmp = |left: usize| if left >= needed { (">", 0) } else { ("==", 0) };
    let (c1, v1) = cmp(left1);
    s += &expect(
        Some("etcd"),
        "one-zone-down",
        "committed",
        c1,
        v1,
        &format!("losing {} leaves {left1} of {n} members, {}", first.0, verdict(left1)),
    );
    let (c2, v2) = cmp(left2);
    s += &expect(
        Some("etcd"),
        "two-zones-down",
        "committed",
        c2,
        v2,
        &format!("losing {} as well leaves {left2} of {n}, {}", second.0, verdict(left2)),
    );
    s += &expect(None, "restored", "committed", ">", 0, "both zones back: every member, writes continue");
    // Where the first loss leaves a majority, the rest take over what the lost zone led
    // before the second loss is measured.
    let resumed = if left1 >= needed { writes_resumed_step(takeover) } else { String::new() };
    // The theory presumes one replica of each range per zone. CockroachDB spreads replicas
    // over localities, but a range up-replicated before every node's locality was gossiped
    // can keep two replicas in one zone until the replicate queue's scanner moves one
    // (v20.1.5, 5 nodes over 3 zones: 5 of 44 ranges, for tens of seconds after every range
    // was fully replicated). So with three zones or more the baseline lasts until the
    // placement survives the first zone's loss (etcd's member count does at once).
    if zs.len() >= 3 {
        let z1 = &first.0;
        s += &format!(
            "[[step]]\naction = \"wait_until\"\ncondition = \"placement survives locality {z1}\"\ntimeout = \"180s\"\nwhy = {}\n",
            toml_str(&format!(
                "CockroachDB spreads each range's replicas over the zones, but a range replicated before every node's \
                 locality was known keeps two in one zone until its replicate queue moves one; the theory above presumes \
                 one per zone, so the baseline lasts until losing {z1} would leave every range a majority"
            ))
        );
    }
    s += &format!(
        "[[step]]\naction = \"phase\"\nname = \"one-zone-down\"\n[[step]]\naction = \"kill\"\nnode = \"locality {z1}\"\n\
         [[step]]\naction = \"wait_until\"\ncondition = \"members_up == {left1}\"\ntimeout = \"15s\"\n{resumed}\
         [[step]]\naction = \"wait\"\nduration = \"6s\"\n\
         [[step]]\naction = \"phase\"\nname = \"losing-second-zone\"\n[[step]]\naction = \"kill\"\nnode = \"locality {z2}\"\n\
         [[step]]\naction = \"wait_until\"\ncondition = \"members_up == {left2}\"\ntimeout = \"15s\"\n\
         [[step]]\naction = \"wait\"\nduration = \"1s\"\n\
         [[step]]\naction = \"phase\"\nname = \"two-zones-down\"\n[[step]]\naction = \"wait\"\nduration = \"6s\"\n\
         [[step]]\naction = \"phase\"\nname = \"restored\"\n\
         [[step]]\naction = \"start\"\nnode = \"locality {z2}\"\nwait = false\n\
         [[step]]\naction = \"start\"\nnode = \"locality {z1}\"\nwait = false\n\
         [[step]]\naction = \"wait_until\"\ncondition = \"ready_nodes == {n}\"\ntimeout = \"90s\"\n\
         [[step]]\naction = \"wait\"\nduration = \"5s\"\n",
        z1 = first.0,
        z2 = second.0
    );
    Ok(s)
}

/// `self-healing`: SIGKILL a member twice — once left to the restart policy, once restarted
/// by hand at once — and compare the time until it is ready again. Needs a restart policy.
pub fn self_healing_scenario(node: Option<NodeId>) -> String {
    let target = node.map(|n| n.to_string()).unwrap_or_else(|| "\"follower\"".into());
    let mut s = header(
        "self-healing",
        "SIGKILL a member and let the restart policy bring it back (a crash: the policy applies), then SIGKILL it again and \
         restart it by hand at once; compare the time until it is ready again. Writes continue throughout: one member down \
         of a majority.",
    );
    s += &expect(
        None,
        "automatic",
        "ready_again_after_fault_ms",
        "<=",
        60000,
        "the restart policy starts the killed node again by itself (after its 1 s backoff) and it becomes ready",
    );
    s += &expect(None, "automatic", "committed", ">", 0, "one member down: the rest are a majority, writes continue");
    s += &expect(None, "manual", "ready_again_after_fault_ms", "<=", 60000, "restarted by hand at once, it becomes ready");
    s += &format!(
        "[[step]]\naction = \"phase\"\nname = \"automatic\"\n[[step]]\naction = \"kill\"\nnode = {target}\n\
         [[step]]\naction = \"wait_until\"\ncondition = \"node same ready\"\ntimeout = \"60s\"\n\
         [[step]]\naction = \"wait\"\nduration = \"5s\"\n\
         [[step]]\naction = \"phase\"\nname = \"manual\"\n[[step]]\naction = \"kill\"\nnode = \"same\"\n\
         [[step]]\naction = \"start\"\nnode = \"same\"\n\
         [[step]]\naction = \"wait\"\nduration = \"5s\"\n"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::scenario::Scenario;

    fn five_over_three() -> Vec<(NodeId, String)> {
        (1..=5).map(|n| (n, ["zone=a", "zone=b", "zone=c"][(n as usize - 1) % 3].to_string())).collect()
    }

    #[test]
    fn zones_are_grouped_largest_first() {
        let z = zones(&five_over_three());
        assert_eq!(z, vec![("zone=a".into(), vec![1, 4]), ("zone=b".into(), vec![2, 5]), ("zone=c".into(), vec![3])]);
        let z = zones(&[(1, "region=r1,zone=x".into()), (2, "region=r1,zone=y".into())]);
        assert_eq!(z[0].0, "zone=x");
    }

    #[test]
    fn zone_failure_states_the_theory_from_the_topology() {
        let text = zone_failure_scenario(&five_over_three(), &crate::drill::takeover()).unwrap();
        assert!(text.contains("5 members in zones zone=a(1,4), zone=b(2,5), zone=c(3)"), "{text}");
        assert!(text.contains("losing zone=a leaves 3 of 5 members, a majority: writes continue"), "{text}");
        assert!(text.contains("losing zone=b as well leaves 1 of 5, not a majority: writes stop"), "{text}");
        let ids: Vec<NodeId> = (1..=5).collect();
        let s = Scenario::parse(&text, "zone-failure", &ids).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(s.expect.len(), 3);
        let t = crate::drill::takeover();
        assert!(zone_failure_scenario(&[(1, "zone=a".into()), (2, "zone=a".into())], &t).unwrap_err().contains("at least two zones"));
        assert!(zone_failure_scenario(&[], &t).unwrap_err().contains("no localities"));
        assert!(text.contains("condition = \"writes resumed\""), "one zone of three lost leaves a majority: {text}");
        // Before the first loss the placement must survive it (one replica per zone).
        let settle = text.find("condition = \"placement survives locality zone=a\"").expect("a wait for the placement");
        assert!(settle < text.find("name = \"one-zone-down\"").unwrap(), "{text}");
        let two = zone_failure_scenario(&[(1, "zone=a".into()), (2, "zone=b".into()), (3, "zone=a".into())], &t).unwrap();
        assert!(!two.contains("placement survives"), "with two zones some zone holds two of three replicas: no wait\n{two}");
    }

    #[test]
    fn pause_and_self_healing_load() {
        let t = crate::drill::takeover();
        for text in [pause_leader_scenario(3, None, &t), pause_leader_scenario(5, Some(2), &t), self_healing_scenario(None)] {
            Scenario::parse(&text, "x", &[1, 2, 3, 4, 5]).unwrap_or_else(|e| panic!("{e}\n{text}"));
        }
    }
}
