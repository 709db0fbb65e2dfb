//! the broker service
