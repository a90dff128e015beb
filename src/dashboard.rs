//! `roachlab watch`: the live view. On a terminal, a ratatui dashboard (node table, cluster
//! figures with sparklines, the latest timeline events) refreshed every interval, quitting on
//! `q`, Esc or Ctrl-C. Elsewhere, one plain line per interval.
//!
//! It reads the same things everything else does: `GET /v1/status` snapshots and the
//! timeline (`events.jsonl`).

use std::collections::VecDeque;
use std::io::{BufRead, Seek};
use std::path::Path;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table};

use crate::api::{Client, StatusReport};
use crate::events::Event;
use crate::words::{cluster_line, liveness_word, process_word, quorum_word, ready_word};
use crate::{Error, Result};

/// Samples kept for each sparkline.
const HISTORY: usize = 120;

/// Runs the live view until the user quits (or `count` refreshes, for scripts).
pub async fn run(client: &Client, events_file: &Path, interval: Duration, tty: bool, count: Option<u64>) -> Result<()> {
    if !tty {
        return plain(client, interval, count).await;
    }
    let mut terminal = ratatui::try_init().map_err(|e| Error::io("cannot open the terminal", e))?;
    let res = dashboard(&mut terminal, client, events_file, interval, count).await;
    ratatui::restore();
    res
}

async fn plain(client: &Client, interval: Duration, count: Option<u64>) -> Result<()> {
    let mut n = 0;
    loop {
        let s: StatusReport = client.get("/v1/status").await?;
        let now = time::OffsetDateTime::now_utc();
        let nodes: Vec<String> = s
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "n{} {}{} {} {}{}",
                    n.id,
                    process_word(n),
                    if n.ready { " ready" } else { "" },
                    n.backend.as_deref().unwrap_or("-"),
                    liveness_word(n),
                    quorum_word(n).map(|q| format!(" quorum:{q}")).unwrap_or_default()
                )
            })
            .collect();
        println!("{:02}:{:02}:{:02}  {} | {}", now.hour(), now.minute(), now.second(), cluster_line(&s), nodes.join(" | "));
        n += 1;
        if count.is_some_and(|c| n >= c) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

struct History {
    members_up: VecDeque<u64>,
    ready: VecDeque<u64>,
    underreplicated: VecDeque<u64>,
    unavailable: VecDeque<u64>,
}

impl History {
    fn push(&mut self, s: &StatusReport) {
        let push = |q: &mut VecDeque<u64>, v: u64| {
            if q.len() == HISTORY {
                q.pop_front();
            }
            q.push_back(v);
        };
        push(&mut self.members_up, s.cluster.quorum.as_ref().map(|q| q.up as u64).unwrap_or(0));
        push(&mut self.ready, s.nodes.iter().filter(|n| n.ready).count() as u64);
        push(&mut self.underreplicated, s.cluster.ranges_underreplicated.unwrap_or(0));
        push(&mut self.unavailable, s.cluster.ranges_unavailable.unwrap_or(0));
    }
}

/// Reads timeline lines appended since the last call.
struct Tail {
    file: Option<std::io::BufReader<std::fs::File>>,
    recent: VecDeque<String>,
}

impl Tail {
    fn open(path: &Path) -> Self {
        let file = std::fs::File::open(path).ok().map(|mut f| {
            let _ = f.seek(std::io::SeekFrom::End(0));
            std::io::BufReader::new(f)
        });
        Self { file, recent: VecDeque::new() }
    }

    fn poll(&mut self) {
        let Some(f) = &mut self.file else { return };
        let mut line = String::new();
        while f.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if let Ok(e) = serde_json::from_str::<Event>(&line) {
                if !matches!(e.kind, crate::events::EventKind::NodePhase { .. }) {
                    let t = e.ts;
                    self.recent.push_back(format!("{:02}:{:02}:{:02}  {}", t.hour(), t.minute(), t.second(), e.describe()));
                    if self.recent.len() > 50 {
                        self.recent.pop_front();
                    }
                }
            }
            line.clear();
        }
    }
}

