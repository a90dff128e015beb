//! The daemon: serves one lab's API on `DIR/roachlab.sock` and owns its [`Supervisor`].
//!
//! Started by `roachlab up` as `roachlab daemon --dir DIR` in its own session, it outlives the
//! CLI. It exits after a successful `down`, or when its shutdown future resolves (SIGTERM or
//! SIGINT for the binary; any future for tests, which boot it in-process). Exiting leaves the
//! nodes running: the next daemon re-adopts them.

use std::convert::Infallible;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::UnixListener;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, DecommissionRequest, DownRequest, SettingRequest, StartRequest, StopRequest, StreamItem, CLIENT_HEADER};
use crate::console::Console;
use crate::events::{write_timeline, EventBus, EventKind};
use crate::fault::NodesRequest;
use crate::lab::Lab;
use crate::node::NodeId;
use crate::supervisor::Supervisor;
use crate::{Error, Result};

/// `GET /v1/leaseholder?table=bank.bank&key=0`.
#[derive(serde::Deserialize)]
struct LeaseholderQuery {
    table: String,
    key: i64,
}

/// `GET /v1/predict?down=2,3`.
#[derive(serde::Deserialize)]
struct PredictQuery {
    down: String,
}

#[derive(Clone)]
struct AppState {
    sup: Supervisor,
    /// Cancelled to make the daemon exit (after `down`).
    exit: CancellationToken,
    /// The live console in the browser, served once the lab is up.
    console: Console,
}

/// Serves the console for a lab that runs (at daemon start, or after `up`), on `listener`
/// when `up` has bound its port already; says why not in the timeline when it cannot.
async fn serve_console(state: &AppState, listener: Option<tokio::net::TcpListener>) {
    let spec = state.sup.spec().console;
    let listener = match listener {
        Some(l) => l,
        None => match state.console.claim(&spec).await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                state.sup.bus().emit(EventKind::Warning { message: format!("the console is not served: {e}") });
                return;
            }
        },
    };
    if let Err(e) = state.console.serve(listener, state.sup.clone(), router(state.clone()), state.exit.clone()) {
        state.sup.bus().emit(EventKind::Warning { message: format!("the console is not served: {e}") });
    }
}

/// Runs the daemon for `lab` until `shutdown` resolves or a `down` request completes.
///
/// Errors: another daemon answers on the socket ([`Error::LabRunning`]); no lab in the
/// directory ([`Error::NoLab`]); the socket cannot be bound.
pub async fn run(lab: Lab, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    lab.check_socket_paths()?;
    // One daemon per lab: the lock, not the socket, says so (a deleted socket must not let a
    // second daemon in). Held until this function returns.
    let _lock = lock_lab(&lab)?;
    clear_stale_socket(&lab).await?;
    let bus = EventBus::new();
    let timeline_stop = CancellationToken::new();
    let timeline = tokio::spawn(write_timeline(bus.subscribe(), lab.events_file(), timeline_stop.clone()));
    let exit = CancellationToken::new();
    let sup = Supervisor::open(lab.clone(), bus.clone(), exit.child_token()).await?;
    // A daemon is started for a request, mostly `up`: ask the engine binary its release while
    // the socket opens and the request comes, not after.
    sup.prefetch_engine_version();

    let socket = lab.socket();
    let listener = UnixListener::bind(&socket).map_err(|e| Error::io(format!("cannot listen on {}", socket.display()), e))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("cannot chmod {}", socket.display()), e))?;
    tracing::info!("daemon {} serving {}", std::process::id(), socket.display());

    let state = AppState { sup: sup.clone(), exit: exit.clone(), console: Console::new() };
    let app = router(state.clone());
    // A daemon that adopts a running lab serves its console again.
    if !sup.runs_nothing() {
        serve_console(&state, None).await;
    }
    // A socket deleted under a running daemon is bound again, so commands find this daemon.
    tokio::spawn(keep_socket(lab.clone(), app.clone(), exit.clone()));
    let stop = exit.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stop.cancelled() => {}
            }
        })
        .await;
    sup.detach();
    let _ = std::fs::remove_file(&socket);
    timeline_stop.cancel();
    let _ = timeline.await;
    served.map_err(|e| Error::io("daemon server failed", e))
}

/// Takes `DIR/daemon.lock` (`flock`, exclusive, non-blocking) and writes this pid into it.
/// Errors with [`Error::LabRunning`], naming the holder's pid, when another daemon has it.
fn lock_lab(lab: &Lab) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use std::io::{Read, Seek, Write};
    let path = lab.daemon_lock();
    let file = crate::launch::open_lock(lab).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let _ = lock.set_len(0);
            let _ = lock.rewind();
            let _ = write!(lock, "{}", std::process::id());
            let _ = lock.sync_all();
            Ok(lock)
        }
        Err((mut file, _)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Err(Error::LabRunning { dir: lab.dir().to_path_buf(), pid: text.trim().parse().unwrap_or(0) })
        }
    }
}

