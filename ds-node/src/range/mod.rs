//! The range state machine, free of any runtime: it receives operations and a context
//! (the Raft index and the leader's clock reading carried in the entry) and changes a store.

pub mod apply;
mod bits;
pub mod checkpoint;
pub mod clock;
pub mod codec;
pub mod ctx;
pub mod db_keys;
pub mod db_walk;
pub mod dedup;
pub mod engine;
pub mod expired_log;
pub mod flush;
mod hash_rand;
mod hll;
pub mod keys;
mod list;
pub mod meta;
pub mod multi;
mod object;
pub mod raft_pb;
mod rename;
mod sample;
pub mod script;
mod set;
pub mod storage;
pub mod store;
pub mod sweep;
pub mod zrank;
mod zset;
