//! Delayed delivery (issue 14; the design is `docs/delayed-delivery.md`).
//!
//! A record produced with a delay is kept, until it is due, in the log of the
//! partition it was produced to, as a record of a Sluice control batch (which
//! consumers skip); when due, the partition's leader appends it again as a
//! normal record. This crate holds what that needs apart from the broker:
//!
//! # Layout
//! - [`request`]: what a record asks for: the `sluice.deliver.at.ms` /
//!   `sluice.deliver.after.ms` headers and the topic default, checked against
//!   the limits with checked arithmetic.
//! - [`envelope`]: the pending record's control-record format, and the
//!   record a release appends (original key, value, headers, timestamp, plus
//!   `sluice.delay.*` headers).
//! - [`batch`]: the produce path's rewrite of a batch that asks for delays
//!   ([`batch::plan`]), the release and cancellation batches, and what an
//!   appended batch means to the index ([`batch::scan`]).
//! - [`index`]: the per-replica timer index: pending (due, offset) entries,
//!   the near ones in memory and the far future in sorted run files.
//! - [`error`]: [`DelayError`], the one error type.

pub mod batch;
pub mod envelope;
pub mod error;
pub mod index;
pub mod request;

pub use envelope::Envelope;
pub use error::DelayError;
pub use index::{Entry, Summary, TimerIndex};
pub use request::{DelayLimits, due_time};
