//! A throwaway PostgreSQL server for tests: `initdb` and `pg_ctl` from Debian's postgresql
//! package into a temp dir, on a free port, listening on 127.0.0.1 only; stopped by PID (with
//! an identity check) when dropped, pass or fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use roachlab::process::ProcIdentity;

use crate::helpers::wait_for;

pub struct PgServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    pid: Option<ProcIdentity>,
}

/// Runs a PostgreSQL tool; as root, through `runuser -u postgres` (initdb and postgres refuse
/// to run as root).
fn pg_cmd(bin: &Path, tool: &str) -> Command {
    if nix::unistd::getuid().is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

impl PgServer {
    /// Starts a server, or returns `None` (with a SKIPPED line) when PostgreSQL is not installed.
    pub fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()?;
        let dir = tempfile::Builder::new().prefix("rlpg").tempdir_in("/tmp").expect("temp dir");
        if nix::unistd::getuid().is_root() {
            let pg =
                nix::unistd::User::from_name("postgres").ok().flatten().expect("the postgres user (installed by the postgresql package)");
            nix::unistd::chown(dir.path(), Some(pg.uid), Some(pg.gid)).expect("chown the test dir");
        }
        let port = (0..200).map(|_| 25000 + fastrand::u16(0..5000)).find(|p| roachlab::ports::is_free(*p)).expect("a free port");
        let out =
            pg_cmd(&bin, "initdb").args(["-A", "trust", "-U", "postgres", "-D"]).arg(dir.path().join("data")).output().expect("initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let mut s = PgServer { dir, port, bin, pid: None };
        s.start_again();
        Some(s)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server on its data dir and port, and records its PID + start time.
    pub fn start_again(&mut self) {
        let data = self.dir.path().join("data");
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=50", self.port, self.dir.path().display());
        let out = pg_cmd(&self.bin, "pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(self.dir.path().join("log"))
            .arg("start")
            .output()
            .expect("pg_ctl start");
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
        let pidfile = std::fs::read_to_string(data.join("postmaster.pid")).expect("postmaster.pid");
        let pid: u32 = pidfile.lines().next().and_then(|l| l.trim().parse().ok()).expect("pid in postmaster.pid");
        self.pid = Some(ProcIdentity::of_pid(pid).expect("postmaster running"));
    }

    /// Fast shutdown (SIGINT to the postmaster alone, by PID; it stops its own children),
    /// waiting until it has exited.
    pub fn stop(&mut self) {
        let id = self.pid.take().expect("the server is running");
        roachlab::process::signal_pid(&id, nix::sys::signal::Signal::SIGINT).expect("signal the postmaster");
        wait_for("postgres to stop", Duration::from_secs(30), || (!id.is_alive()).then_some(()));
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(id) = self.pid.take() {
            let _ = roachlab::process::signal_pid(&id, nix::sys::signal::Signal::SIGINT);
            for _ in 0..200 {
                if !id.is_alive() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = roachlab::process::signal_pid(&id, nix::sys::signal::Signal::SIGKILL);
        }
    }
}
