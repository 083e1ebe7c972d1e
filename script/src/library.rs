//! Function libraries (`FUNCTION LOAD`, `FCALL`): Redis 7's `#!lua name=<lib>` code that
//! registers functions with `redis.register_function`.

use crate::{Flags, Host, Run, Value, Vm};

/// A library as `FUNCTION LOAD` found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// Its name (`#!lua name=<name>`).
    pub name: String,
    /// Its functions, in registration order.
    pub functions: Vec<Function>,
}

/// One function of a library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// Its name.
    pub name: String,
    /// Its description, if registered with one.
    pub description: Option<String>,
    /// Its flags (`no-writes`, `allow-oom`, ...).
    pub flags: Flags,
}

impl Vm {
    /// Runs library `code` to learn its name and functions (`FUNCTION LOAD`); `Err` is the
    /// Redis error reply (`ERR Missing library metadata`, a compile error, ...).
    pub fn load_library(&mut self, code: &[u8]) -> Result<Library, Value> {
        let _ = code;
        Err(Value::Error("ERR functions are not built yet".into()))
    }

    /// Calls `function` of library `code` with `run`'s keys and arguments (`FCALL`).
    pub fn fcall(
        &mut self,
        code: &[u8],
        function: &[u8],
        run: Run<'_>,
        host: &mut dyn Host,
    ) -> Value {
        let _ = (code, function, run, host);
        Value::Error("ERR functions are not built yet".into())
    }
}
