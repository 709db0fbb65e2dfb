//! the metadata store trait, etcd and embedded implementations
