//! Group gauges and consumer lag (committed offset against the partition's
//! high watermark, as `kafka-consumer-groups.sh --describe` shows it).

use std::sync::Arc;
use std::time::Duration;

use sluice_client::{Consumer, TopicPartition};
use tracing::debug;

use super::{Coordinator, Owned};

impl Coordinator {
    /// Every 10 s while a metrics endpoint is on.
    pub(super) async fn report_metrics(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        let mut lag_reader: Option<Consumer> = None;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !sluice_server::metrics::enabled() {
                continue;
            }
            let mut committed: Vec<(String, TopicPartition, i64)> = Vec::new();
            let (mut groups, mut owned, mut loading) = (0u32, 0u32, 0u32);
            {
                let st = self.state.lock();
                for o in st.partitions.values() {
                    owned += 1;
                    let Owned::Active { groups: gs, .. } = o else {
                        loading += 1;
                        continue;
                    };
                    for g in gs.values() {
                        groups += 1;
                        let group = [("group", g.id.clone())];
                        metrics::gauge!("sluice_consumer_group_members", &group)
                            .set(g.member_count() as f64);
                        for ((topic, partition), c) in &g.offsets {
                            committed.push((
                                g.id.clone(),
                                TopicPartition::new(topic.clone(), *partition),
                                c.offset,
                            ));
                        }
                    }
                }
            }
            metrics::gauge!("sluice_coordinator_groups").set(f64::from(groups));
            metrics::gauge!("sluice_coordinator_owned_partitions").set(f64::from(owned));
            metrics::gauge!("sluice_coordinator_loading_partitions").set(f64::from(loading));
            if committed.is_empty() {
                continue;
            }
            if lag_reader.is_none() {
                lag_reader = self.log.lag_reader().await;
            }
            let Some(reader) = lag_reader.as_mut() else {
                continue;
            };
            let mut tps: Vec<TopicPartition> =
                committed.iter().map(|(_, tp, _)| tp.clone()).collect();
            tps.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            tps.dedup();
            let ends = match reader.end_offsets(&tps).await {
                Ok(e) => e,
                Err(e) => {
                    debug!(error = %e, "cannot read end offsets for lag");
                    continue;
                }
            };
            for (group, tp, offset) in committed {
                let labels = [
                    ("group", group),
                    ("topic", tp.topic.clone()),
                    ("partition", tp.partition.to_string()),
                ];
                metrics::gauge!("sluice_consumer_group_committed_offset", &labels)
                    .set(offset as f64);
                if let Some(end) = ends.get(&tp) {
                    metrics::gauge!("sluice_consumer_group_lag", &labels)
                        .set((end - offset).max(0) as f64);
                }
            }
        }
    }
}
