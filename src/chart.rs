//! Charts as data, for the two pages that draw them — a drill's `report.html` and the live
//! console — so both read the same: which series, on which axis, drawn how, and the labelled
//! markers and named phases over them. The browser side (`src/web/charts.js`) turns a
//! [`ChartSet`] into Apache ECharts options and draws nothing by hand.
//!
//! Shape (JSON): `{"x": "seconds"|"time", "range": [from, to] | null, "charts": [{"id", "title", "axes": [{"name",
//! "integer"}], "series": [{"name", "style": "line"|"step"|"bar", "axis", "color",
//! "points": [[x, y], …]}]}], "markers": [{"at", "kind", "label"}], "phases": [{"name",
//! "from", "to"}]}` — `x` in seconds since the drill's workload began (`seconds`) or in
//! Unix milliseconds (`time`, the console).

use serde::{Deserialize, Serialize};

use crate::events::{Event, EventKind};

/// What the x values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XAxis {
    /// Seconds since the workload began (a report).
    Seconds,
    /// Unix time in milliseconds (the console's wall clock).
    Time,
}

/// A set of charts that share an x axis, markers and phases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChartSet {
    pub x: XAxis,
    /// The x axis' extent `[from, to]`, when it is not the data's own (the console's last
    /// five minutes, a report's whole run).
    pub range: Option<[f64; 2]>,
    pub charts: Vec<Chart>,
    pub markers: Vec<Marker>,
    pub phases: Vec<Band>,
}

/// One chart: up to two y axes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    /// Stable id (`clients`, `latency`, `members`, `ranges`), for pages and tests.
    pub id: String,
    pub title: String,
    pub axes: Vec<Axis>,
    pub series: Vec<Series>,
}

/// A y axis: its name, and whether it counts things (whole-number ticks only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub name: String,
    pub integer: bool,
}

/// How a series is drawn: a line for rates and latencies, a step line for counts that change
/// at an instant (members up, ranges), bars for sparse counts (errors) that a line would
/// flatten under a larger one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    Line,
    Step,
    Bar,
}

/// One series: `points` are `[x, y]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub style: Style,
    /// Index into the chart's `axes`.
    pub axis: usize,
    /// CSS colour.
    pub color: String,
    pub points: Vec<[f64; 2]>,
}

impl Series {
    pub fn new(name: &str, style: Style, axis: usize, color: &str, points: Vec<[f64; 2]>) -> Self {
        Self { name: name.into(), style, axis, color: color.into(), points }
    }
}

/// What a vertical marker stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkerKind {
    /// A fault injected: kill, stop, pause, throttle, decommission, partition (isolate), delay or loss.
    Fault,
    /// A fault undone: start, resume, unthrottle, heal.
    Recovery,
    /// HAProxy marked a server DOWN or UP.
    Haproxy,
    /// The Raft leader changed (etcd) or a node's liveness changed (CockroachDB).
    Leader,
    /// Quorum lost or regained, as observed.
    Quorum,
    /// An alert fired.
    Alert,
    /// An alert resolved.
    AlertResolved,
}

/// A labelled vertical line at `at` (in the set's x unit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub at: f64,
    pub kind: MarkerKind,
    pub label: String,
}

/// A named, shaded span: a drill's phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub name: String,
    pub from: f64,
    pub to: f64,
}

/// The request verbs that inject a fault, and those that undo one (the words of the
/// timeline's `command` events, as `roachlab` and the console send them).
const FAULT_VERBS: [&str; 7] = ["node kill", "node stop", "node pause", "node throttle", "node decommission", "net partition", "net shape"];
const RECOVERY_VERBS: [&str; 4] = ["node start", "node resume", "node unthrottle", "net heal"];

