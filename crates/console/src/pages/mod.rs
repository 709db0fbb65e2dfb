//! One module per page family; each handler reads the snapshot (or asks the
//! cluster) and renders with [`crate::layout::page`].

use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::Markup;

use crate::error::ConsoleError;
use crate::layout::Page;

pub mod groups;
pub mod messages;
pub mod overview;
pub mod topic;
pub mod topics;

/// The `msg` query parameter a change redirects with.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Flash {
    pub msg: Option<String>,
}

pub fn html(m: Markup) -> Response {
    Html(m.into_string()).into_response()
}

/// After a change: back to `to` with a message.
pub fn done(to: &str, msg: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}msg={}", encode(msg))).into_response()
}

/// What [`encode`] leaves as it is: RFC 3986's unreserved characters.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query or path component.
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}

pub async fn not_found() -> Response {
    ConsoleError::NotFound("page".into()).into_response()
}

/// A page with no refresh, for forms' results.
pub fn plain<'a>(title: &'a str, nav: &'a str, read_only: bool) -> Page<'a> {
    Page {
        title,
        nav,
        refresh: None,
        read_only,
        flash: None,
        snapshot: None,
    }
}

/// A form body (axum's `Form`), whose rejection is a console page.
pub struct FormData<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for FormData<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ConsoleError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ConsoleError> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|f| FormData(f.0))
            .map_err(|e| ConsoleError::bad("form", e.body_text()))
    }
}

/// Query parameters (axum's `Query`), whose rejection is a console page.
pub struct Params<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Params<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ConsoleError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e| ConsoleError::bad("query", e.body_text()))
    }
}
