//! The built-in partition drills (netns topology), generated for the lab's size in the
//! scenario format users write. Each states the theory first — N members tolerate ⌊(N−1)/2⌋
//! failures; a side with fewer than ⌊N/2⌋+1 members cannot commit; an even split leaves no
//! side able to write — and checks it against what the clients saw; the bank check proves
//! nothing acknowledged was lost.

use super::{expect, header, toml_str, writes_resumed_step};
use crate::node::NodeId;
use crate::watch::Takeover;

fn node_value(node: Option<NodeId>, default: &str) -> String {
    node.map(|n| n.to_string()).unwrap_or_else(|| format!("\"{default}\""))
}

/// After the heal: every member sees quorum again (the heal step waits for it), throughput
/// back, a while measured: 10 s, as a member that was cut off may depose the leader with
/// its higher term a few seconds after the heal (etcd 3.4 without PreVote).
const HEALED: &str = "[[step]]\naction = \"phase\"\nname = \"healed\"\n[[step]]\naction = \"heal\"\n\
                      [[step]]\naction = \"wait_until\"\ncondition = \"ready_nodes == MEMBERS\"\ntimeout = \"60s\"\n\
                      [[step]]\naction = \"wait\"\nduration = \"10s\"\n";

/// `partition-minority`: one node (`node`, else a follower chosen with the seed) loses every
/// peer; HAProxy still reaches it.
pub fn partition_minority_scenario(members: usize, node: Option<NodeId>, takeover: &Takeover) -> String {
    let needed = members / 2 + 1;
    let mut s = header(
        "partition-minority",
        "Cut one member off from its peers (HAProxy still reaches it): the majority keeps writing, clients routed to the \
         cut-off member stall or fail, nothing acknowledged is lost, and after the heal it catches up.",
    );
    s += &expect(
        None,
        "partitioned",
        "committed",
        ">",
        0,
        &format!("{} of {members} members still form a majority ({needed} needed): writes continue", members - 1),
    );
    s += &expect(None, "healed", "committed", ">", 0, "healed: every member back in the cluster, writes continue");
    s += &expect(
        None,
        "healed",
        "throughput_recovered_after_ms",
        "<=",
        30000,
        "after the heal, throughput is back to 90% of the baseline within 30 s",
    );
    // The cut-off member may hold leases (CockroachDB) the majority must take over first.
    s += &format!(
        "[[step]]\naction = \"phase\"\nname = \"partitioned\"\n[[step]]\naction = \"isolate\"\nnode = {}\n{}\
         [[step]]\naction = \"wait\"\nduration = \"8s\"\n\
         [[step]]\naction = \"assert\"\ncondition = \"node same sees no quorum\"\n",
        node_value(node, "follower"),
        writes_resumed_step(takeover)
    );
    s + &HEALED.replace("MEMBERS", &members.to_string())
}

/// `partition-leader`: the node leading the workload's writes (etcd's Raft leader,
/// CockroachDB's leaseholder of the bank's first row; or `node`) loses every peer.
pub fn partition_leader_scenario(members: usize, node: Option<NodeId>, takeover: &Takeover) -> String {
    let needed = members / 2 + 1;
    let mut s = header(
        "partition-leader",
        "Cut the leader (etcd: the Raft leader; CockroachDB: the leaseholder of the bank's first row) off from its peers: \
         it steps down, the majority side elects a new one and keeps writing; nothing acknowledged is lost.",
    );
    s += &expect(
        None,
        "partitioned",
        "committed",
        ">",
        0,
        &format!("the other {} of {members} members are a majority ({needed} needed): they elect a leader and keep writing", members - 1),
    );
    s += &expect(
        Some("etcd"),
        "partitioned",
        "new_leader_after_fault_ms",
        "<=",
        15000,
        "followers that stop hearing the leader campaign after an election timeout (etcd: 1 s, randomized up to 2 s): a new leader within a few timeouts",
    );
    s += &expect(None, "healed", "committed", ">", 0, "healed: the old leader rejoins as a follower, writes continue");
    s += &format!(
        "[[step]]\naction = \"phase\"\nname = \"partitioned\"\n[[step]]\naction = \"isolate\"\nnode = {}\n\
         [[step]]\naction = \"wait_until\"\ncondition = \"leader != same\"\ntimeout = \"{}s\"\nwhy = {}\n{}\
         [[step]]\naction = \"wait\"\nduration = \"6s\"\n",
        node_value(node, "leader"),
        takeover.wait_bound().as_secs(),
        toml_str(&takeover.why),
        writes_resumed_step(takeover)
    );
    s + &HEALED.replace("MEMBERS", &members.to_string())
}

