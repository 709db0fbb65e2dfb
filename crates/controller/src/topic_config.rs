//! Per-topic configuration overrides: the keys Kafka accepts on a topic, checked
//! when a topic is created so a typo fails at once with INVALID_CONFIG.

use std::collections::BTreeMap;

use crate::error::{ControllerError, Result};

/// The kind of value a topic config key takes.
enum Kind {
    Long { min: i64 },
    Double { min: f64, max: f64 },
    OneOf(&'static [&'static str]),
}

const KEYS: &[(&str, Kind)] = &[
    (
        "cleanup.policy",
        Kind::OneOf(&["delete", "compact", "compact,delete", "delete,compact"]),
    ),
    ("retention.ms", Kind::Long { min: -1 }),
    ("retention.bytes", Kind::Long { min: -1 }),
    ("segment.bytes", Kind::Long { min: 14 }),
    ("segment.ms", Kind::Long { min: 1 }),
    ("segment.index.bytes", Kind::Long { min: 4 }),
    ("index.interval.bytes", Kind::Long { min: 0 }),
    ("max.message.bytes", Kind::Long { min: 0 }),
    ("min.insync.replicas", Kind::Long { min: 1 }),
    ("flush.messages", Kind::Long { min: 1 }),
    ("flush.ms", Kind::Long { min: 0 }),
    ("delete.retention.ms", Kind::Long { min: 0 }),
    ("min.compaction.lag.ms", Kind::Long { min: 0 }),
    (
        "min.cleanable.dirty.ratio",
        Kind::Double { min: 0.0, max: 1.0 },
    ),
    (
        "message.timestamp.type",
        Kind::OneOf(&["CreateTime", "LogAppendTime"]),
    ),
    (
        "unclean.leader.election.enable",
        Kind::OneOf(&["true", "false"]),
    ),
    (
        "compression.type",
        Kind::OneOf(&["producer", "uncompressed"]),
    ),
    // Delayed delivery (docs/delayed-delivery.md): the delay of records that
    // name none (0: none), and the longest delay a record may ask for.
    ("delivery.delay.ms", Kind::Long { min: 0 }),
    ("delivery.delay.max.ms", Kind::Long { min: 1000 }),
];

/// Validates topic config overrides; the error names the bad key.
pub fn validate(configs: &BTreeMap<String, String>) -> Result<()> {
    for (key, value) in configs {
        let Some((_, kind)) = KEYS.iter().find(|(k, _)| k == key) else {
            return Err(ControllerError::UnknownConfig { key: key.clone() });
        };
        let ok = match kind {
            Kind::Long { min } => value.trim().parse::<i64>().is_ok_and(|v| v >= *min),
            Kind::Double { min, max } => value
                .trim()
                .parse::<f64>()
                .is_ok_and(|v| (*min..=*max).contains(&v)),
            Kind::OneOf(allowed) => allowed.contains(&value.as_str()),
        };
        if !ok {
            let expected = match kind {
                Kind::Long { min } => format!("an integer >= {min}"),
                Kind::Double { min, max } => format!("a number in [{min}, {max}]"),
                Kind::OneOf(allowed) => format!("one of {}", allowed.join(", ")),
            };
            return Err(ControllerError::InvalidConfigValue {
                key: key.clone(),
                value: value.clone(),
                expected: expected.to_string(),
            });
        }
    }
    // A default delay below the shortest one would refuse every record.
    if let Some(v) = configs.get("delivery.delay.ms")
        && v.trim().parse::<i64>().is_ok_and(|d| d > 0 && d < 1000)
    {
        return Err(ControllerError::InvalidConfigValue {
            key: "delivery.delay.ms".into(),
            value: v.clone(),
            expected: "0 (none) or at least 1000".into(),
        });
    }
    Ok(())
}

/// One incremental change (Kafka's IncrementalAlterConfigs operations).
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
    Append(String, String),
    Subtract(String, String),
}

/// Keys whose value is a comma-separated list (APPEND/SUBTRACT apply), with
/// the default a topic without the override has: as in Kafka, a list
/// operation on a key that is not set starts from that default.
const LIST_KEYS: &[(&str, &str)] = &[("cleanup.policy", "delete")];

