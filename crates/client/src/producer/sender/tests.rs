//! The sender's decisions without a broker: the retry rule, sequence
//! numbers and encodings of idempotent batches, the request layout, and what
//! each kind of answer does to a batch's records and to the producer's
//! identity.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_proto::broker::{PartitionProduceResponse, ProduceResponse, TopicProduceResponse};
use sluice_records::{Compression, Record};
use sluice_types::{ApiError, ErrorCode};
use tokio::sync::{Notify, Semaphore, oneshot};

use super::outcome::{Retry, expired_error, fail_for_good, handle_response, retry_decision};
use super::request::{encode_for_send, next_sequence, produce_request};
use crate::cluster::{Cluster, UNKNOWN_TOPIC_WAIT};
use crate::config::ClientConfig;
use crate::error::{ClientError, Result};
use crate::producer::Sequences;
use crate::producer::accumulator::{Accumulator, Delivery, ProducerBatch};
use crate::producer::partitioner::Partitioner;
use crate::producer::{Identity, Inner, RecordMetadata, State};
use crate::types::TopicPartition;

type Receivers = Vec<oneshot::Receiver<Result<RecordMetadata>>>;

fn config(props: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new("127.0.0.1:1");
    for (k, v) in props {
        c = c.with(k, v).unwrap();
    }
    c
}

