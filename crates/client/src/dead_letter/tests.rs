use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;

fn policy(max_attempts: u32) -> Policy {
    Policy::from_config(&ClientConfig {
        max_delivery_attempts: max_attempts,
        ..Default::default()
    })
}

fn record(topic: &str, headers: &[(&str, &str)]) -> ConsumerRecord {
    ConsumerRecord {
        topic: Arc::from(topic),
        partition: 2,
        offset: 41,
        timestamp: 1_700_000_000_000,
        key: Some(Bytes::from_static(b"order-7")),
        value: Some(Bytes::from_static(b"{\"total\":12}")),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), Some(Bytes::from(v.to_string()))))
            .collect(),
    }
}

fn value_of<'a>(r: &'a ProducerRecord, name: &str) -> Vec<&'a str> {
    r.headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| std::str::from_utf8(v.as_deref().unwrap()).unwrap())
        .collect()
}

#[test]
fn one_attempt_goes_straight_to_the_dead_letter_topic() {
    let p = policy(1);
    assert!(!p.retries());
    assert_eq!(p.retry_topic_of("orders"), None);
    assert_eq!(
        p.route("orders", 1),
        Route::DeadLetter {
            topic: "orders.dlq".into()
        }
    );
}

#[test]
fn retries_back_off_doubling_up_to_the_maximum_then_dead_letter() {
    let p = Policy::from_config(&ClientConfig {
        max_delivery_attempts: 5,
        delivery_retry_backoff: Duration::from_secs(2),
        delivery_retry_backoff_max: Duration::from_secs(5),
        ..Default::default()
    });
    let after = |failed| match p.route("orders", failed) {
        Route::Retry { topic, after } => {
            assert_eq!(topic, "orders.retry");
            after.as_secs()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!([after(1), after(2), after(3), after(4)], [2, 4, 5, 5]);
    assert!(matches!(p.route("orders", 5), Route::DeadLetter { .. }));
    // Far beyond any count: no overflow.
    assert_eq!(p.delay_after(u32::MAX), Duration::from_secs(5));
}

#[test]
fn a_zero_backoff_retries_at_once_and_a_tiny_maximum_still_waits_a_second() {
    let mut c = ClientConfig {
        max_delivery_attempts: 3,
        delivery_retry_backoff: Duration::ZERO,
        ..Default::default()
    };
    assert_eq!(Policy::from_config(&c).delay_after(1), Duration::ZERO);
    c.delivery_retry_backoff = Duration::from_secs(1);
    c.delivery_retry_backoff_max = Duration::from_millis(10);
    assert_eq!(
        Policy::from_config(&c).delay_after(2),
        Duration::from_secs(1)
    );
}

#[test]
fn only_plain_topics_get_a_retry_topic() {
    let p = policy(3);
    assert_eq!(p.retry_topic_of("orders").as_deref(), Some("orders.retry"));
    assert_eq!(p.retry_topic_of("orders.retry"), None);
    assert_eq!(p.retry_topic_of("orders.dlq"), None);
}

#[test]
fn a_first_failure_records_where_the_record_came_from() {
    let r = record("orders", &[("trace", "t-9")]);
    let p = policy(3);
    let route = p.route("orders", 1);
    let out = failed_record(&r, &route, 1, "card declined", "billing", 5, Some(2));
    assert_eq!(out.topic, "orders.retry");
    assert_eq!(out.partition, Some(2));
    assert_eq!(out.key, r.key);
    assert_eq!(out.value, r.value);
    assert_eq!(out.timestamp, None);
    assert_eq!(value_of(&out, "trace"), ["t-9"]);
    assert_eq!(value_of(&out, ORIGINAL_TOPIC), ["orders"]);
    assert_eq!(value_of(&out, ORIGINAL_PARTITION), ["2"]);
    assert_eq!(value_of(&out, ORIGINAL_OFFSET), ["41"]);
    assert_eq!(value_of(&out, ORIGINAL_TIMESTAMP), ["1700000000000"]);
    assert_eq!(value_of(&out, ATTEMPTS), ["1"]);
    assert_eq!(value_of(&out, ERROR), ["card declined"]);
    assert_eq!(value_of(&out, GROUP), ["billing"]);
    assert_eq!(value_of(&out, FAILED_MS), ["5"]);
    assert_eq!(value_of(&out, DELIVER_AFTER), ["1000"]);
}

#[test]
fn a_retried_record_keeps_its_origin_and_replaces_sluice_headers() {
    // As released from orders.retry: the first failure's headers and the
    // delay headers the broker added.
    let r = record(
        "orders.retry",
        &[
            ("trace", "t-9"),
            (ORIGINAL_TOPIC, "orders"),
            (ORIGINAL_PARTITION, "0"),
            (ORIGINAL_OFFSET, "7"),
            (ORIGINAL_TIMESTAMP, "99"),
            (ATTEMPTS, "2"),
            (ERROR, "first"),
            ("sluice.delay.id", "12"),
            ("sluice.delay.due.ms", "100"),
        ],
    );
    assert_eq!(failed_attempts(&r), 2);
    let origin = Origin::of(&r);
    assert_eq!(
        (origin.topic.as_str(), origin.partition, origin.offset),
        ("orders", 0, 7)
    );
    let p = policy(3);
    let route = p.route(&origin.topic, 3);
    let out = failed_record(&r, &route, 3, "again", "billing", 5, None);
    assert_eq!(out.topic, "orders.dlq");
    assert_eq!(value_of(&out, ORIGINAL_OFFSET), ["7"]);
    assert_eq!(value_of(&out, ATTEMPTS), ["3"]);
    assert_eq!(value_of(&out, ERROR), ["again"]);
    assert!(value_of(&out, "sluice.delay.id").is_empty());
    // A dead letter is not delayed.
    assert!(value_of(&out, DELIVER_AFTER).is_empty());
    assert_eq!(value_of(&out, "trace"), ["t-9"]);
}

#[test]
fn long_errors_are_cut_at_a_character_boundary() {
    let long = "é".repeat(MAX_ERROR_BYTES);
    let out = failed_record(
        &record("orders", &[]),
        &policy(1).route("orders", 1),
        1,
        &long,
        "g",
        0,
        None,
    );
    let e = value_of(&out, ERROR)[0];
    assert!(e.len() <= MAX_ERROR_BYTES && e.len() >= MAX_ERROR_BYTES - 1);
    assert!(long.starts_with(e));
}

#[test]
fn a_redriven_record_starts_over_with_an_id_naming_its_dead_letter() {
    let dead = ConsumerRecord {
        offset: 3,
        ..record(
            "orders.dlq",
            &[
                ("trace", "t-9"),
                (ORIGINAL_TOPIC, "orders"),
                (ATTEMPTS, "3"),
                (REDRIVE_ID, "old"),
            ],
        )
    };
    let out = redriven_record(&dead, None);
    assert_eq!(out.topic, "orders");
    assert_eq!(out.timestamp, None);
    assert_eq!(value_of(&out, REDRIVE_ID), ["orders.dlq/2/3"]);
    assert_eq!(value_of(&out, "trace"), ["t-9"]);
    assert!(value_of(&out, ATTEMPTS).is_empty());
    assert_eq!(redriven_record(&dead, Some("orders-v2")).topic, "orders-v2");
}
