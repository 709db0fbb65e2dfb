//! `/topics`: the searchable, sortable list, and the changes made from the
//! console: create, delete, add partitions, alter configs.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use maud::html;
use sluice_client::NewTopic;

use super::{FormData, Params, done, encode, html};
use crate::error::{ConsoleError, Result};
use crate::layout::{self, Page, bytes, rate};
use crate::sampler::TopicRow;
use crate::state::AppState;

#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    pub q: Option<String>,
    pub sort: Option<String>,
    pub internal: Option<String>,
    pub msg: Option<String>,
}

/// Sort keys of the list, by their column name.
fn sort(rows: &mut [&TopicRow], key: &str) {
    match key {
        "partitions" => rows.sort_by_key(|t| std::cmp::Reverse(t.partitions.len())),
        "size" => rows.sort_by_key(|t| std::cmp::Reverse(t.size_bytes)),
        "in" => rows.sort_by(|a, b| b.in_records_per_s.total_cmp(&a.in_records_per_s)),
        "records" => rows.sort_by_key(|t| std::cmp::Reverse(t.records)),
        "urp" => rows.sort_by_key(|t| std::cmp::Reverse(t.under_replicated())),
        _ => rows.sort_by(|a, b| a.name.cmp(&b.name)),
    }
}

pub async fn list(State(state): State<Arc<AppState>>, Params(q): Params<ListQuery>) -> Response {
    let s = state.snapshot().await;
    let needle = q.q.clone().unwrap_or_default();
    let internal = q.internal.as_deref() == Some("on");
    let mut rows: Vec<&TopicRow> = s
        .topics
        .iter()
        .filter(|t| internal || !t.internal)
        .filter(|t| needle.is_empty() || t.name.contains(&needle))
        .collect();
    let key = q.sort.clone().unwrap_or_else(|| "name".into());
    sort(&mut rows, &key);
    let link = |k: &str| {
        format!(
            "/topics?sort={k}&q={}{}",
            encode(&needle),
            if internal { "&internal=on" } else { "" }
        )
    };
    let body = html! {
        h1 { "Topics" }
        form.inline method="get" action="/topics" {
            input type="search" name="q" value=(needle) placeholder="search topics" data-filter="#topics";
            input type="hidden" name="sort" value=(key);
            label { input type="checkbox" name="internal" checked[internal] onchange="this.form.submit()"; " internal" }
            button type="submit" { "Search" }
        }
        p.muted { (rows.len()) " of " (s.topics.len()) " topics" }
        table id="topics" {
            thead { tr {
                th { a href=(link("name")) { "Name" } }
                th.num { a href=(link("partitions")) { "Partitions" } }
                th.num { "RF" }
                th.num { a href=(link("records")) { "Records" } }
                th.num { a href=(link("size")) { "Size" } }
                th.num { a href=(link("in")) { "In" } }
                th.num { a href=(link("urp")) { "Under-replicated" } }
            } }
            tbody {
                @for t in &rows {
                    tr data-name=(t.name) {
                        td { a href=(format!("/topics/{}", encode(&t.name))) { (t.name) } @if t.internal { " " span.badge { "internal" } } }
                        td.num { (t.partitions.len()) }
                        td.num { (t.replication_factor) }
                        td.num { (t.records) }
                        td.num { (bytes(t.size_bytes)) }
                        td.num { (rate(t.in_records_per_s, "rec")) }
                        td.num class=@if t.under_replicated() > 0 { "bad" } { (t.under_replicated()) }
                    }
                }
            }
        }
        @if !state.read_only {
            h2 { "Create a topic" }
            form.stack method="post" action="/topics" id="create-topic" {
                label { "Name " input name="name" required pattern="[a-zA-Z0-9._-]{1,249}"; }
                label { "Partitions " input name="partitions" type="number" min="1" value="1"; }
                label { "Replication factor " input name="replication_factor" type="number" min="1" value="1"; }
                label { "Configs (key=value, one a line) " textarea name="configs" rows="3" placeholder="retention.ms=86400000" {} }
                button type="submit" { "Create" }
            }
        }
    };
    html(layout::page(
        &Page {
            title: "Topics",
            nav: "topics",
            refresh: Some(10),
            read_only: state.read_only,
            flash: q.msg.as_deref(),
            snapshot: Some(&s),
        },
        body,
    ))
}

#[derive(Debug, serde::Deserialize)]
pub struct CreateForm {
    pub name: String,
    pub partitions: String,
    pub replication_factor: String,
    #[serde(default)]
    pub configs: String,
}

