//! One entry of the command table ([`Spec`]), the `spec!` macro that writes one, and the flag
//! sets the tables share (as Redis 7.0 reports them: tests/redis_crate.rs compares with
//! redis-server).
//!
//! A leaf: it imports nothing of `cmd`.

/// One entry of the command table.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity: `n` exactly `n` arguments (name included), `-n` at least `n`.
    pub arity: i32,
    /// Flags as `COMMAND` reports them.
    pub flags: &'static [&'static str],
    /// First key position (0: none).
    pub first: i32,
    /// Last key position (-1: the last argument).
    pub last: i32,
    /// Step between keys.
    pub step: i32,
}

/// Writes a [`Spec`]: `spec!(name, arity, flags, first, last, step)`.
macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $first:expr, $last:expr, $step:expr) => {
        $crate::cmd::spec::Spec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first: $first,
            last: $last,
            step: $step,
        }
    };
}
pub(crate) use spec;

/// A fast write that may grow memory.
pub const W: &[&str] = &["write", "denyoom", "fast"];
/// A write that may grow memory.
pub const WD: &[&str] = &["write", "denyoom"];
/// A fast write.
pub const WF: &[&str] = &["write", "fast"];
/// A fast read.
pub const R: &[&str] = &["readonly", "fast"];
/// A read.
pub const RS: &[&str] = &["readonly"];
/// A write.
pub const WS: &[&str] = &["write"];
/// A fast connection command, allowed while loading and on a stale replica.
pub const C: &[&str] = &["fast", "loading", "stale"];
/// A connection command allowed while loading and on a stale replica.
pub const CL: &[&str] = &["loading", "stale"];
/// Fast, nothing else.
pub const F: &[&str] = &["fast"];
/// No flag.
pub const NONE: &[&str] = &[];
/// `EVAL`'s flags (also `FCALL`'s).
pub const EVAL: &[&str] = &[
    "noscript",
    "stale",
    "skip_monitor",
    "no_mandatory_keys",
    "movablekeys",
];
/// `EVAL_RO`'s flags (also `FCALL_RO`'s).
pub const EVAL_RO: &[&str] = &[
    "readonly",
    "noscript",
    "stale",
    "skip_monitor",
    "no_mandatory_keys",
    "movablekeys",
];
