//! The words both printers use for a lab's state — the status table and event lines
//! ([`crate::reporter`]) and the live view ([`crate::dashboard`]): one place, so `status` and
//! `watch` say the same thing the same way. Pure functions of a [`StatusReport`].

use crate::api::{NodeStatus, StatusReport};

/// A node's own view of quorum: `sees`, `NONE`, or `None` when not probed.
pub fn quorum_word(n: &crate::api::NodeStatus) -> Option<&'static str> {
    n.sees_quorum.map(|q| if q { "sees" } else { "NONE" })
}

/// The cluster in one line: quorum, leader, live nodes, ranges.
pub fn cluster_line(s: &StatusReport) -> String {
    if !s.observed.current {
        return match s.observed.age_ms {
            Some(ms) => format!("not observed yet since the last change (the last poll round ended {:.1} s ago)", ms as f64 / 1000.0),
            None => "not observed yet (no poll round has ended since the daemon started)".into(),
        };
    }
    let c = &s.cluster;
    let mut parts = Vec::new();
    if let Some(q) = &c.quorum {
        let word = if q.ok { "ok" } else { "LOST" };
        parts.push(match &q.detail {
            // Observed (CockroachDB): say how, not a member count.
            Some(d) => format!("quorum {word} ({d})"),
            None => format!(
                "quorum {word} ({} of {} members up, majority {})",
                q.up,
                s.nodes.iter().filter(|n| !n.decommissioned).count(),
                q.needed
            ),
        });
    }
    if let Some(has) = c.has_leader {
        parts.push(match (has, c.leader) {
            (true, Some(l)) => format!("leader node {l}{}", c.term.map(|t| format!(" (term {t})")).unwrap_or_default()),
            (true, None) => "leader elected".into(),
            (false, _) => "NO LEADER".into(),
        });
    }
    if let Some(l) = c.live_nodes {
        parts.push(format!("live nodes {l}"));
    }
    if c.ranges.is_some() || c.ranges_underreplicated.is_some() {
        let o = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
        parts.push(format!(
            "ranges {} (under-replicated {}, unavailable {}, over-replicated {})",
            o(c.ranges),
            o(c.ranges_underreplicated),
            o(c.ranges_unavailable),
            o(c.ranges_overreplicated)
        ));
    }
    if parts.is_empty() {
        "cluster: not observed yet".into()
    } else {
        parts.join("; ")
    }
}

/// A node's readiness in a table cell: `yes`, `no`, or `?`: not observed yet (no probe has
/// answered since it was paused or resumed; the status table says so under the row).
pub fn ready_word(n: &NodeStatus) -> &'static str {
    if n.ready_unobserved {
        "?"
    } else if n.ready {
        "yes"
    } else {
        "no"
    }
}

/// A node's process state in words, e.g. `running`, `exited (SIGKILL)`, `decommissioned`.
pub fn process_word(n: &NodeStatus) -> String {
    if n.decommissioned && n.pid.is_none() {
        return "decommissioned".into();
    }
    let base = match &n.exit {
        Some(e) => format!("exited ({e})"),
        None => n.state.clone(),
    };
    let word = match (&n.crash_loop, &n.next_restart_at) {
        (Some(l), _) => l.to_string(),
        (None, Some(_)) => format!("{base}, restarting"),
        _ if n.cpu_quota_pct.is_some() => format!("{base}, cpu {}%", n.cpu_quota_pct.unwrap_or(0)),
        _ => base,
    };
    // The restart policy's count, where it restarted the node (the crash-loop text has its own).
    if n.restarts > 0 && n.crash_loop.is_none() {
        format!("{word} (restarts {})", n.restarts)
    } else {
        word
    }
}

/// The cluster's view of a node; flagged when the process is gone but the cluster still
/// believes otherwise (liveness lags: a killed node stays LIVE until its record expires).
pub fn liveness_word(n: &NodeStatus) -> String {
    match (n.liveness, n.pid) {
        (Some(l), None) if l == crate::watch::Liveness::Live => format!("{l} (process gone)"),
        (Some(l), _) => l.to_string(),
        (None, _) => "-".into(),
    }
}

/// The netns topology's faults in force, in one line (`None` on loopback).
pub fn network_line(s: &StatusReport) -> Option<String> {
    let n = &s.network;
    if n.topology != "netns" {
        return None;
    }
    let mut parts = Vec::new();
    if n.sides.is_empty() {
        parts.push("netns topology, whole (no partition)".to_string());
    } else {
        let sides: Vec<String> = n.sides.iter().map(|s| s.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")).collect();
        parts.push(format!("netns topology, PARTITIONED {} ({} cut(s); `roachlab net heal` undoes it)", sides.join(" | "), n.cuts));
        let seeing: Vec<String> = s.nodes.iter().filter(|n| n.sees_quorum == Some(true)).map(|n| n.id.to_string()).collect();
        parts.push(if !s.observed.current {
            "quorum reads not observed yet since the last change".to_string()
        } else if seeing.is_empty() {
            "no node sees quorum: no side holds a majority".to_string()
        } else {
            format!("quorum reads answer through node(s) {}", seeing.join(", "))
        });
    }
    if !n.shaped.is_empty() {
        parts.push(format!("delay/loss on node(s) {}", n.shaped.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")));
    }
    Some(parts.join("; "))
}
