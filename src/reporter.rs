//! The CLI's one reporter: renders the daemon's event stream and results.
//!
//! On a terminal, one spinner per node (indicatif) shows its latest phase and other events
//! print above them; otherwise (pipes, CI, tests) every event is a plain timestamped line.
//! Both modes read the same [`Event`]s.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use std::path::Path;

use crate::api::{HaproxyReport, StatusReport};
use crate::events::{Event, EventKind};
use crate::node::NodeId;
use crate::words::{cluster_line, liveness_word, network_line, process_word};

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

/// A long command's progress on one line. On a terminal: a spinner with the elapsed time and
/// the latest line said, every line said printed above it (indicatif). Elsewhere (pipes, CI,
/// tests): each line said as it comes, nothing else.
pub struct Activity {
    bar: Option<ProgressBar>,
}

impl Activity {
    /// Starts showing `what` (`drill quorum-loss`, `workload init tpcb`).
    pub fn new(tty: bool, what: &str) -> Self {
        let bar = tty.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            bar.set_style(ProgressStyle::with_template("{spinner} {prefix} ({elapsed}) {wide_msg}").expect("valid template"));
            bar.set_prefix(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { bar }
    }

    /// Prints `line`; on a terminal it also becomes the spinner's message.
    pub fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => {
                bar.println(line);
                bar.set_message(line.trim().to_string());
            }
            None => println!("{line}"),
        }
    }

    /// Removes the spinner (what was said stays).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn clock(e: &Event) -> String {
    let t = e.ts;
    format!("{:02}:{:02}:{:02}.{:03}", t.hour(), t.minute(), t.second(), t.millisecond())
}

/// `status` as a table; `ranges` adds liveness, replicas and leaseholders columns.
pub fn status_table(s: &StatusReport, ranges: bool) -> String {
    let mut out = format!("{} lab in {} (daemon pid {})\n", s.engine, s.dir.display(), s.daemon.pid);
    let peer = s.nodes.iter().any(|n| n.peer_port.is_some());
    let netns = s.network.topology == "netns";
    let mut header = format!("{:<5} {:<20} {:<8} {:<6} {:<8} {:<6} {:<6}", "NODE", "STATE", "PID", "READY", "HAPROXY", "PORT", "HTTP");
    if netns {
        header = format!("{header} {:<15}", "ADDRESS");
    }
    if peer {
        header.push_str(&format!(" {:<6}", "PEER"));
    }
    if ranges {
        header.push_str(&format!(" {:<24} {:<8} {:<6}", "LIVENESS", "REPLICAS", "LEASES"));
    }
    header.push_str(&format!(" {:<7}", "QUORUM"));
    header.push_str(" SINCE");
    out.push_str(header.trim_end());
    out.push('\n');
    for n in &s.nodes {
        let mut row = format!(
            "{:<5} {:<20} {:<8} {:<6} {:<8} {:<6} {:<6}",
            if n.is_leader == Some(true) { format!("{}*", n.id) } else { n.id.to_string() },
            process_word(n),
            n.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            crate::words::ready_word(n),
            n.backend.as_deref().unwrap_or("-"),
            n.sql_port,
            n.http_port,
        );
        if netns {
            row.push_str(&format!(" {:<15}", n.host));
        }
        if peer {
            row.push_str(&format!(" {:<6}", n.peer_port.map(|p| p.to_string()).unwrap_or_default()));
        }
        if ranges {
            let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            row.push_str(&format!(" {:<24} {:<8} {:<6}", liveness_word(n), opt(n.replicas), opt(n.leaseholders)));
        }
        row.push_str(&format!(" {:<7}", crate::words::quorum_word(n).unwrap_or("-")));
        row.push_str(&format!(" {}", n.since.as_deref().unwrap_or("-")));
        out.push_str(&row);
        out.push('\n');
        if let Some(d) = &n.ready_detail {
            out.push_str(&format!("      not ready: {d}\n"));
        }
        if n.ready_unobserved {
            out.push_str("      ready: not observed yet (no probe has answered since it was paused or resumed)\n");
        }
        if n.restarts > 0 || n.next_restart_at.is_some() {
            let next = n.next_restart_at.as_deref().map(|t| format!("; next restart at {t}")).unwrap_or_default();
            let looping = n.crash_loop.as_deref().map(|l| format!("; {l} — see its log")).unwrap_or_default();
            out.push_str(&format!("      restarted {} time(s) by the restart policy{next}{looping}\n", n.restarts));
        }
    }
    out.push_str(&format!("cluster: {}\n", cluster_line(s)));
    if let Some(line) = network_line(s) {
        out.push_str(&format!("network: {line}\n"));
    }
    for line in &s.quorum_rule {
        out.push_str(&format!("  rule: {line}\n"));
    }
    if s.nodes.iter().any(|n| n.is_leader == Some(true)) {
        out.push_str("(* = Raft leader)\n");
    }
    let h = &s.haproxy;
    match h.pid {
        Some(pid) => out.push_str(&format!(
            "haproxy: running (pid {pid}); clients {}{}, admin UI {}://{}/, stats http://{}/\n",
            h.frontend,
            if s.certificates.is_some() { " (TLS through to the nodes)" } else { "" },
            if s.certificates.is_some() { "https" } else { "http" },
            h.admin_ui,
            h.stats
        )),
        None => out.push_str("haproxy: stopped\n"),
    }
    if let Some(m) = &s.monitoring {
        out.push_str(&monitoring_lines(m));
    }
    if let Some(c) = &s.certificates {
        let until = match (&c.expires, c.days_left) {
            (Some(t), Some(d)) => format!("the node and client certificates expire {t} ({d} days)"),
            _ => "the certificates cannot be read".to_string(),
        };
        out.push_str(&format!("certificates: {}; {until} (`roachlab certs`)\n", c.dir.display()));
    }
    if let Some(url) = &s.console {
        out.push_str(&format!("console: {url} (`roachlab console` prints it with the lab's token)\n"));
    }
    out
}

