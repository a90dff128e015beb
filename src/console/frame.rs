//! One frame of the console: everything the page shows, built once a second from what the
//! daemon already has — the supervisor's status (its poller's figures), the event bus (the
//! timeline, kept here for the page), and the running client's files ([`super::clients`]) —
//! and serialized once for every browser.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::clients::{self, ClientsView};
use crate::api::StatusReport;
use crate::chart::{self, ChartSet, XAxis};
use crate::events::{Event, EventKind};
use crate::node::NodeId;
use crate::supervisor::Supervisor;
use crate::words;

/// Events the console keeps for pages that missed frames.
pub const TIMELINE_KEEP: usize = 2000;
/// Events each frame carries (the newest).
const FRAME_EVENTS: usize = 60;

/// One timeline entry: the event, numbered, in words, and its class for highlighting.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub seq: u64,
    /// `fault`, `recovery`, `alert`, `warning`, `quorum` or `info`.
    pub class: &'static str,
    pub text: String,
    #[serde(flatten)]
    pub event: Event,
}

/// The class a page highlights an event with.
fn class(e: &Event) -> &'static str {
    match &e.kind {
        EventKind::Warning { .. } | EventKind::NodeCrashLoop { .. } => "warning",
        EventKind::AlertFiring { .. } => "alert",
        EventKind::QuorumLost { .. } | EventKind::QuorumRegained { .. } => "quorum",
        _ => match chart::marker(e, 0.0).map(|m| m.kind) {
            Some(chart::MarkerKind::Fault) => "fault",
            Some(chart::MarkerKind::Recovery) => "recovery",
            _ => "info",
        },
    }
}

/// The events the console has seen, numbered from 1.
#[derive(Debug, Default)]
pub struct Timeline {
    entries: VecDeque<Entry>,
    next: u64,
}

impl Timeline {
    pub fn push(&mut self, event: Event) {
        self.next += 1;
        let entry = Entry { seq: self.next, class: class(&event), text: event.describe(), event };
        self.entries.push_back(entry);
        while self.entries.len() > TIMELINE_KEEP {
            self.entries.pop_front();
        }
    }

    /// Kept entries newer than `seq`, oldest first.
    pub fn after(&self, seq: u64) -> Vec<Entry> {
        self.entries.iter().filter(|e| e.seq > seq).cloned().collect()
    }

    fn newest(&self, n: usize) -> Vec<Entry> {
        self.entries.iter().skip(self.entries.len().saturating_sub(n)).cloned().collect()
    }
}

/// The last events of a timeline file (at most its last 1 MiB), oldest first.
fn tail_events(path: &std::path::Path) -> Vec<Event> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 1 << 20;
    let Ok(mut f) = std::fs::File::open(path) else { return Vec::new() };
    let start = f.metadata().map(|m| m.len()).unwrap_or(0).saturating_sub(TAIL);
    let mut text = String::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.take(TAIL).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    // A first line cut in the middle does not parse and is left out.
    let events: Vec<Event> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    events[events.len().saturating_sub(TIMELINE_KEEP)..].to_vec()
}

/// Fills `timeline` with the last events of the lab's timeline file, then from the bus
/// (subscribed before the file was read: an event in both is kept once), until `cancel`.
/// Events lost to a lagging receiver are said in the timeline itself.
pub async fn collect(
    mut rx: broadcast::Receiver<Event>,
    timeline: Arc<Mutex<Timeline>>,
    file: std::path::PathBuf,
    cancel: CancellationToken,
) {
    let seed = tokio::task::spawn_blocking(move || tail_events(&file)).await.unwrap_or_default();
    let overlap: Vec<Event> = seed[seed.len().saturating_sub(50)..].to_vec();
    {
        let mut t = timeline.lock().unwrap_or_else(|e| e.into_inner());
        for e in seed {
            t.push(e);
        }
    }
    loop {
        let got = tokio::select! {
            r = rx.recv() => r,
            _ = cancel.cancelled() => return,
        };
        let event = match got {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => crate::events::Event::now(EventKind::Warning {
                message: format!("the console missed {n} event(s); DIR/events.jsonl has them all"),
            }),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if overlap.contains(&event) {
            continue;
        }
        timeline.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }
}

/// The node as the page shows it: the status table's words, and its own admin page.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub id: NodeId,
    /// The process state's name (`running`, `paused`, `exited`, …) for colouring.
    pub state: String,
    /// In words: `exited (SIGKILL)`, `crash-loop (…)`, `running, cpu 50%`.
    pub process: String,
    pub pid: Option<u32>,
    /// `yes`, `no` or `?` (not observed since a pause or resume).
    pub ready: &'static str,
    pub haproxy: Option<String>,
    pub liveness: String,
    pub replicas: Option<u64>,
    pub leases: Option<u64>,
    pub leader: bool,
    /// `sees`, `NONE`, or none when not probed.
    pub quorum: Option<&'static str>,
    pub locality: Option<String>,
    /// 1-based side of the partition in force, when there is one.
    pub side: Option<usize>,
    pub decommissioned: bool,
    pub admin_url: String,
}

