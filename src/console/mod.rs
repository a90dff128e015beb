//! The live console: one page in the browser, served by the lab's daemon on a loopback TCP
//! port (`[console] port`, default 8070), that shows together and live what the cluster does
//! and what its clients get — for demos in front of people, and over the runbook's SSH tunnel
//! (`ssh -L 8070:127.0.0.1:8070 host`).
//!
//! - **Assets** are compiled into the binary ([`crate::web`]: the page, its script, and
//!   Apache ECharts, pinned and vendored with its licence): no CDN, it works on an offline box.
//! - **Live**: once a second the daemon builds one frame (`frame`: nodes, cluster line,
//!   timeline, charts, the running workload or drill from its files, `clients`) and pushes it
//!   to every page over server-sent events (`GET /api/live`). A `watch` channel holds only the
//!   newest frame: a slow or closed browser skips frames (counted) and never holds the
//!   supervisor up.
//! - **Actions** go through the daemon's own API, mounted under `/api` (`POST
//!   /api/v1/nodes/2/kill`, …), so the page does nothing the CLI could not; they land in the
//!   timeline as `from console (browser at ADDR)`. Built-in drills run as the CLI would run
//!   them (`POST /api/drill`, `roachlab drill NAME` in a process of its own).
//! - **Guard** (`guard`): every request must name a loopback host (`127.0.0.1`, `localhost`,
//!   `[::1]`: DNS rebinding), an `Origin`, when sent, must be the page's own (cross-site
//!   requests), and anything but `GET` needs the lab's token (`token`, `DIR/console.token`,
//!   in the URL `up` prints). Without the token the page is read-only.

pub mod token;

mod clients;
mod frame;
mod guard;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::console::ConsoleSpec;
use crate::events::EventKind;
use crate::supervisor::Supervisor;
use crate::{ports, Error, Result};

pub use frame::Frame;

/// The built-in drills a console can start, as `roachlab drill NAME` names them.
pub const DRILLS: [&str; 9] = [
    "graceful-vs-kill",
    "quorum-loss",
    "scale",
    "partition-minority",
    "partition-leader",
    "split-brain",
    "pause-leader",
    "zone-failure",
    "self-healing",
];

/// The daemon's console: serves at most once per daemon. Cheap to clone.
#[derive(Clone, Default)]
pub struct Console {
    serving: Arc<Mutex<Option<u16>>>,
}

/// What every handler of one console shares.
#[derive(Clone)]
struct Shared {
    sup: Supervisor,
    /// The newest frame, serialized once: `(seq, JSON)`.
    frames: watch::Receiver<(u64, Arc<str>)>,
    /// The timeline as the console keeps it (the last [`frame::TIMELINE_KEEP`] events).
    timeline: Arc<Mutex<frame::Timeline>>,
    /// Frames a browser did not get because a newer one replaced them first.
    dropped: Arc<AtomicU64>,
}

impl Console {
    pub fn new() -> Self {
        Self::default()
    }

    /// The port this daemon serves the console on, if it does.
    pub fn port(&self) -> Option<u16> {
        *self.serving.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds `spec`'s port on 127.0.0.1 when the console is on and not served yet, so `up`
    /// fails before anything starts when the port is taken. `None`: nothing to bind.
    ///
    /// Errors: the port is taken ([`Error::PortInUse`], naming its holder) or cannot be bound.
    pub async fn claim(&self, spec: &ConsoleSpec) -> Result<Option<TcpListener>> {
        if !spec.enabled || self.port().is_some() {
            return Ok(None);
        }
        ports::bind_loopback(spec.port, "roachlab's console (console.port, --console-port)").await.map(Some)
    }

    /// Serves the console on `listener` until `cancel`: the page, its live frames, and `api`
    /// (the daemon's API router) under `/api`. Makes the lab's token if it has none.
    pub fn serve(&self, listener: TcpListener, sup: Supervisor, api: Router, cancel: CancellationToken) -> Result<()> {
        let port = listener.local_addr().map_err(|e| Error::io("the console's listener has no address", e))?.port();
        let token: Arc<str> = token::load_or_create(sup.lab())?.into();
        let timeline = Arc::new(Mutex::new(frame::Timeline::default()));
        let (tx, rx) = watch::channel((0u64, Arc::<str>::from("{}")));
        let shared = Shared { sup: sup.clone(), frames: rx, timeline: timeline.clone(), dropped: Arc::default() };
        // The page opens on the lab's recent past: the timeline file's last events, then the bus.
        tokio::spawn(frame::collect(sup.bus().subscribe(), timeline.clone(), sup.lab().events_file(), cancel.clone()));
        tokio::spawn(frame::produce(sup.clone(), timeline, shared.dropped.clone(), tx, cancel.clone()));
        let app = Router::new()
            .route("/", get(crate::web::index))
            .route("/assets/{*path}", get(crate::web::asset))
            .route("/api/live", get(live))
            .route("/api/frame", get(frame_now))
            .route("/api/timeline", get(timeline_after))
            .route("/api/drill", post(start_drill))
            .with_state(shared)
            .nest("/api", api)
            .layer(axum::middleware::from_fn_with_state(guard::Guard { token }, guard::check));
        *self.serving.lock().unwrap_or_else(|e| e.into_inner()) = Some(port);
        tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, service).with_graceful_shutdown(async move { cancel.cancelled().await }).await;
        });
        Ok(())
    }
}

