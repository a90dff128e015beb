//! What roachlab asks of Prometheus' and Alertmanager's HTTP APIs, and what Alertmanager's
//! webhook sends. Every request is bounded by the client's timeout; a server that does not
//! answer is reported as such, never waited on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A scrape target as `GET /api/v1/targets` reports it (Prometheus HTTP API v1,
/// `data.activeTargets[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetHealth {
    /// The job (`etcd`, `cockroachdb`, `haproxy`, …).
    pub job: String,
    /// `host:port`.
    pub instance: String,
    /// roachlab's node id, for a node's target.
    pub node: Option<String>,
    /// `up`, `down` or `unknown` (not scraped yet).
    pub health: String,
    /// The last scrape's error, if it failed.
    pub last_error: String,
}

#[derive(Deserialize)]
struct TargetsReply {
    data: TargetsData,
}
#[derive(Deserialize)]
struct TargetsData {
    #[serde(rename = "activeTargets", default)]
    active: Vec<RawTarget>,
}
#[derive(Deserialize)]
struct RawTarget {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    health: String,
    #[serde(rename = "lastError", default)]
    last_error: String,
}

/// Parses `GET /api/v1/targets?state=active`.
pub fn parse_targets(body: &str) -> Result<Vec<TargetHealth>, String> {
    let r: TargetsReply = serde_json::from_str(body).map_err(|e| format!("cannot parse /api/v1/targets: {e}"))?;
    Ok(r.data
        .active
        .into_iter()
        .map(|t| TargetHealth {
            job: t.labels.get("job").cloned().unwrap_or_default(),
            instance: t.labels.get("instance").cloned().unwrap_or_default(),
            node: t.labels.get("node").cloned(),
            health: t.health,
            last_error: t.last_error,
        })
        .collect())
}

/// Prometheus' active targets.
pub async fn targets(http: &reqwest::Client, base: &str) -> Result<Vec<TargetHealth>, String> {
    parse_targets(&get(http, &format!("{base}/api/v1/targets?state=active")).await?)
}

/// Names of the alerting rules Prometheus has loaded (`GET /api/v1/rules?type=alert`).
pub async fn loaded_alerts(http: &reqwest::Client, base: &str) -> Result<Vec<String>, String> {
    let body = get(http, &format!("{base}/api/v1/rules?type=alert")).await?;
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("cannot parse /api/v1/rules: {e}"))?;
    let mut names: Vec<String> = v["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// An alert as Alertmanager holds it (`GET /api/v2/alerts`, Alertmanager API v2
/// `gettableAlert`), or as its webhook sends it (webhook payload version 4, `alerts[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `firing` or `resolved` (webhook); from the API (whose `status` is an object,
    /// `{"state": "active", …}`), `firing` for an active alert.
    #[serde(default = "firing", deserialize_with = "status_word")]
    pub status: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339: when Prometheus saw it fire (its `for:` already passed).
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// RFC 3339: when it resolved (webhook, status `resolved`); otherwise a time in the
    /// future until which it is assumed to hold.
    #[serde(rename = "endsAt", default)]
    pub ends_at: String,
    #[serde(default)]
    pub fingerprint: String,
}

fn firing() -> String {
    "firing".into()
}

/// The webhook's `"status": "firing"`, or the API's `"status": {"state": "active"}`.
fn status_word<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Status {
        Word(String),
        State { state: String },
    }
    Ok(match Status::deserialize(d)? {
        Status::Word(w) => w,
        Status::State { state } if state == "active" => "firing".into(),
        Status::State { state } => state,
    })
}

