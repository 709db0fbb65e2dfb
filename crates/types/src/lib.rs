//! shared ids, error codes and helpers
