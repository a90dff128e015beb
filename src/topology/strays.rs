//! A lab's network found by its names, with or without a record (`down --wipe` when the
//! state and `net.json` are gone or damaged): namespaces `roachlab-TAG-nN`, links `rlTAGnN`
//! and the bridge `rlTAGbr`, where TAG is [`super::netns::tag_of`] the lab directory.

use std::path::Path;

use super::iproute::{ip_remove, run};
use super::netns::tag_of;
use crate::node::NodeId;
use crate::Result;

/// The namespaces and links of the lab in `dir` that exist on this host, found by their names
/// (which carry the lab's tag: `roachlab-TAG-nN`, `rlTAGnN`, `rlTAGbr`), with or without a
/// record: `(namespaces, links)`. Empty where `ip` is missing.
pub fn lab_network_names(dir: &Path) -> (Vec<String>, Vec<String>) {
    let tag = tag_of(dir);
    let netns_prefix = format!("roachlab-{tag}-n");
    let link_prefix = format!("rl{tag}");
    let namespaces = run("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.strip_prefix(&netns_prefix).is_some_and(|id| id.parse::<NodeId>().is_ok()))
        .map(str::to_string)
        .collect();
    let links = run("ip", &["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .filter(|n| {
            n.strip_prefix(&link_prefix)
                .is_some_and(|rest| rest == "br" || rest.strip_prefix('n').is_some_and(|id| id.parse::<NodeId>().is_ok()))
        })
        .map(str::to_string)
        .collect();
    (namespaces, links)
}

/// Removes the lab's namespaces and links found by their names ([`lab_network_names`]), for
/// a lab whose record is gone or damaged. Returns what it removed.
pub fn teardown_by_name(dir: &Path) -> Result<Vec<String>> {
    let (namespaces, links) = lab_network_names(dir);
    let mut done = Vec::new();
    for l in links {
        ip_remove(&["link", "del", &l])?;
        done.push(format!("removed link {l} (found by its name)"));
    }
    for n in namespaces {
        ip_remove(&["netns", "del", &n])?;
        done.push(format!("removed namespace {n} (found by its name)"));
    }
    Ok(done)
}
