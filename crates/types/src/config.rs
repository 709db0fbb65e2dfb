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

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
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
    fn unknown_key_is_named() {
        let e = parse_yaml::<Sample>("num.partition: 3\n", "test.yaml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("num.partition"), "{msg}");
        assert!(msg.contains("test.yaml"), "{msg}");
    }
}
