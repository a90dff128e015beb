//! A drill's report: `results.json` (the data, schema in docs/DRILLS.md), `report.md`, and a
//! self-contained `report.html` whose charts ([`chart_set`]) are drawn by the same code as the
//! console's: throughput with errors beside it, p99 latency, members up, ranges — phases
//! shaded and named, every fault and cluster event marked and labelled.

use std::fmt::Write as _;

use super::metrics::PhaseMetrics;
use super::model::DrillResult;
use crate::chart::{self, Band, ChartSet, XAxis};
use crate::{Error, Result};

fn ms(v: Option<u64>) -> String {
    v.map(|v| format!("{:.1} s", v as f64 / 1000.0)).unwrap_or_else(|| "–".into())
}

/// The per-phase table rows: (label, value per phase).
fn phase_rows(phases: &[PhaseMetrics]) -> Vec<(&'static str, Vec<String>)> {
    let col = |f: &dyn Fn(&PhaseMetrics) -> String| phases.iter().map(f).collect::<Vec<_>>();
    vec![
        ("fault", col(&|p| p.mark.fault.clone().unwrap_or_else(|| "–".into()))),
        ("duration", col(&|p| format!("{:.1} s", p.mark.end_ms.saturating_sub(p.mark.start_ms) as f64 / 1000.0))),
        ("ok", col(&|p| p.counts.ok.to_string())),
        ("fail", col(&|p| p.counts.fail.to_string())),
        ("ambiguous", col(&|p| p.counts.ambiguous.to_string())),
        ("retries", col(&|p| p.counts.retries.to_string())),
        ("reconnects", col(&|p| p.counts.reconnects.to_string())),
        ("throughput (ops/s)", col(&|p| format!("{:.1}", p.ops_per_sec))),
        ("p50 / p99 (ms)", col(&|p| format!("{:.1} / {:.1}", p.p50_ms, p.p99_ms))),
        ("longest stall", col(&|p| ms(Some(p.longest_stall_ms)))),
        ("first client error after fault", col(&|p| ms(p.first_error_after_fault_ms))),
        ("HAProxy DOWN after fault", col(&|p| ms(p.haproxy_down_after_fault_ms))),
        ("liveness/leader change after fault", col(&|p| ms(p.liveness_change_after_fault_ms))),
        ("ranges degraded after fault", col(&|p| ms(p.ranges_degraded_after_fault_ms))),
        ("ranges restored after degraded", col(&|p| ms(p.ranges_restored_after_degraded_ms))),
        ("throughput ≥ 90 % of baseline after restart", col(&|p| ms(p.throughput_recovered_after_ms))),
    ]
}

/// The `sql` steps as they ran: `at 12.3 s (line 40): SQL through node 2: `SELECT …` → 42`.
fn sql_steps(r: &DrillResult) -> Vec<String> {
    r.steps
        .iter()
        .filter(|st| st.kind == super::model::StepKind::Sql)
        .map(|st| format!("at {:.1} s (line {}): {}", st.at_ms as f64 / 1000.0, st.line, st.what))
        .collect()
}

/// The workload check's outcome in one sentence.
pub fn verdict(r: &DrillResult) -> String {
    if let Some(q) = &r.query_check {
        let detail = q.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
        return format!("check {} (`{}`{detail})", if q.holds { "passed" } else { "FAILED" }, q.query);
    }
    let check = match &r.check {
        Some(c) if c.violations.is_empty() => format!(
            "passed: total balance {}, all {} acknowledged transfers present, none of {} failed ones applied, ambiguous {} applied / {} not",
            c.total_balance, c.ok_checked, c.fail_checked, c.ambiguous_found, c.ambiguous_missing
        ),
        Some(c) => format!("FAILED: {}", c.violations.join("; ")),
        None => "not run".into(),
    };
    format!("bank check {check}")
}

