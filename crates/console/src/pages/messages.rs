//! `/topics/{topic}/messages`: the message browser (a search rendered whole,
//! or streamed with progress to the page's script), and producing a test
//! record.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use maud::{Markup, html};
use sluice_client::{ConsumerRecord, Producer, ProducerRecord};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::{FormData, Params, done, encode};
use crate::browse::{self, Event, Format, MAX_RESULTS, MAX_SCAN, SearchQuery};
use crate::error::{ConsoleError, Result};
use crate::layout::{self, Page};
use crate::state::AppState;

/// The partition count of `topic`, or not found.
async fn partitions(state: &AppState, topic: &str) -> Result<i32> {
    let s = state.snapshot().await;
    match s.topic(topic) {
        Some(t) => Ok(t.partitions.len() as i32),
        None => Ok(state.admin.describe_topics(&[topic.to_string()]).await?[0]
            .partitions
            .len() as i32),
    }
}

pub async fn browse(
    State(state): State<Arc<AppState>>,
    Path(topic): Path<String>,
    Params(q): Params<SearchQuery>,
) -> Result<Response> {
    let count = partitions(&state, &topic).await?;
    let mut results = Vec::new();
    let mut summary = None;
    if q.asked() {
        let search = q.parse(&topic, count)?;
        let (tx, mut rx) = mpsc::channel(64);
        let run = tokio::spawn(browse::run(state.config.clone(), search, tx));
        while let Some(e) = rx.recv().await {
            match e {
                Event::Found(r) => results.push(*r),
                Event::Done {
                    scanned,
                    matched,
                    why,
                } => summary = Some(format!("{matched} found, {scanned} read: {why}.")),
                Event::Progress { .. } => {}
            }
        }
        run.await.map_err(|e| {
            tracing::error!(error = %e, "message search task failed");
            ConsoleError::Cluster(sluice_client::ClientError::Api(
                sluice_client::ApiError::new(
                    sluice_client::ErrorCode::UnknownServerError,
                    "the search stopped unexpectedly",
                ),
            ))
        })??;
    }
    let format = q.format();
    let body = html! {
        h1 { "Messages in " a href=(format!("/topics/{}", encode(&topic))) { (topic) } }
        (search_form(&topic, &q, count))
        div id="search-status" { @if let Some(s) = &summary { p.muted id="summary" { (s) } } }
        (results_table(&results, format))
        @if !state.read_only {
            h2 { "Produce a test record" }
            form.stack method="post" action=(format!("/topics/{}/produce", encode(&topic))) id="produce" {
                label { "Partition " input name="partition" placeholder="by key" size="6"; }
                label { "Key " input name="key"; }
                label { "Value " textarea name="value" rows="3" {} }
                label { "Headers (name=value, one a line) " textarea name="headers" rows="2" {} }
                button type="submit" { "Produce" }
            }
        }
    };
    Ok(super::html(layout::page(
        &Page {
            title: &format!("Messages · {topic}"),
            nav: "topics",
            refresh: None,
            read_only: state.read_only,
            flash: q.msg.as_deref(),
            snapshot: None,
        },
        body,
    )))
}

fn search_form(topic: &str, q: &SearchQuery, partitions: i32) -> Markup {
    let from = q.from.as_deref().unwrap_or("newest");
    let format = q.format.as_deref().unwrap_or("text");
    html! {
        form.stack method="get" action=(format!("/topics/{}/messages", encode(topic))) id="search"
            data-stream=(format!("/topics/{}/messages/stream", encode(topic))) {
            div.row {
                label { "Partition "
                    select name="partition" {
                        option value="all" { "all" }
                        @for p in 0..partitions {
                            option value=(p) selected[q.partition.as_deref() == Some(&p.to_string())] { (p) }
                        }
                    }
                }
                label { "From "
                    select name="from" {
                        @for (v, l) in [("newest", "newest (the last N)"), ("oldest", "oldest"), ("offset", "an offset"), ("timestamp", "a time")] {
                            option value=(v) selected[from == v] { (l) }
                        }
                    }
                }
                label { "Offset " input name="offset" size="10" value=(q.offset.as_deref().unwrap_or("")); }
                label { "Time " input name="timestamp" size="22" placeholder="2026-12-02 16:00:00 or ms" value=(q.timestamp.as_deref().unwrap_or("")); }
                label { "N " input name="limit" size="4" value=(q.limit.as_deref().unwrap_or("50")) title=(format!("at most {MAX_RESULTS}")); }
            }
            div.row {
                label { "Contains " input name="filter" placeholder="in key, value or headers" value=(q.filter.as_deref().unwrap_or("")); }
                label { "Show as "
                    select name="format" {
                        @for v in ["text", "json", "hex"] { option value=(v) selected[format == v] { (v) } }
                    }
                }
                button type="submit" { "Search" }
                button.cancel type="button" hidden { "Cancel" }
                span.muted { "A search reads at most " (MAX_SCAN) " records." }
            }
        }
    }
}

