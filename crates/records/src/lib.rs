//! Kafka RecordBatch v2 codec