/// The Markdown report.
pub fn markdown(r: &DrillResult) -> String {
    let mut s = format!(
        "# Drill `{}` on {}\n\n{}\n\nStarted {} (seed {}).\n\n## Theory\n\n",
        r.drill, r.engine, r.description, r.started_at, r.seed
    );
    for t in &r.theory {
        let _ = writeln!(s, "- {t}");
    }
    if !r.story.is_empty() {
        s.push_str("\n## What happened\n\n");
        for t in &r.story {
            let _ = writeln!(s, "- {t}");
        }
    }
    s.push_str("\n## Expectations\n\n| | expectation | observed |\n|---|---|---|\n");
    for e in &r.expectations {
        let _ = writeln!(s, "| {} | {} | {} |", if e.met { "met" } else { "**NOT MET**" }, e.text, e.observed);
    }
    s.push_str("\n## Phases\n\n|  |");
    for p in &r.phases {
        let _ = write!(s, " {} |", p.mark.name);
    }
    s.push_str("\n|---|");
    s.push_str(&"---|".repeat(r.phases.len()));
    s.push('\n');
    for (label, values) in phase_rows(&r.phases) {
        let _ = writeln!(s, "| {label} | {} |", values.join(" | "));
    }
    if r.monitored && r.alerts.is_empty() {
        let _ = writeln!(s, "\n## Alerts\n\n{}", super::alerts::NONE_FIRED);
    }
    if !r.alerts.is_empty() {
        s.push_str("\n## Alerts\n\n");
        let marks: Vec<_> = r.phases.iter().map(|p| p.mark.clone()).collect();
        for a in &r.alerts {
            let _ = writeln!(s, "- {}", super::alerts::describe(a, &marks));
        }
    }
    let sql = sql_steps(r);
    if !sql.is_empty() {
        s.push_str("\n## SQL through single nodes\n\n");
        for t in &sql {
            let _ = writeln!(s, "- {t}");
        }
    }
    let _ = writeln!(s, "\n## Outcome\n\n{}\n", verdict(r));
    for f in &r.failures {
        let _ = writeln!(s, "- FAILURE: {f}");
    }
    let _ = writeln!(s, "\nData: `results.json`, operations: `ops.jsonl`, timeline: `events.jsonl`, charts: `report.html`.");
    s
}

/// The report's charts as data ([`crate::chart`]): the clients' throughput with failed and
/// ambiguous operations as bars on their own axis, p99 latency, members up and (CockroachDB)
/// ranges as step lines — every fault, recovery, HAProxy DOWN/UP, leader or liveness change,
/// quorum change and alert marked and labelled, the phases shaded and named. Seconds since the
/// workload began; each second's value at its middle.
pub fn chart_set(r: &DrillResult) -> ChartSet {
    let mid = |i: usize| i as f64 + 0.5;
    let pts = |v: &[u64]| v.iter().enumerate().map(|(i, x)| [mid(i), *x as f64]).collect::<Vec<_>>();
    let s = &r.series;
    let fail: Vec<u64> = s.errors.iter().enumerate().map(|(i, e)| e.saturating_sub(s.ambiguous.get(i).copied().unwrap_or(0))).collect();
    let mut charts = vec![
        chart::clients_chart(pts(&s.ok), pts(&fail), pts(&s.ambiguous)),
        chart::latency_chart(s.p99_ms.iter().enumerate().map(|(i, x)| [mid(i), *x]).collect()),
        chart::members_chart(pts(&s.members_up), None),
    ];
    // CockroachDB reports ranges; other engines leave these series empty.
    if !s.ranges_underreplicated.is_empty() {
        charts.push(chart::ranges_chart(pts(&s.ranges_underreplicated), pts(&s.ranges_unavailable)));
    }
    let end = s.ok.len() as f64;
    ChartSet {
        x: XAxis::Seconds,
        range: Some([0.0, end.max(1.0)]),
        charts,
        markers: r.markers.clone(),
        phases: r
            .phases
            .iter()
            .map(|p| Band {
                name: p.mark.name.clone(),
                from: p.mark.start_ms as f64 / 1000.0,
                to: (p.mark.end_ms as f64 / 1000.0).min(end),
            })
            .collect(),
    }
}

