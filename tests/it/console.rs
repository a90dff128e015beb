//! The live console (#23) in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver by fantoccini) against a real etcd lab: what the
//! page shows, that it follows the lab live, that its buttons act only with the lab's token,
//! and that it keeps answering while a node is paused and quorum is lost. Without a browser
//! it prints a SKIPPED line (scripts/install-deps installs one).

use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::Value;

use crate::helpers::*;

/// chromedriver on a free port, stopped (by its PID: our child) when dropped.
struct Driver {
    child: std::process::Child,
    port: u16,
}

impl Driver {
    fn start() -> Option<Self> {
        let driver = binary_available("ROACHLAB_CHROMEDRIVER", "chromedriver")?;
        binary_available("ROACHLAB_CHROMIUM", "chromium")?;
        let port = (40000..41000).find(|p| roachlab::ports::is_free(*p)).expect("a free port for chromedriver");
        let child = std::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromedriver");
        wait_for("chromedriver to listen", Duration::from_secs(20), || http_get(port, "/status").ok().map(|_| ()));
        Some(Self { child, port })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session, flags as the machine's notes give them (no network beyond
/// this host, a fresh profile), 1280×720 as on a projector.
async fn browser(driver: &Driver) -> Client {
    let chromium = binary_available("ROACHLAB_CHROMIUM", "chromium").expect("chromium");
    let profile = tempfile::tempdir().expect("profile dir").keep();
    let caps: serde_json::Map<String, Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1280,720", format!("--user-data-dir={}", profile.display())]
        }
    }))
    .unwrap();
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session")
}

/// The text of every element matching `css`.
async fn texts(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.unwrap_or_default() {
        out.push(e.text().await.unwrap_or_default());
    }
    out
}

/// Polls `f` every 200 ms until it returns `Some`, at most `limit`; panics naming `what` and
/// the last thing seen.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(seen) if start.elapsed() > limit => panic!("timed out after {limit:?} waiting for {what}; last seen: {seen}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// One node's row: `(process, ready, haproxy)` as the page shows them.
async fn row(c: &Client, node: u32) -> (String, String, String) {
    let cell = |f: &str| format!("#nodes tr[data-node=\"{node}\"] td[data-field=\"{f}\"]");
    let one = |v: Vec<String>| v.into_iter().next().unwrap_or_default();
    (one(texts(c, &cell("process")).await), one(texts(c, &cell("ready")).await), one(texts(c, &cell("haproxy")).await))
}

/// A POST to the console as another page would send it: `(status, body)`.
fn post(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the console");
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(s, "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n{extra}Connection: close\r\n\r\n{{}}")
        .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    let code = reply.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, reply)
}