/// Links out: HAProxy's pages and, with monitoring, Prometheus and Alertmanager.
#[derive(Debug, Clone, Serialize)]
pub struct Links {
    pub haproxy_stats: String,
    pub haproxy_admin: String,
    pub prometheus: Option<String>,
    pub alertmanager: Option<String>,
}

/// A drill the page offers, and why not where it cannot run here.
#[derive(Debug, Clone, Serialize)]
pub struct DrillChoice {
    pub name: &'static str,
    pub unavailable: Option<&'static str>,
}

/// Everything the page shows (JSON, once a second).
#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    pub seq: u64,
    /// Unix time of the frame, ms.
    pub now_ms: i64,
    pub engine: String,
    pub dir: String,
    pub topology: String,
    /// The cluster in one line (as `status` says it), the quorum rule in sentences, and the
    /// network's faults in force.
    pub cluster: String,
    pub rule: Vec<String>,
    pub network: Option<String>,
    /// Quorum as observed: `None` while not observed since the last change.
    pub quorum_ok: Option<bool>,
    pub nodes: Vec<NodeView>,
    pub links: Links,
    /// The newest events, oldest first; `seq` numbers them (a gap: fetch `/api/timeline`).
    pub timeline: Vec<Entry>,
    pub charts: ChartSet,
    pub clients: Option<ClientsView>,
    pub drills: Vec<DrillChoice>,
    /// Frames browsers skipped because a newer one replaced them first, since the daemon began.
    pub dropped_frames: u64,
}

/// One second of the lab, kept for the members and ranges charts.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at_ms: f64,
    up: f64,
    ready: f64,
    under: Option<f64>,
    unavailable: Option<f64>,
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Builds and publishes a frame every second until `cancel`.
pub async fn produce(
    sup: Supervisor,
    timeline: Arc<Mutex<Timeline>>,
    dropped: Arc<AtomicU64>,
    tx: watch::Sender<(u64, Arc<str>)>,
    cancel: CancellationToken,
) {
    let mut samples: VecDeque<Sample> = VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        seq += 1;
        let now = SystemTime::now();
        let status = sup.status();
        let now_ms = unix_ms(now);
        let c = &status.cluster;
        samples.push_back(Sample {
            at_ms: now_ms as f64,
            up: status.nodes.iter().filter(|n| n.pid.is_some() && !n.decommissioned).count() as f64,
            ready: status.nodes.iter().filter(|n| n.ready).count() as f64,
            under: c.ranges_underreplicated.map(|v| v as f64),
            unavailable: c.ranges_unavailable.map(|v| v as f64),
        });
        while samples.front().is_some_and(|s| (now_ms as f64 - s.at_ms) > clients::WINDOW.as_millis() as f64) {
            samples.pop_front();
        }
        let lab = sup.lab().clone();
        // Reading the run's files is blocking I/O: off the runtime's threads.
        let clients = tokio::task::spawn_blocking(move || clients::find(&lab, now)).await.ok().flatten();
        let entries = timeline.lock().unwrap_or_else(|e| e.into_inner()).newest(TIMELINE_KEEP);
        let frame = build(&sup, &status, seq, now_ms, &samples, &entries, clients, dropped.load(Ordering::Relaxed));
        let json: Arc<str> = serde_json::to_string(&frame).unwrap_or_else(|_| "{}".into()).into();
        tx.send_replace((seq, json));
    }
}