/// The marker an event stands for, if any, at `at`. Labels are short (they stand on a chart
/// line): `kill 2`, `HAProxy: 2 DOWN`, `leader 3 (term 4)`, `quorum lost`, `NodeDown 2`.
pub fn marker(e: &Event, at: f64) -> Option<Marker> {
    let m = |kind, label: String| Some(Marker { at, kind, label: crate::text::printable(&label) });
    let short = |c: &str| c.trim_start_matches("node ").trim_start_matches("net ").to_string();
    match &e.kind {
        EventKind::Command { command, .. } => {
            // `node stop 3 (grace 30s)` → `stop 3`.
            let c = command.split(" (").next().unwrap_or(command);
            if FAULT_VERBS.iter().any(|v| c.starts_with(v)) {
                m(MarkerKind::Fault, short(c))
            } else if RECOVERY_VERBS.iter().any(|v| c.starts_with(v)) {
                m(MarkerKind::Recovery, short(c))
            } else {
                None
            }
        }
        EventKind::BackendState { node, state, .. } if state == "DOWN" || state == "UP" => {
            m(MarkerKind::Haproxy, format!("HAProxy: {node} {state}"))
        }
        EventKind::LeaderChanged { to, term, .. } => m(
            MarkerKind::Leader,
            match (to, term) {
                (Some(n), Some(t)) => format!("leader {n} (term {t})"),
                (Some(n), None) => format!("leader {n}"),
                (None, _) => "no leader".into(),
            },
        ),
        EventKind::LivenessChanged { node, to, .. } => m(MarkerKind::Leader, format!("{node} {to}")),
        // The first answer for a row is where the lease was, not a change.
        EventKind::LeaseholderChanged { key, from: Some(_), to, .. } => m(MarkerKind::Leader, format!("lease row {key} → {to}")),
        EventKind::QuorumLost { .. } => m(MarkerKind::Quorum, "quorum lost".into()),
        EventKind::QuorumRegained { .. } => m(MarkerKind::Quorum, "quorum regained".into()),
        EventKind::AlertFiring { alert, labels, .. } => m(MarkerKind::Alert, alert_label(alert, labels)),
        EventKind::AlertResolved { alert, labels, .. } => m(MarkerKind::AlertResolved, format!("{} resolved", alert_label(alert, labels))),
        _ => None,
    }
}

fn alert_label(alert: &str, labels: &std::collections::BTreeMap<String, String>) -> String {
    match labels.get("node") {
        Some(n) => format!("{alert} {n}"),
        None => alert.to_string(),
    }
}

/// Markers for `events`, each placed by `at` (its x value); events `at` returns `None` for
/// (outside the window) are left out.
pub fn markers(events: &[Event], at: impl Fn(&Event) -> Option<f64>) -> Vec<Marker> {
    events.iter().filter_map(|e| at(e).and_then(|x| marker(e, x))).collect()
}

/// The clients' chart: successful operations per second as a line on its own axis, failed
/// and ambiguous ones per second as bars on a second, whole-number axis — so ten errors
/// stay visible beside 350 ok/s.
pub fn clients_chart(ok: Vec<[f64; 2]>, fail: Vec<[f64; 2]>, ambiguous: Vec<[f64; 2]>) -> Chart {
    Chart {
        id: "clients".into(),
        title: "Clients: operations per second".into(),
        axes: vec![Axis { name: "ok/s".into(), integer: false }, Axis { name: "errors/s".into(), integer: true }],
        series: vec![
            Series::new("ok/s", Style::Line, 0, "#1f77b4", ok),
            Series::new("failed/s", Style::Bar, 1, "#d62728", fail),
            Series::new("ambiguous/s", Style::Bar, 1, "#9467bd", ambiguous),
        ],
    }
}

/// p99 latency of the operations that completed in each second, in ms.
pub fn latency_chart(p99_ms: Vec<[f64; 2]>) -> Chart {
    Chart {
        id: "latency".into(),
        title: "Clients: p99 latency (ms)".into(),
        axes: vec![Axis { name: "ms".into(), integer: false }],
        series: vec![Series::new("p99 ms", Style::Line, 0, "#8c564b", p99_ms)],
    }
}

/// Members whose process runs (and, where given, nodes that pass their readiness probe),
/// as step lines on a whole-number axis.
pub fn members_chart(up: Vec<[f64; 2]>, ready: Option<Vec<[f64; 2]>>) -> Chart {
    let mut series = vec![Series::new("members up", Style::Step, 0, "#2ca02c", up)];
    if let Some(r) = ready {
        series.push(Series::new("ready", Style::Step, 0, "#17becf", r));
    }
    Chart { id: "members".into(), title: "Members".into(), axes: vec![Axis { name: "nodes".into(), integer: true }], series }
}

