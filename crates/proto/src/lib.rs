//! generated gRPC code from proto/