/// Applies `ops` in order to a topic's overrides and validates the result.
pub fn apply_ops(
    current: &BTreeMap<String, String>,
    ops: &[ConfigOp],
) -> Result<BTreeMap<String, String>> {
    let mut out = current.clone();
    let list = |out: &BTreeMap<String, String>, key: &str| -> Result<Vec<String>> {
        let Some((_, default)) = LIST_KEYS.iter().find(|(k, _)| *k == key) else {
            return Err(ControllerError::NotAList {
                key: key.to_string(),
                lists: format!("{LIST_KEYS:?}"),
            });
        };
        Ok(out
            .get(key)
            .map_or(*default, |v| v.as_str())
            .split(',')
            .map(|i| i.trim().to_string())
            .filter(|i| !i.is_empty())
            .collect())
    };
    for op in ops {
        match op {
            ConfigOp::Set(k, v) => {
                out.insert(k.clone(), v.clone());
            }
            ConfigOp::Delete(k) => {
                out.remove(k);
            }
            // The value is itself a list: "compact,delete" appends both.
            ConfigOp::Append(k, v) => {
                let mut items = list(&out, k)?;
                for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    if !items.iter().any(|i| i == item) {
                        items.push(item.to_string());
                    }
                }
                out.insert(k.clone(), items.join(","));
            }
            ConfigOp::Subtract(k, v) => {
                let gone: Vec<&str> = v.split(',').map(str::trim).collect();
                let items: Vec<String> = list(&out, k)?
                    .into_iter()
                    .filter(|i| !gone.contains(&i.as_str()))
                    .collect();
                out.insert(k.clone(), items.join(","));
            }
        }
    }
    validate(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_set_delete_append_and_subtract() {
        let cur = m("retention.ms", "1000");
        let out = apply_ops(
            &cur,
            &[
                ConfigOp::Set("segment.ms".into(), "60000".into()),
                ConfigOp::Delete("retention.ms".into()),
                // Starts from the default, "delete", as in Kafka.
                ConfigOp::Append("cleanup.policy".into(), "compact".into()),
                ConfigOp::Append("cleanup.policy".into(), "compact".into()),
            ],
        )
        .unwrap();
        assert_eq!(out.get("retention.ms"), None);
        assert_eq!(out["segment.ms"], "60000");
        assert_eq!(out["cleanup.policy"], "delete,compact");
        let out = apply_ops(
            &out,
            &[ConfigOp::Subtract("cleanup.policy".into(), "delete".into())],
        )
        .unwrap();
        assert_eq!(out["cleanup.policy"], "compact");
        let both = apply_ops(
            &BTreeMap::new(),
            &[ConfigOp::Append(
                "cleanup.policy".into(),
                "compact,delete".into(),
            )],
        )
        .unwrap();
        assert_eq!(both["cleanup.policy"], "delete,compact");
        let e =
            apply_ops(&cur, &[ConfigOp::Append("retention.ms".into(), "5".into())]).unwrap_err();
        assert_eq!(e.code(), sluice_types::ErrorCode::InvalidConfig);
        let e =
            apply_ops(&cur, &[ConfigOp::Set("retention.ms".into(), "soon".into())]).unwrap_err();
        assert_eq!(e.code(), sluice_types::ErrorCode::InvalidConfig);
        let e = apply_ops(&cur, &[ConfigOp::Set("no.such.key".into(), "1".into())]).unwrap_err();
        assert_eq!(e.code(), sluice_types::ErrorCode::InvalidConfig);
    }

    fn m(k: &str, v: &str) -> BTreeMap<String, String> {
        [(k.to_string(), v.to_string())].into()
    }

    #[test]
    fn known_keys_pass_and_typos_fail() {
        validate(&m("retention.ms", "1000")).unwrap();
        validate(&m("cleanup.policy", "compact")).unwrap();
        let e = validate(&m("retention.msec", "1")).unwrap_err();
        assert_eq!(e.code(), sluice_types::ErrorCode::InvalidConfig);
        assert!(e.to_string().contains("retention.msec"));
        assert!(validate(&m("min.insync.replicas", "0")).is_err());
        assert!(validate(&m("cleanup.policy", "sometimes")).is_err());
        validate(&m("cleanup.policy", "compact,delete")).unwrap();
        validate(&m("delete.retention.ms", "86400000")).unwrap();
        assert!(validate(&m("delete.retention.ms", "-1")).is_err());
        validate(&m("min.compaction.lag.ms", "0")).unwrap();
        assert!(validate(&m("min.compaction.lag.ms", "soon")).is_err());
        validate(&m("delivery.delay.ms", "0")).unwrap();
        validate(&m("delivery.delay.ms", "30000")).unwrap();
        assert!(validate(&m("delivery.delay.ms", "500")).is_err());
        assert!(validate(&m("delivery.delay.max.ms", "10")).is_err());
        validate(&m("min.cleanable.dirty.ratio", "0.5")).unwrap();
        validate(&m("min.cleanable.dirty.ratio", "1")).unwrap();
        for bad in ["1.5", "-0.1", "half", "NaN"] {
            assert!(
                validate(&m("min.cleanable.dirty.ratio", bad)).is_err(),
                "{bad}"
            );
        }
    }
}