/// Every 500 ms: if the control socket was deleted, binds it again and serves it too.
async fn keep_socket(lab: Lab, app: Router, exit: CancellationToken) {
    let socket = lab.socket();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = exit.cancelled() => return,
        }
        if socket.exists() {
            continue;
        }
        match UnixListener::bind(&socket) {
            Ok(listener) => {
                let _ = std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600));
                tracing::warn!("{} was deleted; bound it again", socket.display());
                let stop = exit.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
                });
            }
            Err(e) => tracing::warn!("{} was deleted and cannot be bound again: {e}", socket.display()),
        }
    }
}

/// Removes a socket file no daemon answers on (left by a daemon that was SIGKILLed); fails if
/// one does answer.
async fn clear_stale_socket(lab: &Lab) -> Result<()> {
    let socket = lab.socket();
    if !socket.exists() {
        return Ok(());
    }
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::UnixStream::connect(&socket)).await {
        Ok(Ok(_)) => {
            let pid = crate::state::LabState::load(&lab.state_file()).ok().flatten().and_then(|s| s.daemon).map(|d| d.pid).unwrap_or(0);
            Err(Error::LabRunning { dir: lab.dir().to_path_buf(), pid })
        }
        _ => {
            tracing::info!("removing stale socket {}", socket.display());
            std::fs::remove_file(&socket).map_err(|e| Error::io(format!("cannot remove stale socket {}", socket.display()), e))
        }
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/ping", get(|| async { Json(serde_json::json!({ "pid": std::process::id() })) }))
        .route(
            "/v1/status",
            get(|State(s): State<AppState>| async move {
                let mut r = s.sup.status();
                r.monitoring = s.sup.monitoring_status().await;
                r.console = s.console.port().map(|p| format!("http://127.0.0.1:{p}/"));
                Json(r)
            }),
        )
        .route("/v1/alerts", get(|State(s): State<AppState>| async move { Json(s.sup.alerts_report().await) }))
        .route("/v1/haproxy", get(|State(s): State<AppState>| async move { Json(s.sup.haproxy_report().await) }))
        .route(
            "/v1/up",
            post(|State(s): State<AppState>, h: HeaderMap, body: Option<Json<crate::api::UpRequest>>| async move {
                let Json(body) = body.unwrap_or_default();
                let (restart, monitoring, console) = (body.restart, body.monitoring, body.console);
                // An `up` that failed with nothing running leaves no reason for this daemon to
                // stay — and the next `up` gets a new one, with that command's environment
                // (a corrected $ROACHLAB_ETCD, say), not this one's.
                let exit = s.exit.clone();
                let state = s.clone();
                streamed(
                    &s,
                    &h,
                    move |sup| async move {
                        // The console's port is bound before anything starts: taken, it fails
                        // `up` as any other port does.
                        let listener = async {
                            if let Some(c) = console.filter(|c| *c != sup.spec().console) {
                                sup.set_console(c)?;
                            }
                            state.console.claim(&sup.spec().console).await
                        };
                        let r = match listener.await {
                            Ok(listener) => match sup.up(restart, monitoring).await {
                                Ok(mut v) => {
                                    serve_console(&state, listener).await;
                                    if let Some(p) = state.console.port() {
                                        v["console"] = serde_json::json!(format!("http://127.0.0.1:{p}/"));
                                    }
                                    Ok(v)
                                }
                                Err(e) => Err(e),
                            },
                            Err(e) => Err(e),
                        };
                        if r.is_err() && sup.runs_nothing() {
                            exit.cancel();
                        }
                        r
                    },
                    false,
                )
            }),
        )
        .route(
            "/v1/down",
            post(|State(s): State<AppState>, h: HeaderMap, Json(r): Json<DownRequest>| async move {
                streamed(&s, &h, move |sup| async move { sup.down(r.fast).await }, true)
            }),
        )
        .route(
            "/v1/leaseholder",
            get(|State(s): State<AppState>, Query(q): Query<LeaseholderQuery>| async move {
                match s.sup.leaseholder_of(&q.table, q.key).await {
                    Ok(node) => (StatusCode::OK, Json(serde_json::json!({ "node": node }))).into_response(),
                    Err(e) => (StatusCode::BAD_REQUEST, Json(StreamItem::Error(ApiError::from(&e)))).into_response(),
                }
            }),
        )
        .route(
            "/v1/predict",
            get(|State(s): State<AppState>, Query(q): Query<PredictQuery>| async move {
                let down: std::result::Result<Vec<NodeId>, _> =
                    q.down.split(',').filter(|p| !p.trim().is_empty()).map(|p| p.trim().parse::<NodeId>()).collect();
                let res = match down {
                    Ok(down) => s.sup.predict_loss(&down).await,
                    Err(_) => Err(Error::Refused(format!("`down={}` is not a list of node ids (e.g. down=2,3)", q.down))),
                };
                match res {
                    Ok(p) => (StatusCode::OK, Json(serde_json::to_value(p).unwrap_or_default())).into_response(),
                    Err(e) => (StatusCode::BAD_REQUEST, Json(StreamItem::Error(ApiError::from(&e)))).into_response(),
                }
            }),
        )
        .route(
            "/v1/settings",
            post(|State(s): State<AppState>, h: HeaderMap, Json(r): Json<SettingRequest>| async move {
                streamed(&s, &h, move |sup| async move { sup.set_setting(&r.name, &r.value).await }, false)
            }),
        )
        .route("/v1/nodes/kill", nodes_route(|sup, r| async move { sup.kill_nodes(&r.nodes).await }))
        .route("/v1/nodes/stop", nodes_route(|sup, r| async move { sup.stop_many(&r.nodes, r.grace_ms.map(Duration::from_millis)).await }))
        .route("/v1/nodes/start", nodes_route(|sup, r| async move { sup.start_many(&r.nodes, r.no_wait).await }))
        .route("/v1/nodes/pause", nodes_route(|sup, r| async move { sup.pause_nodes(&r.nodes).await }))
        .route("/v1/nodes/resume", nodes_route(|sup, r| async move { sup.resume_nodes(&r.nodes).await }))
        .route("/v1/nodes/throttle", nodes_route(|sup, r| async move { sup.throttle_nodes(&r.nodes, r.cpu_pct.unwrap_or(0)).await }))
        .route("/v1/nodes/unthrottle", nodes_route(|sup, r| async move { sup.unthrottle_nodes(&r.nodes).await }))
        .route(
            "/v1/nodes/add",
            post(
                |State(s): State<AppState>, h: HeaderMap| async move { streamed(&s, &h, |sup| async move { sup.add_node().await }, false) },
            ),
        )
        .route(
            "/v1/nodes/{id}/start",
            post(|State(s): State<AppState>, h: HeaderMap, Path(id): Path<NodeId>, body: Option<Json<StartRequest>>| async move {
                streamed(&s, &h, move |sup| async move { sup.start_node(id, body.is_some_and(|Json(b)| b.no_wait)).await }, false)
            }),
        )
        .route(
            "/v1/nodes/{id}/stop",
            post(|State(s): State<AppState>, h: HeaderMap, Path(id): Path<NodeId>, Json(r): Json<StopRequest>| async move {
                streamed(
                    &s,
                    &h,
                    move |sup| async move { sup.stop_node(id, r.grace_ms.map(Duration::from_millis), !r.no_drain).await },
                    false,
                )
            }),
        )
        .route(
            "/v1/nodes/{id}/kill",
            post(|State(s): State<AppState>, h: HeaderMap, Path(id): Path<NodeId>| async move {
                streamed(&s, &h, move |sup| async move { sup.kill_node(id).await }, false)
            }),
        )
        .route(
            "/v1/nodes/{id}/decommission",
            post(|State(s): State<AppState>, h: HeaderMap, Path(id): Path<NodeId>, Json(r): Json<DecommissionRequest>| async move {
                streamed(&s, &h, move |sup| async move { sup.decommission_node(id, r.force).await }, false)
            }),
        )
        .route(
            "/v1/net",
            get(|State(s): State<AppState>| async move {
                match s.sup.net_status().await {
                    Ok(n) => (StatusCode::OK, Json(serde_json::to_value(n).unwrap_or_default())).into_response(),
                    Err(e) => (StatusCode::BAD_REQUEST, Json(StreamItem::Error(ApiError::from(&e)))).into_response(),
                }
            }),
        )
        .route(
            "/v1/net/partition",
            post(|State(s): State<AppState>, h: HeaderMap, Json(r): Json<crate::api::PartitionRequest>| async move {
                streamed(&s, &h, move |sup| async move { sup.net_partition(r.sides, r.one_way, r.from_clients).await }, false)
            }),
        )
        .route(
            "/v1/net/shape",
            post(|State(s): State<AppState>, h: HeaderMap, Json(r): Json<crate::api::ShapeRequest>| async move {
                let shaping = crate::topology::Shaping { delay_ms: r.delay_ms, jitter_ms: r.jitter_ms, loss_pct: r.loss_pct };
                streamed(&s, &h, move |sup| async move { sup.net_shape(r.node, shaping).await }, false)
            }),
        )
        .route(
            "/v1/net/heal",
            post(
                |State(s): State<AppState>, h: HeaderMap| async move { streamed(&s, &h, |sup| async move { sup.net_heal().await }, false) },
            ),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(StreamItem::Error(ApiError { code: crate::error::ErrorCode::BadRequest, message: "no such API route".into() })),
            )
        })
        // The framework's own rejections (a body that is not the JSON a route takes, a path
        // segment that is not a node id, a wrong method) come back in the documented shape too.
        .layer(axum::middleware::map_response(json_rejections))
        .with_state(state)
}

