//! The Redis serialization protocol: requests in ([`parse`]), replies out ([`reply`]).

pub mod parse;
pub mod reply;

pub use parse::{Limits, ParseError, RequestParser};
pub use reply::{Protocol, Reply};
