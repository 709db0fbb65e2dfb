//! The page shell (header, navigation, flash message), the embedded assets,
//! number and time formatting, and the SVG line chart.

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use maud::{DOCTYPE, Markup, html};

use crate::sampler::Snapshot;

const STYLE: &str = include_str!("../assets/style.css");
const SCRIPT: &str = include_str!("../assets/console.js");

pub async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

/// What a page tells the shell.
pub struct Page<'a> {
    pub title: &'a str,
    /// The navigation entry to highlight.
    pub nav: &'a str,
    /// Seconds between automatic refreshes of `#main` (none: static).
    pub refresh: Option<u32>,
    pub read_only: bool,
    /// A one-line message after a change (from the `msg` query parameter).
    pub flash: Option<&'a str>,
    pub snapshot: Option<&'a Snapshot>,
}

/// The whole page around `body`.
pub fn page(p: &Page<'_>, body: Markup) -> Markup {
    let nav = [
        ("overview", "/", "Overview"),
        ("topics", "/topics", "Topics"),
        ("groups", "/groups", "Consumer groups"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (p.title) " · Sluice" }
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/console.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "Sluice" }
                    nav {
                        @for (id, href, label) in nav {
                            a href=(href) class=@if id == p.nav { "on" } { (label) }
                        }
                    }
                    @if p.read_only {
                        span.badge.ro title="started with --read-only" { "read-only" }
                    }
                    @if let Some(r) = p.refresh {
                        span.live data-refresh=(r) {
                            "refreshes every " (r) " s "
                            button.pause type="button" { "pause" }
                        }
                    }
                }
                main id="main" {
                    @if let Some(s) = p.snapshot
                        && let Some(e) = &s.error
                    {
                        p.banner.warn { "The last refresh failed (" (e) "); showing data from " (ago(s.taken_ms)) "." }
                    }
                    @if let Some(f) = p.flash {
                        p.banner.ok id="flash" { (f) }
                    }
                    (body)
                }
            }
        }
    }
}

/// A page saying what went wrong, with a way back.
pub fn error_page(status: StatusCode, message: &str) -> Markup {
    page(
        &Page {
            title: "Error",
            nav: "",
            refresh: None,
            read_only: false,
            flash: None,
            snapshot: None,
        },
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.banner.err id="error" { (message) }
            p { a href="javascript:history.back()" { "Back" } " · " a href="/" { "Overview" } }
        },
    )
}

pub fn bytes(n: i64) -> String {
    if n < 0 {
        return "-".into();
    }
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

pub fn rate(per_s: f64, unit: &str) -> String {
    if per_s <= 0.0 {
        return format!("0 {unit}/s");
    }
    if per_s >= 1000.0 {
        format!("{:.1}k {unit}/s", per_s / 1000.0)
    } else {
        format!("{per_s:.1} {unit}/s")
    }
}

/// `2026-12-02 16:52:20.638` (UTC).
pub fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

pub fn ago(ms: i64) -> String {
    let s = (sluice_types::now_ms() - ms).max(0) / 1000;
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

fn span(ms: i64) -> String {
    if ms < 120_000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{} min", ms / 60_000)
    }
}

/// A line chart of `series` (each a name and its points, x in ms) as inline
/// SVG; no points, a note instead.
pub fn chart(series: &[(&str, Vec<(i64, f64)>)], unit: &str) -> Markup {
    let all: Vec<(i64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    if all.len() < 2 {
        return html! { p.muted { "Collecting data: the chart starts after two samples." } };
    }
    let (w, h, pad) = (640.0, 160.0, 4.0);
    let x0 = all.iter().map(|p| p.0).min().unwrap_or(0);
    let x1 = all.iter().map(|p| p.0).max().unwrap_or(1).max(x0 + 1);
    let ymax = all.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
    let colors = ["#2563eb", "#16a34a", "#d97706"];
    let path = |pts: &[(i64, f64)]| -> String {
        pts.iter()
            .map(|(x, y)| {
                let px = pad + (x - x0) as f64 / (x1 - x0) as f64 * (w - 2.0 * pad);
                let py = h - pad - y / ymax * (h - 2.0 * pad);
                format!("{px:.1},{py:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {w} {h}")) role="img" aria-label="chart" {
                line x1="0" y1=(h - pad) x2=(w) y2=(h - pad) stroke="#ccc" {}
                @for (i, (_, pts)) in series.iter().enumerate() {
                    polyline fill="none" stroke-width="2" stroke=(colors[i % colors.len()]) points=(path(pts)) {}
                }
            }
            figcaption {
                "max " (format!("{ymax:.1}")) " " (unit) " · last " (span(x1 - x0)) " · "
                @for (i, (name, _)) in series.iter().enumerate() {
                    span style=(format!("color:{}", colors[i % colors.len()])) { "■ " (name) " " }
                }
            }
        }
    }
}