/// `POST` of a batch node request (`{"nodes": [...], ...}`), streamed like every request
/// that changes the lab.
fn nodes_route<F, Fut>(op: F) -> axum::routing::MethodRouter<AppState>
where
    F: FnOnce(Supervisor, NodesRequest) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<serde_json::Value>> + Send + 'static,
{
    post(move |State(s): State<AppState>, h: HeaderMap, Json(r): Json<NodesRequest>| async move {
        streamed(&s, &h, move |sup| op(sup, r), false)
    })
}

/// Turns a plain-text error response into `{"error":{"code":"bad_request","message":…}}`.
async fn json_rejections(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let text =
        axum::body::to_bytes(resp.into_body(), 64 * 1024).await.map(|b| String::from_utf8_lossy(&b).trim().to_string()).unwrap_or_default();
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text };
    let code = if status.is_server_error() { crate::error::ErrorCode::Internal } else { crate::error::ErrorCode::BadRequest };
    (status, Json(StreamItem::Error(ApiError { code, message }))).into_response()
}

/// How often a streamed response sends a blank line while the request runs, so a client that
/// went away is noticed within about this long.
const KEEPALIVE: Duration = Duration::from_secs(1);

fn line(item: &StreamItem) -> Result<Bytes, Infallible> {
    let mut v = serde_json::to_vec(item).expect("stream items serialize");
    v.push(b'\n');
    Ok(Bytes::from(v))
}