/// The frame for `status` at `now_ms`.
#[allow(clippy::too_many_arguments)]
fn build(
    sup: &Supervisor,
    status: &StatusReport,
    seq: u64,
    now_ms: i64,
    samples: &VecDeque<Sample>,
    entries: &[Entry],
    clients: Option<ClientsView>,
    dropped: u64,
) -> Frame {
    let spec = sup.spec();
    let mono_now = crate::events::mono_ms();
    let wall = |mono: u64| now_ms as f64 - (mono_now as f64 - mono as f64);
    let window_start = now_ms as f64 - clients::WINDOW.as_millis() as f64;
    let side_of = |id: NodeId| status.network.sides.iter().position(|s| s.contains(&id)).map(|i| i + 1);
    let nodes = status
        .nodes
        .iter()
        .map(|n| NodeView {
            id: n.id,
            state: n.state.clone(),
            process: words::process_word(n),
            pid: n.pid,
            ready: words::ready_word(n),
            haproxy: n.backend.clone(),
            liveness: words::liveness_word(n),
            replicas: n.replicas,
            leases: n.leaseholders,
            leader: n.is_leader == Some(true),
            quorum: words::quorum_word(n),
            locality: n.locality.clone(),
            side: side_of(n.id),
            decommissioned: n.decommissioned,
            admin_url: format!("{}://{}:{}/", if spec.security.secure { "https" } else { "http" }, n.host, n.http_port),
        })
        .collect();
    let monitoring = spec.monitoring.enabled.then_some(&spec.monitoring);
    let links = Links {
        haproxy_stats: format!("http://{}/", spec.security.frontend_addr(spec.haproxy.stats_port).replace("0.0.0.0", "127.0.0.1")),
        // The admin UI frontend passes the nodes' own TLS through in a secure lab.
        haproxy_admin: format!(
            "{}://{}/",
            if spec.security.secure { "https" } else { "http" },
            spec.security.frontend_addr(spec.haproxy.admin_port).replace("0.0.0.0", "127.0.0.1")
        ),
        prometheus: monitoring.map(|m| format!("http://127.0.0.1:{}/", m.prometheus_port)),
        alertmanager: monitoring.map(|m| format!("http://127.0.0.1:{}/", m.alertmanager_port)),
    };
    // Charts: the clients from their ticks, the lab from the samples, markers from the events.
    let ticks = clients.as_ref().map(|c| c.ticks.as_slice()).unwrap_or_default();
    let at = |t: &crate::workload::Tick| wall(t.mono_ms);
    let points = |f: &dyn Fn(&crate::workload::Tick) -> f64| -> Vec<[f64; 2]> {
        ticks.iter().filter(|t| t.mono_ms > 0 && at(t) >= window_start).map(|t| [at(t), f(t)]).collect()
    };
    let mut charts = vec![
        chart::clients_chart(
            points(&|t| t.ops_per_sec_inst),
            points(&|t| t.errors.saturating_sub(t.ambiguous) as f64),
            points(&|t| t.ambiguous as f64),
        ),
        chart::latency_chart(points(&|t| t.p99_ms)),
        chart::members_chart(samples.iter().map(|s| [s.at_ms, s.up]).collect(), Some(samples.iter().map(|s| [s.at_ms, s.ready]).collect())),
    ];
    if samples.iter().any(|s| s.under.is_some()) {
        charts.push(chart::ranges_chart(
            samples.iter().filter_map(|s| s.under.map(|v| [s.at_ms, v])).collect(),
            samples.iter().filter_map(|s| s.unavailable.map(|v| [s.at_ms, v])).collect(),
        ));
    }
    let events: Vec<Event> = entries.iter().map(|e| e.event.clone()).collect();
    let markers = chart::markers(&events, |e| Some(wall(e.mono_ms)).filter(|x| *x >= window_start));
    let phases = clients
        .as_ref()
        .and_then(|c| c.drill.as_ref())
        .map(|d| {
            d.phases
                .iter()
                .map(|p| chart::Band {
                    name: p.name.clone(),
                    from: wall(d.t0_mono_ms + p.start_ms),
                    to: p.end_ms.map(|e| wall(d.t0_mono_ms + e)).unwrap_or(now_ms as f64),
                })
                .filter(|b| b.to >= window_start)
                .collect()
        })
        .unwrap_or_default();
    let netns = spec.topology.kind == crate::config::topology::TopologyKind::Netns;
    let zones = crate::drill::process_faults::zones(&spec_localities(status)).len();
    let drills = super::DRILLS
        .iter()
        .map(|&name| DrillChoice {
            name,
            unavailable: match name {
                "partition-minority" | "partition-leader" | "split-brain" if !netns => Some("needs the netns topology"),
                "zone-failure" if zones < 2 => Some("needs localities in two zones or more"),
                "self-healing" if spec.restart.policy == crate::config::RestartPolicy::Never => {
                    Some("needs a restart policy (up --restart on-failure)")
                }
                _ => None,
            },
        })
        .collect();
    Frame {
        seq,
        now_ms,
        engine: status.engine.clone(),
        dir: status.dir.display().to_string(),
        topology: status.network.topology.clone(),
        cluster: words::cluster_line(status),
        rule: status.quorum_rule.clone(),
        network: words::network_line(status),
        quorum_ok: status.observed.current.then(|| status.cluster.quorum.as_ref().map(|q| q.ok)).flatten(),
        nodes,
        links,
        timeline: entries[entries.len().saturating_sub(FRAME_EVENTS)..].to_vec(),
        charts: ChartSet { x: XAxis::Time, range: Some([window_start, now_ms as f64]), charts, markers, phases },
        clients,
        drills,
        dropped_frames: dropped,
    }
}

/// Every member's locality, for the zone drill's availability.
fn spec_localities(status: &StatusReport) -> Vec<(NodeId, String)> {
    status.nodes.iter().filter(|n| !n.decommissioned).filter_map(|n| n.locality.clone().map(|l| (n.id, l))).collect()
}