/// The sides of an even split: two halves; for an odd count, two equal sides and one
/// member alone (`2|2|1` of 5), so no side holds a majority.
pub fn split_sides(members: &[NodeId]) -> Vec<Vec<NodeId>> {
    let half = members.len() / 2;
    if members.len() % 2 == 0 {
        vec![members[..half].to_vec(), members[half..].to_vec()]
    } else {
        let h = (members.len() - 1) / 2;
        vec![members[..h].to_vec(), members[h..2 * h].to_vec(), members[2 * h..].to_vec()]
    }
}

/// `split-brain`: no side holds a majority of `members`.
pub fn split_brain_scenario(members: &[NodeId]) -> String {
    let n = members.len();
    let needed = n / 2 + 1;
    let sides = split_sides(members);
    let shown: Vec<String> = sides.iter().map(|s| s.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")).collect();
    let toml_sides: Vec<String> =
        sides.iter().map(|s| format!("[{}]", s.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))).collect();
    let mut s = header(
        "split-brain",
        &format!("Split the {n} members {}: no side holds a majority of {needed}, so none may write; after the heal, writes resume and nothing acknowledged was lost.", shown.join(" | ")),
    );
    s += &expect(
        Some("etcd"),
        "split",
        "committed",
        "==",
        0,
        &format!(
            "the largest side has {} of {n} members, fewer than the {needed} a majority needs: no write can commit",
            sides.iter().map(Vec::len).max().unwrap_or(0)
        ),
    );
    s += &expect(None, "healed", "committed", ">", 0, "healed: a majority again, writes resume");
    s += &format!(
        "[[step]]\naction = \"phase\"\nname = \"splitting\"\n[[step]]\naction = \"partition\"\nsides = [{}]\n\
         [[step]]\naction = \"phase\"\nname = \"split\"\n[[step]]\naction = \"wait\"\nduration = \"6s\"\n",
        toml_sides.join(", ")
    );
    s + &HEALED.replace("MEMBERS", &n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::scenario::{Action, Scenario};

    #[test]
    fn even_splits_leave_no_majority() {
        assert_eq!(split_sides(&[1, 2, 3, 4]), vec![vec![1, 2], vec![3, 4]]);
        assert_eq!(split_sides(&[1, 2, 3, 4, 5]), vec![vec![1, 2], vec![3, 4], vec![5]]);
        assert_eq!(split_sides(&[1, 2, 3]), vec![vec![1], vec![2], vec![3]]);
        for n in 3..=9u32 {
            let ids: Vec<NodeId> = (1..=n).collect();
            let sides = split_sides(&ids);
            assert!(sides.iter().all(|s| s.len() < n as usize / 2 + 1), "{n}: {sides:?}");
            assert_eq!(sides.iter().map(Vec::len).sum::<usize>(), n as usize);
        }
    }

    #[test]
    fn the_partition_drills_load_for_any_lab_size() {
        for n in [3usize, 4, 5, 7] {
            let ids: Vec<NodeId> = (1..=n as u32).collect();
            for (name, text) in [
                ("partition-minority", partition_minority_scenario(n, None, &crate::drill::takeover())),
                ("partition-leader", partition_leader_scenario(n, Some(2), &crate::drill::takeover())),
                ("split-brain", split_brain_scenario(&ids)),
            ] {
                let s = Scenario::parse(&text, name, &ids).unwrap_or_else(|e| panic!("{name} ({n}): {e}\n{text}"));
                assert!(s.steps.iter().any(|st| matches!(st.action, Action::Heal)), "{name} heals");
                assert!(!s.expect.is_empty());
            }
        }
        let s = Scenario::parse(&split_brain_scenario(&[1, 2, 3, 4, 5]), "x", &[1, 2, 3, 4, 5]).unwrap();
        let Some(Action::Partition { sides, .. }) = s.steps.iter().map(|st| &st.action).find(|a| matches!(a, Action::Partition { .. }))
        else {
            panic!("a partition step")
        };
        assert_eq!(sides.len(), 3);
    }
}
