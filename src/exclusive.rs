//! One drill, or one `workload init`, per lab at a time: both (re)initialise the bank and
//! act on the lab's nodes, so a second one would re-initialise the first one's data under its
//! workload, and the first one's check would then blame the database for it.
//!
//! The guard is an `flock` on `DIR/drill.lock`, held by the command's process for its whole
//! length and released by the kernel when it exits, however it exits (a SIGKILL included):
//! no stale lock to clear. The file says who holds it (pid, what, since when), for the
//! refusal of the next one.

use std::io::{Read, Seek, Write};

use crate::lab::Lab;
use crate::{Error, Result};

/// Held while a drill or a `workload init` runs; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct Exclusive {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Exclusive {
    /// Takes the lab's guard for `what` (e.g. `drill quorum-loss`), or refuses, naming the
    /// command that holds it: its pid, what it is, and since when.
    pub fn take(lab: &Lab, what: &str) -> Result<Self> {
        let path = lab.exclusive_lock();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        let mut lock = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut file, _)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = crate::events::printable(holder.trim());
                return Err(Error::Refused(format!(
                    "another command is running on this lab and owns its bank data: {}; wait until it ends, or stop it \
                     (Ctrl-C in its terminal, or `kill` that pid: a drill then restores the cluster), then try again",
                    if holder.is_empty() { "one whose record is not written yet".to_string() } else { holder }
                )));
            }
        };
        let since = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| "now".into());
        let record = format!("pid {} (`roachlab {what}`) since {since}", std::process::id());
        let _ = lock.set_len(0);
        let _ = lock.rewind();
        lock.write_all(record.as_bytes()).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        let _ = lock.flush();
        Ok(Self { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_refused_with_the_holder_and_the_guard_frees_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let lab = Lab::new(dir.path()).unwrap();
        let first = Exclusive::take(&lab, "drill pause-leader").unwrap();
        let err = Exclusive::take(&lab, "drill graceful-vs-kill").unwrap_err().to_string();
        assert!(err.contains(&format!("pid {} (`roachlab drill pause-leader`) since ", std::process::id())), "{err}");
        drop(first);
        Exclusive::take(&lab, "workload init bank").unwrap();
    }
}
