//! Command-line commands. `main.rs` parses [`Cli`] and calls [`run`]; everything the user sees
//! comes from here via the [`Reporter`](crate::reporter::Reporter) or a final table.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::api::{Client, HaproxyReport, StatusReport};
use crate::config::{EngineKind, Overrides};
use crate::lab::Lab;
use crate::node::NodeId;
use crate::reporter::{self, Reporter};
use crate::state::LabState;
use crate::supervisor::StopOutcome;
use crate::{Error, Result};

mod down;
pub mod drill;
pub mod monitoring;
pub mod net;
pub mod node;
mod shell;
mod up;
pub mod workload;

/// roachlab: local CockroachDB and etcd clusters behind HAProxy, for fault-tolerance drills.
#[derive(Debug, Parser)]
#[command(name = "roachlab", version, about, max_term_width = 100)]
pub struct Cli {
    /// The lab directory: state, stores, logs, haproxy.cfg and the control socket.
    #[arg(long, global = true, env = "ROACHLAB_DIR", default_value = "roachlab-data")]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the lab's daemon, nodes and HAProxy; wait until every node is ready and UP.
    Up {
        /// Lab config (TOML); the embedded 3-node CockroachDB config when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Engine, overriding the config.
        #[arg(long, value_enum)]
        engine: Option<EngineKind>,
        /// Number of nodes, overriding the config.
        #[arg(long)]
        nodes: Option<u32>,
        /// Where nodes live on the network, overriding the config: `netns` puts every node in
        /// its own network namespace (needs root) so `roachlab net` can partition them.
        #[arg(long, value_enum)]
        topology: Option<crate::topology::TopologyKind>,
        /// Restart nodes that exit unasked, overriding the config: `on-failure` (a non-zero
        /// exit or a crash signal, `node kill` included) or `always`; backoff 1 s doubling to 30 s.
        #[arg(long, value_enum)]
        restart: Option<crate::config::RestartPolicy>,
        /// Also run Prometheus and Alertmanager with the lab's scrape config and alert rules
        /// (as `[monitoring] enabled = true`); alerts land in the timeline.
        #[arg(long)]
        monitoring: bool,
        /// The live console's port on 127.0.0.1 (default 8070; `[console] port`).
        #[arg(long, conflicts_with = "no_console")]
        console_port: Option<u16>,
        /// Do not serve the live console (`[console] enabled = false`).
        #[arg(long)]
        no_console: bool,
        /// TLS on every hop: a CA, node and client certificates in DIR/certs, nodes started
        /// secure, HAProxy's checks, the probes, workloads and shells over TLS
        /// (`[security] secure = true`).
        #[arg(long)]
        secure: bool,
        /// The address HAProxy's frontends listen on (default 127.0.0.1); beyond loopback it
        /// needs --secure, or --insecure-public.
        #[arg(long)]
        bind: Option<std::net::IpAddr>,
        /// Let an insecure lab's frontends listen beyond loopback: anyone who reaches the
        /// address owns the database.
        #[arg(long)]
        insecure_public: bool,
    },
    /// Where the lab's CA and client certificates are, when they expire, and the connection
    /// URL a client outside roachlab uses (secure labs).
    Certs,
    /// Print the live console's URL with the lab's token (and open it where a browser is set
    /// up: $BROWSER, or xdg-open on a desktop).
    Console {
        /// Print the URL only; open no browser.
        #[arg(long)]
        no_open: bool,
    },
    /// Alerts firing now (from the lab's Alertmanager) and every alert this lab has seen.
    Alerts {
        /// Print JSON: `{"firing": [...], "history": [...]}`.
        #[arg(long)]
        json: bool,
    },
    /// Show every node's process, readiness and HAProxy state.
    Status {
        /// Print JSON (see docs/API.md for the shape).
        #[arg(long)]
        json: bool,
        /// Add liveness, replicas and leaseholders per node, and the cluster's range counts.
        #[arg(long)]
        ranges: bool,
    },
    /// Live view of the cluster, refreshed every second; q or Ctrl-C quits.
    Watch {
        /// Refresh interval.
        #[arg(long, default_value = "1s", value_parser = crate::config::parse_duration)]
        interval: Duration,
        /// Stop after this many refreshes (for scripts).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Print the lab's event timeline (DIR/events.jsonl).
    Events {
        /// Keep printing events as they happen.
        #[arg(long)]
        follow: bool,
        /// One JSON object per line, as stored.
        #[arg(long)]
        json: bool,
        /// Only events newer than this, e.g. 5m.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
    },
    /// Write a Prometheus scrape config for the nodes and HAProxy.
    Prometheus {
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Act on one node.
    Node {
        #[command(subcommand)]
        command: node::NodeCommand,
    },
    /// Network faults (netns topology): partition, isolate, delay, loss, heal, status.
    Net {
        #[command(subcommand)]
        command: net::NetCommand,
    },
    /// Stop every node and HAProxy, then the daemon.
    Down {
        /// Remove the lab's data (stores, logs, state) afterwards.
        #[arg(long)]
        wipe: bool,
        /// SIGKILL everything at once instead of draining.
        #[arg(long)]
        fast: bool,
    },
    /// Show HAProxy's config path, process and backend servers.
    Haproxy {
        #[arg(long)]
        json: bool,
    },
    /// Run a workload through the lab's HAProxy (or --url) and check what survived.
    Workload {
        #[command(subcommand)]
        command: workload::WorkloadCommand,
    },
    /// Run a fault-tolerance drill under load, measure it, and write a report with charts.
    Drill {
        #[command(subcommand)]
        command: drill::DrillCommand,
        /// The node `target` steps act on (default: the leader where known, else the highest running node).
        #[arg(long, global = true)]
        node: Option<NodeId>,
        /// Seed for random choices (printed in the report).
        #[arg(long, global = true)]
        seed: Option<u64>,
        /// Load before the first step, measured as the baseline.
        #[arg(long, global = true, default_value = "5s", value_parser = crate::config::parse_duration)]
        baseline: Duration,
    },
    /// Re-render a drill's report (default: the latest run) from its results.json.
    Report {
        /// A run directory, or its name under DIR/runs/.
        run: Option<PathBuf>,
    },
    /// Bring up a 3-node lab (CockroachDB if a binary is available, else etcd), run the
    /// graceful-vs-kill drill, write its report, and leave the cluster up.
    Demo {
        /// Lab config for the cluster (its engine is replaced as above); default ports otherwise.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The engine's SQL shell (`cockroach sql`, else `psql`) through HAProxy, or on one node.
    ///
    /// `roachlab sql -e "select count(*) from bank.bank"` runs the statement and exits with
    /// its status; without `-e` the shell is interactive.
    Sql {
        /// Connect to this node directly, bypassing HAProxy.
        #[arg(long)]
        node: Option<NodeId>,
        /// A statement to run (repeatable); the shell exits after the last.
        #[arg(short = 'e', long = "execute")]
        execute: Vec<String>,
    },
    /// etcd labs: `etcdctl` (v3) with the lab's endpoint: HAProxy's frontend, or one node.
    ///
    /// `roachlab etcdctl -- get --prefix /bank`; everything after `--` goes to etcdctl.
    Etcdctl {
        /// Talk to this member directly, bypassing HAProxy.
        #[arg(long)]
        node: Option<NodeId>,
        /// etcdctl's own arguments.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Print a shell completion script: `source <(roachlab completions bash)`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print roachlab's man page (roff): `roachlab man > roachlab.1; man ./roachlab.1`.
    Man,
    /// Run the supervisor daemon in the foreground (`up` starts it for you).
    #[command(hide = true)]
    Daemon,
}

/// Runs a parsed command. Returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    let lab = Lab::new(&cli.dir).map_err(|e| Error::io("cannot resolve --dir", e))?;
    lab.check_socket_paths()?;
    // A secure lab: the workloads, drills and probes of this command speak its TLS. (Before
    // its first `up` there are no certificates yet; `up` makes them, and commands that need
    // them then say so.)
    if let Ok(Some(st)) = crate::state::LabState::load(&lab.state_file()) {
        if st.spec.security.secure && crate::certs::CertPaths::of(&lab).complete() {
            // Not fatal: `down --wipe` and `up` (which makes them again) must still run.
            if let Err(e) = crate::tls::use_lab(&st.spec, &lab) {
                eprintln!("warning: the lab's certificates cannot be used ({e}); `roachlab up` makes them again");
            }
        }
    }
    match cli.command {
        Command::Daemon => {
            crate::daemon::run(lab, shutdown_signal()).await?;
            Ok(0)
        }
        Command::Up { config, engine, nodes, topology, restart, monitoring, console_port, no_console, secure, bind, insecure_public } => {
            let monitoring = monitoring.then_some(true);
            let security = crate::config::security::SecurityFlags { secure, bind, insecure_public };
            up::up(&lab, config.as_deref(), Overrides { engine, nodes, topology, restart, monitoring, no_console, console_port, security })
                .await
        }
        Command::Certs => up::certs(&lab).await,
        Command::Console { no_open } => up::console(&lab, !no_open).await,
        Command::Status { json, ranges } => {
            let client = crate::launch::ensure_daemon(&lab).await?;
            let s: StatusReport = client.get("/v1/status").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s).expect("serializes"));
            } else {
                print!("{}", reporter::status_table(&s, ranges));
            }
            Ok(0)
        }
        Command::Watch { interval, count } => {
            let client = crate::launch::ensure_daemon(&lab).await?;
            crate::dashboard::run(&client, &lab.events_file(), interval, std::io::stdout().is_terminal(), count).await?;
            Ok(0)
        }
        Command::Alerts { json } => monitoring::alerts(&lab, json).await,
        Command::Events { follow, json, since } => {
            if LabState::load(&lab.state_file())?.is_none() && !lab.events_file().exists() {
                return Err(Error::NoLab { dir: lab.dir().to_path_buf() });
            }
            crate::reporter::print_timeline(&lab.events_file(), json, since, follow).await?;
            Ok(0)
        }
        Command::Prometheus { out } => {
            let state = LabState::load(&lab.state_file())?.ok_or_else(|| Error::NoLab { dir: lab.dir().to_path_buf() })?;
            let text = crate::reporter::prometheus_config(&lab, &state);
            match out {
                Some(path) => {
                    std::fs::write(&path, text).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
                    println!("wrote {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(0)
        }
        Command::Haproxy { json } => {
            let client = crate::launch::ensure_daemon(&lab).await?;
            let r: HaproxyReport = client.get("/v1/haproxy").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).expect("serializes"));
            } else {
                print!("{}", reporter::haproxy_table(&r));
            }
            Ok(0)
        }
        Command::Node { command } => node::run(&lab, command).await,
        Command::Net { command } => net::run(&lab, command).await,
        Command::Workload { command } => workload::run(&lab, command).await,
        Command::Drill { command, node, seed, baseline } => drill::run(&lab, command, node, seed, baseline).await,
        Command::Report { run } => {
            let dir = match run {
                Some(r) if r.is_dir() => r,
                Some(r) => lab.runs_dir().join(r),
                None => drill::latest_run(&lab)?,
            };
            let path = dir.join("results.json");
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            let mut result: crate::drill::model::DrillResult = serde_json::from_str(&text).map_err(|e| Error::ConfigSyntax {
                file: path.display().to_string(),
                line: e.line(),
                col: e.column(),
                message: e.to_string(),
            })?;
            result.run_dir = dir.clone();
            crate::drill::report::write(&result)?;
            println!("{}", dir.join("report.html").display());
            Ok(0)
        }
        Command::Sql { node, execute } => shell::exec(&lab, node, crate::engine::ClientShell::Sql { execute: &execute }).await,
        Command::Etcdctl { node, args } => shell::exec(&lab, node, crate::engine::ClientShell::Etcdctl { args: &args }).await,
        Command::Completions { shell } => {
            // Into a buffer, then printed: clap_complete panics on a failed write of its own, and
            // `print!` of a closed stdout ends the CLI quietly (main's SIGPIPE hook).
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "roachlab", &mut out);
            print!("{}", String::from_utf8_lossy(&out));
            Ok(0)
        }
        Command::Man => {
            let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            let mut out = Vec::new();
            page.render(&mut out).map_err(|e| Error::io("cannot render the man page", e))?;
            print!("{}", String::from_utf8_lossy(&out));
            Ok(0)
        }
        Command::Demo { config } => up::demo(&lab, config.as_deref()).await,
        Command::Down { wipe, fast } => down::down(&lab, wipe, fast).await,
    }
}

