//! Child processes: spawning in their own process group, identity, and signals.
//!
//! A PID alone does not name a process: PIDs are reused. roachlab records a
//! [`ProcIdentity`] (PID + start time, from `sysinfo`, which reads `/proc/PID/stat`) for every
//! process it starts, and [`signal`] refuses to send anything to a PID whose current process
//! has another start time, or is a zombie. Signals go to the whole process group (each node is
//! the leader of its own group), never to a name.

use std::path::Path;
use std::process::Stdio;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use process_wrap::tokio::{ChildWrapper, CommandWrap, ProcessSession};
use serde::{Deserialize, Serialize};
use sysinfo::{ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System};

use crate::{Error, Result};

/// A process as roachlab knows it: PID plus start time (seconds since the Unix epoch, as
/// `sysinfo::Process::start_time` reports it). Two processes with the same PID and start time
/// are taken to be the same process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcIdentity {
    pub pid: u32,
    pub start_time: u64,
}

/// What is at a recorded identity's PID now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// The same process, still running.
    Alive,
    /// No process, or a zombie (exited, not yet reaped).
    Gone,
    /// Another process reuses the PID.
    Reused { start_time: u64, name: String },
}

impl ProcIdentity {
    /// Reads the identity of a running PID; `None` if there is no such process (or a zombie).
    pub fn of_pid(pid: u32) -> Option<Self> {
        let mut sys = System::new().ok()?;
        let p = sysinfo::Pid::from_u32(pid);
        sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[p]), true, ProcessRefreshKind::nothing());
        let proc_ = sys.process(p)?;
        if matches!(proc_.status(), ProcessStatus::Zombie | ProcessStatus::Dead) {
            return None;
        }
        Some(Self { pid, start_time: proc_.start_time() })
    }

    /// Compares the recorded identity with what holds the PID now.
    pub fn liveness(&self) -> Liveness {
        let Ok(mut sys) = System::new() else { return Liveness::Gone };
        let p = sysinfo::Pid::from_u32(self.pid);
        sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[p]), true, ProcessRefreshKind::nothing());
        match sys.process(p) {
            None => Liveness::Gone,
            Some(proc_) if matches!(proc_.status(), ProcessStatus::Zombie | ProcessStatus::Dead) => Liveness::Gone,
            Some(proc_) if proc_.start_time() == self.start_time => Liveness::Alive,
            Some(proc_) => Liveness::Reused { start_time: proc_.start_time(), name: proc_.name().to_string_lossy().into_owned() },
        }
    }

    /// True while the recorded process is still running.
    pub fn is_alive(&self) -> bool {
        self.liveness() == Liveness::Alive
    }

    /// True when the process is stopped by a signal (SIGSTOP: state `T` in `/proc/PID/stat`).
    pub fn is_stopped(&self) -> bool {
        let Ok(mut sys) = System::new() else { return false };
        let p = sysinfo::Pid::from_u32(self.pid);
        sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[p]), true, ProcessRefreshKind::nothing());
        sys.process(p).is_some_and(|proc_| proc_.start_time() == self.start_time && proc_.status() == ProcessStatus::Stop)
    }
}

/// Sends `sig` to the process group led by `id`, after checking that `id.pid` is still the
/// process roachlab started.
///
/// Errors: [`Error::IdentityMismatch`] when the PID is gone, a zombie, or reused (nothing is
/// sent); [`Error::Io`] when `killpg(2)` fails.
pub fn signal(id: &ProcIdentity, sig: Signal) -> Result<()> {
    check_identity(id)?;
    killpg(Pid::from_raw(id.pid as i32), sig).map_err(|e| Error::io(format!("kill -{} -{}", sig.as_str(), id.pid), e.into()))
}

fn check_identity(id: &ProcIdentity) -> Result<()> {
    match id.liveness() {
        Liveness::Alive => {}
        Liveness::Gone => {
            return Err(Error::IdentityMismatch { pid: id.pid, reason: "it has exited".into() });
        }
        Liveness::Reused { start_time, name } => {
            return Err(Error::IdentityMismatch {
                pid: id.pid,
                reason: format!("the pid now belongs to `{name}`, started at {start_time}, not at {}", id.start_time),
            });
        }
    }
    Ok(())
}

