//! What a record asks for: a due time from its headers or its topic's
//! default, refused when malformed or out of range.

use crate::error::DelayError;

/// Absolute due time, Unix ms as ASCII decimal.
pub const DELIVER_AT_HEADER: &str = "sluice.deliver.at.ms";
/// Delay from the broker's receipt, ms as ASCII decimal.
pub const DELIVER_AFTER_HEADER: &str = "sluice.deliver.after.ms";

/// The shortest delay a record may ask for (a shorter one is refused).
pub const MIN_DELAY_MS: i64 = 1_000;
/// The default longest delay (`delivery.delay.max.ms`): 90 days.
pub const DEFAULT_MAX_DELAY_MS: i64 = 90 * 24 * 3_600_000;

/// The accepted range of delays, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayLimits {
    pub min_ms: i64,
    pub max_ms: i64,
}

impl Default for DelayLimits {
    fn default() -> Self {
        DelayLimits {
            min_ms: MIN_DELAY_MS,
            max_ms: DEFAULT_MAX_DELAY_MS,
        }
    }
}

/// The due time (Unix ms) a record asks for, or `None` to produce it now.
///
/// `headers` are the record's (name, value) pairs; `default` is the delay
/// used when the record names none (0: none) and what set it (the topic's
/// `delivery.delay.ms`, [`TOPIC_DEFAULT`], or a request field). The delay (the due time less `now_ms`) must lie within `limits`.
/// Every sum is checked: a huge delay must not wrap around into "now".
pub fn due_time<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    now_ms: i64,
    default: (i64, &'static str),
    limits: DelayLimits,
) -> Result<Option<i64>, DelayError> {
    let (default_ms, default_from) = default;
    let (mut at, mut after) = (None, None);
    for (name, value) in headers {
        let slot = match name {
            DELIVER_AT_HEADER => &mut at,
            DELIVER_AFTER_HEADER => &mut after,
            _ => continue,
        };
        let header = if name == DELIVER_AT_HEADER {
            DELIVER_AT_HEADER
        } else {
            DELIVER_AFTER_HEADER
        };
        if slot.is_some() {
            return Err(DelayError::BadHeader {
                header,
                reason: "set more than once".into(),
            });
        }
        *slot = Some(parse_ms(header, value)?);
    }
    let (delay, asked_by) = match (at, after) {
        (Some(_), Some(_)) => {
            return Err(DelayError::BothHeaders {
                at: DELIVER_AT_HEADER,
                after: DELIVER_AFTER_HEADER,
            });
        }
        (Some(at), None) => (
            at.checked_sub(now_ms).ok_or(DelayError::BadHeader {
                header: DELIVER_AT_HEADER,
                reason: format!("{at} is not a time"),
            })?,
            DELIVER_AT_HEADER,
        ),
        (None, Some(after)) => (after, DELIVER_AFTER_HEADER),
        (None, None) if default_ms > 0 => (default_ms, default_from),
        (None, None) => return Ok(None),
    };
    let out_of_range = DelayError::OutOfRange {
        asked_by,
        delay_ms: delay,
        min_ms: limits.min_ms,
        max_ms: limits.max_ms,
    };
    if delay < limits.min_ms || delay > limits.max_ms {
        return Err(out_of_range);
    }
    // In range, so no overflow for any real clock; checked all the same.
    now_ms.checked_add(delay).map(Some).ok_or(out_of_range)
}

/// The topic config that delays records naming no delay.
pub const TOPIC_DEFAULT: &str = "delivery.delay.ms";

