//! Configuration loading: YAML files, Kafka `.properties` files, environment
//! variables and `--override` flags, layered into one map of Kafka-style keys.
//!
//! We use serde-saphyr rather than serde_yaml: serde_yaml is archived and
//! unmaintained upstream, while serde-saphyr is maintained, pure Rust, and parses
//! straight into serde types (no intermediate value tree) with error locations.
//!
//! A `--config` file is read as Java properties when its name ends in
//! `.properties`, as YAML when it ends in `.yaml` or `.yml`, and otherwise by its
//! content: properties when its first setting line is `key=value` (an `=`
//! before any `:`), else YAML. Both give the same keys; Kafka's own names for
//! them (`log.dir`, `log.retention.hours`, ...) are translated, and Kafka keys
//! Sluice has no use for are named (see [`KAFKA_KEYS`]).
//!
//! # Layout
//!
//! - this module: [`ConfigError`], [`parse_yaml`], [`load_yaml`] and
//!   [`load_layered`] / [`load_layered_with_warnings`], which layer the file,
//!   the environment (`SLUICE_<KEY>` variables) and `--override` flags;
//! - `properties`: [`Format`] and its detection, and [`parse_properties`],
//!   the Java `.properties` reader;
//! - `listener`: `listeners` / `advertised.listeners`, parsed one way for
//!   every service ([`parse_listener`], [`advertised_endpoint`]);
//! - `kafka_keys`: [`KAFKA_KEYS`], what Kafka's keys become in Sluice, and
//!   the translation of a source's settings by it;
//! - `tests`: the unit tests.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

mod kafka_keys;
mod listener;
mod properties;
#[cfg(test)]
mod tests;

use kafka_keys::kafka_compat;
pub use kafka_keys::{KAFKA_KEYS, KafkaKey, kafka_key};
pub use listener::{advertised_endpoint, bind_address, parse_listener};
use properties::looks_like_properties;
pub use properties::{Format, Property, parse_properties};

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
/// 2. the config file, if given: YAML or Java properties (see [`Format::of`]),
/// 3. environment variables `SLUICE_<KEY>`, the key upper-cased with `.` as `_`
///    (`SLUICE_BROKER_ID=2` sets `broker.id`; Kafka's keys contain no `_`, so
///    the mapping is unambiguous); variables naming no key of `T` are ignored
///    with a warning that suggests the closest key,
/// 4. `--override key=value` flags (Kafka's `kafka-server-start.sh` flag).
///
/// Values from a properties file, the environment and flags are text: each
/// becomes what its key's type takes (a number, a boolean, a string; an empty
/// value leaves an optional key unset). An unknown key in the file or a flag,
/// or a value of the wrong type, fails with the key named. Kafka's names for
/// Sluice's keys and Kafka keys Sluice has no use for are handled as
/// [`KAFKA_KEYS`] says; the warnings are logged.
pub fn load_layered<T>(path: Option<&Path>, overrides: &[String]) -> Result<T, ConfigError>
where
    T: DeserializeOwned + serde::Serialize + Default,
{
    let (config, warnings) = load_layered_with_warnings(path, overrides)?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
}