/// Sends `sig` to the process `id` alone (not its group), after the same identity check as
/// [`signal`]. Used for HAProxy's master (SIGUSR2 reloads it; its workers must not get it).
pub fn signal_pid(id: &ProcIdentity, sig: Signal) -> Result<()> {
    check_identity(id)?;
    nix::sys::signal::kill(Pid::from_raw(id.pid as i32), sig).map_err(|e| Error::io(format!("kill -{} {}", sig.as_str(), id.pid), e.into()))
}

/// Whether a command line (`argv`) is one roachlab itself builds for a process of the lab in
/// `dir` — the only command lines that prove a process is the lab's when `state.json` cannot
/// be read: etcd `--data-dir=DIR/stores/…`, CockroachDB `--store=path=DIR/stores/…`, HAProxy
/// `-f DIR/haproxy.cfg`, the daemon `--dir DIR daemon`. (A user's `tail -f DIR/logs/…` is not.)
pub fn is_lab_command(argv: &[String], dir: &Path) -> bool {
    let d = dir.display().to_string();
    let stores = format!("{d}/stores/");
    let has = |flag: &str, value: &str| argv.windows(2).any(|w| w[0] == flag && w[1] == value);
    argv.iter().any(|a| a.strip_prefix("--data-dir=").is_some_and(|v| v.starts_with(&stores)))
        || argv.iter().any(|a| a.strip_prefix("--store=path=").is_some_and(|v| v.starts_with(&stores)))
        || has("-f", &format!("{d}/haproxy.cfg"))
        // Prometheus and Alertmanager: `--config.file=DIR/monitoring/…`, `--storage.…=DIR/monitoring/…`.
        || argv.iter().any(|a| a.starts_with("--") && a.split_once('=').is_some_and(|(_, v)| v.starts_with(&format!("{d}/monitoring/"))))
        || (has("--dir", &d) && argv.last().is_some_and(|a| a == "daemon"))
}

/// Every running process (not this one) whose command line proves it belongs to the lab in
/// `dir` ([`is_lab_command`]), with its identity read now, so a later signal is checked
/// against exactly the process that was found.
pub fn lab_processes(dir: &Path) -> Vec<ProcIdentity> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let me = std::process::id();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv: Vec<String> =
                raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            is_lab_command(&argv, dir)
        })
        .filter_map(ProcIdentity::of_pid)
        .collect()
}

/// A spawned child: its identity and the handle to wait on.
pub struct Spawned {
    pub identity: ProcIdentity,
    pub child: Box<dyn ChildWrapper>,
}

impl std::fmt::Debug for Spawned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawned").field("identity", &self.identity).finish()
    }
}

/// Spawns `program args…` as the leader of a new session (and so of a new process group,
/// its id the child's pid: signals go to the group), with stdin closed and stdout and stderr
/// appended to `log`. The child does not die with the daemon: it outlives it and is
/// re-adopted by the next one.
///
/// A session of its own, not only a process group: when the daemon dies, a child's process
/// group in the daemon's session would become orphaned, and the kernel sends an orphaned
/// group that has a stopped member SIGHUP then SIGCONT (POSIX `_exit`; Linux
/// `kill_orphaned_pgrp`) — a paused node (`node pause`, SIGSTOP) would be resumed and most
/// likely killed (etcd exits on SIGHUP). A group in another session is never orphaned by its
/// parent's exit, so a paused node stays paused until a new daemon resumes it.
///
/// With `netns` (`/run/netns/NAME`), the child enters that network namespace (`setns(2)`,
/// CLONE_NEWNET) between fork and exec: it is still our child, in our process tree, with the
/// same PID + start-time identity, so signals and re-adoption work exactly as on loopback.
pub fn spawn(program: &Path, args: &[String], env: &[(String, String)], log: &Path, netns: Option<&Path>) -> Result<Spawned> {
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(format!("cannot open log {}", log.display()), e))
    };
    let out = open_log()?;
    let err = open_log()?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).envs(env.iter().cloned()).stdin(Stdio::null()).stdout(out).stderr(err);
    if let Some(ns) = netns {
        // Opened here (close-on-exec), entered in the child: an error there fails the spawn.
        let f = std::fs::File::open(ns).map_err(|e| Error::io(format!("cannot open network namespace {}", ns.display()), e))?;
        // SAFETY: the closure only calls setns(2), which is async-signal-safe, on an fd that
        // stays open until exec.
        unsafe {
            cmd.pre_exec(move || nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from));
        }
    }
    let mut wrap = CommandWrap::from(cmd);
    wrap.wrap(ProcessSession);
    let child = wrap.spawn().map_err(|e| Error::io(format!("cannot start {}", program.display()), e))?;
    let pid = child.id().ok_or_else(|| Error::io("spawned child has no pid", std::io::ErrorKind::Other.into()))?;
    // The start time is read from /proc right after spawn; the child cannot have exited and
    // been replaced in between, because we have not reaped it.
    let start_time = read_start_time(pid)
        .ok_or_else(|| Error::io(format!("cannot read the start time of pid {pid}"), std::io::ErrorKind::NotFound.into()))?;
    Ok(Spawned { identity: ProcIdentity { pid, start_time }, child })
}