/// Runs `op` in its own task (a client that hangs up does not abort it half-way) and streams
/// every lab event while it runs, then its result. With `exit_after`, the daemon exits once a
/// successful result is sent.
///
/// A blank line goes out every second while nothing else does ([`KEEPALIVE`]; the stream's
/// readers skip blank lines), so a client that went away is noticed by the failed write even
/// when the lab is quiet: the request's [`crate::events::CLIENT_GONE`] token is then
/// cancelled. What that cancels is the supervisor's to decide: a request still queued for the
/// op lock is dropped without acting, and a wait for readiness stops (what was started keeps
/// starting); signals sent and stops under way are finished.
fn streamed<F, Fut>(state: &AppState, headers: &HeaderMap, op: F, exit_after: bool) -> Response
where
    F: FnOnce(Supervisor) -> Fut + Send + 'static,
    Fut: Future<Output = Result<serde_json::Value>> + Send + 'static,
{
    let sup = state.sup.clone();
    let exit = state.exit.clone();
    let by = headers.get(CLIENT_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("an API client").to_string();
    let mut events = sup.bus().subscribe();
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(1024);
    tokio::spawn(async move {
        let gone = CancellationToken::new();
        let mut task = tokio::spawn(crate::events::REQUESTER.scope(by, crate::events::CLIENT_GONE.scope(gone.clone(), op(sup))));
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                biased;
                ev = events.recv() => match ev {
                    Ok(e) => { let _ = tx.send(line(&StreamItem::Event(e))).await; }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                r = &mut task => break r,
                _ = tx.closed(), if !gone.is_cancelled() => gone.cancel(),
                _ = keepalive.tick(), if !gone.is_cancelled() => { let _ = tx.try_send(Ok(Bytes::from_static(b"\n"))); }
            }
        };
        while let Ok(e) = events.try_recv() {
            let _ = tx.send(line(&StreamItem::Event(e))).await;
        }
        let ok = matches!(result, Ok(Ok(_)));
        let item = match result {
            Ok(Ok(v)) => StreamItem::Done(v),
            Ok(Err(e)) => StreamItem::Error(ApiError::from(&e)),
            Err(join) => {
                StreamItem::Error(ApiError { code: crate::error::ErrorCode::Internal, message: format!("request task failed: {join}") })
            }
        };
        let _ = tx.send(line(&item)).await;
        drop(tx);
        if exit_after && ok {
            exit.cancel();
        }
    });
    ([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))).into_response()
}
