//! The library's typed errors. Every message says what went wrong, where, and how to fix it;
//! the binary adds nothing but the exit code.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::node::NodeId;

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in roachlab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file could not be parsed or has a field roachlab does not know.
    #[error("{file}:{line}:{col}: {message}")]
    ConfigSyntax { file: String, line: usize, col: usize, message: String },

    /// A config parsed but asks for something impossible (the message names the field).
    #[error("{origin}: {message}")]
    ConfigInvalid { origin: String, message: String },

    /// A port a node or HAProxy needs is taken.
    #[error("port {port} ({role}) is already in use{}; stop that process or choose other ports in the config (`[ports]`, `[haproxy]`, `[monitoring]`)",
        holder.as_ref().map(|h| format!(" by {h}")).unwrap_or_default())]
    PortInUse { port: u16, role: String, holder: Option<String> },

    /// An engine or HAProxy binary is not installed.
    #[error("`{name}` not found (looked at ${env_var}, the config, and PATH). {install}")]
    BinaryNotFound { name: String, env_var: String, install: String },

    /// A node id that the lab does not have.
    #[error("unknown node {id}; this lab has nodes {}", fmt_ids(known))]
    UnknownNode { id: NodeId, known: Vec<NodeId> },

    /// The request does not fit the node's current state (e.g. starting a running node).
    #[error("node {id}: {message}")]
    NodeState { id: NodeId, message: String },

    /// The request was refused because it would harm the cluster; the message says how to
    /// force it if that is possible.
    #[error("{0}")]
    Refused(String),

    /// A Unix socket path is longer than the kernel accepts.
    #[error("socket path {} is {len} bytes, over the {max}-byte limit of Unix sockets; use a shorter --dir", path.display())]
    SocketPathTooLong { path: PathBuf, len: usize, max: usize },

    /// No lab exists in the directory.
    #[error("no lab in {}; start one with `roachlab up --dir {}`", dir.display(), dir.display())]
    NoLab { dir: PathBuf },

    /// `up` on a lab whose daemon is already running.
    #[error("the lab in {} is already up (daemon pid {pid}); see `roachlab status --dir {}`, or `roachlab down` first", dir.display(), dir.display())]
    LabRunning { dir: PathBuf, pid: u32 },

    /// The lab exists but was created with another spec than the one asked for now.
    /// `differences`: each as "engine etcd, not cockroach".
    #[error("the lab in {} was created with another shape ({differences}); use another --dir, or `roachlab down --wipe` first", dir.display())]
    LabMismatch { dir: PathBuf, differences: String },

    /// The daemon could not be reached on its socket.
    #[error("cannot reach the roachlab daemon at {}: {message}", socket.display())]
    DaemonUnreachable { socket: PathBuf, message: String },

    /// The daemon is exiting after a `down`: it takes no new request (acting and then
    /// abandoning the processes it started would orphan them).
    #[error("the lab's daemon is shutting down after `roachlab down`; it takes no new request. Run the command again once it has exited (a new daemon starts then)")]
    DaemonExiting,

    /// The user stopped waiting (Ctrl-C) for a request the daemon carries on with.
    #[error("stopped waiting (Ctrl-C); the daemon carries on with {what}. Follow it with `roachlab events --follow`{hint}")]
    StoppedWaiting { what: String, hint: String },

    /// The daemon did not come up.
    #[error("the roachlab daemon did not start: {message}; see {}", log.display())]
    DaemonStart { log: PathBuf, message: String },

    /// A recorded PID now belongs to another process (or to none): roachlab will not signal it.
    #[error("refusing to signal pid {pid}: it is not the process roachlab started ({reason})")]
    IdentityMismatch { pid: u32, reason: String },

    /// HAProxy rejected a config or failed to start or reload.
    #[error("haproxy: {message}")]
    Haproxy { message: String },

    /// Prometheus or Alertmanager rejected a config or rule file, or failed to start or reload.
    #[error("monitoring: {message}")]
    Monitoring { message: String },

    /// An engine-specific operation failed (CockroachDB CLI, etcd API).
    #[error("{engine}: {message}")]
    Engine { engine: String, message: String },

    /// Something did not happen before its deadline.
    #[error("timed out after {after_ms} ms waiting for {what}")]
    Timeout { what: String, after_ms: u64 },

    /// A privilege the request needs is missing.
    #[error("{what} needs {missing}, which this process does not have: {how}")]
    Privilege { what: String, missing: String, how: String },

    /// A network command (`ip`, `tc`) failed.
    #[error("`{command}` failed: {message}")]
    Network { command: String, message: String },

    /// An I/O operation failed; `context` says on what.
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },

    /// The daemon answered a request with an error.
    #[error("{message}")]
    Api { code: ErrorCode, message: String },
}

/// The kind of an error, as carried over the daemon API (`{"error":{"code":..,"message":..}}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Bad input: config, unknown node, wrong state, refused operation.
    BadRequest,
    /// A resource is taken (port in use, lab already up).
    Conflict,
    /// A required binary is missing.
    Missing,
    /// The daemon is exiting (after `down`) and takes no new request.
    Exiting,
    /// The console refused the request: a foreign host or origin, or a change without the
    /// lab's token.
    Forbidden,
    /// Anything else.
    Internal,
}

impl Error {
    /// Wraps an I/O error with what roachlab was doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// An engine failure.
    pub fn engine(engine: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Engine { engine: engine.into(), message: message.into() }
    }

    /// The API error kind of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::ConfigSyntax { .. }
            | Error::ConfigInvalid { .. }
            | Error::UnknownNode { .. }
            | Error::NodeState { .. }
            | Error::Refused(_)
            | Error::SocketPathTooLong { .. }
            | Error::NoLab { .. }
            | Error::LabMismatch { .. }
            | Error::IdentityMismatch { .. }
            | Error::Privilege { .. } => ErrorCode::BadRequest,
            Error::PortInUse { .. } | Error::LabRunning { .. } => ErrorCode::Conflict,
            Error::BinaryNotFound { .. } => ErrorCode::Missing,
            Error::DaemonExiting => ErrorCode::Exiting,
            Error::Api { code, .. } => *code,
            _ => ErrorCode::Internal,
        }
    }
}

fn fmt_ids(ids: &[NodeId]) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}
