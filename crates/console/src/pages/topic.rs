//! `/topics/{topic}`: partitions (leader, replicas, ISR, offsets, size),
//! configs, and the forms that change them.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use maud::html;

use super::{Flash, Params, encode, html};
use crate::error::{ConsoleError, Result};
use crate::layout::{self, Page, bytes, rate};
use crate::state::AppState;

fn ids(v: &[i32]) -> String {
    v.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

pub async fn detail(
    State(state): State<Arc<AppState>>,
    Path(topic): Path<String>,
    Params(f): Params<Flash>,
) -> Result<Response> {
    let mut s = state.snapshot().await;
    if s.topic(&topic).is_none()
        && state
            .admin
            .describe_topics(std::slice::from_ref(&topic))
            .await
            .is_ok()
    {
        // Created a moment ago by someone else: sample again to show it.
        state.resample().await;
        s = state.snapshot().await;
    }
    let t = s
        .topic(&topic)
        .ok_or_else(|| ConsoleError::NotFound(format!("topic \"{topic}\"")))?;
    let path = format!("/topics/{}", encode(&topic));
    let body = html! {
        h1 { "Topic " (t.name) @if t.internal { " " span.badge { "internal" } } }
        p {
            a.button href=(format!("{path}/messages")) { "Browse messages" }
        }
        section.cards {
            div.card { b { (t.partitions.len()) } " partitions" }
            div.card { b { (t.replication_factor) } " replicas each" }
            div.card { b { (t.records) } " records written" }
            div.card { b { (bytes(t.size_bytes)) } " on the leaders" }
            div.card { b { (rate(t.in_records_per_s, "records")) } " in" }
        }
        h2 { "Partitions" }
        table id="partitions" {
            thead { tr {
                th.num { "Partition" } th.num { "Leader" } th { "Replicas" } th { "ISR" }
                th.num { "Log start" } th.num { "Log end (high watermark)" } th.num { "Size" }
            } }
            tbody {
                @for p in &t.partitions {
                    tr {
                        td.num { (p.partition) }
                        td.num class=@if p.leader < 0 { "bad" } { (if p.leader < 0 { "none".to_string() } else { p.leader.to_string() }) }
                        td { (ids(&p.replicas)) }
                        td class=@if p.isr.len() < p.replicas.len() { "bad" } { (ids(&p.isr)) }
                        td.num { (p.log_start) }
                        td.num { (p.log_end) }
                        td.num { (bytes(p.size_bytes)) }
                    }
                }
            }
        }
        h2 { "Configs" }
        @if t.configs.is_empty() {
            p.muted { "No overrides: the broker defaults apply." }
        } @else {
            table id="configs" {
                thead { tr { th { "Key" } th { "Value" } } }
                tbody { @for (k, v) in &t.configs { tr { td { code { (k) } } td { code { (v) } } } } }
            }
        }
        @if !state.read_only && t.name.ends_with(".dlq") {
            h2 { "Dead letters" }
            p.muted { "Re-publish the records not yet redriven to the topic each failed in (or another), once each even if a redrive is interrupted (as " code { "sluice dlq --redrive" } ")." }
            form.inline method="post" action=(format!("{path}/redrive")) id="redrive" {
                label { "To " input name="to" placeholder="each record's own topic"; }
                button type="submit" { "Redrive" }
            }
        }
        @if !state.read_only && !t.internal {
            form.stack method="post" action=(format!("{path}/configs")) id="alter-configs" {
                label { "Set configs (key=value, one a line; key= resets to the default) "
                    textarea name="configs" rows="3" placeholder="retention.ms=3600000" {} }
                button type="submit" { "Apply" }
            }
            form.inline method="post" action=(format!("{path}/partitions")) id="add-partitions" {
                label { "Partitions in total " input name="total" type="number" min=(t.partitions.len() + 1) value=(t.partitions.len() + 1); }
                button type="submit" { "Add partitions" }
            }
            form.inline.danger method="post" action=(format!("{path}/delete")) id="delete-topic" {
                label { "Type " code { (t.name) } " to delete it " input name="confirm" autocomplete="off"; }
                button type="submit" { "Delete topic" }
            }
        }
    };
    Ok(html(layout::page(
        &Page {
            title: &topic,
            nav: "topics",
            refresh: Some(10),
            read_only: state.read_only,
            flash: f.msg.as_deref(),
            snapshot: Some(&s),
        },
        body,
    )))
}
