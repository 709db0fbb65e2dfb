//! YAML configuration loading.
//!
//! We use serde-saphyr rather than serde_yaml: serde_yaml is archived and
//! unmaintained upstream, while serde-saphyr is maintained, pure Rust, and parses
//! straight into serde types (no intermediate value tree) with error locations.

use std::path::Path;

use serde::de::DeserializeOwned;

/// A configuration problem, naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub fn invalid(key: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// Parses a YAML document. Unknown keys are refused by the target types
/// (`deny_unknown_fields`), so a misspelt key fails loudly instead of being ignored.
pub fn parse_yaml<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
        path: origin.to_string(),
        message: e.to_string(),
    })
}

/// Loads a service's configuration the way every Sluice binary does, later
/// sources overriding earlier ones key by key:
/// 1. the defaults of `T`,
/// 2. the YAML file, if given,
/// 3. environment variables `SLUICE_<KEY>`, the key upper-cased with `.` as `_`
///    (`SLUICE_BROKER_ID=2` sets `broker.id`; Kafka's keys contain no `_`, so
///    the mapping is unambiguous); variables naming no key of `T` are ignored
///    with a warning that suggests the closest key,
/// 4. `--override key=value` flags (Kafka's `kafka-server-start.sh` flag).
///
/// Values from the environment and flags are parsed as YAML scalars, so
/// numbers and booleans get their types. An unknown key in the file or a flag,
/// or a value of the wrong type, fails with the key named.
pub fn load_layered<T>(path: Option<&Path>, overrides: &[String]) -> Result<T, ConfigError>
where
    T: DeserializeOwned + serde::Serialize + Default,
{
    let defaults = serde_json::to_value(T::default()).expect("config serializes");
    let known: Vec<String> = defaults
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let mut merged = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?;
            let v: serde_json::Value = parse_yaml(&text, &p.display().to_string())?;
            match v {
                serde_json::Value::Object(m) => m,
                serde_json::Value::Null => serde_json::Map::new(),
                _ => {
                    return Err(ConfigError::Parse {
                        path: p.display().to_string(),
                        message: "the file must be a mapping of keys to values".into(),
                    });
                }
            }
        }
        None => serde_json::Map::new(),
    };
    let scalar = |key: &str, value: &str| -> Result<serde_json::Value, ConfigError> {
        if value.is_empty() {
            return Ok(serde_json::Value::String(String::new()));
        }
        parse_yaml::<serde_json::Value>(value, key)
    };
    let vars: Vec<(String, String)> = std::env::vars().collect();
    for (var, value) in &vars {
        if let Some(key) = env_key(var).filter(|k| known.contains(k)) {
            merged.insert(key.clone(), scalar(&key, value)?);
        }
    }
    // As Kafka does for a property it does not know: say so, and go on
    // (one environment often serves several services with different keys).
    for (var, hint) in unknown_env_vars(&known, vars.iter().map(|(v, _)| v.as_str())) {
        match hint {
            Some(key) => tracing::warn!(
                variable = %var,
                "environment variable names no config key of this service and is ignored; did you mean {}?",
                env_name(&key)
            ),
            None => tracing::warn!(
                variable = %var,
                "environment variable names no config key of this service and is ignored"
            ),
        }
    }
    for o in overrides {
        let (key, value) = o
            .split_once('=')
            .ok_or_else(|| ConfigError::invalid(o, "an override is key=value"))?;
        let key = key.trim();
        if !known.iter().any(|k| k == key) {
            return Err(ConfigError::invalid(key, "unknown key"));
        }
        merged.insert(key.to_string(), scalar(key, value.trim())?);
    }
    let origin = path.map_or("defaults".to_string(), |p| p.display().to_string());
    serde_json::from_value(serde_json::Value::Object(merged)).map_err(|e| ConfigError::Parse {
        path: origin,
        message: e.to_string(),
    })
}

/// Variables our own scripts and images set, which name no config key.
const TOOL_VARS: &[&str] = &[
    "SLUICE_BIN",
    "SLUICE_PY_VENV",
    "SLUICE_NETNS_DIR",
    "SLUICE_DATA_DIR",
    "SLUICE_LISTEN",
];

/// The config key a `SLUICE_<KEY>` variable sets.
fn env_key(var: &str) -> Option<String> {
    let rest = var.strip_prefix("SLUICE_")?;
    Some(rest.to_ascii_lowercase().replace('_', "."))
}

/// The variable that sets `key`.
fn env_name(key: &str) -> String {
    format!("SLUICE_{}", key.to_ascii_uppercase().replace('.', "_"))
}

/// `SLUICE_*` variables naming no key in `known`, each with the closest key
/// when one is a likely typo.
fn unknown_env_vars<'a>(
    known: &[String],
    vars: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, Option<String>)> {
    vars.into_iter()
        .filter(|v| !TOOL_VARS.contains(v))
        .filter_map(|var| {
            let key = env_key(var)?;
            if known.contains(&key) {
                return None;
            }
            let hint = known
                .iter()
                .map(|k| (strsim::levenshtein(k, &key), k))
                .filter(|(d, _)| *d <= 2)
                .min()
                .map(|(_, k)| k.clone());
            Some((var.to_string(), hint))
        })
        .collect()
}

/// Reads and parses a YAML config file.
pub fn load_yaml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_yaml(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, serde::Serialize, Debug, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        #[serde(rename = "num.partitions")]
        num_partitions: i32,
    }

    #[test]
    fn parses_kafka_style_keys() {
        let s: Sample = parse_yaml("num.partitions: 3\n", "test").unwrap();
        assert_eq!(s.num_partitions, 3);
    }

    #[test]
    fn environment_and_overrides_layer_over_the_file() {
        let dir = std::env::temp_dir().join(format!("sluice-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yaml");
        std::fs::write(&file, "num.partitions: 3\n").unwrap();
        let s: Sample = load_layered(Some(&file), &[]).unwrap();
        assert_eq!(s.num_partitions, 3);
        let s: Sample = load_layered(Some(&file), &["num.partitions=7".into()]).unwrap();
        assert_eq!(s.num_partitions, 7);
        let e = load_layered::<Sample>(Some(&file), &["num.partition=7".into()]).unwrap_err();
        assert!(e.to_string().contains("num.partition"), "{e}");
        let e = load_layered::<Sample>(None, &["num.partitions=many".into()]).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_environment_variables_are_found_with_a_hint() {
        let known = vec!["broker.id".to_string(), "log.dirs".to_string()];
        let found = unknown_env_vars(
            &known,
            [
                "SLUICE_BROKER_ID",
                "SLUICE_BROKR_ID",
                "SLUICE_NOTHING_LIKE_IT",
                "SLUICE_BIN",
                "PATH",
            ],
        );
        assert_eq!(
            found,
            vec![
                ("SLUICE_BROKR_ID".to_string(), Some("broker.id".to_string())),
                ("SLUICE_NOTHING_LIKE_IT".to_string(), None),
            ]
        );
        assert_eq!(env_name("broker.id"), "SLUICE_BROKER_ID");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse_yaml::<Sample>("num.partition: 3\n", "test.yaml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("num.partition"), "{msg}");
        assert!(msg.contains("test.yaml"), "{msg}");
    }
}