/// [`load_layered`], returning the warnings about the file's and the flags'
/// keys (a Kafka key this service ignores, a key set twice) instead of
/// logging them.
pub fn load_layered_with_warnings<T>(
    path: Option<&Path>,
    overrides: &[String],
) -> Result<(T, Vec<String>), ConfigError>
where
    T: DeserializeOwned + serde::Serialize + Default,
{
    let defaults = match serde_json::to_value(T::default()).expect("config serializes") {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let known: Vec<String> = defaults.keys().cloned().collect();
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let mut warnings = Vec::new();
    // Where each key's value came from, for errors.
    let mut origin_of: Vec<(String, String)> = Vec::new();
    let mut merged = Map::new();
    let mut set = |merged: &mut Map<String, Value>, key: String, value: Value, at: String| {
        origin_of.retain(|(k, _)| *k != key);
        origin_of.push((key.clone(), at));
        merged.insert(key, value);
    };

    // Is etcd.endpoints given outside the file? Then a `zookeeper.connect` in
    // the file is only a leftover.
    let etcd_elsewhere = vars.iter().any(|(v, _)| v == "SLUICE_ETCD_ENDPOINTS")
        || overrides.iter().any(|o| {
            o.split_once('=')
                .is_some_and(|(k, _)| k.trim() == "etcd.endpoints")
        });

    if let Some(p) = path {
        let shown = p.display().to_string();
        let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let (settings, lenient) = match Format::of(p, &text) {
            Format::Yaml => (yaml_settings(&text, &shown)?, false),
            Format::Properties => {
                let props = parse_properties(&text, &shown)?;
                (properties_settings(props, &shown, &mut warnings), true)
            }
        };
        let settings = kafka_compat(settings, &known, lenient, etcd_elsewhere, &mut warnings)
            .map_err(|errors| ConfigError::Parse {
                // The file is named once, in front.
                message: errors
                    .iter()
                    .map(|e| {
                        e.strip_prefix(&format!("{shown}: "))
                            .unwrap_or(e)
                            .replace(&format!("{shown} line "), "line ")
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                path: shown.clone(),
            })?;
        for s in settings {
            let value = s.value.typed::<T>(&defaults, &s.key);
            set(&mut merged, s.key, value, s.at);
        }
    }

    for (var, value) in &vars {
        if let Some(key) = env_key(var).filter(|k| known.contains(k)) {
            let v = Raw::Text(value.clone()).typed::<T>(&defaults, &key);
            set(&mut merged, key, v, var.clone());
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
        let at = format!("--override {}", o.trim());
        let one = vec![Setting {
            key: key.to_string(),
            value: Raw::Text(value.trim().to_string()),
            at: at.clone(),
            written: None,
        }];
        // A flag is explicit: a key this service would ignore is an error.
        let settings =
            kafka_compat(one, &known, false, etcd_elsewhere, &mut warnings).map_err(|errors| {
                ConfigError::invalid(key, errors.join("; ").replacen(&format!("{at}: "), "", 1))
            })?;
        for s in settings {
            let value = s.value.typed::<T>(&defaults, &s.key);
            set(&mut merged, s.key, value, s.at);
        }
    }

    match serde_json::from_value(Value::Object(merged.clone())) {
        Ok(config) => Ok((config, warnings)),
        // Name the key whose value does not fit, and where it came from.
        Err(e) => Err(origin_of
            .iter()
            .find_map(|(key, at)| {
                let value = merged.get(key)?;
                match fits::<T>(&defaults, key, value) {
                    Err(e) => Some(ConfigError::invalid(key, format!("{e} (from {at})"))),
                    Ok(()) => None,
                }
            })
            .unwrap_or_else(|| ConfigError::Parse {
                path: path.map_or("defaults".to_string(), |p| p.display().to_string()),
                message: e.to_string(),
            })),
    }
}

/// A value as read, before it gets its key's type.
#[derive(Debug, Clone, PartialEq)]
enum Raw {
    /// From YAML: already typed.
    Value(Value),
    /// From a properties file, the environment or a flag.
    Text(String),
}

impl Raw {
    fn shown(&self) -> String {
        match self {
            Raw::Text(t) => t.clone(),
            Raw::Value(Value::String(s)) => s.clone(),
            Raw::Value(v) => v.to_string(),
        }
    }

    /// Text becomes what `key` takes in `T`: the YAML reading of the text
    /// (a number, a boolean) when that fits, else the text itself; an empty
    /// text is unset (null) where that fits.
    fn typed<T: DeserializeOwned>(self, defaults: &Map<String, Value>, key: &str) -> Value {
        let text = match self {
            Raw::Value(v) => return v,
            Raw::Text(t) => t,
        };
        let mut candidates = Vec::new();
        if text.is_empty() {
            candidates.push(Value::Null);
        } else if let Ok(v) = parse_yaml::<Value>(&text, key) {
            candidates.push(v);
        }
        candidates
            .into_iter()
            .find(|c| fits::<T>(defaults, key, c).is_ok())
            .unwrap_or(Value::String(text))
    }
}

/// Whether `T` takes `value` for `key` (all other keys at their defaults).
fn fits<T: DeserializeOwned>(
    defaults: &Map<String, Value>,
    key: &str,
    value: &Value,
) -> Result<(), serde_json::Error> {
    let mut one = defaults.clone();
    one.insert(key.to_string(), value.clone());
    serde_json::from_value::<T>(Value::Object(one)).map(|_| ())
}

/// One key of one source, with where it was read (for messages).
#[derive(Debug, Clone)]
struct Setting {
    key: String,
    value: Raw,
    at: String,
    /// The key as written, when a Kafka name was translated.
    written: Option<String>,
}

fn yaml_settings(text: &str, shown: &str) -> Result<Vec<Setting>, ConfigError> {
    match parse_yaml::<Value>(text, shown)? {
        Value::Object(m) => Ok(m
            .into_iter()
            .map(|(key, value)| Setting {
                key,
                value: Raw::Value(value),
                at: shown.to_string(),
                written: None,
            })
            .collect()),
        Value::Null => Ok(Vec::new()),
        _ => {
            let hint = if looks_like_properties(text) {
                " (it reads as a Kafka .properties file: name it *.properties)"
            } else {
                ""
            };
            Err(ConfigError::Parse {
                path: shown.to_string(),
                message: format!("the file must be a mapping of keys to values{hint}"),
            })
        }
    }
}

/// A properties file's entries as settings; a key set twice keeps its last
/// value, as in Kafka, with a warning.
fn properties_settings(
    props: Vec<Property>,
    shown: &str,
    warnings: &mut Vec<String>,
) -> Vec<Setting> {
    let mut out: Vec<(Setting, usize)> = Vec::new();
    for p in props {
        if let Some(i) = out.iter().position(|(s, _)| s.key == p.key) {
            let (_, line) = out.remove(i);
            warnings.push(format!(
                "{shown}: `{}` is set on line {line} and again on line {}; the last value is used, as in Kafka",
                p.key, p.line
            ));
        }
        out.push((
            Setting {
                key: p.key,
                value: Raw::Text(p.value),
                at: format!("{shown} line {}", p.line),
                written: None,
            },
            p.line,
        ));
    }
    out.into_iter().map(|(s, _)| s).collect()
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
