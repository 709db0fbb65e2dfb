//! `/groups`: consumer groups with their lag; a group's members, offsets and
//! lag over time; resetting offsets (with a preview) and deleting a group.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use maud::html;
use sluice_client::{Consumer, TopicPartition};

use super::{Flash, FormData, Params, done, encode, html};
use crate::browse::parse_time;
use crate::error::{ConsoleError, Result};
use crate::layout::{self, Page, chart};
use crate::state::AppState;

pub async fn list(State(state): State<Arc<AppState>>, Params(f): Params<Flash>) -> Response {
    let s = state.snapshot().await;
    let body = html! {
        h1 { "Consumer groups" }
        input type="search" placeholder="filter groups" data-filter="#groups";
        table id="groups" {
            thead { tr { th { "Group" } th { "State" } th { "Assignor" } th.num { "Members" } th.num { "Lag" } } }
            tbody {
                @for g in &s.groups {
                    tr data-name=(g.id) {
                        td { a href=(format!("/groups/{}", encode(&g.id))) { (g.id) } }
                        td { (g.state) }
                        td { (g.protocol) }
                        td.num { (g.members) }
                        td.num.lag { (g.lag) }
                    }
                }
            }
        }
        @if s.groups.is_empty() { p.muted { "No consumer groups yet." } }
    };
    html(layout::page(
        &Page {
            title: "Consumer groups",
            nav: "groups",
            refresh: Some(5),
            read_only: state.read_only,
            flash: f.msg.as_deref(),
            snapshot: Some(&s),
        },
        body,
    ))
}

pub async fn detail(
    State(state): State<Arc<AppState>>,
    Path(group): Path<String>,
    Params(f): Params<Flash>,
) -> Result<Response> {
    let s = state.snapshot().await;
    let d = state.admin.describe_consumer_group(&group).await?;
    if d.state == "Dead" && s.group(&group).is_none() {
        return Err(ConsoleError::NotFound(format!(
            "consumer group \"{group}\""
        )));
    }
    let committed = state.admin.list_consumer_group_offsets(&group).await?;
    // Log ends now, not from the snapshot: lag against fresh commits.
    let tps: Vec<TopicPartition> = committed.keys().cloned().collect();
    let ends = if tps.is_empty() {
        Default::default()
    } else {
        let mut c = Consumer::new(state.config.clone())?;
        c.assign(tps.clone());
        c.end_offsets(&tps).await.unwrap_or_default()
    };
    let end_of = |tp: &TopicPartition| ends.get(tp).copied().unwrap_or_else(|| s.log_end(tp));
    let owner: BTreeMap<&TopicPartition, &str> = d
        .members
        .iter()
        .flat_map(|m| {
            m.assignment
                .iter()
                .map(move |tp| (tp, m.client_id.as_str()))
        })
        .collect();
    let history: Vec<(i64, f64)> = s
        .lag_history
        .get(&group)
        .map(|h| h.iter().map(|(t, l)| (*t, *l as f64)).collect())
        .unwrap_or_default();
    let topics: Vec<String> = {
        let mut t: Vec<String> = committed.keys().map(|tp| tp.topic.clone()).collect();
        t.dedup();
        t
    };
    let path = format!("/groups/{}", encode(&group));
    let body = html! {
        h1 { "Group " (group) }
        section.cards {
            div.card { "State " b id="state" { (d.state) } }
            div.card { "Assignor " b { (if d.protocol.is_empty() { "-" } else { d.protocol.as_str() }) } }
            div.card { "Generation " b { (d.generation) } }
            div.card { "Coordinator " b { (d.coordinator) } }
            div.card { "Lag " b id="total-lag" { (committed.iter().map(|(tp, c)| (end_of(tp) - c).max(0)).sum::<i64>()) } }
        }
        h2 { "Lag over time" }
        (chart(&[("lag", history)], "records"))
        h2 { "Members" }
        table id="members" {
            thead { tr { th { "Member" } th { "Client id" } th { "Host" } th { "Partitions" } } }
            tbody {
                @for m in &d.members {
                    tr {
                        td { code { (m.member_id) } }
                        td { (m.client_id) }
                        td { (m.host) }
                        td { (m.assignment.iter().map(|tp| tp.to_string()).collect::<Vec<_>>().join(", ")) }
                    }
                }
            }
        }
        @if d.members.is_empty() { p.muted { "No active members." } }
        h2 { "Offsets" }
        table id="offsets" {
            thead { tr { th { "Topic" } th.num { "Partition" } th.num { "Committed" } th.num { "Log end" } th.num { "Lag" } th { "Consumer" } } }
            tbody {
                @for (tp, c) in &committed {
                    @let end = end_of(tp);
                    tr {
                        td { a href=(format!("/topics/{}", encode(&tp.topic))) { (tp.topic) } }
                        td.num { (tp.partition) }
                        td.num { (c) }
                        td.num { (end) }
                        td.num.lag { ((end - c).max(0)) }
                        td { (owner.get(tp).copied().unwrap_or("-")) }
                    }
                }
            }
        }
        @if !state.read_only {
            h2 { "Reset offsets" }
            @if d.members.is_empty() && !topics.is_empty() {
                form.inline method="get" action=(format!("{path}/reset")) id="reset" {
                    label { "Topic "
                        select name="topic" {
                            @for t in &topics { option value=(t) { (t) } }
                        }
                    }
                    label { "To "
                        select name="to" {
                            @for (v, l) in [("earliest", "earliest"), ("latest", "latest"), ("offset", "an offset"), ("timestamp", "a time")] {
                                option value=(v) { (l) }
                            }
                        }
                    }
                    label { "Value " input name="value" placeholder="offset or time"; }
                    button type="submit" { "Preview" }
                }
                form.inline.danger method="post" action=(format!("{path}/delete")) id="delete-group" {
                    label { "Type " code { (group) } " to delete the group " input name="confirm" autocomplete="off"; }
                    button type="submit" { "Delete group" }
                }
            } @else {
                p.muted { "Offsets can be reset, and the group deleted, once it has no active members (as with kafka-consumer-groups.sh)." }
            }
        }
    };
    Ok(html(layout::page(
        &Page {
            title: &group,
            nav: "groups",
            refresh: Some(5),
            read_only: state.read_only,
            flash: f.msg.as_deref(),
            snapshot: Some(&s),
        },
        body,
    )))
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    pub topic: String,
    pub to: String,
    #[serde(default)]
    pub value: String,
}