/// `http://127.0.0.1:PORT/?token=TOKEN`: what `up` and `roachlab console` print.
pub fn url(port: u16, token: &str) -> String {
    format!("http://127.0.0.1:{port}/?token={token}")
}

/// `GET /api/live`: a `frame` event once a second (the newest frame; one a browser was too
/// slow for is skipped and counted), kept alive by comments while the lab is quiet.
async fn live(State(s): State<Shared>) -> impl IntoResponse {
    let mut last_seq = None::<u64>;
    let dropped = s.dropped.clone();
    let stream = tokio_stream::wrappers::WatchStream::new(s.frames.clone()).map(move |(seq, json)| {
        if let Some(prev) = last_seq {
            dropped.fetch_add(seq.saturating_sub(prev + 1), Ordering::Relaxed);
        }
        last_seq = Some(seq);
        Ok::<_, std::convert::Infallible>(SseEvent::default().event("frame").id(seq.to_string()).data(json.as_ref()))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
}

/// `GET /api/frame`: the newest frame (as `/api/live` sends it).
async fn frame_now(State(s): State<Shared>) -> Response {
    let json = s.frames.borrow().1.clone();
    ([(axum::http::header::CONTENT_TYPE, "application/json")], json.to_string()).into_response()
}

#[derive(serde::Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
}

/// `GET /api/timeline?after=SEQ`: the kept events newer than `SEQ`, oldest first (a page that
/// missed frames fills its timeline from here).
async fn timeline_after(State(s): State<Shared>, Query(q): Query<After>) -> Json<Vec<frame::Entry>> {
    Json(s.timeline.lock().unwrap_or_else(|e| e.into_inner()).after(q.after))
}

#[derive(serde::Deserialize)]
struct DrillRequest {
    name: String,
}

/// `POST /api/drill {"name": "quorum-loss"}` (token needed, as for every change): runs
/// `roachlab drill NAME --dir DIR` in a process of its own, its output in
/// `DIR/logs/console-drill.log` — exactly what the CLI would do; the drill reports to the
/// timeline and to `runs/` as any other. Refused when a drill or `workload init` runs.
async fn start_drill(State(s): State<Shared>, headers: axum::http::HeaderMap, Json(r): Json<DrillRequest>) -> Response {
    let refuse = |code: StatusCode, e: &Error| (code, Json(crate::api::StreamItem::Error(crate::api::ApiError::from(e)))).into_response();
    if !DRILLS.contains(&r.name.as_str()) {
        let e = Error::Refused(format!("`{}` is not a built-in drill; known: {}", crate::text::printable(&r.name), DRILLS.join(", ")));
        return refuse(StatusCode::BAD_REQUEST, &e);
    }
    let lab = s.sup.lab().clone();
    // The drill takes this guard itself; asking first turns a busy lab into a clear refusal here.
    if let Err(e) = crate::exclusive::Exclusive::take(&lab, &format!("drill {} (from the console)", r.name)) {
        return refuse(StatusCode::CONFLICT, &e);
    }
    let by = headers.get(crate::api::CLIENT_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("console").to_string();
    match spawn_drill(&lab, &r.name, &by) {
        Ok(pid) => {
            s.sup.bus().emit(EventKind::Command { command: format!("drill {}", r.name), by: Some(by) });
            Json(serde_json::json!({ "drill": r.name, "pid": pid, "log": lab.logs_dir().join("console-drill.log") })).into_response()
        }
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// Starts `roachlab drill NAME --dir DIR` (this binary), in a process group of its own, and
/// reaps it when it ends. Its requests say they come from `by` ([`crate::api::CLIENT_ENV`]).
fn spawn_drill(lab: &crate::lab::Lab, name: &str, by: &str) -> Result<u32> {
    let exe = std::env::current_exe().map_err(|e| Error::io("cannot find roachlab's own binary", e))?;
    let log_path = lab.logs_dir().join("console-drill.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(format!("cannot open {}", log_path.display()), e))?;
    let err = log.try_clone().map_err(|e| Error::io(format!("cannot open {}", log_path.display()), e))?;
    let mut child = tokio::process::Command::new(exe)
        .args(["drill", name, "--dir"])
        .arg(lab.dir())
        .env(crate::api::CLIENT_ENV, format!("{by}, drill {name}"))
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::io("cannot start the drill", e))?;
    let pid = child.id().unwrap_or(0);
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(pid)
}
