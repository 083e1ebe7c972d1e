//! The Redis keyspace layout the proxy routes by: `net::keyspace`, shared with the DS node so
//! the two can never disagree on where a key lives.

pub use net::keyspace::*;
