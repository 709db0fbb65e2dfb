//! Naming rules shared by the controller, the brokers and the clients.

use crate::{ApiError, ErrorCode};

/// Kafka's limit: 249, so `<topic>-<partition>` directory names stay under 255.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// The internal topic that stores consumer-group offsets and metadata.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Whether a topic is internal (created and managed by Sluice itself).
pub fn is_internal_topic(name: &str) -> bool {
    name == CONSUMER_OFFSETS_TOPIC
}

/// Validates a topic name with Kafka's rules: 1..=249 characters from
/// `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let bad = |why: String| {
        Err(ApiError::new(
            ErrorCode::InvalidTopicException,
            format!("invalid topic name \"{name}\": {why}"),
        ))
    };
    if name.is_empty() {
        return bad("the name is empty".into());
    }
    if name == "." || name == ".." {
        return bad("\".\" and \"..\" are not allowed".into());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return bad(format!(
            "{} characters, the limit is {MAX_TOPIC_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(format!(
            "character {c:?} is not allowed (use ASCII letters, digits, '.', '_' and '-')"
        ));
    }
    Ok(())
}

/// Kafka warns that '.' and '_' collide in metric names; two topics whose names
/// differ only there are refused.
pub fn collision_name(name: &str) -> String {
    name.replace('.', "_")
}

/// Validates a consumer group id: not empty.
pub fn validate_group_id(group: &str) -> Result<(), ApiError> {
    if group.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidGroupId,
            "the group id is empty",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_legal_names() {
        for n in ["orders", "a.b_c-D9", "__consumer_offsets", &"x".repeat(249)] {
            validate_topic_name(n).unwrap();
        }
    }

    #[test]
    fn refuses_illegal_names() {
        for n in [
            "",
            ".",
            "..",
            "has space",
            "slash/",
            "ünï",
            &"x".repeat(250),
        ] {
            let e = validate_topic_name(n).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidTopicException, "{n}");
        }
    }
}
