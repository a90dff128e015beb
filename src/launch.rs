//! Finding or starting the lab's daemon: every command that talks to the daemon goes
//! through [`ensure_daemon`], which starts a new one (re-adopting the lab's processes) when
//! none answers — also in the middle of a drill whose daemon died.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::api::Client;
use crate::lab::Lab;
use crate::state::LabState;
use crate::{Error, Result};

/// A client of the lab's daemon, starting the daemon (which re-adopts running nodes) if the
/// lab exists but no daemon answers.
pub async fn ensure_daemon(lab: &Lab) -> Result<Client> {
    // A live daemon is asked first: it holds the state in memory, so a damaged state file
    // does not lock the user out of it.
    let client = Client::new(&lab.socket());
    if client.is_up().await {
        return Ok(client);
    }
    // A socket that accepts but does not answer: a hung daemon. Say what was observed.
    if let Some(hung) = diagnose_hung(lab).await {
        return Err(hung);
    }
    if LabState::load_or_recover(&lab.state_file())?.0.is_none() {
        return Err(Error::NoLab { dir: lab.dir().to_path_buf() });
    }
    start_daemon(lab).await
}

/// Starts `roachlab daemon` for the lab in a new session (so it outlives this command and a
/// Ctrl-C in this terminal), output to `DIR/logs/daemon.log`, and waits until it answers.
pub async fn start_daemon(lab: &Lab) -> Result<Client> {
    use process_wrap::std::{CommandWrap, ProcessSession};
    refuse_a_foreign_lab(lab)?;
    std::fs::create_dir_all(lab.logs_dir()).map_err(|e| Error::io(format!("cannot create {}", lab.logs_dir().display()), e))?;
    let log_path = lab.daemon_log();
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(format!("cannot open {}", log_path.display()), e))
    };
    let exe = std::env::current_exe().map_err(|e| Error::io("cannot find the roachlab binary", e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--dir").arg(lab.dir()).arg("daemon").stdin(Stdio::null()).stdout(open()?).stderr(open()?);
    let mut wrap = CommandWrap::from(cmd);
    wrap.wrap(ProcessSession);
    let mut child = wrap.spawn().map_err(|e| Error::io("cannot start the roachlab daemon", e))?;
    let client = Client::new(&lab.socket());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if client.is_up().await {
            return Ok(client);
        }
        if let Ok(Some(status)) = child.try_wait() {
            // It may have found the lab's daemon alive (the lock is held) with its socket
            // gone: that daemon binds the socket again within a second.
            let grace = Instant::now() + Duration::from_secs(2);
            while Instant::now() < grace {
                if client.is_up().await {
                    return Ok(client);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return Err(Error::DaemonStart { log: log_path.clone(), message: format!("it exited ({status}): {}", log_tail(&log_path)) });
        }
        if Instant::now() > deadline {
            return Err(Error::DaemonStart { log: log_path, message: "it did not answer within 20 s".into() });
        }
        // A new daemon answers ~15 ms after exec; a look at a socket that is not there yet
        // costs microseconds.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

/// A lab whose directory belongs to another user (a root lab, for one made with `sudo` for
/// the netns topology) cannot be run by this one: its daemon, socket and logs are that
/// user's. Said plainly, instead of the first file that cannot be opened.
fn refuse_a_foreign_lab(lab: &Lab) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid();
    let meta = match std::fs::metadata(lab.dir()) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Error::Refused(format!(
                "cannot reach the lab in {} as this user (uid {me}): permission denied. It was made by another user (a root \
                 lab, for one, made with `sudo` for the netns topology): run the command as that user, or use a lab directory of your own",
                lab.dir().display()
            )))
        }
        Err(_) => return Ok(()),
    };
    if me.is_root() || meta.uid() == me.as_raw() {
        return Ok(());
    }
    let owner =
        nix::unistd::User::from_uid(meta.uid().into()).ok().flatten().map(|u| u.name).unwrap_or_else(|| format!("uid {}", meta.uid()));
    Err(Error::Refused(format!(
        "the lab in {} belongs to {owner}: its daemon, control socket and logs are {owner}'s, so this user (uid {me}) can neither \
         reach nor start them. Run the command as {owner} (e.g. `sudo roachlab --dir {} …` for a root lab), or use a lab directory of your own",
        lab.dir().display(),
        lab.dir().display()
    )))
}

/// Opens (creating it if needed, never truncating) the lab's lock file `DIR/daemon.lock`.
pub fn open_lock(lab: &Lab) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(lab.daemon_lock())
}

/// Waits (at most `deadline`) until no daemon holds the lab's lock (`DIR/daemon.lock`): an
/// exiting daemon releases it when it is gone. Returns whether it was released.
pub async fn wait_lab_unlocked(lab: &Lab, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    loop {
        let free = match open_lock(lab) {
            Ok(f) => nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok(),
            Err(_) => true,
        };
        if free {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// When the socket accepts connections but `ping` got no answer: what holds the lab's lock
/// (`DIR/daemon.lock`) and in what state its process is (`/proc/PID/stat`). `None` when the
/// socket does not accept (no daemon: start one).
async fn diagnose_hung(lab: &Lab) -> Option<Error> {
    let socket = lab.socket();
    let connected = tokio::time::timeout(Duration::from_secs(2), tokio::net::UnixStream::connect(&socket)).await.is_ok_and(|r| r.is_ok());
    if !connected {
        return None;
    }
    let pid: Option<u32> = std::fs::read_to_string(lab.daemon_lock()).ok().and_then(|t| t.trim().parse().ok());
    let state = pid.map(|p| {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        match stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) {
            Some("T") | Some("t") => format!("daemon pid {p} is stopped (SIGSTOP?): `kill -CONT {p}` resumes it"),
            Some("Z") | None => format!("daemon pid {p} is dead"),
            Some(_) => format!("daemon pid {p} is alive but not answering"),
        }
    });
    Some(Error::DaemonUnreachable {
        socket,
        message: format!(
            "connected, but no answer within 2 s; {}",
            state.unwrap_or_else(|| "no daemon pid is recorded in daemon.lock".into())
        ),
    })
}
