//! the controller service
