//! the Rust client library: Producer, Consumer, Admin
