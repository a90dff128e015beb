//! roachlab: supervise local CockroachDB and etcd clusters behind a managed HAProxy, and run
//! fault-tolerance drills against them.
//!
//! The binary (`src/main.rs`) is a thin shell over this library:
//!
//! - [`cli`] parses nothing itself; it turns parsed commands into requests to the daemon.
//! - [`daemon`] serves the JSON API ([`api`]) on a Unix socket in the lab directory and owns
//!   the [`supervisor`], which owns every node process and HAProxy.
//! - [`engine`] is the seam between the engine-neutral core and CockroachDB or etcd: nothing
//!   outside it branches on the engine.
//! - [`events`] is the one stream of everything that happens; the [`reporter`] and the
//!   timeline file (`DIR/events.jsonl`) consume it.
//! - [`console`] serves the live console in the browser beside the daemon's API; it and the
//!   drill reports draw the same [`chart`]s.

pub mod api;
pub mod certs;
pub mod cgroup;
pub mod chart;
pub mod cli;
pub mod config;
pub mod console;
pub mod daemon;
pub mod dashboard;
pub mod drill;
pub mod engine;
pub mod error;
pub mod events;
pub mod exclusive;
pub mod fault;
pub mod haproxy;
pub mod lab;
pub mod launch;
pub mod monitoring;
pub mod node;
pub mod ports;
pub mod process;
pub mod reporter;
pub mod sql;
pub mod state;
pub mod supervisor;
pub mod text;
pub mod tls;
pub mod topology;
pub mod watch;
pub mod web;
pub mod words;
pub mod workload;

pub use error::{Error, Result};