/// The new committed offset of every partition of the form's topic.
async fn plan(state: &AppState, f: &ResetForm) -> Result<BTreeMap<TopicPartition, i64>> {
    if f.topic.trim().is_empty() {
        return Err(ConsoleError::bad(
            "topic",
            "choose a topic the group has offsets in",
        ));
    }
    let mut c = Consumer::new(state.config.clone())?;
    let tps = c.assign_all(&f.topic).await?;
    let begin = c.beginning_offsets(&tps).await?;
    let end = c.end_offsets(&tps).await?;
    let mut out = BTreeMap::new();
    match f.to.as_str() {
        "earliest" => out.extend(tps.iter().map(|tp| (tp.clone(), begin[tp]))),
        "latest" => out.extend(tps.iter().map(|tp| (tp.clone(), end[tp]))),
        "offset" => {
            let v = f.value.trim();
            let o = v.parse::<i64>().ok().filter(|o| *o >= 0).ok_or_else(|| {
                ConsoleError::bad("value", format!("\"{v}\" is not an offset (0 or more)"))
            })?;
            out.extend(
                tps.iter()
                    // max then min: a start past the end (two lookups apart)
                    // must not panic.
                    .map(|tp| (tp.clone(), o.max(begin[tp]).min(end[tp]))),
            );
        }
        "timestamp" => {
            let ts = parse_time(&f.value)?;
            let at = c.offsets_for_times(&tps, ts).await?;
            out.extend(tps.iter().map(|tp| {
                let o = at.get(tp).copied().filter(|o| *o >= 0).unwrap_or(end[tp]);
                (tp.clone(), o)
            }));
        }
        other => {
            return Err(ConsoleError::bad(
                "to",
                format!("\"{other}\": expected earliest, latest, offset or timestamp"),
            ));
        }
    }
    Ok(out)
}

pub async fn reset_preview(
    State(state): State<Arc<AppState>>,
    Path(group): Path<String>,
    Params(f): Params<ResetForm>,
) -> Result<Response> {
    state.writable()?;
    let planned = plan(&state, &f).await?;
    let committed = state.admin.list_consumer_group_offsets(&group).await?;
    let path = format!("/groups/{}", encode(&group));
    let body = html! {
        h1 { "Reset offsets of " (group) }
        p { "Preview: nothing has changed yet." }
        table id="preview" {
            thead { tr { th { "Topic" } th.num { "Partition" } th.num { "Now" } th.num { "After" } } }
            tbody {
                @for (tp, to) in &planned {
                    tr {
                        td { (tp.topic) } td.num { (tp.partition) }
                        td.num { (committed.get(tp).map_or("-".to_string(), i64::to_string)) }
                        td.num { (to) }
                    }
                }
            }
        }
        form.inline method="post" action=(format!("{path}/reset")) id="apply-reset" {
            input type="hidden" name="topic" value=(f.topic);
            input type="hidden" name="to" value=(f.to);
            input type="hidden" name="value" value=(f.value);
            button type="submit" { "Apply" }
            " " a href=(path) { "Cancel" }
        }
    };
    Ok(html(layout::page(
        &super::plain("Reset offsets", "groups", state.read_only),
        body,
    )))
}

pub async fn reset_apply(
    State(state): State<Arc<AppState>>,
    Path(group): Path<String>,
    FormData(f): FormData<ResetForm>,
) -> Result<Response> {
    state.writable()?;
    let planned = plan(&state, &f).await?;
    state
        .admin
        .alter_consumer_group_offsets(&group, &planned)
        .await?;
    state.resample().await;
    Ok(done(
        &format!("/groups/{}", encode(&group)),
        &format!("Offsets of {group} on {} reset to {}.", f.topic, f.to),
    ))
}

#[derive(Debug, serde::Deserialize)]
pub struct DeleteForm {
    pub confirm: String,
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(group): Path<String>,
    FormData(f): FormData<DeleteForm>,
) -> Result<Response> {
    state.writable()?;
    if f.confirm.trim() != group {
        return Err(ConsoleError::bad(
            "confirm",
            format!("type the group's name ({group}) to delete it"),
        ));
    }
    state.admin.delete_consumer_group(&group).await?;
    state.resample().await;
    Ok(done("/groups", &format!("Deleted group {group}.")))
}