/// The producer's shared state without its sender task (nothing here
/// talks to a broker).
fn inner(config: ClientConfig) -> Inner {
    let partitioner = Partitioner::new(config.partitioner, 1);
    Inner {
        state: parking_lot::Mutex::new(State {
            acc: Accumulator::new(config.batch_size, config.linger),
            partitioner,
        }),
        wake: Notify::new(),
        memory: Arc::new(Semaphore::new(1 << 20)),
        pending: AtomicUsize::new(0),
        idle: Notify::new(),
        closed: AtomicBool::new(false),
        refreshing: AtomicBool::new(false),
        identity: tokio::sync::Mutex::new(Identity::default()),
        renew_identity: AtomicBool::new(false),
        sequences: parking_lot::Mutex::new(Sequences::default()),
        completions: crate::producer::completions::Completions::inline(),
        cluster: Cluster::new(config).unwrap(),
    }
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// A batch of `n` records for `tp` (timestamps 100, 101, ...), counted
/// as pending in `inner` like `send` does, and its records' receivers.
fn batch(inner: &Inner, tp: &TopicPartition, n: usize) -> (ProducerBatch, Receivers) {
    let mut acc = Accumulator::new(1 << 20, Duration::ZERO);
    let mut rxs = Vec::new();
    for i in 0..n {
        let (tx, rx) = oneshot::channel();
        let rec = Record {
            value: Some(Bytes::from(format!("v{i}"))),
            timestamp: 100 + i as i64,
            ..Default::default()
        };
        acc.append(tp, rec, 10, Delivery::Future(tx), None, Instant::now());
        rxs.push(rx);
    }
    inner.pending.fetch_add(n, Ordering::AcqRel);
    let mut batches = acc.drain_all();
    assert_eq!(batches.len(), 1);
    (batches.remove(0), rxs)
}

/// What each record's delivery resolved to (panics if one did not).
fn outcomes(rxs: Receivers) -> Vec<Result<RecordMetadata>> {
    rxs.into_iter()
        .map(|mut rx| rx.try_recv().expect("the record was completed"))
        .collect()
}

fn offsets(rxs: Receivers) -> Vec<i64> {
    outcomes(rxs)
        .into_iter()
        .map(|r| r.unwrap().offset)
        .collect()
}

fn err(code: ErrorCode) -> ClientError {
    ClientError::api(code, "test")
}

#[test]
fn retriable_errors_retry_after_the_backoff_or_at_once_with_a_leader_hint() {
    let c = config(&[("retry.backoff.ms", "100")]);
    let created = Instant::now();
    let now = created + Duration::from_secs(1);
    let e = err(ErrorCode::NotLeaderOrFollower);
    assert_eq!(
        retry_decision(&c, &e, false, created, 1, now),
        Retry::At(now + Duration::from_millis(100))
    );
    assert_eq!(
        retry_decision(&c, &e, true, created, 1, now),
        Retry::At(now)
    );
}

#[test]
fn non_retriable_errors_fail_at_once() {
    let c = config(&[]);
    let created = Instant::now();
    for code in [
        ErrorCode::MessageTooLarge,
        ErrorCode::CorruptMessage,
        ErrorCode::InvalidRequest,
    ] {
        assert_eq!(
            retry_decision(&c, &err(code), false, created, 1, created),
            Retry::Fail,
            "{code:?}"
        );
    }
}

#[test]
fn retries_stop_after_the_configured_attempts() {
    let c = config(&[("retries", "3")]);
    let created = Instant::now();
    let e = err(ErrorCode::RequestTimedOut);
    assert!(matches!(
        retry_decision(&c, &e, false, created, 3, created),
        Retry::At(_)
    ));
    assert_eq!(
        retry_decision(&c, &e, false, created, 4, created),
        Retry::Fail
    );
    let none = config(&[("retries", "0")]);
    assert_eq!(
        retry_decision(&none, &e, false, created, 1, created),
        Retry::Fail
    );
}

#[test]
fn a_retry_must_start_within_the_delivery_timeout() {
    let c = config(&[
        ("retry.backoff.ms", "100"),
        ("delivery.timeout.ms", "10000"),
    ]);
    let created = Instant::now();
    let e = err(ErrorCode::NotEnoughReplicas);
    // 50 ms left: a retry after the 100 ms backoff would be too late...
    let late = created + Duration::from_millis(9_950);
    assert_eq!(retry_decision(&c, &e, false, created, 1, late), Retry::Fail);
    // ...but one that goes at once (leader hint) is still in time.
    assert_eq!(
        retry_decision(&c, &e, true, created, 1, late),
        Retry::At(late)
    );
    let early = created + Duration::from_millis(9_800);
    assert!(matches!(
        retry_decision(&c, &e, false, created, 1, early),
        Retry::At(_)
    ));
}

#[test]
fn unknown_topic_is_retried_only_while_the_batch_is_young() {
    let c = config(&[]);
    let created = Instant::now();
    let e = err(ErrorCode::UnknownTopicOrPartition);
    let young = created + UNKNOWN_TOPIC_WAIT;
    assert!(matches!(
        retry_decision(&c, &e, false, created, 1, young),
        Retry::At(_)
    ));
    let old = created + UNKNOWN_TOPIC_WAIT * 2;
    assert_eq!(retry_decision(&c, &e, false, created, 1, old), Retry::Fail);
}

#[test]
fn sequences_advance_per_partition_and_wrap_like_kafka() {
    let mut seqs = HashMap::new();
    assert_eq!(next_sequence(&mut seqs, &tp("t", 0), 3), 0);
    assert_eq!(next_sequence(&mut seqs, &tp("t", 0), 2), 3);
    assert_eq!(next_sequence(&mut seqs, &tp("t", 1), 4), 0);
    assert_eq!(seqs[&tp("t", 0)], 5);
    assert_eq!(seqs[&tp("t", 1)], 4);
    // Kafka's DefaultRecordBatch.incrementSequence: past i32::MAX is 0.
    seqs.insert(tp("t", 0), i32::MAX - 1);
    assert_eq!(next_sequence(&mut seqs, &tp("t", 0), 3), i32::MAX - 1);
    assert_eq!(seqs[&tp("t", 0)], 1);
}

#[test]
fn idempotent_batches_carry_the_identity_and_consecutive_sequences() {
    let i = inner(config(&[]));
    let (mut a, _) = batch(&i, &tp("t", 0), 3);
    let (mut b, _) = batch(&i, &tp("t", 0), 2);
    let (mut other, _) = batch(&i, &tp("t", 1), 1);
    let id = Some((42, 7));
    let ea = encode_for_send(&mut a, id, &i.sequences, Compression::None).unwrap();
    let eb = encode_for_send(&mut b, id, &i.sequences, Compression::None).unwrap();
    let eo = encode_for_send(&mut other, id, &i.sequences, Compression::None).unwrap();
    let header = |e: &Bytes| sluice_records::batch_headers(e).next().unwrap();
    let (ha, hb, ho) = (header(&ea), header(&eb), header(&eo));
    assert_eq!(
        (ha.producer_id, ha.producer_epoch, ha.base_sequence),
        (42, 7, 0)
    );
    assert_eq!(hb.base_sequence, 3);
    assert_eq!(ho.base_sequence, 0);
    assert_eq!(ha.records_count, 3);

    // A retry sends the very same bytes and takes no new sequences.
    a.attempts = 1;
    let again = encode_for_send(&mut a, id, &i.sequences, Compression::None).unwrap();
    assert_eq!(again, ea);
    assert_eq!(i.sequences.lock().next[&tp("t", 0)], 5);
}

#[test]
fn plain_batches_carry_no_identity_and_take_no_sequences() {
    let i = inner(config(&[("acks", "1")]));
    let (mut a, _) = batch(&i, &tp("t", 0), 2);
    let e = encode_for_send(&mut a, None, &i.sequences, Compression::None).unwrap();
    let h = sluice_records::batch_headers(&e).next().unwrap();
    assert_eq!((h.producer_id, h.base_sequence), (-1, -1));
    assert!(i.sequences.lock().next.is_empty());
    assert_eq!(a.encoded.as_ref(), Some(&e));
}

#[test]
fn a_request_has_one_entry_per_partition_with_its_batches_back_to_back() {
    let c = config(&[("acks", "all"), ("request.timeout.ms", "7000")]);
    let i = inner(c.clone());
    let batches: Vec<ProducerBatch> = [tp("t", 0), tp("t", 0), tp("t", 1), tp("u", 0)]
        .iter()
        .map(|tp| batch(&i, tp, 1).0)
        .collect();
    let encoded: Vec<Bytes> = ["A", "B", "C", "D"]
        .iter()
        .map(|s| Bytes::from(*s))
        .collect();
    let req = produce_request(&c, &batches, &encoded);
    assert_eq!(req.acks, -1);
    assert_eq!(req.timeout_ms, 7000);
    let got: Vec<(String, Vec<(i32, Bytes)>)> = req
        .topics
        .into_iter()
        .map(|t| {
            let ps = t
                .partitions
                .into_iter()
                .map(|p| (p.partition, p.record_batches))
                .collect();
            (t.name, ps)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "t".to_string(),
                vec![(0, Bytes::from("AB")), (1, Bytes::from("C"))]
            ),
            ("u".to_string(), vec![(0, Bytes::from("D"))]),
        ]
    );
}