/// CockroachDB's under-replicated and unavailable ranges, as step lines on a whole-number axis.
pub fn ranges_chart(under: Vec<[f64; 2]>, unavailable: Vec<[f64; 2]>) -> Chart {
    Chart {
        id: "ranges".into(),
        title: "Ranges under-replicated / unavailable".into(),
        axes: vec![Axis { name: "ranges".into(), integer: true }],
        series: vec![
            Series::new("under-replicated", Style::Step, 0, "#ff7f0e", under),
            Series::new("unavailable", Style::Step, 0, "#d62728", unavailable),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind) -> Event {
        Event { ts: time::OffsetDateTime::UNIX_EPOCH, mono_ms: 0, kind }
    }

    #[test]
    fn faults_recoveries_and_cluster_events_become_labelled_markers() {
        let cmd = |c: &str| ev(EventKind::Command { command: c.into(), by: None });
        let cases = [
            (cmd("node kill 2"), Some((MarkerKind::Fault, "kill 2"))),
            (cmd("node stop 3 (grace 30s)"), Some((MarkerKind::Fault, "stop 3"))),
            (cmd("net partition 1,2 | 3"), Some((MarkerKind::Fault, "partition 1,2 | 3"))),
            (cmd("node start 2"), Some((MarkerKind::Recovery, "start 2"))),
            (cmd("net heal"), Some((MarkerKind::Recovery, "heal"))),
            (cmd("up"), None),
            (cmd("status"), None),
            (
                ev(EventKind::BackendState { node: 2, state: "DOWN".into(), check: "L4CON".into() }),
                Some((MarkerKind::Haproxy, "HAProxy: 2 DOWN")),
            ),
            (ev(EventKind::BackendState { node: 2, state: "DRAIN".into(), check: "L7OK".into() }), None),
            (ev(EventKind::LeaderChanged { from: Some(1), to: Some(3), term: Some(4) }), Some((MarkerKind::Leader, "leader 3 (term 4)"))),
            (ev(EventKind::LeaderChanged { from: Some(1), to: None, term: None }), Some((MarkerKind::Leader, "no leader"))),
            (
                ev(EventKind::LivenessChanged { node: 2, from: Some("LIVE".into()), to: "DEAD".into() }),
                Some((MarkerKind::Leader, "2 DEAD")),
            ),
            (ev(EventKind::LeaseholderChanged { table: "bank.bank".into(), key: 0, from: None, to: 3 }), None),
            (
                ev(EventKind::LeaseholderChanged { table: "bank.bank".into(), key: 0, from: Some(3), to: 1 }),
                Some((MarkerKind::Leader, "lease row 0 → 1")),
            ),
        ];
        for (e, want) in cases {
            let got = marker(&e, 1.5).map(|m| (m.kind, m.label));
            assert_eq!(got, want.map(|(k, l)| (k, l.to_string())), "{:?}", e.kind);
        }
    }

    #[test]
    fn alerts_name_their_node_and_control_characters_never_reach_a_label() {
        let labels: std::collections::BTreeMap<String, String> = [("node".to_string(), "2".to_string())].into();
        let firing = ev(EventKind::AlertFiring {
            alert: "NodeDown\u{1b}[2J".into(),
            labels: labels.clone(),
            starts_at: String::new(),
            summary: None,
        });
        let m = marker(&firing, 0.0).unwrap();
        assert_eq!(m.kind, MarkerKind::Alert);
        assert!(m.label.starts_with("NodeDown") && m.label.ends_with(" 2") && !m.label.contains('\u{1b}'), "{}", m.label);
        let resolved = ev(EventKind::AlertResolved { alert: "NodeDown".into(), labels, starts_at: String::new(), ends_at: String::new() });
        assert_eq!(marker(&resolved, 0.0).unwrap().label, "NodeDown 2 resolved");
    }

    #[test]
    fn events_outside_the_window_are_left_out() {
        let events = vec![
            Event { mono_ms: 500, ..ev(EventKind::QuorumLost { up: 1, needed: 2, detail: None }) },
            Event { mono_ms: 5000, ..ev(EventKind::QuorumRegained { up: 3, needed: 2, detail: None }) },
        ];
        let m = markers(&events, |e| (e.mono_ms >= 1000).then(|| (e.mono_ms - 1000) as f64 / 1000.0));
        assert_eq!(m, vec![Marker { at: 4.0, kind: MarkerKind::Quorum, label: "quorum regained".into() }]);
    }
}
