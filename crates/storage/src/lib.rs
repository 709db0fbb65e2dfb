//! the partition log storage engine