/// A Produce answer: one entry per topic, its partitions in order given.
fn answer(parts: &[(&str, PartitionProduceResponse)]) -> ProduceResponse {
    let mut topics: Vec<TopicProduceResponse> = Vec::new();
    for (t, p) in parts {
        match topics.iter_mut().find(|x| x.name == *t) {
            Some(x) => x.partitions.push(p.clone()),
            None => topics.push(TopicProduceResponse {
                name: t.to_string(),
                partitions: vec![p.clone()],
            }),
        }
    }
    ProduceResponse {
        topics,
        throttle_time_ms: 0,
    }
}

fn ok(partition: i32, base_offset: i64, log_append_time_ms: i64) -> PartitionProduceResponse {
    PartitionProduceResponse {
        partition,
        base_offset,
        log_append_time_ms,
        ..Default::default()
    }
}

fn failed(partition: i32, code: ErrorCode) -> PartitionProduceResponse {
    PartitionProduceResponse {
        partition,
        error: Some(ApiError::new(code, "test").to_proto()),
        ..Default::default()
    }
}

#[test]
fn later_batches_of_a_partition_follow_the_earlier_ones() {
    let i = inner(config(&[]));
    let (a, ra) = batch(&i, &tp("t", 0), 3);
    let (b, rb) = batch(&i, &tp("t", 0), 2);
    let (mut refresh, mut retries) = (Vec::new(), Vec::new());
    let resp = answer(&[("t", ok(0, 10, -1))]);
    handle_response(&i, vec![a, b], &resp, &mut refresh, &mut retries);
    assert_eq!(offsets(ra), [10, 11, 12]);
    let rb = outcomes(rb);
    let md: Vec<(i64, i64)> = rb
        .into_iter()
        .map(|r| r.unwrap())
        .map(|m| (m.offset, m.timestamp))
        .collect();
    // CreateTime: each record keeps its own timestamp.
    assert_eq!(md, [(13, 100), (14, 101)]);
    assert!(retries.is_empty() && refresh.is_empty());
    assert_eq!(i.pending.load(Ordering::Acquire), 0);
}

