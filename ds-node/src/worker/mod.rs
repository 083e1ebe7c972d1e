//! Background work of a shard: master heartbeats (and, later, value-log GC, checkpoints).

pub mod heartbeat;
