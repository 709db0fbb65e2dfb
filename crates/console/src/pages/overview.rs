//! `/`: brokers, the active controller, coordinators, partition health and
//! the cluster's rates over the last minutes.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::{Flash, Params, html};
use crate::layout::{self, Page, chart, rate};
use crate::state::AppState;

pub async fn page(State(state): State<Arc<AppState>>, Params(f): Params<Flash>) -> Response {
    let s = state.snapshot().await;
    let live: BTreeSet<i32> = s
        .cluster
        .iter()
        .flat_map(|c| c.brokers.iter().map(|b| b.id))
        .collect();
    // Brokers named in replica sets but not registered: down.
    let named: BTreeSet<i32> = s
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().flat_map(|p| p.replicas.iter().copied()))
        .collect();
    let down: Vec<i32> = named.difference(&live).copied().collect();
    let led = |id: i32| -> usize {
        s.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .filter(|p| p.leader == id)
            .count()
    };
    let partitions: usize = s.topics.iter().map(|t| t.partitions.len()).sum();
    let under: usize = s.topics.iter().map(|t| t.under_replicated()).sum();
    let offline: usize = s.topics.iter().map(|t| t.offline()).sum();
    let last = s.rates.last().copied().unwrap_or_default();
    let body = html! {
        h1 { "Overview" }
        @if let Some(c) = &s.cluster {
            p.muted { "Cluster " code { (c.cluster_id) } " · snapshot " (layout::ago(s.taken_ms)) }
            section.cards {
                div.card { b { (c.brokers.len()) } " brokers alive" @if !down.is_empty() { ", " span.bad { (down.len()) " down" } } }
                div.card { b { (s.topics.len()) } " topics, " (partitions) " partitions" }
                div.card { b class=@if under > 0 { "bad" } { (under) } " under-replicated" }
                div.card { b class=@if offline > 0 { "bad" } { (offline) } " offline" }
                div.card { b { (s.groups.len()) } " consumer groups" }
            }
            h2 { "Throughput" }
            p { "In: " (rate(last.in_records, "records")) ", " (rate(last.in_bytes / 1024.0, "KiB"))
                " · consumed by groups: " (rate(last.consumed_records, "records")) }
            (chart(&[
                ("records in/s", s.rates.iter().map(|r| (r.at_ms, r.in_records)).collect()),
                ("records consumed/s", s.rates.iter().map(|r| (r.at_ms, r.consumed_records)).collect()),
            ], "records/s"))
            h2 { "Brokers" }
            table id="brokers" {
                thead { tr { th { "ID" } th { "Address" } th { "Rack" } th { "Status" } th.num { "Partitions led" } } }
                tbody {
                    @for b in &c.brokers {
                        tr {
                            td { (b.id) @if b.id == c.controller_id { " " span.badge { "controller" } } }
                            td { (b.host) ":" (b.port) }
                            td { (b.rack.as_deref().unwrap_or("-")) }
                            td.ok { "alive" }
                            td.num { (led(b.id)) }
                        }
                    }
                    @for id in &down {
                        tr { td { (id) } td { "-" } td { "-" } td.bad { "down" } td.num { (led(*id)) } }
                    }
                }
            }
            p { "Active controller: " b id="controller" { (if c.controller_id < 0 { "none elected".to_string() } else { c.controller_id.to_string() }) } }
            h2 { "Group coordinators" }
            table {
                thead { tr { th { "ID" } th { "Address" } th.num { "__consumer_offsets partitions" } } }
                tbody {
                    @for co in &c.coordinators {
                        tr { td { (co.id) } td { (co.host) ":" (co.port) } td.num { (co.owned_partitions.len()) } }
                    }
                }
            }
        } @else {
            p.banner.err { "No answer from the cluster yet: " (s.error.as_deref().unwrap_or("connecting")) }
        }
    };
    html(layout::page(
        &Page {
            title: "Overview",
            nav: "overview",
            refresh: Some(5),
            read_only: state.read_only,
            flash: f.msg.as_deref(),
            snapshot: Some(&s),
        },
        body,
    ))
}
