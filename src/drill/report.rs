//! A drill's report: `results.json` (the data, schema in docs/DRILLS.md), `report.md`, and a
//! self-contained `report.html` with SVG charts (plotters): throughput and errors per second,
//! p99 latency, members up — fault windows shaded, faults marked.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::metrics::PhaseMetrics;
use super::model::DrillResult;
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

fn verdict(r: &DrillResult) -> String {
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
    let _ = writeln!(s, "\n## Outcome\n\n{}\n", verdict(r));
    for f in &r.failures {
        let _ = writeln!(s, "- FAILURE: {f}");
    }
    let _ = writeln!(s, "\nData: `results.json`, operations: `ops.jsonl`, timeline: `events.jsonl`, charts: `report.html`.");
    s
}

fn chart(title: &str, series: &[(&str, &[f64], RGBColor)], r: &DrillResult) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 260)).into_drawing_area();
        let draw = |e: &dyn std::fmt::Display| Error::Refused(format!("cannot draw the {title} chart: {e}"));
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let n = series.iter().map(|(_, v, _)| v.len()).max().unwrap_or(1).max(1) as f64;
        let top = series.iter().flat_map(|(_, v, _)| v.iter().copied()).fold(1.0f64, f64::max) * 1.1;
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..n, 0f64..top)
            .map_err(|e| draw(&e))?;
        c.configure_mesh().x_desc("seconds").disable_x_mesh().draw().map_err(|e| draw(&e))?;
        // Shaded: every second in which a member was down.
        let full = r.series.members_up.iter().copied().max().unwrap_or(0);
        for (i, up) in r.series.members_up.iter().enumerate() {
            if *up < full {
                c.draw_series(std::iter::once(Rectangle::new([(i as f64, 0.0), (i as f64 + 1.0, top)], RGBColor(255, 225, 215).filled())))
                    .map_err(|e| draw(&e))?;
            }
        }
        // Phase starts (gray, named) and fault steps (red).
        for p in &r.phases {
            let x = p.mark.start_ms as f64 / 1000.0;
            c.draw_series(std::iter::once(PathElement::new(vec![(x, 0.0), (x, top)], BLACK.mix(0.35)))).map_err(|e| draw(&e))?;
            c.draw_series(std::iter::once(Text::new(
                p.mark.name.clone(),
                (x + n * 0.005, top * 0.97),
                ("sans-serif", 11).into_font().color(&BLACK.mix(0.7)),
            )))
            .map_err(|e| draw(&e))?;
        }
        for s in r.steps.iter().filter(|s| s.kind == super::model::StepKind::Fault) {
            let x = s.at_ms as f64 / 1000.0;
            c.draw_series(std::iter::once(PathElement::new(vec![(x, 0.0), (x, top * 0.9)], RGBColor(200, 30, 30).stroke_width(2))))
                .map_err(|e| draw(&e))?;
        }
        // Alerts firing (orange, named) and resolved (green), at the alerts' own times.
        for a in &r.alerts {
            let x = a.fired_at_ms as f64 / 1000.0;
            let orange = RGBColor(230, 130, 0);
            c.draw_series(std::iter::once(PathElement::new(vec![(x, 0.0), (x, top * 0.8)], orange.stroke_width(2))))
                .map_err(|e| draw(&e))?;
            c.draw_series(std::iter::once(Text::new(
                a.alert.clone(),
                (x + n * 0.005, top * 0.84),
                ("sans-serif", 10).into_font().color(&orange),
            )))
            .map_err(|e| draw(&e))?;
            if let Some(end) = a.resolved_at_ms {
                let x = end as f64 / 1000.0;
                c.draw_series(std::iter::once(PathElement::new(vec![(x, 0.0), (x, top * 0.8)], RGBColor(40, 150, 60).stroke_width(2))))
                    .map_err(|e| draw(&e))?;
            }
        }
        for (name, values, color) in series {
            c.draw_series(LineSeries::new(values.iter().enumerate().map(|(i, v)| (i as f64 + 0.5, *v)), color.stroke_width(2)))
                .map_err(|e| draw(&e))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        c.configure_series_labels().border_style(BLACK.mix(0.3)).background_style(WHITE.mix(0.9)).draw().map_err(|e| draw(&e))?;
        root.present().map_err(|e| draw(&e))?;
    }
    Ok(svg)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The self-contained HTML report with inline SVG charts.
pub fn html(r: &DrillResult) -> Result<String> {
    let f = |v: &[u64]| v.iter().map(|x| *x as f64).collect::<Vec<_>>();
    let (ok, errors, members) = (f(&r.series.ok), f(&r.series.errors), f(&r.series.members_up));
    let mut charts = vec![
        chart(
            "operations per second (ok, errors)",
            &[("ok/s", &ok, RGBColor(30, 120, 200)), ("errors/s", &errors, RGBColor(210, 40, 40))],
            r,
        )?,
        chart("p99 latency per second (ms)", &[("p99 ms", &r.series.p99_ms, RGBColor(120, 60, 160))], r)?,
        chart("members up", &[("members up", &members, RGBColor(40, 150, 70))], r)?,
    ];
    // CockroachDB reports ranges; other engines leave these series empty.
    if !r.series.ranges_underreplicated.is_empty() {
        let (under, unavail) = (f(&r.series.ranges_underreplicated), f(&r.series.ranges_unavailable));
        charts.push(chart(
            "ranges under-replicated / unavailable",
            &[("under-replicated", &under, RGBColor(230, 140, 20)), ("unavailable", &unavail, RGBColor(210, 40, 40))],
            r,
        )?);
    }
    let mut s = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>roachlab drill {name}</title>\
         <style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.met{{color:#1a7f37}}.not{{color:#c00;font-weight:bold}}</style></head><body>\
         <h1>Drill <code>{name}</code> on {engine}</h1><p>{desc}</p><p>Started {at}, seed {seed}. In the charts: gray lines start phases, red lines are faults, shading marks seconds with a member down.</p><h2>Theory</h2><ul>",
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
    s.push_str("</table><h2>Charts</h2>");
    for c in &charts {
        s.push_str(c);
    }
    if r.monitored && r.alerts.is_empty() {
        let _ = write!(s, "<h2>Alerts</h2><p>{}</p>", esc(super::alerts::NONE_FIRED));
    }
    if !r.alerts.is_empty() {
        s.push_str("<h2>Alerts</h2><p>In the charts: orange lines are alerts firing, green their resolution.</p><ul>");
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
    let _ = write!(s, "</table><h2>Outcome</h2><p>{}</p><ul>", esc(&verdict(r)));
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
