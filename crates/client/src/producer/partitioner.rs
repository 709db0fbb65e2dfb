//! Partition choice for records without an explicit partition.
//!
//! Keyed records use Kafka's murmur2 partitioner. Records with a null key use
//! the sticky partitioner (Kafka KIP-480): they stick to one partition until
//! its batch is full (and so about to be sent), then switch to another, so
//! batches fill up instead of trickling one record to every partition.

use std::collections::HashMap;

use crate::config::PartitionerKind;

/// Routing state, kept under the accumulator's lock.
#[derive(Debug)]
pub struct Partitioner {
    kind: PartitionerKind,
    sticky: HashMap<String, i32>,
    round_robin: HashMap<String, u32>,
    rng: u64,
}

impl Partitioner {
    pub fn new(kind: PartitionerKind, seed: u64) -> Self {
        Partitioner {
            kind,
            sticky: HashMap::new(),
            round_robin: HashMap::new(),
            // xorshift must not start at 0.
            rng: seed | 1,
        }
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// The partition for a record: explicit partitions are handled by the
    /// caller; this covers keyed and null-key records. Returns the partition
    /// and whether it was chosen by the sticky rule.
    pub fn partition(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        num_partitions: i32,
    ) -> (i32, bool) {
        debug_assert!(num_partitions > 0);
        match (self.kind, key) {
            (PartitionerKind::RoundRobin, _) => {
                let c = self.round_robin.entry(topic.to_string()).or_insert(0);
                let p = (*c % num_partitions as u32) as i32;
                *c = c.wrapping_add(1);
                (p, false)
            }
            (PartitionerKind::Default, Some(k)) => (
                sluice_types::hash::partition_for_key(k, num_partitions),
                false,
            ),
            (PartitionerKind::Default, None) => {
                if let Some(&p) = self.sticky.get(topic)
                    && p < num_partitions
                {
                    return (p, true);
                }
                let p = (self.next_random() % num_partitions as u64) as i32;
                self.sticky.insert(topic.to_string(), p);
                (p, true)
            }
        }
    }

    /// The sticky partition's batch is full: switch to another partition.
    pub fn on_batch_full(&mut self, topic: &str, full_partition: i32, num_partitions: i32) {
        let Some(current) = self.sticky.get(topic).copied() else {
            return;
        };
        if current != full_partition {
            return;
        }
        let next = if num_partitions <= 1 {
            0
        } else {
            // Any partition but the current one.
            let r = (self.next_random() % (num_partitions as u64 - 1)) as i32;
            if r >= current { r + 1 } else { r }
        };
        self.sticky.insert(topic.to_string(), next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_records_use_murmur2() {
        let mut p = Partitioner::new(PartitionerKind::Default, 7);
        let want = sluice_types::hash::partition_for_key(b"key-1", 12);
        for _ in 0..3 {
            assert_eq!(p.partition("t", Some(b"key-1"), 12), (want, false));
        }
        // Kafka: to_positive(murmur2("foobar")) % 10, murmur2("foobar") = -790332482.
        assert_eq!(
            p.partition("t", Some(b"foobar"), 10).0,
            (-790332482i32 & 0x7fff_ffff) % 10
        );
    }

    #[test]
    fn null_keys_stick_until_the_batch_is_full() {
        let mut p = Partitioner::new(PartitionerKind::Default, 42);
        let (first, sticky) = p.partition("t", None, 6);
        assert!(sticky);
        for _ in 0..100 {
            assert_eq!(p.partition("t", None, 6).0, first);
        }
        // Another partition filling up changes nothing.
        p.on_batch_full("t", (first + 1) % 6, 6);
        assert_eq!(p.partition("t", None, 6).0, first);
        p.on_batch_full("t", first, 6);
        let second = p.partition("t", None, 6).0;
        assert_ne!(second, first);
        assert!((0..6).contains(&second));
        // Over many switches every partition gets used.
        let mut seen = [false; 6];
        for _ in 0..200 {
            let (cur, _) = p.partition("t", None, 6);
            seen[cur as usize] = true;
            p.on_batch_full("t", cur, 6);
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
    }

    #[test]
    fn sticky_with_one_partition_stays_zero() {
        let mut p = Partitioner::new(PartitionerKind::Default, 1);
        assert_eq!(p.partition("t", None, 1).0, 0);
        p.on_batch_full("t", 0, 1);
        assert_eq!(p.partition("t", None, 1).0, 0);
    }

    #[test]
    fn sticky_is_per_topic_and_respects_shrunk_counts() {
        let mut p = Partitioner::new(PartitionerKind::Default, 3);
        let a = p.partition("a", None, 100).0;
        assert!(a < 100);
        let b = p.partition("b", None, 2).0;
        assert!(b < 2);
        assert!(p.partition("a", None, 1).0 == 0);
    }

    #[test]
    fn round_robin_cycles() {
        let mut p = Partitioner::new(PartitionerKind::RoundRobin, 1);
        let got: Vec<i32> = (0..7).map(|_| p.partition("t", Some(b"k"), 3).0).collect();
        assert_eq!(got, vec![0, 1, 2, 0, 1, 2, 0]);
    }
}