#[test]
fn log_append_time_replaces_the_record_timestamps() {
    let i = inner(config(&[]));
    let (a, ra) = batch(&i, &tp("t", 0), 2);
    let resp = answer(&[("t", ok(0, 0, 5_000))]);
    handle_response(&i, vec![a], &resp, &mut Vec::new(), &mut Vec::new());
    let ts: Vec<i64> = outcomes(ra)
        .into_iter()
        .map(|r| r.unwrap().timestamp)
        .collect();
    assert_eq!(ts, [5_000, 5_000]);
}

#[test]
fn acks_zero_completes_without_offsets() {
    let i = inner(config(&[("acks", "0")]));
    let (a, ra) = batch(&i, &tp("t", 0), 2);
    // With acks=0 the answer carries nothing for the partition.
    let resp = ProduceResponse {
        topics: Vec::new(),
        throttle_time_ms: 0,
    };
    handle_response(&i, vec![a], &resp, &mut Vec::new(), &mut Vec::new());
    assert_eq!(offsets(ra), [-1, -1]);
    assert_eq!(i.pending.load(Ordering::Acquire), 0);
}

#[test]
fn retriable_answers_are_retried_with_a_refresh() {
    let i = inner(config(&[]));
    let (a, mut ra) = batch(&i, &tp("t", 0), 1);
    let (b, _) = batch(&i, &tp("u", 0), 1);
    let (c, _) = batch(&i, &tp("t", 2), 1);
    let resp = answer(&[
        ("t", failed(0, ErrorCode::NotLeaderOrFollower)),
        ("u", failed(0, ErrorCode::NotEnoughReplicas)),
        ("t", failed(2, ErrorCode::LeaderNotAvailable)),
    ]);
    let (mut refresh, mut retries) = (Vec::new(), Vec::new());
    handle_response(&i, vec![a, b, c], &resp, &mut refresh, &mut retries);
    // Send order is kept (requeue relies on it); each topic refreshed once.
    let retried: Vec<(TopicPartition, u32)> = retries
        .iter()
        .map(|(b, _)| (b.tp.clone(), b.attempts))
        .collect();
    assert_eq!(retried, [(tp("t", 0), 1), (tp("u", 0), 1), (tp("t", 2), 1)]);
    assert_eq!(refresh, ["t", "u"]);
    assert!(
        ra[0].try_recv().is_err(),
        "a retried record is not completed"
    );
    assert_eq!(i.pending.load(Ordering::Acquire), 3);
}

#[test]
fn a_partition_missing_from_the_answer_fails_as_unknown_server_error() {
    let i = inner(config(&[]));
    let (a, ra) = batch(&i, &tp("t", 1), 1);
    let resp = answer(&[("t", ok(0, 0, -1))]);
    let mut retries = Vec::new();
    handle_response(&i, vec![a], &resp, &mut Vec::new(), &mut retries);
    assert!(retries.is_empty());
    let e = outcomes(ra).remove(0).unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnknownServerError);
    assert!(e.to_string().contains("did not answer for t-1"), "{e}");
}