async fn dashboard(
    terminal: &mut ratatui::DefaultTerminal,
    client: &Client,
    events_file: &Path,
    interval: Duration,
    count: Option<u64>,
) -> Result<()> {
    let mut history =
        History { members_up: VecDeque::new(), ready: VecDeque::new(), underreplicated: VecDeque::new(), unavailable: VecDeque::new() };
    let mut tail = Tail::open(events_file);
    let mut refreshes = 0;
    loop {
        let status: Result<StatusReport> = client.get("/v1/status").await;
        tail.poll();
        if let Ok(s) = &status {
            history.push(s);
        }
        terminal.draw(|f| draw(f, status.as_ref().ok(), &history, &tail)).map_err(|e| Error::io("cannot draw", e))?;
        status?;
        refreshes += 1;
        if count.is_some_and(|c| refreshes >= c) {
            return Ok(());
        }
        let until = Instant::now() + interval;
        while Instant::now() < until {
            let key = tokio::task::block_in_place(|| -> std::io::Result<Option<TermEvent>> {
                if event::poll(Duration::from_millis(100))? {
                    Ok(Some(event::read()?))
                } else {
                    Ok(None)
                }
            })
            .map_err(|e| Error::io("cannot read the terminal", e))?;
            if let Some(TermEvent::Key(k)) = key {
                let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if ctrl_c || k.code == KeyCode::Char('q') || k.code == KeyCode::Esc {
                    return Ok(());
                }
            }
        }
    }
}

fn draw(f: &mut ratatui::Frame, s: Option<&StatusReport>, h: &History, tail: &Tail) {
    let [head, table, sparks, events, foot] =
        Layout::vertical([Constraint::Length(4), Constraint::Min(6), Constraint::Length(4), Constraint::Min(5), Constraint::Length(1)])
            .areas(f.area());
    let Some(s) = s else {
        f.render_widget(Paragraph::new("waiting for the daemon..."), head);
        return;
    };
    let lost = s.cluster.quorum.as_ref().is_some_and(|q| !q.ok);
    let title = format!(" roachlab · {} lab · {} ", s.engine, s.dir.display());
    f.render_widget(
        Paragraph::new(format!(
            "{}\n{}",
            cluster_line(s),
            crate::words::network_line(s).map(|l| format!("network: {l}")).unwrap_or_else(|| s
                .quorum_rule
                .first()
                .cloned()
                .unwrap_or_default())
        ))
        .style(if lost { Style::default().fg(Color::Red).add_modifier(Modifier::BOLD) } else { Style::default() })
        .block(Block::default().borders(Borders::ALL).title(title)),
        head,
    );
    let header = Row::new(["node", "process", "pid", "ready", "haproxy", "liveness", "replicas", "leases", "leader", "quorum"])
        .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = s.nodes.iter().map(|n| {
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        let color = if n.ready {
            Color::Green
        } else if n.pid.is_some() {
            Color::Yellow
        } else {
            Color::Red
        };
        Row::new(vec![
            Cell::from(n.id.to_string()),
            Cell::from(process_word(n)).style(Style::default().fg(color)),
            Cell::from(n.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())),
            Cell::from(ready_word(n)),
            Cell::from(n.backend.clone().unwrap_or_else(|| "-".into())),
            Cell::from(liveness_word(n)),
            Cell::from(opt(n.replicas)),
            Cell::from(opt(n.leaseholders)),
            Cell::from(if n.is_leader == Some(true) { "★" } else { "" }),
            Cell::from(quorum_word(n).unwrap_or("-")).style(Style::default().fg(match n.sees_quorum {
                Some(false) => Color::Red,
                _ => Color::Reset,
            })),
        ])
    });
    let widths = [
        Constraint::Length(5),
        Constraint::Length(18),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(22),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(7),
    ];
    f.render_widget(Table::new(rows, widths).header(header).block(Block::default().borders(Borders::ALL).title(" nodes ")), table);
    let [a, b, c, d] = Layout::horizontal([Constraint::Ratio(1, 4); 4]).areas(sparks);
    let spark = |title: String, data: &VecDeque<u64>, color: Color| {
        let v: Vec<u64> = data.iter().copied().collect();
        Sparkline::default().block(Block::default().borders(Borders::ALL).title(title)).data(v).style(Style::default().fg(color))
    };
    f.render_widget(spark(format!(" members up {} ", h.members_up.back().unwrap_or(&0)), &h.members_up, Color::Green), a);
    f.render_widget(spark(format!(" ready {} ", h.ready.back().unwrap_or(&0)), &h.ready, Color::Cyan), b);
    f.render_widget(spark(format!(" under-replicated {} ", h.underreplicated.back().unwrap_or(&0)), &h.underreplicated, Color::Yellow), c);
    f.render_widget(spark(format!(" unavailable {} ", h.unavailable.back().unwrap_or(&0)), &h.unavailable, Color::Red), d);
    let lines: Vec<Line> =
        tail.recent.iter().rev().take(events.height.saturating_sub(2) as usize).rev().map(|l| Line::from(l.as_str())).collect();
    f.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" timeline ")), events);
    f.render_widget(Paragraph::new(" q quit · refresh every second · `roachlab events --follow` for the full timeline"), foot);
}
