//! Test helpers: a throwaway lab with its own free ports, CLI runners, polling with deadlines,
//! and cleanup by PID (identity-checked) whatever the test's outcome.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use roachlab::process::ProcIdentity;
use serde_json::Value;

static NEXT_BLOCK: AtomicU32 = AtomicU32::new(0);

/// A block of ports for one lab: node ports at `base`, `base+64`, `base+128` (config keeps
/// 64-port blocks apart), HAProxy at `base+192..=base+194`, monitoring at `base+195..=base+197`,
/// the console at `base+198`. Every port that a 5-node lab
/// would use is checked free. Blocks lie in 20000..32000, below Linux's ephemeral range.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub base: u16,
    pub http_base: u16,
    pub peer_base: u16,
    pub frontend: u16,
    pub admin: u16,
    pub stats: u16,
    /// Prometheus, Alertmanager and the daemon's alert webhook (`[monitoring]`).
    pub prometheus: u16,
    pub alertmanager: u16,
    pub webhook: u16,
    /// The live console (`[console] port`).
    pub console: u16,
}

impl Ports {
    pub fn free() -> Self {
        let seed = std::process::id();
        for _ in 0..200 {
            let k = NEXT_BLOCK.fetch_add(1, Ordering::SeqCst);
            let base = 20000 + ((seed.wrapping_mul(7) + k) % 60) as u16 * 200;
            let p = Ports {
                base,
                http_base: base + 64,
                peer_base: base + 128,
                frontend: base + 192,
                admin: base + 193,
                stats: base + 194,
                prometheus: base + 195,
                alertmanager: base + 196,
                webhook: base + 197,
                console: base + 198,
            };
            let all = (0..5).flat_map(|i| [p.base + i, p.http_base + i, p.peer_base + i]).chain([
                p.frontend,
                p.admin,
                p.stats,
                p.prometheus,
                p.alertmanager,
                p.webhook,
                p.console,
            ]);
            if all.into_iter().all(roachlab::ports::is_free) {
                return p;
            }
        }
        panic!("no free port block found in 20000..32000");
    }
}

/// A lab in a temporary directory, torn down on drop.
pub struct TestLab {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub ports: Ports,
    /// The netns lab's subnet claim (a directory held while the lab lives).
    pub subnet: Option<(String, PathBuf)>,
    /// The lab directory's path under `dir` (`lab`; any name a user could give, spaces and
    /// all).
    pub lab_name: String,
}

/// Claims a /24 in 198.18.0.0/15 no other test process holds (an atomically created
/// directory under /tmp) and no interface of this host uses. Returns `(subnet, claim)`.
fn claim_subnet() -> (String, PathBuf) {
    let root = Path::new("/tmp/roachlab-test-subnets");
    std::fs::create_dir_all(root).expect("claims dir");
    let used = std::process::Command::new("ip").args(["-4", "-o", "addr", "show"]).output().map(|o| text(&o.stdout)).unwrap_or_default();
    let seed = std::process::id();
    for k in 0..230u32 {
        let x = 20 + (seed.wrapping_mul(13) + k) % 230;
        let prefix = format!("198.18.{x}.");
        let claim = root.join(x.to_string());
        if !used.contains(&prefix) && std::fs::create_dir(&claim).is_ok() {
            return (format!("198.18.{x}.0/24"), claim);
        }
    }
    panic!("no free test subnet in 198.18.20.0–198.18.249.0");
}

impl TestLab {
    /// A lab config for `engine` with `nodes` nodes on free ports and fast timeouts.
    pub fn new(engine: &str, nodes: u32) -> Self {
        // Short paths: Unix socket addresses are limited to 107 bytes.
        let dir = tempfile::Builder::new().prefix("rl").tempdir_in("/tmp").expect("temp dir");
        let ports = Ports::free();
        let config = dir.path().join("lab.toml");
        let text = format!(
            "engine = \"{engine}\"\nnodes = {nodes}\n\n[ports]\nbase = {}\nhttp_base = {}\npeer_base = {}\n\n\
             [haproxy]\nfrontend_port = {}\nadmin_port = {}\nstats_port = {}\ninter = \"500ms\"\nfall = 2\nrise = 2\n\n\
             [timeouts]\ngrace = \"30s\"\ndown_grace = \"15s\"\nready = \"60s\"\npoll = \"250ms\"\n\n\
             [monitoring]\nprometheus_port = {}\nalertmanager_port = {}\nwebhook_port = {}\n\n[console]\nport = {}\n",
            ports.base,
            ports.http_base,
            ports.peer_base,
            ports.frontend,
            ports.admin,
            ports.stats,
            ports.prometheus,
            ports.alertmanager,
            ports.webhook,
            ports.console
        );
        std::fs::write(&config, text).expect("write config");
        Self { dir, config, ports, subnet: None, lab_name: "lab".into() }
    }