#[test]
fn the_console_follows_a_live_etcd_lab_and_acts_only_with_its_token() {
    let Some(driver) = Driver::start() else {
        skipped(
            "no chromium/chromedriver",
            "the console's browser test (scripts/install-deps installs Debian's chromium and chromium-driver)",
        );
        return;
    };
    let lab = TestLab::new("etcd", 3);
    let up = lab.up();
    let port = lab.ports.console;
    let token = std::fs::read_to_string(lab.lab_dir().join("console.token")).expect("the token is made at up");
    let url = format!("http://127.0.0.1:{port}/?token={}", token.trim());
    assert!(up.contains(&format!("console {url}")), "up prints the console's URL with its token:\n{up}");
    let mode =
        std::fs::metadata(lab.lab_dir().join("console.token")).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.unwrap(), 0o600, "the token is private to the lab's owner");
    assert!(lab.ok(&["console", "--no-open"]).contains(&url), "`roachlab console` prints the same URL");

    // Refused outside the browser too: no token, a foreign Origin, a foreign Host.
    let (code, body) = post(port, "/api/v1/nodes/1/kill", &[]);
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(port, "/api/v1/nodes/1/kill", &[("x-roachlab-token", token.trim()), ("Origin", "http://evil.example")]);
    assert_eq!(code, 403, "{body}");
    let (code, _) = http_get_with_host(port, "/api/frame", "evil.example");
    assert_eq!(code, 403, "a rebound name is refused");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = browser(&driver).await;
        c.goto(&url).await.unwrap();
        // Three nodes, ready and UP.
        until("three ready nodes, UP in HAProxy", Duration::from_secs(20), || async {
            let rows = [row(&c, 1).await, row(&c, 2).await, row(&c, 3).await];
            rows.iter().all(|(p, r, h)| p == "running" && r == "yes" && h == "UP").then_some(()).ok_or(format!("{rows:?}"))
        })
        .await;
        let quorum = texts(&c, "#quorum").await;
        assert_eq!(quorum, ["QUORUM OK"]);

        // A kill from the CLI: the page shows it within a few seconds, timeline included.
        lab.ok(&["node", "kill", "2"]);
        until("node 2 exited and DOWN in HAProxy", Duration::from_secs(15), || async {
            let (p, _, h) = row(&c, 2).await;
            (p.starts_with("exited (SIGKILL)") && h.starts_with("DOWN")).then_some(()).ok_or(format!("{p} / {h}"))
        })
        .await;
        let timeline = texts(&c, "#timeline li").await.join("\n");
        assert!(timeline.contains("request: node kill 2 (from") && timeline.contains("node 2: exited (SIGKILL)"), "{timeline}");
        assert!(timeline.contains("haproxy: node 2 is DOWN"), "{timeline}");
        let faults = texts(&c, "#timeline li.fault").await;
        assert!(faults.iter().any(|t| t.contains("node kill 2")), "the fault is highlighted: {faults:?}");

        // Charts: one per figure, drawn by the chart library.
        let charts = c.find_all(Locator::Css("#charts [data-chart] canvas")).await.unwrap();
        assert!(charts.len() >= 3, "clients, latency and members charts: {}", charts.len());

        // A button with the token: node 3 is killed, and the timeline says it came from the console.
        lab.ok(&["node", "start", "2"]);
        c.find(Locator::Css("#nodes tr[data-node=\"3\"] button[data-act=\"kill\"]")).await.unwrap().click().await.unwrap();
        until("node 3 killed from the page", Duration::from_secs(15), || async {
            let (p, _, _) = row(&c, 3).await;
            p.starts_with("exited (SIGKILL)").then_some(()).ok_or(p)
        })
        .await;
        let by_console = lab.events().iter().any(|e| e["kind"] == "command" && e["command"] == "node kill 3" && e["by"].as_str().unwrap_or("").starts_with("console (browser at 127.0.0.1:"));
        assert!(by_console, "the action lands in the timeline from the console");
        std::fs::create_dir_all(concat!(env!("CARGO_TARGET_TMPDIR"), "/console")).unwrap();
        let shot = concat!(env!("CARGO_TARGET_TMPDIR"), "/console/console.png");
        std::fs::write(shot, c.screenshot().await.unwrap()).unwrap();
        println!("screenshot: {shot}");

        // Without the token: read-only — the buttons are disabled and a request is refused.
        c.execute("sessionStorage.clear()", vec![]).await.unwrap();
        c.goto(&format!("http://127.0.0.1:{port}/")).await.unwrap();
        until("the read-only page", Duration::from_secs(10), || async {
            let mode = texts(&c, "#mode").await.join("");
            (mode == "read-only").then_some(()).ok_or(mode)
        })
        .await;
        let enabled = c.execute("return [...document.querySelectorAll('#nodes button')].filter(b => !b.disabled).length", vec![]).await.unwrap();
        assert_eq!(enabled, Value::from(0), "no action without the token");
        let refused = c
            .execute_async(
                "const done = arguments[0]; fetch('/api/v1/nodes/1/kill', {method: 'POST', body: '{}', headers: {'content-type': 'application/json'}}).then(r => done(r.status))",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(refused, Value::from(401));

        // Paused node, then quorum lost: the page keeps updating (frames keep coming) and says so.
        lab.ok(&["node", "start", "3"]);
        lab.ok(&["node", "pause", "1"]);
        async fn frame_seq(c: &Client) -> u64 {
            c.execute("return window.roachlabFrameSeq || 0", vec![]).await.ok().and_then(|v| v.as_u64()).unwrap_or(0)
        }
        // Frames keep coming (three more) in each state.
        async fn keeps_updating(c: &Client, state: &str) {
            let from = frame_seq(c).await;
            until(&format!("three more frames while {state}"), Duration::from_secs(10), || async {
                let now = frame_seq(c).await;
                (now >= from + 3).then_some(()).ok_or(format!("frame {from} → {now}"))
            })
            .await;
        }
        until("node 1 shown paused", Duration::from_secs(10), || async {
            let (p, _, _) = row(&c, 1).await;
            p.starts_with("paused").then_some(()).ok_or(p)
        })
        .await;
        keeps_updating(&c, "node 1 is paused").await;
        lab.ok(&["node", "kill", "2"]);
        until("quorum lost on the page", Duration::from_secs(20), || async {
            let q = texts(&c, "#quorum").await.join("");
            (q == "QUORUM LOST").then_some(()).ok_or(q)
        })
        .await;
        keeps_updating(&c, "quorum is lost").await;
        let (code, _) = http_get(port, "/api/frame").expect("the console answers");
        assert_eq!(code, 200);
        c.close().await.unwrap();
    });
    lab.ok(&["node", "resume", "1"]);
    lab.ok(&["down"]);
    drop(driver);
}

/// `GET path` on 127.0.0.1:`port` with another `Host` header: the status code.
fn http_get_with_host(port: u16, path: &str, host: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    (reply.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), reply)
}

/// A drill's `report.html` opened in headless Chromium (`None`: no browser here): the text of
/// every SVG label its charts drew, and a screenshot of its charts saved under the test
/// target's temporary directory as `name`.
pub(crate) fn render_report(report: &std::path::Path, name: &str) -> Option<Vec<String>> {
    let driver = Driver::start()?;
    let rt = tokio::runtime::Runtime::new().unwrap();
    Some(rt.block_on(async {
        let c = browser(&driver).await;
        c.goto(&format!("file://{}", report.display())).await.unwrap();
        let labels = until("the report's charts drawn", Duration::from_secs(20), || async {
            let t = texts(&c, "#charts svg text").await;
            (!t.is_empty()).then_some(t).ok_or_else(|| "no SVG text yet".to_string())
        })
        .await;
        c.execute("document.getElementById('charts').scrollIntoView()", vec![]).await.unwrap();
        let dir = concat!(env!("CARGO_TARGET_TMPDIR"), "/reports");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(format!("{dir}/{name}"), c.screenshot().await.unwrap()).unwrap();
        println!("screenshot: {dir}/{name}");
        c.close().await.unwrap();
        labels
    }))
}
