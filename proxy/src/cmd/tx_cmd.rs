//! The commands a connection runs alone at their place in the pipeline, with the session and
//! the router ([`TxCmd`], run by `crate::exec`): data only, so that the modules that build them
//! and the one that runs them do not import each other.

use bytes::Bytes;

/// A command run alone at its place in the pipeline, with the session.
#[derive(Debug, Clone)]
pub enum TxCmd {
    /// `EXEC` of the queued commands.
    Exec,
    /// `WATCH key...`.
    Watch(Vec<Bytes>),
    /// `FLUSHALL` (`all`) / `FLUSHDB`.
    Flush {
        /// Every database, or the connection's.
        all: bool,
    },
    /// `MSETNX key value ...` (pairs).
    MsetNx(Vec<(Bytes, Bytes)>),
    /// `FUNCTION …` and `FCALL` of a function not known here yet.
    Function(FunctionCmd),
}

/// A function command run with the router ([`TxCmd::Function`]).
#[derive(Debug, Clone)]
pub enum FunctionCmd {
    /// `FUNCTION LOAD [REPLACE] code`.
    Load {
        /// The library's code.
        code: Bytes,
        /// Whether an existing library of that name is replaced.
        replace: bool,
    },
    /// `FUNCTION DELETE name`.
    Delete(Bytes),
    /// `FUNCTION FLUSH`.
    Flush,
    /// `FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE]`.
    List {
        /// Library names to list.
        pattern: Option<Bytes>,
        /// Whether each library's code is included.
        with_code: bool,
    },
    /// `FUNCTION STATS`.
    Stats,
    /// `FUNCTION DUMP`.
    Dump,
    /// `FUNCTION RESTORE payload [FLUSH|APPEND|REPLACE]`.
    Restore {
        /// The payload.
        payload: Bytes,
        /// What happens to existing libraries.
        policy: Policy,
    },
    /// `FCALL` / `FCALL_RO` of a function this proxy's copy did not have fresh.
    Call {
        /// `FCALL`'s arguments after the command name.
        args: Vec<Bytes>,
        /// `FCALL_RO`.
        read_only: bool,
        /// The ACL rules of the caller (`None`: allowed everything).
        user: Option<Bytes>,
    },
}

/// `FUNCTION RESTORE`'s policy for the libraries already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Every existing library is deleted first.
    Flush,
    /// A library of the same name is an error (nothing restored).
    Append,
    /// A library of the same name is replaced.
    Replace,
}