    /// A lab like [`TestLab::new`] in the netns topology, on a subnet of its own.
    pub fn netns(engine: &str, nodes: u32) -> Self {
        let mut lab = Self::new(engine, nodes);
        let (subnet, claim) = claim_subnet();
        let mut text = std::fs::read_to_string(&lab.config).unwrap();
        text = format!("topology = \"netns\"\n{text}\n[netns]\nsubnet = \"{subnet}\"\n");
        std::fs::write(&lab.config, text).unwrap();
        lab.subnet = Some((subnet, claim));
        lab
    }

    /// Appends `toml` (sections) to the lab's config.
    pub fn append_config(&self, toml: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, format!("{text}\n{toml}\n")).unwrap();
    }

    /// The lab's tag in the names of its namespaces and interfaces.
    pub fn net_tag(&self) -> String {
        roachlab::topology::netns::tag_of(&self.lab_dir())
    }

    /// Namespaces and links on this host whose names carry the lab's tag.
    pub fn net_leftovers(&self) -> Vec<String> {
        let tag = self.net_tag();
        let netns = std::process::Command::new("ip").args(["netns", "list"]).output().map(|o| text(&o.stdout)).unwrap_or_default();
        let links = std::process::Command::new("ip").args(["-o", "link", "show"]).output().map(|o| text(&o.stdout)).unwrap_or_default();
        netns.lines().chain(links.lines()).filter(|l| l.contains(&tag)).map(str::to_string).collect()
    }

    /// The lab directory (`--dir`).
    pub fn lab_dir(&self) -> PathBuf {
        self.dir.path().join(&self.lab_name)
    }

    /// `roachlab --dir LAB args...`, with the environment it is given.
    pub fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::cargo_bin("roachlab").expect("binary built");
        c.arg("--dir").arg(self.lab_dir()).args(args).env_remove("ROACHLAB_DIR");
        c
    }

    /// Runs a command and returns its output (never panics on failure).
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run roachlab")
    }

    /// Runs a command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "`roachlab {}` failed: {}\nstdout:\n{}", args.join(" "), text(&out.stderr), text(&out.stdout));
        text(&out.stdout)
    }

    /// `up --config lab.toml`.
    pub fn up(&self) -> String {
        let cfg = self.config.display().to_string();
        self.ok(&["up", "--config", &cfg])
    }

    /// `status --json`.
    pub fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status JSON")
    }

    /// The node entry of `status --json`.
    pub fn node(&self, id: u64) -> Value {
        self.status()["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).cloned().expect("node in status")
    }

    /// The persisted state.
    pub fn state(&self) -> Value {
        let text = std::fs::read_to_string(self.lab_dir().join("state.json")).expect("state.json");
        serde_json::from_str(&text).expect("state JSON")
    }

    /// Identities of every process the lab recorded (nodes, HAProxy, daemon).
    pub fn recorded_processes(&self) -> Vec<ProcIdentity> {
        let Ok(text) = std::fs::read_to_string(self.lab_dir().join("state.json")) else { return vec![] };
        let Ok(v) = serde_json::from_str::<Value>(&text) else { return vec![] };
        let mut out: Vec<ProcIdentity> =
            v["nodes"].as_array().into_iter().flatten().filter_map(|n| serde_json::from_value(n["process"].clone()).ok()).collect();
        for k in ["haproxy", "prometheus", "alertmanager", "daemon"] {
            if let Ok(id) = serde_json::from_value(v[k].clone()) {
                out.push(id);
            }
        }
        out
    }

    /// Starts `roachlab workload run bank ARGS... --tolerate-errors --json` with stdout piped,
    /// and returns once the run is logging ticks (it is committing).
    pub fn start_bank_run(&self, args: &[&str]) -> std::process::Child {
        self.start_workload_run("bank", args)
    }

    /// `workload run NAME ARGS --tolerate-errors --json`, returned once its first tick is logged.
    pub fn start_workload_run(&self, name: &str, args: &[&str]) -> std::process::Child {
        let mut all = vec!["workload", "run", name];
        all.extend_from_slice(args);
        all.extend(["--tolerate-errors", "--json"]);
        let child = self.cmd(&all).stdout(std::process::Stdio::piped()).spawn().unwrap();
        let last = || roachlab::workload::last_run_dir(&self.lab_dir(), name);
        wait_for("the run to start", Duration::from_secs(10), || {
            last().and_then(|d| std::fs::metadata(d.join("ticks.ndjson")).ok()).filter(|m| m.len() > 0).map(|_| ())
        });
        child
    }

    /// For a failed test: the end of the lab's timeline and daemon log on stderr (the lab's
    /// directory is deleted afterwards), so a failure in CI can be read, not just seen.
    pub fn print_diagnostics(&self) {
        let tail = |path: PathBuf, n: usize| {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        eprintln!("---- the lab's last timeline events ----\n{}", tail(self.lab_dir().join("events.jsonl"), 80));
        eprintln!("---- the end of its daemon log ----\n{}", tail(self.lab_dir().join("logs/daemon.log"), 40));
    }

    /// Events of the timeline, in order.
    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.lab_dir().join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("event JSON"))
            .collect()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if !self.lab_dir().join("state.json").exists() {
            if let Some((_, claim)) = &self.subnet {
                let _ = std::fs::remove_dir(claim);
            }
            return;
        }
        if std::thread::panicking() {
            self.print_diagnostics();
        }
        let seen = self.recorded_processes();
        let _ = self.cmd(&["down", "--fast"]).output();
        // Safety net: anything recorded that still runs is SIGKILLed, by PID and only if its
        // start time still matches (never by name).
        for id in seen.into_iter().chain(self.recorded_processes()) {
            let _ = roachlab::process::signal(&id, nix::sys::signal::Signal::SIGKILL);
        }
        // And what the lab recorded on the network (by the record's names only).
        if let Ok(lab) = roachlab::lab::Lab::new(self.lab_dir()) {
            let _ = roachlab::topology::netns::teardown_recorded(&lab);
        }
        if let Some((_, claim)) = &self.subnet {
            let _ = std::fs::remove_dir(claim);
        }
    }
}

