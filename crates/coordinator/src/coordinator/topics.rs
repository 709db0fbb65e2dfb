//! Follows `topics/` in the metadata store: the partition counts that
//! consumer-protocol groups are assigned from. Read whole at start and after
//! a broken watch, then kept by watch events; every change gets a new
//! version, which tells groups to check their subscribed topics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sluice_metastore::{EventKind, MetadataStore};
use sluice_types::meta::{self, TopicRecord};

use super::Coordinator;
use crate::consumer_group::TopicCounts;

impl Coordinator {
    /// The topics as last read (version 0: not read yet).
    pub fn topics(&self) -> Arc<TopicCounts> {
        self.topics.read().clone()
    }

    pub(super) async fn follow_topics(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                r = self.follow_topics_once() => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "following topics broke; reloading");
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    async fn follow_topics_once(&self) -> Result<(), sluice_metastore::MetaError> {
        let store: &dyn MetadataStore = self.store.as_ref();
        let (kvs, rev) = store.range(meta::TOPICS_PREFIX).await?;
        let mut records: BTreeMap<String, TopicRecord> = BTreeMap::new();
        for kv in kvs {
            if let Some(t) = decode(&kv.value) {
                records.insert(t.name.clone(), t);
            }
        }
        self.publish_topics(&records);
        let mut watch = store.watch_prefix(meta::TOPICS_PREFIX, rev + 1).await?;
        while let Some(batch) = watch.next().await {
            for ev in batch? {
                let Some(name) = ev.kv.key.strip_prefix(meta::TOPICS_PREFIX) else {
                    continue;
                };
                match ev.kind {
                    EventKind::Put => {
                        if let Some(t) = decode(&ev.kv.value) {
                            records.insert(t.name.clone(), t);
                        }
                    }
                    EventKind::Delete => {
                        records.remove(name);
                    }
                }
            }
            self.publish_topics(&records);
        }
        Ok(())
    }

    fn publish_topics(&self, records: &BTreeMap<String, TopicRecord>) {
        let next = TopicCounts {
            version: 0,
            counts: records
                .values()
                .map(|t| (t.name.clone(), t.num_partitions()))
                .collect(),
            ids: records
                .values()
                .map(|t| (t.name.clone(), t.topic_id.clone()))
                .collect(),
            names: records
                .values()
                .map(|t| (t.topic_id.clone(), t.name.clone()))
                .collect(),
            internal: records
                .values()
                .filter(|t| t.internal)
                .map(|t| t.name.clone())
                .collect(),
        };
        let mut t = self.topics.write();
        if t.version > 0 && t.counts == next.counts && t.ids == next.ids {
            return;
        }
        *t = Arc::new(TopicCounts {
            version: t.version + 1,
            ..next
        });
    }
}

fn decode(value: &[u8]) -> Option<TopicRecord> {
    match meta::decode::<TopicRecord>(value) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring an undecodable topic record");
            None
        }
    }
}
