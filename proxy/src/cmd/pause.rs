//! Which commands a `CLIENT PAUSE` holds ([`crate::pause`]): as Redis's `processCommand`,
//! `ALL` holds every command that would run, `WRITE` those that may write or propagate —
//! write commands, `PUBLISH`/`SPUBLISH`, `PFCOUNT` (it may rewrite its key), `EVAL`/`EVALSHA`
//! of a script not flagged `no-writes`, `FCALL` of a function not flagged so, `EXEC` of a
//! transaction holding any of these. A command refused before it runs (unknown, wrong
//! arity) is never held: its error comes at once.

use bytes::Bytes;

use super::session::Session;
use super::spec::Spec;
use super::table;
use crate::pause::Mode;
use crate::shared::Shared;

/// The weakest pause that holds `args`: `Some(Mode::Write)` (held by `WRITE` and `ALL`),
/// `Some(Mode::All)` (held by `ALL` only), `None` (never held).
pub fn held_by(shared: &Shared, sess: &Session, args: &[Bytes]) -> Option<Mode> {
    let spec = table::lookup(args.first()?)?;
    if !arity_ok(spec, args.len()) {
        return None;
    }
    Some(if may_write(shared, sess, spec, args) {
        Mode::Write
    } else {
        Mode::All
    })
}

fn arity_ok(spec: &Spec, n: usize) -> bool {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    if spec.arity >= 0 {
        n == spec.arity
    } else {
        n >= -spec.arity
    }
}

fn may_write(shared: &Shared, sess: &Session, spec: &Spec, args: &[Bytes]) -> bool {
    match spec.name {
        "exec" => sess.tx.queued().iter().any(|q| {
            q.first()
                .and_then(|n| table::lookup(n))
                .is_some_and(|s| s.name != "exec" && may_write(shared, sess, s, q))
        }),
        "eval" => script_may_write(&args[1]),
        "evalsha" => shared
            .scripts
            .get(&args[1])
            .is_none_or(|body| script_may_write(&body)),
        "fcall" => shared
            .functions
            .any(&args[1])
            .is_none_or(|(_, flags)| !flags.no_writes),
        "publish" | "spublish" | "pfcount" => true,
        _ => spec.flags.contains(&"write") || spec.flags.contains(&"may_replicate"),
    }
}

/// Whether a script body may write: only a shebang with `flags=no-writes` says it does not.
fn script_may_write(body: &Bytes) -> bool {
    script::flags(body).map_or(true, |f| !f.no_writes)
}
