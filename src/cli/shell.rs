//! `roachlab sql` and `roachlab etcdctl`: the engine's own client, exec'd in place of roachlab
//! (its exit status is the command's), pointed at HAProxy's client frontend or, with
//! `--node N`, at one node directly. A target that cannot answer — HAProxy stopped or with no
//! server UP, a node stopped, exited or paused — is refused before anything runs.

use std::os::unix::process::CommandExt;

use crate::api::StatusReport;
use crate::engine::ClientShell;
use crate::lab::Lab;
use crate::node::NodeId;
use crate::state::LabState;
use crate::{Error, Result};

/// Where a client goes: node `node`'s client port, or HAProxy's frontend. Errors say why the
/// target cannot answer and what to do.
pub fn target(s: &StatusReport, node: Option<NodeId>) -> Result<String> {
    match node {
        Some(id) => {
            let n = s
                .nodes
                .iter()
                .find(|n| n.id == id)
                .ok_or_else(|| Error::UnknownNode { id, known: s.nodes.iter().map(|n| n.id).collect() })?;
            if n.decommissioned {
                return Err(Error::Refused(format!("node {id} is decommissioned: it has left the cluster")));
            }
            match n.state.as_str() {
                "running" => Ok(format!("{}:{}", n.host, n.sql_port)),
                "paused" => Err(Error::Refused(format!(
                    "node {id} is paused (SIGSTOP): it would accept the connection and never answer; `roachlab node resume {id}` first"
                ))),
                other => Err(Error::Refused(format!("node {id} is {other}: nothing answers there; `roachlab node start {id}` first"))),
            }
        }
        None => {
            if s.haproxy.pid.is_none() {
                return Err(Error::Refused("HAProxy is not running: `roachlab up` starts it (or name a node with --node N)".into()));
            }
            if !s.nodes.iter().any(|n| n.backend.as_deref() == Some("UP")) {
                return Err(Error::Refused(
                    "no node is UP behind HAProxy: a connection would be closed at once; start a node, or name one with --node N".into(),
                ));
            }
            // Listening on every address (`--bind 0.0.0.0`): this host reaches it on 127.0.0.1.
            Ok(s.haproxy.frontend.replace("0.0.0.0:", "127.0.0.1:"))
        }
    }
}

/// Replaces this process with the engine's client for `shell` at the target. Returns only on
/// an error (the lab, the target, or exec itself).
pub async fn exec(lab: &Lab, node: Option<NodeId>, shell: ClientShell<'_>) -> Result<i32> {
    let state = LabState::load(&lab.state_file())?.ok_or_else(|| Error::NoLab { dir: lab.dir().to_path_buf() })?;
    let engine = crate::engine::for_lab(&state.spec, lab);
    // Refused before asking the daemon: `sql` on an etcd lab, `etcdctl` on CockroachDB.
    engine.client_shell("127.0.0.1:0", shell, None)?;
    let client = crate::launch::ensure_daemon(lab).await?;
    let s: StatusReport = client.get("/v1/status").await?;
    let addr = target(&s, node)?;
    let certs = state.spec.security.secure.then(|| crate::certs::CertPaths::of(lab));
    let mut command = engine.client_shell(&addr, shell, certs.as_ref())?;
    let program = command.get_program().to_string_lossy().into_owned();
    let err = command.exec();
    Err(Error::io(format!("cannot run {program}"), err))
}