/// A non-negative decimal number of ms: digits only (no sign, no spaces),
/// at most 18 of them so it fits an i64.
fn parse_ms(header: &'static str, value: Option<&[u8]>) -> Result<i64, DelayError> {
    let bad = |reason: String| DelayError::BadHeader { header, reason };
    let value = value.ok_or_else(|| bad("has no value".into()))?;
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        let shown = String::from_utf8_lossy(&value[..value.len().min(40)]).into_owned();
        return Err(bad(format!(
            "{shown:?} is not a number of milliseconds (decimal digits only)"
        )));
    }
    Ok(value.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn due(headers: &[(&str, Option<&str>)], default: i64) -> Result<Option<i64>, DelayError> {
        due_time(
            headers.iter().map(|(k, v)| (*k, v.map(str::as_bytes))),
            NOW,
            (default, TOPIC_DEFAULT),
            DelayLimits::default(),
        )
    }

    #[test]
    fn no_header_and_no_default_is_not_delayed() {
        assert_eq!(due(&[("other", Some("5000"))], 0).unwrap(), None);
    }

    #[test]
    fn after_at_and_the_topic_default() {
        assert_eq!(
            due(&[(DELIVER_AFTER_HEADER, Some("30000"))], 0).unwrap(),
            Some(NOW + 30_000)
        );
        let at = (NOW + 60_000).to_string();
        assert_eq!(
            due(&[(DELIVER_AT_HEADER, Some(&at))], 0).unwrap(),
            Some(NOW + 60_000)
        );
        assert_eq!(due(&[], 5_000).unwrap(), Some(NOW + 5_000));
        // A record's own header wins over the topic default.
        assert_eq!(
            due(&[(DELIVER_AFTER_HEADER, Some("2000"))], 5_000).unwrap(),
            Some(NOW + 2_000)
        );
    }

    #[test]
    fn the_limits_are_inclusive() {
        assert!(due(&[(DELIVER_AFTER_HEADER, Some("1000"))], 0).is_ok());
        assert!(matches!(
            due(&[(DELIVER_AFTER_HEADER, Some("999"))], 0),
            Err(DelayError::OutOfRange { delay_ms: 999, .. })
        ));
        let max = DEFAULT_MAX_DELAY_MS.to_string();
        assert!(due(&[(DELIVER_AFTER_HEADER, Some(&max))], 0).is_ok());
        let over = (DEFAULT_MAX_DELAY_MS + 1).to_string();
        assert!(due(&[(DELIVER_AFTER_HEADER, Some(&over))], 0).is_err());
        // A due time in the past is a negative delay.
        let past = (NOW - 1).to_string();
        assert!(due(&[(DELIVER_AT_HEADER, Some(&past))], 0).is_err());
    }

    #[test]
    fn huge_values_are_refused_not_wrapped_into_now() {
        // RocketMQ #10872: Long.MAX_VALUE as a relative delay wrapped around
        // into a past time and was delivered at once.
        for v in [
            "9223372036854775807",
            "999999999999999999",
            "18446744073709551615",
        ] {
            assert!(due(&[(DELIVER_AFTER_HEADER, Some(v))], 0).is_err(), "{v}");
            assert!(due(&[(DELIVER_AT_HEADER, Some(v))], 0).is_err(), "{v}");
        }
    }

    #[test]
    fn malformed_headers_are_refused_with_the_header_named() {
        for v in ["", "-5000", "+5000", " 5000", "5e3", "5000ms", "0x10"] {
            let e = due(&[(DELIVER_AFTER_HEADER, Some(v))], 0).unwrap_err();
            assert!(e.to_string().contains(DELIVER_AFTER_HEADER), "{e}");
        }
        assert!(due(&[(DELIVER_AFTER_HEADER, None)], 0).is_err());
        assert!(matches!(
            due(
                &[
                    (DELIVER_AFTER_HEADER, Some("5000")),
                    (DELIVER_AT_HEADER, Some("5000"))
                ],
                0
            ),
            Err(DelayError::BothHeaders { .. })
        ));
        assert!(
            due(
                &[
                    (DELIVER_AFTER_HEADER, Some("5000")),
                    (DELIVER_AFTER_HEADER, Some("6000"))
                ],
                0
            )
            .is_err()
        );
    }

    proptest::proptest! {
        #[test]
        fn any_after_value_is_either_refused_or_due_within_the_limits(v in proptest::prelude::any::<u64>()) {
            let s = v.to_string();
            match due(&[(DELIVER_AFTER_HEADER, Some(&s))], 0) {
                Ok(Some(t)) => proptest::prop_assert!(
                    t - NOW >= MIN_DELAY_MS && t - NOW <= DEFAULT_MAX_DELAY_MS
                ),
                Ok(None) => proptest::prop_assert!(false, "a header must delay or fail"),
                Err(_) => proptest::prop_assert!(v < MIN_DELAY_MS as u64 || v > DEFAULT_MAX_DELAY_MS as u64),
            }
        }
    }
}
