//! The lab's persisted state (`DIR/state.json`): its spec, its nodes, and the identities of the
//! processes roachlab started. Always written atomically (`state.json.partial`, fsync, rename),
//! so a crash leaves the old state or the new one, never half of one.

use crate::lab::prev_of;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::LabSpec;
use crate::node::{NodeId, NodeRecord, NodeState};
use crate::process::ProcIdentity;
use crate::{Error, Result};

/// Format version of `state.json`.
pub const STATE_VERSION: u32 = 1;

/// Everything the daemon must remember across its own restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabState {
    pub version: u32,
    pub spec: LabSpec,
    pub nodes: Vec<NodeRecord>,
    /// HAProxy's master process, when running.
    pub haproxy: Option<ProcIdentity>,
    /// Prometheus and Alertmanager, when the lab runs them (labs made before monitoring: none).
    #[serde(default)]
    pub prometheus: Option<ProcIdentity>,
    #[serde(default)]
    pub alertmanager: Option<ProcIdentity>,
    /// The daemon serving this lab, when running.
    pub daemon: Option<ProcIdentity>,
    /// The cluster has been bootstrapped (`cockroach init` succeeded); etcd bootstraps itself.
    pub initialized: bool,
}

impl LabState {
    /// A fresh lab with nodes `1..=spec.nodes`, all stopped.
    pub fn new(spec: LabSpec) -> Self {
        let engine = crate::engine::for_spec(&spec);
        let nodes = (1..=spec.nodes)
            .map(|id| NodeRecord {
                id,
                ports: crate::topology::Topology::node_ports(&spec, engine.as_ref(), id),
                state: NodeState::Stopped,
                process: None,
                decommissioned: false,
                engine_id: None,
            })
            .collect();
        Self { version: STATE_VERSION, spec, nodes, haproxy: None, prometheus: None, alertmanager: None, daemon: None, initialized: false }
    }

    /// Reads `path`; `Ok(None)` when there is no state file (no lab yet).
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        };
        let state: LabState = serde_json::from_str(&text).map_err(|e| Error::ConfigSyntax {
            file: path.display().to_string(),
            line: e.line(),
            col: e.column(),
            message: format!("{e} (the lab state is damaged; `roachlab down --wipe` starts over)"),
        })?;
        if state.version != STATE_VERSION {
            return Err(Error::ConfigInvalid {
                origin: path.display().to_string(),
                message: format!("state version {} is not {STATE_VERSION}; this lab was made by another roachlab", state.version),
            });
        }
        Ok(Some(state))
    }

    /// Writes `path` atomically: `path.partial`, fsync, rename over `path`. The state it
    /// replaces, if it was readable, is kept as `path.prev` (the last good state, for
    /// [`LabState::load_or_recover`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut body = serde_json::to_vec_pretty(self).expect("state serializes");
        body.push(b'\n');
        if matches!(Self::load(path), Ok(Some(_))) {
            let _ = std::fs::copy(path, prev_of(path));
        }
        write_atomic(path, &body)
    }

    /// Creates `path` with this state only if no lab exists there yet, atomically (written
    /// aside, then hard-linked into place, which fails if `path` exists). Returns whether
    /// this call created it; `false` means another state was there first.
    pub fn create(&self, path: &Path) -> Result<bool> {
        let mut body = serde_json::to_vec_pretty(self).expect("state serializes");
        body.push(b'\n');
        let aside = partial_of(path);
        write_atomic(&aside, &body)?;
        let linked = std::fs::hard_link(&aside, path);
        let _ = std::fs::remove_file(&aside);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io(format!("cannot create {}", path.display()), e)),
        }
    }

    /// [`LabState::load`], falling back to the last good state (`path.prev`) when `path` is
    /// damaged. Returns the state and, when it came from `.prev`, a warning that says so.
    /// Errors only when neither can be read.
    pub fn load_or_recover(path: &Path) -> Result<(Option<Self>, Option<String>)> {
        match Self::load(path) {
            Ok(s) => Ok((s, None)),
            Err(damaged) => match Self::load(&prev_of(path)) {
                Ok(Some(prev)) => Ok((
                    Some(prev),
                    Some(format!("{damaged}; using the last good state ({}), at most one change old", prev_of(path).display())),
                )),
                _ => Err(damaged),
            },
        }
    }

    /// The node with this id.
    pub fn node(&self, id: NodeId) -> Result<&NodeRecord> {
        self.nodes.iter().find(|n| n.id == id).ok_or_else(|| self.unknown(id))
    }

    /// The node with this id, mutably.
    pub fn node_mut(&mut self, id: NodeId) -> Result<&mut NodeRecord> {
        let err = self.unknown(id);
        self.nodes.iter_mut().find(|n| n.id == id).ok_or(err)
    }

    fn unknown(&self, id: NodeId) -> Error {
        Error::UnknownNode { id, known: self.nodes.iter().map(|n| n.id).collect() }
    }

    /// Nodes that are members of the cluster (not decommissioned).
    pub fn members(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.iter().filter(|n| !n.decommissioned)
    }

    /// The id a new node gets: one past the highest ever used.
    pub fn next_id(&self) -> NodeId {
        self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1
    }
}

/// A temporary name beside `path`, unique to this process and call, so concurrent writers
/// (two CLI processes creating one lab) never rename each other's half-written files.
fn partial_of(path: &Path) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{}.{}.partial", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    std::path::PathBuf::from(p)
}

/// Writes `body` to `path` atomically: `<path>.partial`, fsync, rename over `path`. A reader
/// sees the old file or the new one, never a part.
pub fn write_atomic(path: &Path, body: &[u8]) -> Result<()> {
    let partial = partial_of(path);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&partial)?;
        f.write_all(body)?;
        f.sync_all()?;
        std::fs::rename(&partial, path)
    };
    write().map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    #[test]
    fn save_is_atomic_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(LabState::load(&path).unwrap().is_none());
        let mut state = LabState::new(LabSpec::load(None, &Overrides::default()).unwrap());
        state.initialized = true;
        state.save(&path).unwrap();
        assert!(!dir.path().join("state.json.partial").exists());
        assert_eq!(LabState::load(&path).unwrap().unwrap(), state);
        assert_eq!(state.node(2).unwrap().ports.service, 26259);
        assert_eq!(state.next_id(), 4);
        assert!(state.node(9).unwrap_err().to_string().contains("unknown node 9; this lab has nodes 1, 2, 3"));
    }

    #[test]
    fn damaged_state_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{\"version\": 1, \"spec\": ").unwrap();
        let err = LabState::load(&path).unwrap_err().to_string();
        assert!(err.contains("state.json:1:") && err.contains("down --wipe"), "{err}");
    }
}