/// One result row (also sent alone to a streaming page).
pub fn row(r: &ConsumerRecord, format: Format) -> Markup {
    html! {
        tr {
            td.num { (r.partition) }
            td.num { (r.offset) }
            td { (layout::time(r.timestamp)) }
            td { pre { (browse::show(r.key.as_deref(), format)) } }
            td { pre { (browse::show(r.value.as_deref(), format)) } }
            td {
                @for (k, v) in &r.headers {
                    div { code { (k) } "=" (browse::show(v.as_deref(), Format::Text)) }
                }
            }
        }
    }
}

fn results_table(rows: &[ConsumerRecord], format: Format) -> Markup {
    html! {
        table id="messages" {
            thead { tr { th.num { "Partition" } th.num { "Offset" } th { "Time (UTC)" } th { "Key" } th { "Value" } th { "Headers" } } }
            tbody { @for r in rows { (row(r, format)) } }
        }
    }
}

/// The same search as server-sent events: `progress`, `row` (a rendered
/// table row), `done`, or `failed`. Closing the page ends the search.
pub async fn stream(
    State(state): State<Arc<AppState>>,
    Path(topic): Path<String>,
    Params(q): Params<SearchQuery>,
) -> Result<Response> {
    let count = partitions(&state, &topic).await?;
    let search = q.parse(&topic, count)?;
    let format = q.format();
    let (tx, rx) = mpsc::channel(64);
    let (out_tx, out_rx) = mpsc::channel::<SseEvent>(64);
    let config = state.config.clone();
    let failed = out_tx.clone();
    tokio::spawn(async move {
        if let Err(e) = browse::run(config, search, tx).await {
            let _ = failed
                .send(SseEvent::default().event("failed").data(e.to_string()))
                .await;
        }
    });
    tokio::spawn(async move {
        let mut rx = ReceiverStream::new(rx);
        while let Some(e) = rx.next().await {
            let ev = match e {
                Event::Progress { scanned, matched } => SseEvent::default()
                    .event("progress")
                    .data(format!("{matched} found, {scanned} read")),
                Event::Found(r) => SseEvent::default()
                    .event("row")
                    .data(row(&r, format).into_string().replace('\n', "&#10;")),
                Event::Done {
                    scanned,
                    matched,
                    why,
                } => SseEvent::default()
                    .event("done")
                    .data(format!("{matched} found, {scanned} read: {why}.")),
            };
            if out_tx.send(ev).await.is_err() {
                return;
            }
        }
    });
    let body = ReceiverStream::new(out_rx).map(Ok::<_, Infallible>);
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Debug, serde::Deserialize)]
pub struct ProduceForm {
    #[serde(default)]
    pub partition: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub headers: String,
}

pub async fn produce(
    State(state): State<Arc<AppState>>,
    Path(topic): Path<String>,
    FormData(f): FormData<ProduceForm>,
) -> Result<Response> {
    state.writable()?;
    let count = partitions(&state, &topic).await?;
    let mut r = ProducerRecord::new(topic.clone(), Bytes::from(f.value.replace("\r\n", "\n")));
    if !f.key.is_empty() {
        r.key = Some(Bytes::from(f.key.clone()));
    }
    match f.partition.trim() {
        "" => {}
        p => match p.parse::<i32>() {
            Ok(n) if (0..count).contains(&n) => r.partition = Some(n),
            _ => {
                return Err(ConsoleError::bad(
                    "partition",
                    format!("\"{p}\" is not a partition of {topic} (0 to {})", count - 1),
                ));
            }
        },
    }
    for line in f.headers.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| ConsoleError::bad("headers", format!("\"{line}\" is not name=value")))?;
        r.headers.push((
            k.trim().to_string(),
            Some(Bytes::from(v.trim().to_string())),
        ));
    }
    let producer = state
        .producer
        .get_or_try_init(|| async { Producer::new(state.config.clone()) })
        .await?;
    let written = producer.send(r).await?.await?;
    let to = format!(
        "/topics/{}/messages?partition={}&from=offset&offset={}",
        encode(&topic),
        written.partition,
        written.offset
    );
    Ok(done(
        &to,
        &format!(
            "Produced to partition {} at offset {}.",
            written.partition, written.offset
        ),
    ))
}
