//! The web pages' files — the console's page, script and styles, the chart code the console
//! and every drill report share (`charts.js`), and Apache ECharts — compiled into the binary
//! (`rust-embed` with `debug-embed`: debug builds embed them too), so `cargo build` alone makes
//! a working console and a report that opens offline. The files are plain, with no build
//! step: `src/web/` holds them as they are served, and `src/web/vendor/echarts-5.6.0/` holds
//! Apache ECharts as published on npm, with its licence.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::Embed)]
#[folder = "src/web/"]
pub struct Assets;

/// The chart library's path among the assets (also inlined into every drill report).
pub const ECHARTS: &str = "vendor/echarts-5.6.0/echarts.common.min.js";

/// An embedded file's text (`charts.js`, the chart library) for pages that inline it.
pub fn text(path: &str) -> Option<String> {
    Assets::get(path).map(|f| String::from_utf8_lossy(&f.data).into_owned())
}

fn serve(path: &str) -> Response {
    match Assets::get(path) {
        Some(f) => {
            let mime = f.metadata.mimetype().to_string();
            ([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "no-cache".to_string())], f.data.into_owned()).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// `GET /`: the page.
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /assets/{path}`.
pub async fn asset(Path(path): Path<String>) -> Response {
    serve(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_its_script_and_the_pinned_chart_library_are_embedded() {
        for f in ["index.html", "console.js", "charts.js", "console.css", ECHARTS] {
            assert!(Assets::get(f).is_some(), "{f} is embedded");
        }
        // The vendored file is the one its SHA256SUMS names.
        let sums = text("vendor/echarts-5.6.0/SHA256SUMS").unwrap();
        let want = sums.split_whitespace().next().unwrap();
        let got = Assets::get(ECHARTS).unwrap().metadata.sha256_hash();
        let got: String = got.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want, "echarts.common.min.js differs from the published file");
        for f in ["vendor/echarts-5.6.0/LICENSE", "vendor/echarts-5.6.0/NOTICE"] {
            assert!(Assets::get(f).is_some(), "its licence ships with it: {f}");
        }
        // The page loads nothing from elsewhere.
        let page = text("index.html").unwrap() + &text("console.js").unwrap() + &text("charts.js").unwrap();
        assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("//cdn"), "no remote resource");
    }
}
