//! the group coordinator service
