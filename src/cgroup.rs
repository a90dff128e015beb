//! CPU quotas for nodes (`node throttle`): one control group per throttled node, named
//! `roachlab-<lab tag>-nN`, through the `cgroups-rs` crate — cgroup v2 (`cpu.max`) where the
//! unified hierarchy is mounted, as on current distributions, or the v1 `cpu` controller
//! (`cpu.cfs_quota_us` / `cpu.cfs_period_us`) where that is what the host has (as on this
//! project's CI machines). The quota is `pct`% of one core over a 100 ms period
//! (kernel docs: `Documentation/scheduler/sched-bwc.rst`).
//!
//! Groups are found by name, so `down`, a drill's restore and a new daemon after a crash
//! remove exactly the lab's and nothing else.

use cgroups_rs::cpu::CpuController;
use cgroups_rs::{Cgroup, CgroupPid};

use crate::node::NodeId;
use crate::{Error, Result};

/// The CFS period roachlab uses, µs.
pub const PERIOD_US: u64 = 100_000;

/// The group name of node `id` of the lab tagged `tag`.
pub fn group_name(tag: &str, id: NodeId) -> String {
    format!("roachlab-{tag}-n{id}")
}

/// `(quota_us, period_us)` for `pct`% of one core.
pub fn quota_for(pct: u32) -> (i64, u64) {
    (i64::from(pct) * PERIOD_US as i64 / 100, PERIOD_US)
}

/// Which cgroup version this host runs (`v2` for the unified hierarchy).
pub fn version() -> &'static str {
    if cgroups_rs::hierarchies::is_cgroup2_unified_mode() {
        "v2"
    } else {
        "v1"
    }
}

fn cpu_available() -> Result<()> {
    let ok = if cgroups_rs::hierarchies::is_cgroup2_unified_mode() {
        std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").is_ok_and(|c| v2_has_cpu(&c))
    } else {
        std::path::Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists()
            || std::path::Path::new("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us").exists()
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Refused(format!(
            "this host has no cgroup {} cpu controller with CFS bandwidth control mounted (/sys/fs/cgroup), so a CPU quota \
             cannot be set; nothing was changed",
            version()
        )))
    }
}

/// Whether a v2 `cgroup.controllers` file lists the `cpu` controller (`cpuset cpu io memory pids`).
pub fn v2_has_cpu(controllers: &str) -> bool {
    controllers.split_whitespace().any(|c| c == "cpu")
}

fn map_err(what: &str, e: cgroups_rs::error::Error) -> Error {
    let text = format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default());
    if text.contains("ermission denied") || text.contains("Read-only file system") {
        Error::Privilege {
            what: "a CPU quota (a control group per throttled node)".into(),
            missing: "write access to /sys/fs/cgroup".into(),
            how: "run roachlab as root (`sudo roachlab up`, then `roachlab node throttle`)".into(),
        }
    } else {
        Error::Refused(format!("{what}: {text}"))
    }
}

/// Puts process `pid` (node `id`) under a quota of `pct`% of one core. Errors leave nothing
/// changed (a group made for it is removed again).
pub fn throttle(tag: &str, id: NodeId, pid: u32, pct: u32) -> Result<()> {
    cpu_available()?;
    let name = group_name(tag, id);
    let cg = Cgroup::new_with_specified_controllers(cgroups_rs::hierarchies::auto(), &name, Some(vec!["cpu".to_string()]))
        .map_err(|e| map_err(&format!("cannot create cgroup {name}"), e))?;
    let apply = || -> Result<()> {
        let cpu: &CpuController = cg.controller_of().ok_or_else(|| Error::Refused(format!("cgroup {name} has no cpu controller")))?;
        let (quota, period) = quota_for(pct);
        cpu.set_cfs_quota_and_period(Some(quota), Some(period)).map_err(|e| map_err(&format!("cannot set the quota of {name}"), e))?;
        cg.add_task_by_tgid(CgroupPid::from(u64::from(pid))).map_err(|e| map_err(&format!("cannot move pid {pid} into {name}"), e))
    };
    if let Err(e) = apply() {
        let _ = cg.delete();
        return Err(e);
    }
    Ok(())
}

/// The quota of node `id` in percent of a core, when its group exists and limits it.
pub fn quota_of(tag: &str, id: NodeId) -> Option<u32> {
    let name = group_name(tag, id);
    let cg = Cgroup::load_with_specified_controllers(cgroups_rs::hierarchies::auto(), &name, vec!["cpu".to_string()]);
    if !cg.exists() {
        return None;
    }
    let cpu: &CpuController = cg.controller_of()?;
    let quota = cpu.cfs_quota().ok()?;
    (quota > 0).then(|| (quota as u64 * 100 / PERIOD_US) as u32)
}

/// Removes node `id`'s group, moving its processes back to the parent group first. Returns
/// whether there was one.
pub fn unthrottle(tag: &str, id: NodeId) -> Result<bool> {
    let name = group_name(tag, id);
    let cg = Cgroup::load_with_specified_controllers(cgroups_rs::hierarchies::auto(), &name, vec!["cpu".to_string()]);
    if !cg.exists() {
        return Ok(false);
    }
    for p in cg.procs() {
        let _ = cg.move_task_to_parent_by_tgid(p);
    }
    cg.delete().map_err(|e| map_err(&format!("cannot remove cgroup {name}"), e))?;
    Ok(true)
}

/// Removes every node group of the lab tagged `tag` (`roachlab-TAG-n1` … up to the most
/// nodes a lab may have), found by name, for a lab whose state is gone; returns the names
/// removed. Groups that do not exist are skipped; one that cannot be removed is an error.
pub fn remove_lab_groups(tag: &str) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for id in 1..=crate::config::MAX_NODES {
        if unthrottle(tag, id)? {
            removed.push(group_name(tag, id));
        }
    }
    Ok(removed)
}

/// The node groups of the lab tagged `tag` that exist now.
pub fn lab_groups(tag: &str) -> Vec<String> {
    (1..=crate::config::MAX_NODES).filter(|id| exists(tag, *id)).map(|id| group_name(tag, id)).collect()
}

fn exists(tag: &str, id: NodeId) -> bool {
    Cgroup::load_with_specified_controllers(cgroups_rs::hierarchies::auto(), group_name(tag, id), vec!["cpu".to_string()]).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_are_shares_of_one_core_over_100ms() {
        assert_eq!(quota_for(10), (10_000, 100_000));
        assert_eq!(quota_for(100), (100_000, 100_000));
        assert_eq!(quota_for(1), (1_000, 100_000));
        assert_eq!(group_name("3f9a1c", 2), "roachlab-3f9a1c-n2");
        // cgroup v2: the root's cgroup.controllers must list `cpu` (cpuset alone does not do).
        assert!(v2_has_cpu("cpuset cpu io memory hugetlb pids rdma misc\n"));
        assert!(!v2_has_cpu("cpuset io memory pids"));
    }
}