/// `node 2: drained: SIGTERM, exited (code 0) after 3.2 s`.
pub(crate) fn describe_stop(o: &StopOutcome) -> String {
    if o.signals.is_empty() {
        return format!("node {}: {}", o.node, o.outcome);
    }
    let exit = o.exit.as_ref().map(|e| format!("exited ({e})")).unwrap_or_else(|| "exited".into());
    format!("node {}: {}: {}, {exit} after {:.1} s", o.node, o.outcome, o.signals.join(" → "), o.elapsed_ms as f64 / 1000.0)
}

/// Follows a streamed request with the reporter. Ctrl-C stops waiting (the request goes on
/// in the daemon) and says what is still going on: [`Error::StoppedWaiting`], exit 130.
pub(crate) async fn stream(client: &Client, path: &str, body: &impl serde::Serialize) -> Result<serde_json::Value> {
    let mut reporter = Reporter::new(std::io::stdout().is_terminal());
    let res = tokio::select! {
        r = client.stream(path, body, |e| reporter.event(e)) => r,
        _ = tokio::signal::ctrl_c() => {
            let what = path.trim_start_matches("/v1/").replace("nodes/", "node ").replace('/', " ");
            let node = path.strip_prefix("/v1/nodes/").and_then(|r| r.strip_suffix("/stop"));
            let hint = match node {
                Some(id) => format!("; to stop node {id} at once: `roachlab node kill {id}`"),
                None => String::new(),
            };
            Err(Error::StoppedWaiting { what: format!("`{what}`"), hint })
        }
    };
    reporter.finish();
    res
}