#[test]
fn a_fatal_answer_fails_the_records_and_renews_an_idempotent_identity() {
    let i = inner(config(&[]));
    assert!(i.cluster.config.idempotence());
    i.sequences.lock().next.insert(tp("t", 0), 9);
    let (mut a, ra) = batch(&i, &tp("t", 0), 2);
    a.encoded = Some(Bytes::from_static(b"sent with sequences"));
    let resp = answer(&[("t", failed(0, ErrorCode::CorruptMessage))]);
    let mut retries = Vec::new();
    handle_response(&i, vec![a], &resp, &mut Vec::new(), &mut retries);
    assert!(retries.is_empty());
    for r in outcomes(ra) {
        assert_eq!(r.unwrap_err().code(), ErrorCode::CorruptMessage);
    }
    assert!(i.renew_identity.load(Ordering::Acquire));
    assert_eq!(i.pending.load(Ordering::Acquire), 0);
}

#[test]
fn failing_a_batch_that_never_took_sequences_keeps_the_identity() {
    let i = inner(config(&[]));
    i.sequences.lock().next.insert(tp("t", 0), 9);
    let (a, ra) = batch(&i, &tp("t", 0), 1);
    assert!(a.encoded.is_none());
    let e = expired_error(&a, Duration::from_millis(120_000));
    assert_eq!(e.code(), ErrorCode::RequestTimedOut);
    assert!(e.to_string().contains("t-0"), "{e}");
    assert!(e.to_string().contains("1 record(s) expired"), "{e}");
    assert!(e.to_string().contains("120000 ms"), "{e}");
    fail_for_good(&i, a, e);
    assert_eq!(
        outcomes(ra)[0].as_ref().unwrap_err().code(),
        ErrorCode::RequestTimedOut
    );
    assert!(!i.renew_identity.load(Ordering::Acquire));
    assert_eq!(i.sequences.lock().next[&tp("t", 0)], 9);
    assert_eq!(i.pending.load(Ordering::Acquire), 0);

    // A non-idempotent producer has no identity to give up.
    let i = inner(config(&[("acks", "1")]));
    let (mut b, _) = batch(&i, &tp("t", 0), 1);
    b.encoded = Some(Bytes::from_static(b"x"));
    fail_for_good(&i, b, err(ErrorCode::CorruptMessage));
    assert!(!i.renew_identity.load(Ordering::Acquire));
}

/// (producer id, epoch, sequence) come from one place: a new identity
/// installed after a batch read the old one is the one it is encoded with,
/// from sequence 0; and a failed batch of an identity already given up does
/// not give up the current one.
#[test]
fn sequences_follow_the_installed_identity_and_old_failures_do_not_renew_it() {
    let i = inner(config(&[]));
    let (mut a, _) = batch(&i, &tp("t", 0), 3);
    encode_for_send(&mut a, Some((1, 0)), &i.sequences, Compression::None).unwrap();
    // A new identity arrives (what producer_identity installs).
    {
        let mut s = i.sequences.lock();
        s.owner = Some((2, 0));
        s.next.clear();
    }
    // A batch that read the old identity before the switch.
    let (mut b, _) = batch(&i, &tp("t", 0), 2);
    let e = encode_for_send(&mut b, Some((1, 0)), &i.sequences, Compression::None).unwrap();
    let h = sluice_records::batch_headers(&e).next().unwrap();
    assert_eq!((h.producer_id, h.base_sequence), (2, 0));
    // The old identity's batch fails for good: the current one stays.
    let e = expired_error(&a, Duration::from_millis(1));
    fail_for_good(&i, a, e);
    assert!(!i.renew_identity.load(Ordering::Acquire));
    // The current identity's batch fails for good: it is given up.
    let e = expired_error(&b, Duration::from_millis(1));
    fail_for_good(&i, b, e);
    assert!(i.renew_identity.load(Ordering::Acquire));
}
