//! Background work of a shard: master heartbeats (with the shard's and its ranges' load from
//! [`crate::load`]).

pub mod heartbeat;
