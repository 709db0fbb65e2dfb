//! Plain data passed through the [`MetadataStore`](crate::MetadataStore) trait: keys and
//! values, transactions, watch events and election keys. No I/O here.

use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::MetaError;

/// A lease id; `0` means "no lease".
pub type LeaseId = i64;

/// One key as stored, with etcd's revision bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the put that created this key (since its last delete).
    pub create_revision: i64,
    /// Revision of the last put to this key.
    pub mod_revision: i64,
    /// Number of puts since creation (1 after the first put).
    pub version: i64,
    /// Lease the key is bound to; `0` = none.
    pub lease: LeaseId,
}

/// Comparison operator of a [`Compare`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

impl CmpOp {
    /// `actual <op> expected`.
    pub fn holds<T: Ord>(self, actual: T, expected: T) -> bool {
        match self {
            CmpOp::Equal => actual == expected,
            CmpOp::NotEqual => actual != expected,
            CmpOp::Greater => actual > expected,
            CmpOp::Less => actual < expected,
        }
    }
}

/// A guard of a [`Txn`]. An absent key has create/mod revision and version `0`, and no value
/// (so a `Value` compare on an absent key is false), as in etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    Value {
        key: String,
        value: Vec<u8>,
    },
    ModRevision {
        key: String,
        op: CmpOp,
        revision: i64,
    },
    /// `revision: 0` with `CmpOp::Equal` means "key absent".
    CreateRevision {
        key: String,
        op: CmpOp,
        revision: i64,
    },
    Version {
        key: String,
        op: CmpOp,
        version: i64,
    },
}

impl Compare {
    /// The key does not exist.
    pub fn absent(key: impl Into<String>) -> Self {
        Compare::CreateRevision {
            key: key.into(),
            op: CmpOp::Equal,
            revision: 0,
        }
    }

    /// The key exists.
    pub fn present(key: impl Into<String>) -> Self {
        Compare::CreateRevision {
            key: key.into(),
            op: CmpOp::Greater,
            revision: 0,
        }
    }

    /// The key's value equals `value`.
    pub fn value_eq(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Compare::Value {
            key: key.into(),
            value: value.into(),
        }
    }

    /// The key was last written at `revision` (optimistic concurrency on a read).
    pub fn mod_revision_eq(key: impl Into<String>, revision: i64) -> Self {
        Compare::ModRevision {
            key: key.into(),
            op: CmpOp::Equal,
            revision,
        }
    }

    /// The key was created at `revision` (and still exists): for a lease-held
    /// registration, the same incarnation still holds it.
    pub fn create_revision_eq(key: impl Into<String>, revision: i64) -> Self {
        Compare::CreateRevision {
            key: key.into(),
            op: CmpOp::Equal,
            revision,
        }
    }

    /// The key has had exactly `version` puts since creation.
    pub fn version_eq(key: impl Into<String>, version: i64) -> Self {
        Compare::Version {
            key: key.into(),
            op: CmpOp::Equal,
            version,
        }
    }

    /// The election key won by `leader` still exists with the same create revision: the
    /// leader has neither resigned nor lost its lease. Put this in every txn a leader makes
    /// so that a deposed leader cannot write (fencing).
    pub fn leader_held(leader: &LeaderKey) -> Self {
        Compare::CreateRevision {
            key: leader.key.clone(),
            op: CmpOp::Equal,
            revision: leader.revision,
        }
    }

    /// The key this compare inspects.
    pub fn key(&self) -> &str {
        match self {
            Compare::Value { key, .. }
            | Compare::ModRevision { key, .. }
            | Compare::CreateRevision { key, .. }
            | Compare::Version { key, .. } => key,
        }
    }

    /// Evaluates the compare against the key's current state (`None` = absent).
    pub fn evaluate(&self, current: Option<&KeyValue>) -> bool {
        match self {
            Compare::Value { value, .. } => current.is_some_and(|kv| &kv.value == value),
            Compare::ModRevision { op, revision, .. } => {
                op.holds(current.map_or(0, |kv| kv.mod_revision), *revision)
            }
            Compare::CreateRevision { op, revision, .. } => {
                op.holds(current.map_or(0, |kv| kv.create_revision), *revision)
            }
            Compare::Version { op, version, .. } => {
                op.holds(current.map_or(0, |kv| kv.version), *version)
            }
        }
    }
}

/// A write inside a [`Txn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: LeaseId,
    },
    Delete {
        key: String,
    },
    DeletePrefix {
        prefix: String,
    },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: 0,
        }
    }

    pub fn put_with_lease(
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        lease: LeaseId,
    ) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease,
        }
    }

    pub fn delete(key: impl Into<String>) -> Self {
        Op::Delete { key: key.into() }
    }

    pub fn delete_prefix(prefix: impl Into<String>) -> Self {
        Op::DeletePrefix {
            prefix: prefix.into(),
        }
    }
}

/// If every compare holds, apply `success`, else `failure`; atomically, at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }

    /// A txn that only succeeds while `leader` still holds its election.
    pub fn fenced(leader: &LeaderKey) -> Self {
        Self::new().when(Compare::leader_held(leader))
    }

    /// Adds a compare (all must hold).
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }

    /// Adds an op applied when every compare holds.
    pub fn and_then(mut self, op: Op) -> Self {
        self.success.push(op);
        self
    }

    /// Adds an op applied when some compare fails.
    pub fn or_else(mut self, op: Op) -> Self {
        self.failure.push(op);
        self
    }
}

/// Outcome of a [`Txn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnResult {
    /// Whether the compares held (and `success` was applied).
    pub succeeded: bool,
    /// Store revision after the txn (unchanged if it wrote nothing).
    pub revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// The new key-value for puts; for deletes only `key` and `mod_revision` (the delete's
    /// revision) are meaningful.
    pub kv: KeyValue,
}

impl WatchEvent {
    /// The revision at which this change happened.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// Batches of changes, one batch per revision, in revision order. An `Err` item means the
/// watch broke (compaction, lost connection, store closed): re-list and watch again.
pub type WatchStream =
    Pin<Box<dyn futures::Stream<Item = Result<Vec<WatchEvent>, MetaError>> + Send>>;

/// Proof of having won an election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderKey {
    /// The election name (a key prefix).
    pub election: String,
    /// This candidate's key under the election prefix.
    pub key: String,
    /// Create revision of `key`: strictly increasing across leaders, so it serves as the
    /// leader epoch (the controller epoch).
    pub revision: i64,
    /// The lease the key is bound to.
    pub lease: LeaseId,
}
