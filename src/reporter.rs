//! The CLI's one reporter: renders the daemon's event stream and results.
//!
//! On a terminal, one spinner per node (indicatif) shows its latest phase and other events
//! print above them; otherwise (pipes, CI, tests) every event is a plain timestamped line.
//! Both modes read the same [`Event`]s.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::{HaproxyReport, StatusReport};
use crate::events::{Event, EventKind};
use crate::node::NodeId;
use crate::process::ExitInfo;

/// Renders events for a person.
pub struct Reporter {
    bars: Option<Bars>,
}

struct Bars {
    multi: MultiProgress,
    nodes: BTreeMap<NodeId, ProgressBar>,
}

impl Reporter {
    /// Spinners when `tty`, plain lines otherwise.
    pub fn new(tty: bool) -> Self {
        let bars = tty.then(|| Bars { multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()), nodes: BTreeMap::new() });
        Self { bars }
    }

    /// Shows one event.
    pub fn event(&mut self, e: &Event) {
        match &mut self.bars {
            None => println!("{}  {}", clock(e), e.describe()),
            Some(b) => match e.node() {
                Some(node) => {
                    let bar = b.nodes.entry(node).or_insert_with(|| {
                        let bar = b.multi.add(ProgressBar::new_spinner());
                        bar.set_style(ProgressStyle::with_template("{spinner} {prefix:8} {wide_msg}").expect("valid template"));
                        bar.set_prefix(format!("node {node}"));
                        bar.enable_steady_tick(Duration::from_millis(120));
                        bar
                    });
                    let text = e.describe();
                    let text = text.strip_prefix(&format!("node {node}: ")).unwrap_or(&text).to_string();
                    bar.set_message(text);
                    // Keep a scrollback record of milestones.
                    if matches!(
                        e.kind,
                        EventKind::NodeExited { .. }
                            | EventKind::NodeReady { .. }
                            | EventKind::BackendState { .. }
                            | EventKind::NodeSignalled { .. }
                    ) {
                        let _ = b.multi.println(format!("{}  {}", clock(e), e.describe()));
                    }
                }
                None => {
                    let _ = b.multi.println(format!("{}  {}", clock(e), e.describe()));
                }
            },
        }
    }

    /// Prints a line (above the spinners on a terminal).
    pub fn line(&self, text: &str) {
        match &self.bars {
            Some(b) => {
                let _ = b.multi.println(text);
            }
            None => println!("{text}"),
        }
    }

    /// Removes the spinners.
    pub fn finish(&mut self) {
        if let Some(b) = self.bars.take() {
            for bar in b.nodes.values() {
                bar.finish_and_clear();
            }
            let _ = b.multi.clear();
        }
        let _ = std::io::stdout().flush();
    }
}

fn clock(e: &Event) -> String {
    let t = e.ts;
    format!("{:02}:{:02}:{:02}.{:03}", t.hour(), t.minute(), t.second(), t.millisecond())
}

/// `status` as a table.
pub fn status_table(s: &StatusReport) -> String {
    let mut out = format!("{} lab in {} (daemon pid {})\n", s.engine, s.dir.display(), s.daemon.pid);
    let peer = s.nodes.iter().any(|n| n.peer_port.is_some());
    out.push_str(&format!(
        "{:<5} {:<20} {:<8} {:<6} {:<8} {:<6} {:<6}{} {}\n",
        "NODE",
        "STATE",
        "PID",
        "READY",
        "HAPROXY",
        "PORT",
        "HTTP",
        if peer { " PEER  " } else { "" },
        "SINCE"
    ));
    for n in &s.nodes {
        let state = match (&n.exit, n.decommissioned) {
            (_, true) if n.pid.is_none() => "decommissioned".to_string(),
            (Some(ExitInfo::Code(c)), _) => format!("exited (code {c})"),
            (Some(ExitInfo::Signal(sig)), _) => format!("exited ({sig})"),
            (Some(ExitInfo::Unknown), _) => "exited (unknown)".into(),
            (None, _) => n.state.clone(),
        };
        out.push_str(&format!(
            "{:<5} {:<20} {:<8} {:<6} {:<8} {:<6} {:<6}{} {}\n",
            n.id,
            state,
            n.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            if n.ready { "yes" } else { "no" },
            n.backend.as_deref().unwrap_or("-"),
            n.sql_port,
            n.http_port,
            if peer { format!(" {:<6}", n.peer_port.map(|p| p.to_string()).unwrap_or_default()) } else { String::new() },
            n.since.as_deref().unwrap_or("-"),
        ));
        if let Some(d) = &n.ready_detail {
            out.push_str(&format!("      not ready: {d}\n"));
        }
    }
    let h = &s.haproxy;
    match h.pid {
        Some(pid) => out.push_str(&format!(
            "haproxy: running (pid {pid}); clients {}, admin UI http://{}/, stats http://{}/\n",
            h.frontend, h.admin_ui, h.stats
        )),
        None => out.push_str("haproxy: stopped\n"),
    }
    out
}

/// `roachlab haproxy` as text.
pub fn haproxy_table(r: &HaproxyReport) -> String {
    let s = &r.status;
    let mut out = format!(
        "config: {}\nhaproxy: {}{}\nfrontends: clients {}, admin UI {}, stats http://{}/\n",
        s.config.display(),
        s.state,
        s.pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        s.frontend,
        s.admin_ui,
        s.stats
    );
    if !r.servers.is_empty() {
        out.push_str(&format!("{:<10} {:<8} {:<10} {:<8} {}\n", "PROXY", "SERVER", "STATUS", "CHECK", "SESSIONS"));
        for sv in &r.servers {
            out.push_str(&format!("{:<10} {:<8} {:<10} {:<8} {}\n", sv.proxy, sv.server, sv.status, sv.check_status, sv.sessions));
        }
    }
    out
}