/// Polls `cond` every 50 ms until it returns `Some`, or panics after `deadline` naming `what`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.0 GET against 127.0.0.1:port; returns (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// A minimal HTTP/1.0 POST of JSON; returns (status, body).
pub fn http_post(port: u16, path: &str, json: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}", json.len())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Prints `SKIPPED (reason): test` straight to the process's stderr, past libtest's output
/// capture (which only intercepts `print!`/`eprint!`), so it shows in every test run.
pub fn skipped(reason: &str, test: &str) {
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED ({reason}): {test}");
}

/// Whether a binary is available (by env var or PATH), for SKIPPED lines.
pub fn binary_available(env_var: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var).filter(|v| !v.is_empty()) {
        return which::which(Path::new(&p)).ok();
    }
    which::which(name).ok()
}

/// A child's stdout read line by line on a thread of its own, so a test can wait for what the
/// command printed while it still runs, and still have all of it afterwards.
pub struct LineReader {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl LineReader {
    /// Takes `child`'s piped stdout.
    pub fn of(child: &mut std::process::Child) -> Self {
        use std::io::BufRead;
        let stdout = child.stdout.take().expect("stdout is piped");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { lines, reader: Some(reader) }
    }

    /// Waits until a line contains `needle`, up to `deadline`.
    pub fn wait_for_line(&self, needle: &str, deadline: Duration) {
        wait_for(&format!("a line with {needle:?} (so far: {:?})", self.lines.lock().unwrap()), deadline, || {
            self.lines.lock().unwrap().iter().any(|l| l.contains(needle)).then_some(())
        });
    }

    /// Everything printed, once the child has closed its stdout.
    pub fn all(mut self) -> String {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let lines = self.lines.lock().unwrap();
        lines.iter().map(|l| format!("{l}\n")).collect()
    }
}