/// The monitoring stack in `status`: each server's process and URL, targets, rules, firing.
pub fn monitoring_lines(m: &crate::api::MonitoringStatus) -> String {
    let proc_word = |c: &crate::api::ComponentStatus| match c.pid {
        Some(pid) => format!("running (pid {pid}) on {}", c.url),
        None => "stopped".to_string(),
    };
    let mut out = format!("prometheus: {}", proc_word(&m.prometheus));
    match (m.targets_up, m.targets_total) {
        // Prometheus lists no target until its scrape manager has read the config.
        (Some(_), Some(0)) => out.push_str("; targets not observed yet (Prometheus has not listed them)"),
        (Some(up), Some(all)) => {
            out.push_str(&format!("; {up} of {all} targets up"));
            if m.targets_unscraped > 0 {
                out.push_str(&format!(", {} not scraped yet", m.targets_unscraped));
            }
        }
        _ if m.prometheus.pid.is_some() => out.push_str("; did not answer"),
        _ => {}
    }
    if let Some(r) = m.rules_loaded {
        out.push_str(&format!("; {r} alert rules"));
    }
    out.push('\n');
    for d in &m.targets_down {
        out.push_str(&format!("  target down: {d}\n"));
    }
    out.push_str(&format!("alertmanager: {}", proc_word(&m.alertmanager)));
    match &m.firing {
        Some(f) if f.is_empty() => out.push_str("; no alert firing"),
        Some(f) => out.push_str(&format!("; FIRING: {}", f.join(", "))),
        None if m.alertmanager.pid.is_some() => out.push_str("; did not answer"),
        None => {}
    }
    out.push('\n');
    out
}

/// Prints the timeline file: events newer than `since`, as text or JSON lines, then (with
/// `follow`) new events as they are appended, until Ctrl-C.
pub async fn print_timeline(path: &Path, json: bool, since: Option<Duration>, follow: bool) -> crate::Result<()> {
    use std::io::BufRead;
    // A `since` reaching before the calendar's start means everything.
    let cutoff = since.and_then(|d| time::OffsetDateTime::now_utc().checked_sub(time::Duration::try_from(d).ok()?));
    let mut reader = loop {
        match std::fs::File::open(path) {
            Ok(f) => break std::io::BufReader::new(f),
            Err(e) if follow && e.kind() == std::io::ErrorKind::NotFound => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return Err(crate::Error::io(format!("cannot read {}", path.display()), e)),
        }
    };
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|e| crate::Error::io(format!("cannot read {}", path.display()), e))?;
        if n == 0 || !line.ends_with('\n') {
            if !follow {
                return Ok(());
            }
            // A partial last line is completed by the writer: read it again later.
            if n > 0 {
                let _ = reader.seek_relative(-(n as i64));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
        let Ok(e) = serde_json::from_str::<Event>(&line) else { continue };
        if cutoff.is_some_and(|c| e.ts < c) {
            continue;
        }
        if json {
            print!("{line}");
        } else {
            println!("{}  {}", clock(&e), e.describe());
        }
    }
}

