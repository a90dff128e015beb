//! The lab directory: where one lab keeps its state, stores, logs, HAProxy config and sockets.
//!
//! Layout (all below `DIR`, default `./roachlab-data`):
//!
//! | path | what |
//! |---|---|
//! | `state.json` | the persisted [`crate::state::LabState`] (written atomically) |
//! | `roachlab.sock` | the daemon's control socket (mode 0600) |
//! | `events.jsonl` | the event timeline, one JSON object per line |
//! | `haproxy.cfg` | the rendered HAProxy config |
//! | `haproxy.sock` | HAProxy's stats/runtime socket |
//! | `net.json` | the netns topology's namespaces, bridge and faults in force |
//! | `stores/node-N/` | node N's store (CockroachDB) or data dir (etcd) |
//! | `logs/node-N.log` | node N's stdout and stderr |
//! | `logs/haproxy.log`, `logs/daemon.log` | HAProxy's and the daemon's output |

use std::path::{Path, PathBuf};

use crate::node::NodeId;

/// Longest path a Unix socket address can hold on Linux (`sun_path` is 108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Paths of one lab, all derived from its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lab {
    dir: PathBuf,
}

impl Lab {
    /// A lab rooted at `dir`, made absolute against the current directory (the daemon and the
    /// processes it starts must not depend on the CLI's working directory).
    pub fn new(dir: impl AsRef<Path>) -> std::io::Result<Self> {
        let dir = dir.as_ref();
        let dir = if dir.is_absolute() { dir.to_path_buf() } else { std::env::current_dir()?.join(dir) };
        Ok(Self { dir: normalize(&dir) })
    }

    /// `DIR/haproxy.state`: HAProxy's server states (`show servers state`), saved before each
    /// reload and loaded by the new worker (`server-state-file`), so a drained server stays
    /// drained and a DOWN one stays DOWN across a reload.
    pub fn haproxy_state(&self) -> PathBuf {
        self.dir.join("haproxy.state")
    }

    /// `DIR/net.json`: what the netns topology created (namespaces, veths, bridge) and the
    /// network faults in force ([`crate::topology::NetRecord`]).
    pub fn net_record(&self) -> PathBuf {
        self.dir.join("net.json")
    }

    /// The lab directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// `DIR/state.json`.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    /// `DIR/roachlab.sock`, the daemon's control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("roachlab.sock")
    }
    /// `DIR/daemon.lock`: locked (`flock`) by the lab's daemon for its whole life, and holding
    /// its pid: one daemon per lab, whatever happens to the socket.
    pub fn daemon_lock(&self) -> PathBuf {
        self.dir.join("daemon.lock")
    }
    /// `DIR/drill.lock`: locked (`flock`) by a running drill or `workload init`, and naming
    /// it ([`crate::exclusive::Exclusive`]): one at a time per lab.
    pub fn exclusive_lock(&self) -> PathBuf {
        self.dir.join("drill.lock")
    }
    /// `DIR/console.token` (mode 0600): the console's per-lab token ([`crate::console`]).
    pub fn console_token(&self) -> PathBuf {
        self.dir.join("console.token")
    }
    /// `DIR/runs`: a drill run's directory per run (`runs/<stamp>-<drill>/`).
    pub fn runs_dir(&self) -> PathBuf {
        self.dir.join("runs")
    }
    /// `DIR/events.jsonl`, the timeline.
    pub fn events_file(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }
    /// `DIR/haproxy.cfg`.
    pub fn haproxy_cfg(&self) -> PathBuf {
        self.dir.join("haproxy.cfg")
    }
    /// `DIR/haproxy.sock`, HAProxy's stats/runtime socket.
    pub fn haproxy_socket(&self) -> PathBuf {
        self.dir.join("haproxy.sock")
    }
    /// `DIR/logs`.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
    /// `DIR/stores`.
    pub fn stores_dir(&self) -> PathBuf {
        self.dir.join("stores")
    }
    /// `DIR/stores/node-N`: node N's store (CockroachDB) or data dir (etcd).
    pub fn store_dir(&self, id: NodeId) -> PathBuf {
        self.stores_dir().join(format!("node-{id}"))
    }
    /// `DIR/logs/node-N.log`: node N's stdout and stderr.
    pub fn node_log(&self, id: NodeId) -> PathBuf {
        self.logs_dir().join(format!("node-{id}.log"))
    }
    /// `DIR/logs/haproxy.log`.
    pub fn haproxy_log(&self) -> PathBuf {
        self.logs_dir().join("haproxy.log")
    }
    /// `DIR/logs/daemon.log`.
    pub fn daemon_log(&self) -> PathBuf {
        self.logs_dir().join("daemon.log")
    }

    /// Fails when a socket path of this lab is too long for a Unix socket address.
    pub fn check_socket_paths(&self) -> crate::Result<()> {
        for path in [self.socket(), self.haproxy_socket()] {
            let len = path.as_os_str().len();
            if len > MAX_SOCKET_PATH {
                return Err(crate::Error::SocketPathTooLong { path, len, max: MAX_SOCKET_PATH });
            }
        }
        Ok(())
    }

    /// Everything roachlab writes into a lab directory, for `down --wipe` (which removes these
    /// and then the directory only if it is left empty, so a mistaken `--dir $HOME` loses
    /// nothing that roachlab did not create).
    pub fn owned_paths(&self) -> Vec<PathBuf> {
        vec![
            self.state_file(),
            prev_of(&self.state_file()),
            self.socket(),
            self.events_file(),
            self.haproxy_cfg(),
            self.haproxy_socket(),
            self.haproxy_state(),
            self.net_record(),
            self.daemon_lock(),
            self.exclusive_lock(),
            self.console_token(),
            self.dir.join("certs"),
            self.dir.join("certs-ca"),
            self.logs_dir(),
            self.stores_dir(),
            self.runs_dir(),
            self.dir.join("workloads"),
            self.dir.join("monitoring"),
        ]
    }
}

/// Removes `.` and `..` components without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `state.json.prev` beside `state.json` (the previous state, kept by each atomic write).
pub fn prev_of(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".prev");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_dirs_become_absolute_and_normalized() {
        let lab = Lab::new("a/./b/../c").unwrap();
        assert!(lab.dir().is_absolute());
        assert!(lab.dir().ends_with("a/c"));
        assert_eq!(lab.node_log(2), lab.dir().join("logs/node-2.log"));
    }

    #[test]
    fn overlong_socket_paths_are_refused() {
        let lab = Lab::new(format!("/tmp/{}", "x".repeat(120))).unwrap();
        let err = lab.check_socket_paths().unwrap_err().to_string();
        assert!(err.contains("over the 107-byte limit"), "{err}");
    }
}
