//! `roachlab alerts`: what the lab's Alertmanager has firing now, and the lab's alert history
//! from its timeline.

use crate::api::AlertsReport;
use crate::events::EventKind;
use crate::lab::Lab;
use crate::Result;

/// Prints the alerts report (text, or `--json`). Exit code 0; 1 when Alertmanager could not
/// be asked (the history is printed all the same).
pub async fn alerts(lab: &Lab, json: bool) -> Result<i32> {
    let client = crate::launch::ensure_daemon(lab).await?;
    let r: AlertsReport = client.get("/v1/alerts").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        print!("{}", alerts_text(&r));
    }
    Ok(if r.error.is_some() { 1 } else { 0 })
}

/// `roachlab alerts` as text.
pub fn alerts_text(r: &AlertsReport) -> String {
    let mut out = String::new();
    let p = crate::events::printable;
    match &r.error {
        Some(e) => out.push_str(&format!("firing now: unknown ({})\n", p(e))),
        None if r.firing.is_empty() => out.push_str("firing now: none\n"),
        None => {
            out.push_str("firing now:\n");
            for a in &r.firing {
                let labels: Vec<String> = a.identifying_labels().iter().map(|(k, v)| format!("{}={}", p(k), p(v))).collect();
                let summary = a.annotations.get("summary").map(|s| format!(" — {}", p(s))).unwrap_or_default();
                out.push_str(&format!("  {} {} since {}{summary}\n", p(a.name()), labels.join(" "), p(&a.starts_at)));
            }
        }
    }
    let history: Vec<_> =
        r.history.iter().filter(|e| matches!(e.kind, EventKind::AlertFiring { .. } | EventKind::AlertResolved { .. })).collect();
    if history.is_empty() {
        out.push_str("history: no alert has fired in this lab\n");
    } else {
        out.push_str("history:\n");
        for e in history {
            out.push_str(&format!("  {}\n", e.describe()));
        }
    }
    out
}
