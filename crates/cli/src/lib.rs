//! the sluice command-line tool
