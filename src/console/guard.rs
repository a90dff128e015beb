//! Who may ask the console what. Every request must name a loopback host — a page on another
//! site that rebinds its own name to 127.0.0.1 still sends its own name in `Host` (DNS
//! rebinding) — and an `Origin`, when the browser sends one, must be the console's own
//! (`http://` + the request's `Host`): a page of another site cannot drive it. Anything but
//! `GET`/`HEAD` also needs the lab's token in the [`super::token::HEADER`] header. Requests
//! that pass reach the daemon's API as `console (browser at ADDR)`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{ApiError, StreamItem, CLIENT_HEADER};
use crate::error::ErrorCode;

#[derive(Clone)]
pub(super) struct Guard {
    pub token: Arc<str>,
}

/// The host names the console answers to (any port: the runbook's tunnel may forward
/// another local port to it).
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().map(|h| format!("[{h}]")).unwrap_or_default(),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host).to_string(),
    };
    matches!(name.to_ascii_lowercase().as_str(), "127.0.0.1" | "localhost" | "[::1]")
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(StreamItem::Error(ApiError { code: ErrorCode::Forbidden, message }))).into_response()
}

/// Why a request is refused, if it is: `(status, message)`.
pub(super) fn verdict(
    method: &Method,
    host: Option<&str>,
    origin: Option<&str>,
    token: Option<&str>,
    want: &str,
) -> Option<(StatusCode, String)> {
    let Some(host) = host.filter(|h| loopback_host(h)) else {
        return Some((
            StatusCode::FORBIDDEN,
            format!(
                "the console answers only to 127.0.0.1, localhost or [::1], not `{}`: open it through an SSH tunnel \
                 (ssh -L 8070:127.0.0.1:8070 host) and the URL `roachlab console` prints",
                crate::text::printable(host.unwrap_or("(no Host header)"))
            ),
        ));
    };
    if let Some(origin) = origin {
        if !origin.eq_ignore_ascii_case(&format!("http://{host}")) {
            return Some((
                StatusCode::FORBIDDEN,
                format!("a request from another site (`Origin: {}`) is refused", crate::text::printable(origin)),
            ));
        }
    }
    if *method != Method::GET && *method != Method::HEAD && !token.is_some_and(|t| super::token::matches(t, want)) {
        return Some((
            StatusCode::UNAUTHORIZED,
            "this changes the lab and needs the console's token: open the URL `roachlab console` prints (it carries \
             ?token=…); without it the console is read-only"
                .into(),
        ));
    }
    None
}

/// The middleware: refuses what [`verdict`] refuses; names the browser to the daemon's API.
pub(super) async fn check(State(g): State<Guard>, ConnectInfo(peer): ConnectInfo<SocketAddr>, mut req: Request, next: Next) -> Response {
    let refusal = {
        let h = req.headers();
        let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        verdict(req.method(), text(header::HOST.as_str()), text(header::ORIGIN.as_str()), text(super::token::HEADER), &g.token)
    };
    if let Some((status, message)) = refusal {
        return refuse(status, message);
    }
    if let Ok(by) = HeaderValue::from_str(&format!("console (browser at {peer})")) {
        req.headers_mut().insert(CLIENT_HEADER, by);
    }
    let mut resp = next.run(req).await;
    // The page is never framed by another site, and never sniffed as something else.
    let h = resp.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "abc123";

    #[test]
    fn loopback_hosts_pass_and_others_are_refused() {
        for host in ["127.0.0.1:8070", "localhost:9000", "LOCALHOST", "[::1]:8070", "127.0.0.1"] {
            assert_eq!(verdict(&Method::GET, Some(host), None, None, T), None, "{host}");
        }
        for host in ["evil.example:8070", "127.0.0.1.evil.example", "10.0.0.5:8070", "[::2]:8070", ""] {
            let (status, msg) = verdict(&Method::GET, Some(host), None, None, T).unwrap();
            assert_eq!(status, StatusCode::FORBIDDEN, "{host}");
            assert!(msg.contains("SSH tunnel"), "{msg}");
        }
        assert!(verdict(&Method::GET, None, None, None, T).is_some(), "no Host at all");
    }

    #[test]
    fn a_foreign_origin_is_refused_even_with_the_token() {
        let v = verdict(&Method::POST, Some("127.0.0.1:8070"), Some("http://evil.example"), Some(T), T).unwrap();
        assert_eq!(v.0, StatusCode::FORBIDDEN);
        assert!(v.1.contains("another site"));
        let v = verdict(&Method::POST, Some("127.0.0.1:8070"), Some("http://localhost:8070"), Some(T), T).unwrap();
        assert_eq!(v.0, StatusCode::FORBIDDEN, "same port, another name is another origin");
        assert_eq!(verdict(&Method::POST, Some("127.0.0.1:8070"), Some("http://127.0.0.1:8070"), Some(T), T), None);
    }

    #[test]
    fn changes_need_the_token_and_reads_do_not() {
        assert_eq!(verdict(&Method::GET, Some("127.0.0.1:8070"), None, None, T), None);
        for token in [None, Some(""), Some("abc12"), Some("abc124")] {
            let (status, msg) = verdict(&Method::POST, Some("127.0.0.1:8070"), None, token, T).unwrap();
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
            assert!(msg.contains("read-only"), "{msg}");
        }
        assert_eq!(verdict(&Method::POST, Some("127.0.0.1:8070"), None, Some(T), T), None);
        assert!(verdict(&Method::DELETE, Some("127.0.0.1:8070"), None, None, T).is_some());
    }
}
