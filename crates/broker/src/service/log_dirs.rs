//! DescribeLogDirs: this broker's `log.dirs` and the replicas in each, with
//! their size on disk.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sluice_proto::broker as pb;

use super::BrokerService;

pub(crate) fn describe_log_dirs(
    svc: &BrokerService,
    req: pb::DescribeLogDirsRequest,
) -> pb::DescribeLogDirsResponse {
    let replicas = &svc.broker.replicas;
    let mut dirs: BTreeMap<PathBuf, Vec<pb::LogDirReplica>> = replicas
        .log_dirs()
        .into_iter()
        .map(|d| (d, Vec::new()))
        .collect();
    let wanted = |topic: &str, partition: i32| {
        req.partitions.is_empty()
            || req
                .partitions
                .iter()
                .any(|tp| tp.topic == topic && tp.partition == partition)
    };
    for p in replicas.all() {
        let (topic, partition) = (p.topic.as_str(), p.partition);
        if !wanted(topic, partition) {
            continue;
        }
        let (dir, size) = p.disk_usage();
        let o = p.offsets();
        dirs.entry(dir).or_default().push(pb::LogDirReplica {
            topic: topic.to_string(),
            partition,
            size_bytes: size as i64,
            offset_lag: (o.hw - o.leo).max(0),
        });
    }
    pb::DescribeLogDirsResponse {
        log_dirs: dirs
            .into_iter()
            .map(|(path, mut replicas)| {
                replicas.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                pb::LogDir {
                    path: path.display().to_string(),
                    error: None,
                    replicas,
                    // Volume sizes need statvfs, which safe std does not offer.
                    total_bytes: -1,
                    usable_bytes: -1,
                }
            })
            .collect(),
    }
}