/// Resolves on SIGTERM or SIGINT: the daemon's shutdown source in the binary.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    /// `text` without every part between `open` and `close` (nesting counted).
    fn without_parts(text: &str, open: char, close: char) -> String {
        let mut out = String::new();
        let mut depth = 0;
        for c in text.chars() {
            match c {
                c if c == open => depth += 1,
                c if c == close => depth -= 1,
                c if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    }

    /// The command lines of the README's first command block, as a user would type them:
    /// `a | b` alternatives split, each `[…]` optional part left out and put in, `(…)` notes
    /// and `# …` comments dropped, a leading `sudo` removed.
    fn readme_command_lines() -> Vec<String> {
        let readme = include_str!("../../README.md");
        let block = readme.split("```\n").nth(1).expect("the README's first code block");
        let mut out = Vec::new();
        for line in block.lines() {
            let line = line.split(" # ").next().unwrap_or("").trim();
            let line = line.strip_prefix("sudo ").unwrap_or(line);
            // A shell redirection (`roachlab man > roachlab.1`) is not an argument.
            let line = line.split(" > ").next().unwrap_or("").trim();
            let Some(rest) = line.strip_prefix("roachlab ") else { continue };
            for alt in rest.split(" | ") {
                let no_notes = without_parts(alt, '(', ')');
                let without = without_parts(&no_notes, '[', ']');
                let with: String = no_notes.chars().filter(|c| *c != '[' && *c != ']').collect();
                for variant in [without, with] {
                    let words: Vec<&str> = variant.split_whitespace().collect();
                    if !words.is_empty() {
                        out.push(words.join(" "));
                    }
                }
            }
        }
        out
    }

    /// `line` split as a shell splits it: on spaces, a `"…"` or `'…'` being one word.
    fn shell_words(line: &str) -> Vec<String> {
        let (mut out, mut word, mut quote, mut any) = (Vec::new(), String::new(), None, false);
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.push(c),
                (None, '"' | '\'') => (quote, any) = (Some(c), true),
                (None, c) if c.is_whitespace() => {
                    if any || !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                    any = false;
                }
                (None, c) => word.push(c),
            }
        }
        if any || !word.is_empty() {
            out.push(word);
        }
        out
    }

    /// Every documented form parses, and none panics (`net partition 3 --one-way 1` did).
    #[test]
    fn every_command_line_of_the_readme_parses() {
        let lines = readme_command_lines();
        assert!(lines.len() > 40, "{lines:?}");
        assert!(lines.iter().any(|l| l == "net partition 3 --one-way 1"), "{lines:?}");
        assert!(lines.iter().any(|l| l == "man"), "{lines:?}");
        for line in &lines {
            let words = shell_words(line);
            let args = std::iter::once("roachlab").chain(words.iter().map(String::as_str));
            let parsed = std::panic::catch_unwind(|| Cli::try_parse_from(args));
            match parsed {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("`roachlab {line}` from the README does not parse: {e}"),
                Err(_) => panic!("`roachlab {line}` from the README panics the argument parser"),
            }
        }
        assert_eq!(shell_words(r#"sql -e "select 1" --node 2"#), ["sql", "-e", "select 1", "--node", "2"]);
        let one_way = Cli::try_parse_from(["roachlab", "net", "partition", "3", "--one-way", "1,2"]).unwrap();
        assert!(format!("{:?}", one_way.command).contains("Side([1, 2])"), "{one_way:?}");
    }
}