fn read_start_time(pid: u32) -> Option<u64> {
    let mut sys = System::new().ok()?;
    let p = sysinfo::Pid::from_u32(pid);
    sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[p]), true, ProcessRefreshKind::nothing());
    sys.process(p).map(|p| p.start_time())
}

/// How a process ended, in the terms `status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitInfo {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal (e.g. `SIGKILL`).
    Signal(String),
    /// Exited while roachlab was not its parent (adopted after a daemon restart): the status
    /// is not knowable.
    Unknown,
}

impl From<std::process::ExitStatus> for ExitInfo {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        if let Some(code) = status.code() {
            ExitInfo::Code(code)
        } else if let Some(sig) = status.signal() {
            ExitInfo::Signal(Signal::try_from(sig).map(|s| s.as_str().to_string()).unwrap_or_else(|_| format!("signal {sig}")))
        } else {
            ExitInfo::Unknown
        }
    }
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitInfo::Code(c) => write!(f, "code {c}"),
            ExitInfo::Signal(s) => write!(f, "{s}"),
            ExitInfo::Unknown => write!(f, "status unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_command_lines_roachlab_builds_prove_a_process_is_the_labs() {
        let dir = Path::new("/labs/a");
        let argv = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert!(is_lab_command(&argv("etcd --name=n1 --data-dir=/labs/a/stores/node-1"), dir));
        assert!(is_lab_command(&argv("cockroach start --store=path=/labs/a/stores/node-2"), dir));
        assert!(is_lab_command(&argv("haproxy -W -f /labs/a/haproxy.cfg"), dir));
        assert!(is_lab_command(&argv("roachlab --dir /labs/a daemon"), dir));
        assert!(!is_lab_command(&argv("tail -f /labs/a/logs/node-1.log"), dir), "a user's command naming the dir");
        assert!(!is_lab_command(&argv("etcd --data-dir=/labs/ab/stores/node-1"), dir), "another lab's dir");
        assert!(!is_lab_command(&argv("roachlab --dir /labs/a status"), dir), "a CLI command, not the daemon");
    }

    #[test]
    fn own_identity_is_alive_and_a_wrong_start_time_is_reuse() {
        let me = ProcIdentity::of_pid(std::process::id()).unwrap();
        assert_eq!(me.liveness(), Liveness::Alive);
        let impostor = ProcIdentity { start_time: me.start_time.wrapping_sub(1000), ..me };
        assert!(matches!(impostor.liveness(), Liveness::Reused { .. }));
    }

    #[test]
    fn signal_refuses_a_reused_pid_and_sends_nothing() {
        // Our own PID with a start time that is not ours: if the check were missing, the
        // test process would receive SIGTERM and die.
        let me = ProcIdentity::of_pid(std::process::id()).unwrap();
        let impostor = ProcIdentity { start_time: me.start_time + 12345, ..me };
        let err = signal(&impostor, Signal::SIGTERM).unwrap_err();
        assert!(matches!(err, Error::IdentityMismatch { .. }), "{err}");
        assert!(err.to_string().contains("refusing to signal"));
    }

    #[test]
    fn exit_status_is_described_by_code_or_signal() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(ExitInfo::from(std::process::ExitStatus::from_raw(3 << 8)), ExitInfo::Code(3));
        assert_eq!(ExitInfo::from(std::process::ExitStatus::from_raw(9)), ExitInfo::Signal("SIGKILL".into()));
    }
}