/// A Prometheus scrape config for the lab's nodes (job `cockroachdb` on `/_status/vars`, the
/// name CockroachDB's published alert rules use; `etcd` on `/metrics`) and HAProxy's built-in
/// exporter on the stats port.
pub fn prometheus_config(lab: &crate::lab::Lab, state: &crate::state::LabState) -> String {
    let engine = crate::engine::for_spec(&state.spec);
    let (job, path) = engine.metrics_job();
    let targets: Vec<String> = state.members().map(|n| format!("'{}'", n.ports.http_addr())).collect();
    // A secure lab's nodes over TLS, with its CA and client certificate (Prometheus'
    // `tls_config`).
    let tls = match state.spec.security.secure {
        true => {
            let c = crate::certs::CertPaths::of(lab);
            format!(
                "    scheme: https\n    tls_config:\n      ca_file: '{}'\n      cert_file: '{}'\n      key_file: '{}'\n",
                c.ca_crt().display(),
                c.client_crt().display(),
                c.client_key().display()
            )
        }
        false => String::new(),
    };
    format!(
        "# Prometheus scrape config for the {} lab in {} (written by `roachlab prometheus`).\n\
         # Nodes added later are not listed: run `roachlab prometheus` again after `node add`.\n\
         scrape_configs:\n\
         \x20 - job_name: {job}\n\
         \x20   metrics_path: {path}\n\
         \x20   scrape_interval: 10s\n\
         {tls}\
         \x20   static_configs:\n\
         \x20     - targets: [{}]\n\
         \x20       labels:\n\
         \x20         cluster: roachlab\n\
         \x20 - job_name: haproxy\n\
         \x20   metrics_path: /metrics\n\
         \x20   scrape_interval: 10s\n\
         \x20   static_configs:\n\
         \x20     - targets: ['{}']\n",
        state.spec.engine,
        lab.dir().display(),
        targets.join(", "),
        std::net::SocketAddr::new(
            state.spec.security.local_host().parse().unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
            state.spec.haproxy.stats_port
        )
    )
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

#[cfg(test)]
mod tests {
    use crate::api::{ComponentStatus, MonitoringStatus};

    fn status(up: usize, total: usize, unscraped: usize, down: &[&str]) -> MonitoringStatus {
        let c = |url: &str| ComponentStatus { pid: Some(7), state: "running".into(), url: url.into() };
        MonitoringStatus {
            prometheus: c("http://127.0.0.1:9090"),
            alertmanager: c("http://127.0.0.1:9093"),
            webhook: String::new(),
            targets_up: Some(up),
            targets_total: Some(total),
            targets_unscraped: unscraped,
            targets_down: down.iter().map(|d| d.to_string()).collect(),
            rules_loaded: Some(6),
            firing: Some(Vec::new()),
        }
    }

    /// Right after Prometheus starts it lists no target, then targets it has not scraped:
    /// neither is a verdict (seen at the end of `up --monitoring`: "0 of 0 targets up").
    #[test]
    fn targets_prometheus_has_not_listed_or_scraped_are_not_a_verdict() {
        let first = super::monitoring_lines(&status(0, 0, 0, &[]));
        assert!(first.contains("targets not observed yet"), "{first}");
        assert!(!first.contains("0 of 0"), "{first}");
        let second = super::monitoring_lines(&status(3, 8, 5, &[]));
        assert!(second.contains("3 of 8 targets up, 5 not scraped yet"), "{second}");
        assert!(!second.contains("target down"), "{second}");
        let later = super::monitoring_lines(&status(7, 8, 0, &["etcd 198.18.7.13:23793: connection refused"]));
        assert!(later.contains("7 of 8 targets up\n") || later.contains("7 of 8 targets up;"), "{later}");
        assert!(later.contains("target down: etcd 198.18.7.13:23793: connection refused"), "{later}");
    }
}
