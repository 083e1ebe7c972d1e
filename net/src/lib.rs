//! `net`: the wire protocol.
#![forbid(unsafe_code)]
