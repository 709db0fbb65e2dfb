//! What every request passes before a handler: the console has no login
//! (yet), so a browser's other tabs must not be able to use it.
//!
//! - **Cross-site requests** (CSRF): a change (any method but GET/HEAD) is
//!   refused unless it comes from the console's own pages: `Sec-Fetch-Site`
//!   says same-origin (or none: typed, not sent by a page), and an `Origin`
//!   header, when sent, names the host the request was made to. A page on
//!   another site can no longer post a form to 127.0.0.1:8080.
//! - **DNS rebinding**: a page on `evil.example` whose name is made to point
//!   at 127.0.0.1 reaches the console with `Host: evil.example`. Only IP
//!   addresses, `localhost` and the names given with `--allowed-host` are
//!   served.
//! - **Read-only**: changes are refused here, before a malformed form could
//!   be answered with anything else.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ConsoleError;
use crate::state::AppState;

/// The host part of a `Host` or `Origin` authority (`[::1]:8080` -> `::1`).
fn host_of(authority: &str) -> &str {
    let a = authority.trim();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    a.rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(a, |(h, _)| h)
}

/// Whether `host` (from the `Host` header) may be served.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let h = host_of(host);
    h.parse::<std::net::IpAddr>().is_ok()
        || h.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(h))
}

/// Whether a change request comes from the console's own pages.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match (get(header::ORIGIN.as_str()), get(header::HOST.as_str())) {
        (Some(origin), Some(host)) => {
            let authority = origin
                .split_once("://")
                .map_or(origin, |(_, rest)| rest)
                .trim_end_matches('/');
            authority.eq_ignore_ascii_case(host)
        }
        // "null" origins and the like without a host to compare: refused.
        (Some(_), None) => false,
        // No Origin: not a browser's cross-site form (they send one).
        (None, _) => true,
    }
}

pub async fn check(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !host.is_empty() && !host_allowed(host, &state.allowed_hosts) {
        return ConsoleError::Forbidden(format!(
            "this console does not answer to the name \"{}\" (start it with --allowed-host {} to allow it)",
            host_of(host),
            host_of(host)
        ))
        .into_response();
    }
    let change = !matches!(*req.method(), Method::GET | Method::HEAD);
    if change {
        if state.read_only {
            return ConsoleError::ReadOnly.into_response();
        }
        if !same_origin(headers) {
            return ConsoleError::Forbidden(
                "a change must come from the console's own pages (cross-site request refused)"
                    .into(),
            )
            .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_addresses_localhost_or_named() {
        let allowed = vec!["console.internal".to_string()];
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "10.0.0.7",
            "console.internal:80",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example:8080",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }

    #[test]
    fn only_same_origin_pages_may_change_things() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        assert!(same_origin(&h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(
            same_origin(&h(&[("host", "127.0.0.1:8080")])),
            "curl, a script"
        );
        assert!(!same_origin(&h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(same_origin(&h(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin")
        ])));
    }
}
