//! Integration tests: real etcd, HAProxy (and CockroachDB when a binary is available),
//! started and stopped by the tests themselves, all on 127.0.0.1 with ports checked free.

mod cli_errors;
mod cockroach;
mod cockroach_faults;
mod console;
mod daemon;
mod drain;
mod drill;
mod faults;
mod helpers;
mod interleavings;
mod lab_etcd;
mod monitoring;
mod net;
mod pg;
mod safety;
mod script;
mod secure;
mod shape;
mod shell;
mod watch;
mod workload;