/// A positive count from a form field.
pub(crate) fn count(field: &'static str, v: &str) -> Result<i32> {
    match v.trim().parse::<i32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(ConsoleError::bad(
            field,
            format!("\"{v}\" is not a whole number of at least 1"),
        )),
    }
}

/// `key=value` lines (blank lines and `#` comments skipped).
pub(crate) fn config_lines(text: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| ConsoleError::bad("configs", format!("\"{line}\" is not key=value")))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    FormData(f): FormData<CreateForm>,
) -> Result<Response> {
    state.writable()?;
    let name = f.name.trim().to_string();
    sluice_types::names::validate_topic_name(&name)
        .map_err(|e| ConsoleError::bad("name", e.message))?;
    let mut topic = NewTopic::new(
        name.clone(),
        count("partitions", &f.partitions)?,
        count("replication factor", &f.replication_factor)?,
    );
    topic.configs = config_lines(&f.configs)?;
    state.admin.create_topic(topic).await?;
    state.resample().await;
    Ok(done(
        &format!("/topics/{}", encode(&name)),
        &format!("Created topic {name}."),
    ))
}

#[derive(Debug, serde::Deserialize)]
pub struct DeleteForm {
    /// The topic's name typed again.
    pub confirm: String,
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(topic): Path<String>,
    FormData(f): FormData<DeleteForm>,
) -> Result<Response> {
    state.writable()?;
    if f.confirm.trim() != topic {
        return Err(ConsoleError::bad(
            "confirm",
            format!("type the topic's name ({topic}) to delete it"),
        ));
    }
    // Returns once the brokers no longer list it.
    state.admin.delete_topic(&topic).await?;
    state.resample().await;
    Ok(done("/topics", &format!("Deleted topic {topic}.")))
}

#[derive(Debug, serde::Deserialize)]
pub struct RedriveForm {
    #[serde(default)]
    pub to: String,
}

/// Re-publishes a dead-letter topic's records (`sluice dlq --redrive`).
pub async fn redrive(
    State(state): State<Arc<AppState>>,
    Path(topic): Path<String>,
    FormData(f): FormData<RedriveForm>,
) -> Result<Response> {
    state.writable()?;
    let to = Some(f.to.trim()).filter(|t| !t.is_empty());
    let summary = sluice_client::dead_letter::redrive(
        state.config.clone(),
        &topic,
        to,
        sluice_client::dead_letter::DEFAULT_GROUP,
        |_| std::ops::ControlFlow::Continue(()),
    )
    .await?;
    state.resample().await;
    let targets: Vec<&str> = summary.targets.iter().map(String::as_str).collect();
    let msg = if summary.published + summary.already_published == 0 {
        format!("Nothing to redrive in {topic}.")
    } else {
        format!(
            "Redrove {} records from {topic} to {}.",
            summary.published,
            targets.join(", ")
        )
    };
    Ok(done(&format!("/topics/{}", encode(&topic)), &msg))
}

#[derive(Debug, serde::Deserialize)]
pub struct PartitionsForm {
    pub total: String,
}

pub async fn add_partitions(
    State(state): State<Arc<AppState>>,
    Path(topic): Path<String>,
    FormData(f): FormData<PartitionsForm>,
) -> Result<Response> {
    state.writable()?;
    let total = count("partitions", &f.total)?;
    state.admin.create_partitions(&topic, total).await?;
    state.resample().await;
    Ok(done(
        &format!("/topics/{}", encode(&topic)),
        &format!("{topic} now has {total} partitions."),
    ))
}

#[derive(Debug, serde::Deserialize)]
pub struct ConfigsForm {
    /// `key=value` lines to set; `key=` (empty) resets a key to its default.
    pub configs: String,
}

pub async fn alter_configs(
    State(state): State<Arc<AppState>>,
    Path(topic): Path<String>,
    FormData(f): FormData<ConfigsForm>,
) -> Result<Response> {
    state.writable()?;
    let lines = config_lines(&f.configs)?;
    if lines.is_empty() {
        return Err(ConsoleError::bad(
            "configs",
            "give at least one key=value line",
        ));
    }
    let (set, delete): (Vec<_>, Vec<_>) = lines.into_iter().partition(|(_, v)| !v.is_empty());
    let set: BTreeMap<String, String> = set.into_iter().collect();
    let delete: Vec<String> = delete.into_iter().map(|(k, _)| k).collect();
    state
        .admin
        .alter_topic_configs(&topic, &set, &delete)
        .await?;
    state.resample().await;
    Ok(done(
        &format!("/topics/{}", encode(&topic)),
        &format!("Configs of {topic} changed."),
    ))
}
