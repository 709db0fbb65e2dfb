//! Delivering each record's result to the application, off the sender's
//! path. A partition's next request waits for the answer to its previous one
//! (partition muting), so the time spent calling back a batch's records
//! (thousands per request) used to delay that next request. Outcomes now go
//! into one queue, in the order the sender decided them, and one task calls
//! back: a partition's callbacks still run in send order, as Kafka's do.

use std::sync::Weak;

use tokio::sync::mpsc;

use super::accumulator::ProducerBatch;
use super::{Inner, RecordMetadata};
use crate::error::ClientError;

/// What became of a batch.
pub(crate) enum Outcome {
    /// Appended at `base_offset` (-1 with acks=0).
    Sent {
        base_offset: i64,
        log_append_time: i64,
    },
    Failed(ClientError),
}

pub(crate) struct Completions {
    tx: mpsc::UnboundedSender<(ProducerBatch, Outcome)>,
    /// Taken by [`run`] when the producer starts.
    rx: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<(ProducerBatch, Outcome)>>>,
    /// Unit tests of the sender's decisions, which run without tasks: deliver
    /// at once.
    #[cfg(test)]
    inline: bool,
}

impl Completions {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Completions {
            tx,
            rx: parking_lot::Mutex::new(Some(rx)),
            #[cfg(test)]
            inline: false,
        }
    }

    #[cfg(test)]
    pub(crate) fn inline() -> Self {
        Completions {
            inline: true,
            ..Self::new()
        }
    }

    /// Queues `batch`'s outcome; `inner.record_done` follows its callbacks.
    pub(crate) fn push(&self, inner: &Inner, batch: ProducerBatch, outcome: Outcome) {
        #[cfg(test)]
        if self.inline {
            inner.record_done(deliver(batch, outcome));
            return;
        }
        if let Err(mpsc::error::SendError((batch, outcome))) = self.tx.send((batch, outcome)) {
            // The task is gone (runtime shutting down): call back here.
            inner.record_done(deliver(batch, outcome));
        }
    }
}

/// Calls back every queued outcome, in order, until the producer is dropped.
pub(crate) async fn run(inner: Weak<Inner>) {
    let Some(mut rx) = inner.upgrade().and_then(|i| i.completions.rx.lock().take()) else {
        return;
    };
    let mut queued = Vec::with_capacity(64);
    // Ends when the producer's state (holding the sending side) is dropped.
    while rx.recv_many(&mut queued, 64).await > 0 {
        let mut done = 0;
        for (batch, outcome) in queued.drain(..) {
            let n = batch.records.len();
            // A panicking callback must not stop every later one, nor leave
            // `flush` waiting for records that will never be counted.
            let delivered =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| deliver(batch, outcome)));
            if delivered.is_err() {
                tracing::error!(
                    "a producer callback panicked; the rest of its batch is not called back"
                );
            }
            done += n;
        }
        // Nobody waits on a dropped producer's flush.
        if let Some(inner) = inner.upgrade() {
            inner.record_done(done);
        }
    }
}

/// Calls back each record of `batch`; returns how many.
fn deliver(batch: ProducerBatch, outcome: Outcome) -> usize {
    let n = batch.records.len();
    match outcome {
        Outcome::Sent {
            base_offset,
            log_append_time,
        } => {
            // One allocation for the batch's topic, shared by its records.
            let topic: std::sync::Arc<str> = batch.tp.topic.as_str().into();
            let partition = batch.tp.partition;
            batch.complete(|i, r| {
                Ok(RecordMetadata {
                    topic: topic.clone(),
                    partition,
                    offset: if base_offset < 0 {
                        -1
                    } else {
                        base_offset + i as i64
                    },
                    timestamp: if log_append_time > 0 {
                        log_append_time
                    } else {
                        r.timestamp
                    },
                })
            });
        }
        Outcome::Failed(e) => batch.fail(e),
    }
    n
}
