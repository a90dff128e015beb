//! `down`: stop everything of the lab through its daemon (or, with no daemon, by the
//! recorded PIDs and start times); `--wipe` also removes what is left by command line and
//! name — processes, namespaces, links, cgroups — before the directory.

use std::time::{Duration, Instant};

use super::{describe_stop, stream};
use crate::api::{Client, DownRequest};
use crate::lab::Lab;
use crate::state::LabState;
use crate::supervisor::StopOutcome;
use crate::{Error, Result};

pub(super) async fn down(lab: &Lab, wipe: bool, fast: bool) -> Result<i32> {
    // A live daemon first, without reading state.json: it may be damaged, and the daemon has
    // the state in memory (and writes it again).
    let live = Client::new(&lab.socket());
    // Set when the state came from its last good copy: it may miss the newest process, so
    // after the daemon's down, whatever still provably belongs to the lab is stopped too.
    let mut sweep = false;
    let client = if live.is_up().await {
        Some(live)
    } else {
        match LabState::load_or_recover(&lab.state_file()) {
            Ok((None, _)) if !wipe => {
                println!("no lab in {}; nothing to stop", lab.dir().display());
                return Ok(0);
            }
            // No record (deleted, or never written): what is the lab's is found by its command
            // lines and names.
            Ok((None, _)) => {
                sweep = true;
                None
            }
            Ok((Some(_), warning)) => {
                if let Some(w) = warning {
                    eprintln!("warning: {w}");
                    sweep = true;
                }
                Some(crate::launch::start_daemon(lab).await?)
            }
            Err(damaged) if wipe => {
                // No daemon and no readable state: stop what provably is the lab's (its
                // command line names the lab's stores, config or directory), by identity.
                eprintln!("warning: {damaged}; stopping the lab's processes found by their command lines");
                sweep = true;
                None
            }
            Err(damaged) => {
                return Err(Error::Refused(format!(
                    "{damaged}. No daemon answers, so nothing can be stopped by the record; `roachlab down --wipe` stops \
                     the processes whose command lines prove they are this lab's, and starts over"
                )))
            }
        }
    };
    if let Some(client) = client {
        let result = stream(&client, "/v1/down", &DownRequest { fast }).await?;
        let outcomes: Vec<StopOutcome> = serde_json::from_value(result["nodes"].clone()).unwrap_or_default();
        for o in &outcomes {
            println!("{}", describe_stop(o));
        }
        // The daemon exits once `down` is done; wait for its socket to go.
        let deadline = Instant::now() + Duration::from_secs(15);
        while lab.socket().exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut found_any = false;
    if sweep || wipe {
        // By command line and by name, whatever the record says (a wipe leaves nothing).
        let procs = crate::process::lab_processes(lab.dir());
        found_any |= !procs.is_empty();
        for id in &procs {
            match crate::process::signal_pid(id, nix::sys::signal::Signal::SIGKILL) {
                Ok(()) => println!("pid {}: SIGKILL (found by its command line)", id.pid),
                Err(e) => eprintln!("warning: pid {}: {e}", id.pid),
            }
        }
        let gone = Instant::now() + Duration::from_secs(5);
        while procs.iter().any(|p| p.is_alive()) && Instant::now() < gone {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The processes are gone: what a netns lab made on the network goes too, and the
        // CPU groups of throttled nodes.
        let network = crate::topology::netns::teardown_recorded(lab).and_then(|mut done| {
            crate::topology::strays::teardown_by_name(lab.dir()).map(|more| {
                done.extend(more);
                done
            })
        });
        match network {
            Ok(done) => {
                found_any |= !done.is_empty();
                done.iter().for_each(|d| println!("network: {d}"));
            }
            Err(e) => eprintln!("warning: the lab's network namespaces could not all be removed: {e}"),
        }
        match crate::cgroup::remove_lab_groups(&crate::topology::netns::tag_of(lab.dir())) {
            Ok(groups) => {
                found_any |= !groups.is_empty();
                groups.iter().for_each(|g| println!("cgroup: removed {g} (found by its name)"));
            }
            Err(e) => eprintln!("warning: the lab's CPU groups could not all be removed: {e}"),
        }
    }
    if wipe {
        if !found_any && !lab.owned_paths().iter().any(|p| p.exists()) {
            println!("no lab in {}; nothing to wipe", lab.dir().display());
            return Ok(0);
        }
        // Only once nothing of the lab is left is its record deleted.
        let tag = crate::topology::netns::tag_of(lab.dir());
        let (namespaces, links) = crate::topology::strays::lab_network_names(lab.dir());
        let left: Vec<String> = crate::process::lab_processes(lab.dir())
            .iter()
            .map(|p| format!("pid {}", p.pid))
            .chain(namespaces.into_iter().map(|n| format!("namespace {n}")))
            .chain(links.into_iter().map(|l| format!("link {l}")))
            .chain(crate::cgroup::lab_groups(&tag).into_iter().map(|g| format!("cgroup {g}")))
            .collect();
        if !left.is_empty() {
            return Err(Error::Refused(format!(
                "the lab in {} still has {} after the wipe's clean-up; its directory is kept (the only record of them). \
                 Remove them (as root), then run `roachlab down --wipe` again",
                lab.dir().display(),
                left.join(", ")
            )));
        }
        for path in lab.owned_paths() {
            let res = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            if let Err(e) = res {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(Error::io(format!("cannot remove {}", path.display()), e));
                }
            }
        }
        let _ = std::fs::remove_dir(lab.dir()); // only if empty: never delete what roachlab did not make
        println!("wiped {}", lab.dir().display());
    }
    Ok(0)
}