impl Alert {
    /// `alertname`.
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map(String::as_str).unwrap_or("?")
    }

    /// The labels that tell one instance of the alert from another (without `alertname`,
    /// `severity`, `cluster`, `job` and `instance`), e.g. `{node: "3"}`.
    pub fn identifying_labels(&self) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "severity" | "cluster" | "job" | "instance"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The body Alertmanager POSTs to a webhook (Alertmanager docs, configuration,
/// `<webhook_config>`, payload `"version": "4"`).
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookPayload {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub status: String,
    pub alerts: Vec<Alert>,
}

impl WebhookPayload {
    /// Checks the payload against Alertmanager's webhook format (version `"4"`; `status` and
    /// each alert's `firing` or `resolved`; every alert named by a non-empty `alertname`;
    /// `startsAt` and any `endsAt` RFC 3339 times). `Err` says what is wrong, for a 400.
    pub fn validate(&self) -> Result<(), String> {
        use time::format_description::well_known::Rfc3339;
        if self.version != "4" {
            return Err(format!("version {:?}: Alertmanager's webhook payload is version \"4\"", self.version));
        }
        let status = |s: &str, what: &str| {
            if s == "firing" || s == "resolved" {
                Ok(())
            } else {
                Err(format!("{what} status {s:?}: expected \"firing\" or \"resolved\""))
            }
        };
        status(&self.status, "the group's")?;
        for (i, a) in self.alerts.iter().enumerate() {
            status(&a.status, &format!("alert {i}'s"))?;
            if a.labels.get("alertname").is_none_or(|n| n.trim().is_empty()) {
                return Err(format!("alert {i} has no alertname label"));
            }
            time::OffsetDateTime::parse(&a.starts_at, &Rfc3339)
                .map_err(|e| format!("alert {i}'s startsAt {:?}: not an RFC 3339 time ({e})", a.starts_at))?;
            if !a.ends_at.is_empty() {
                time::OffsetDateTime::parse(&a.ends_at, &Rfc3339)
                    .map_err(|e| format!("alert {i}'s endsAt {:?}: not an RFC 3339 time ({e})", a.ends_at))?;
            }
        }
        Ok(())
    }
}

/// Alerts active in Alertmanager now (not silenced or inhibited).
pub async fn active_alerts(http: &reqwest::Client, base: &str) -> Result<Vec<Alert>, String> {
    let body = get(http, &format!("{base}/api/v2/alerts?active=true&silenced=false&inhibited=false")).await?;
    let mut alerts: Vec<Alert> = serde_json::from_str(&body).map_err(|e| format!("cannot parse /api/v2/alerts: {e}"))?;
    alerts.sort_by(|a, b| (a.name(), &a.starts_at).cmp(&(b.name(), &b.starts_at)));
    Ok(alerts)
}

/// Whether `GET {base}/-/ready` answers 200 (both servers serve it).
pub async fn ready(http: &reqwest::Client, base: &str) -> bool {
    matches!(http.get(format!("{base}/-/ready")).send().await, Ok(r) if r.status().is_success())
}

/// `POST {base}/-/reload` (Prometheus with `--web.enable-lifecycle`): re-reads the config and
/// rule files; a config it rejects is an error here and the old one stays in force.
pub async fn reload(http: &reqwest::Client, base: &str) -> Result<(), String> {
    let r = http.post(format!("{base}/-/reload")).send().await.map_err(|e| format!("POST {base}/-/reload: {e}"))?;
    if r.status().is_success() {
        return Ok(());
    }
    let status = r.status();
    Err(format!("POST {base}/-/reload: HTTP {}: {}", status.as_u16(), r.text().await.unwrap_or_default().trim()))
}

async fn get(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let r = http.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    let status = r.status();
    let body = r.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {}", status.as_u16()));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_webhook_payloads_parse() {
        // Shapes as Prometheus 2.42 and Alertmanager 0.25 send them.
        let t = r#"{"status":"success","data":{"activeTargets":[
            {"labels":{"job":"etcd","instance":"127.0.0.1:23791","node":"1","cluster":"roachlab"},"health":"up","lastError":""},
            {"labels":{"job":"haproxy","instance":"127.0.0.1:8404"},"health":"down","lastError":"connection refused"}],
            "droppedTargets":[]}}"#;
        let ts = parse_targets(t).unwrap();
        assert_eq!(ts.len(), 2);
        assert_eq!((ts[0].job.as_str(), ts[0].node.as_deref(), ts[0].health.as_str()), ("etcd", Some("1"), "up"));
        assert_eq!(ts[1].last_error, "connection refused");
        assert!(parse_targets("{").is_err());

        let w = r#"{"receiver":"roachlab","status":"resolved","alerts":[{"status":"resolved",
            "labels":{"alertname":"NodeDown","cluster":"roachlab","instance":"127.0.0.1:23792","job":"etcd","node":"2","severity":"critical"},
            "annotations":{"summary":"etcd member 2 is down"},"startsAt":"2026-12-01T10:00:12.345Z","endsAt":"2026-12-01T10:00:40.1Z",
            "generatorURL":"http://x","fingerprint":"0123abcd"}],"groupLabels":{},"commonLabels":{},"commonAnnotations":{},
            "externalURL":"http://127.0.0.1:9093","version":"4","groupKey":"{}:{}","truncatedAlerts":0}"#;
        let p: WebhookPayload = serde_json::from_str(w).unwrap();
        assert_eq!(p.version, "4");
        assert_eq!(p.validate(), Ok(()));
        // What Alertmanager would never send is refused, saying why.
        let evil = r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"Evil\u0000\n","node":"99"},"startsAt":"garbage"}]}"#;
        let e = serde_json::from_str::<WebhookPayload>(evil).unwrap().validate().unwrap_err();
        assert!(e.contains("startsAt \"garbage\": not an RFC 3339 time"), "{e}");
        let no_version = r#"{"status":"firing","alerts":[]}"#;
        assert!(serde_json::from_str::<WebhookPayload>(no_version).unwrap().validate().unwrap_err().contains("version"));
        let bad_status = w.replace("\"status\":\"resolved\",\"alerts\"", "\"status\":\"sideways\",\"alerts\"");
        assert!(serde_json::from_str::<WebhookPayload>(&bad_status).unwrap().validate().unwrap_err().contains("sideways"));
        let nameless = w.replace("\"alertname\":\"NodeDown\",", "");
        assert!(serde_json::from_str::<WebhookPayload>(&nameless).unwrap().validate().unwrap_err().contains("no alertname"));
        let a = &p.alerts[0];
        assert_eq!((a.name(), a.status.as_str(), a.fingerprint.as_str()), ("NodeDown", "resolved", "0123abcd"));
        assert_eq!(a.identifying_labels(), BTreeMap::from([("node".to_string(), "2".to_string())]));

        // GET /api/v2/alerts (Alertmanager 0.25): `status` is an object.
        let api = r#"[{"annotations":{"summary":"s"},"endsAt":"2026-12-01T10:01:00Z","fingerprint":"ab","receivers":[{"name":"roachlab"}],
            "startsAt":"2026-12-01T10:00:12Z","status":{"inhibitedBy":[],"silencedBy":[],"state":"active"},"updatedAt":"2026-12-01T10:00:13Z",
            "generatorURL":"http://x","labels":{"alertname":"NodeDown","node":"2"}}]"#;
        let a: Vec<Alert> = serde_json::from_str(api).unwrap();
        assert_eq!((a[0].name(), a[0].status.as_str()), ("NodeDown", "firing"));
    }
}