/// The charts' HTML: the chart library and roachlab's chart code inlined (the report is one
/// file that opens offline), the data as JSON, drawn as SVG.
fn charts_html(r: &DrillResult) -> String {
    let data = serde_json::to_string(&chart_set(r)).expect("charts serialize").replace("</", "<\\/");
    format!(
        "<div id=\"charts\"></div><script>{}</script><script>{}</script>\
         <script id=\"charts-data\" type=\"application/json\">{data}</script>\
         <script>RoachlabCharts.render(document.getElementById('charts'), \
         JSON.parse(document.getElementById('charts-data').textContent), {{renderer: 'svg', height: '300px'}});</script>",
        crate::web::text(crate::web::ECHARTS).unwrap_or_default().replace("</script", "<\\/script"),
        crate::web::text("charts.js").unwrap_or_default()
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The self-contained HTML report: text, tables, and the charts ([`chart_set`], drawn by
/// Apache ECharts inlined into the file).
pub fn html(r: &DrillResult) -> Result<String> {
    let mut s = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>roachlab drill {name}</title>\
         <style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.met{{color:#1a7f37}}.not{{color:#c00;font-weight:bold}}\
         .chart{{height:300px;margin-bottom:12px;border:1px solid #eee}}</style></head><body>\
         <h1>Drill <code>{name}</code> on {engine}</h1><p>{desc}</p><p>Started {at}, seed {seed}.</p><h2>Theory</h2><ul>",
        name = esc(&r.drill),
        engine = esc(&r.engine),
        desc = esc(&r.description),
        at = esc(&r.started_at),
        seed = r.seed
    );
    for t in &r.theory {
        let _ = write!(s, "<li>{}</li>", esc(t));
    }
    if !r.story.is_empty() {
        s.push_str("</ul><h2>What happened</h2><ul>");
        for t in &r.story {
            let _ = write!(s, "<li>{}</li>", esc(t));
        }
    }
    s.push_str("</ul><h2>Expectations</h2><table><tr><th></th><th>expectation</th><th>observed</th></tr>");
    for e in &r.expectations {
        let (class, word) = if e.met { ("met", "met") } else { ("not", "NOT MET") };
        let _ = write!(s, "<tr><td class=\"{class}\">{word}</td><td>{}</td><td>{}</td></tr>", esc(&e.text), esc(&e.observed));
    }
    s.push_str(
        "</table><h2>Charts</h2><p>Phases are shaded and named. Lines: <b style=\"color:#c62828\">faults</b>, \
         <b style=\"color:#1a7f37\">recoveries</b>, <span style=\"color:#455a64\">HAProxy DOWN/UP</span> (dashed), \
         <span style=\"color:#6a1b9a\">leader or liveness changes</span> (dotted) and quorum lost/regained (thick), \
         <span style=\"color:#e65100\">alerts firing</span> and resolved (green, dashed). Failed and ambiguous \
         operations are bars on their own axis.</p>",
    );
    s.push_str(&charts_html(r));
    if r.monitored && r.alerts.is_empty() {
        let _ = write!(s, "<h2>Alerts</h2><p>{}</p>", esc(super::alerts::NONE_FIRED));
    }
    if !r.alerts.is_empty() {
        s.push_str("<h2>Alerts</h2><ul>");
        let marks: Vec<_> = r.phases.iter().map(|p| p.mark.clone()).collect();
        for a in &r.alerts {
            let _ = write!(s, "<li>{}</li>", esc(&super::alerts::describe(a, &marks)));
        }
        s.push_str("</ul>");
    }
    s.push_str("<h2>Phases</h2><table><tr><th></th>");
    for p in &r.phases {
        let _ = write!(s, "<th>{}</th>", esc(&p.mark.name));
    }
    s.push_str("</tr>");
    for (label, values) in phase_rows(&r.phases) {
        let _ = write!(s, "<tr><th>{}</th>{}</tr>", esc(label), values.iter().map(|v| format!("<td>{}</td>", esc(v))).collect::<String>());
    }
    s.push_str("</table>");
    let sql = sql_steps(r);
    if !sql.is_empty() {
        s.push_str("<h2>SQL through single nodes</h2><ul>");
        for t in &sql {
            let _ = write!(s, "<li><code>{}</code></li>", esc(t));
        }
        s.push_str("</ul>");
    }
    let _ = write!(s, "<h2>Outcome</h2><p>{}</p><ul>", esc(&verdict(r)));
    for f in &r.failures {
        let _ = write!(s, "<li class=\"not\">{}</li>", esc(f));
    }
    s.push_str("</ul></body></html>\n");
    Ok(s)
}

/// Writes `results.json`, `report.md` and `report.html` into the run directory.
pub fn write(r: &DrillResult) -> Result<()> {
    let put = |name: &str, body: &[u8]| {
        let path = r.run_dir.join(name);
        std::fs::write(&path, body).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
    };
    put("results.json", &serde_json::to_vec_pretty(r).expect("results serialize"))?;
    put("report.md", markdown(r).as_bytes())?;
    put("report.html", html(r)?.as_bytes())
}
