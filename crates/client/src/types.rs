//! Small value types shared by the producer and the consumer.

use std::fmt;

/// A topic and one of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

impl From<(&str, i32)> for TopicPartition {
    fn from((t, p): (&str, i32)) -> Self {
        TopicPartition::new(t, p)
    }
}

impl From<(String, i32)> for TopicPartition {
    fn from((t, p): (String, i32)) -> Self {
        TopicPartition::new(t, p)
    }
}
