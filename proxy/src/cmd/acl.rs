//! The `ACL` command (`aclCommand`) and the check every command passes before it runs
//! ([`permitted`], `ACLCheckAllPerm` in `processCommand`).

use bytes::Bytes;

use super::session::Session;
use super::util::{help, int, is, syntax_error, unknown_sub};
use crate::acl::log::{Context, Entry, Reason};
use crate::acl::{Denied, User, category, commands, id_of_call};
use crate::resp::Reply;
use crate::shared::Shared;

/// The argument positions of a command line's channels, and whether they are patterns
/// (`PSUBSCRIBE`, matched literally against the user's channel patterns).
fn channel_positions(name: &str, argc: usize) -> (Vec<usize>, bool) {
    match name {
        "publish" | "spublish" => (vec![1], false),
        "subscribe" | "ssubscribe" => ((1..argc).collect(), false),
        "psubscribe" => ((1..argc).collect(), true),
        _ => (Vec::new(), false),
    }
}

/// Checks `args` against `user`'s rules.
pub fn check_user(user: &User, name: &str, args: &[Bytes]) -> Result<(), Denied> {
    if user.unrestricted() {
        return Ok(());
    }
    let Some(id) = id_of_call(args) else {
        // Not a Redis 7.0 command (tierkv's own): only users allowed everything run it.
        return Err(Denied::Command);
    };
    let keys = super::server::key_positions(args).unwrap_or_default();
    let (channels, pattern) = channel_positions(name, args.len());
    user.check(id, args, &keys, &channels, pattern)
}

/// The `NOPERM` error of a refusal, as `processCommand` words it.
pub fn noperm(denied: Denied, full_name: &str) -> Reply {
    Reply::Error(match denied {
        Denied::Command => {
            format!("NOPERM this user has no permissions to run the '{full_name}' command")
        }
        Denied::Key(_) => {
            "NOPERM this user has no permissions to access one of the keys used as arguments".into()
        }
        Denied::Channel(_) => {
            "NOPERM this user has no permissions to access one of the channels used as \
             arguments"
                .into()
        }
    })
}

/// What `ACL LOG` records of a refusal: its reason and the object refused.
fn log_entry(denied: Denied, full_name: &str, args: &[Bytes]) -> (Reason, Bytes) {
    let arg = |at: usize| args.get(at).cloned().unwrap_or_default();
    match denied {
        Denied::Command => (Reason::Command, Bytes::from(full_name.to_string())),
        Denied::Key(at) => (Reason::Key, arg(at)),
        Denied::Channel(at) => (Reason::Channel, arg(at)),
    }
}

/// Whether the connection's user may run `args` (`name` is its table name). `Err(None)`:
/// the user was deleted and the connection is to be closed; `Err(Some(reply))`: refused,
/// and recorded in `ACL LOG`.
pub fn permitted(
    shared: &Shared,
    sess: &mut Session,
    name: &str,
    args: &[Bytes],
) -> Result<(), Option<Reply>> {
    let Some(user) = sess.user.as_mut() else {
        return Ok(());
    };
    if shared.acl.refresh(user).is_err() {
        return Err(None);
    }
    // Per command: no reference count is touched unless the command is refused.
    let Err(denied) = check_user(user.rules(), name, args) else {
        return Ok(());
    };
    let rules = user.rules().clone();
    let full = super::util::full_name(name, args);
    let (reason, object) = log_entry(denied, &full, args);
    shared.acl.log(Entry {
        reason,
        context: if sess.tx.active() {
            Context::Multi
        } else {
            Context::Toplevel
        },
        object,
        username: rules.name.clone(),
        client_info: super::server::client_info_line(shared, sess),
    });
    Err(Some(noperm(denied, &full)))
}

const HELP: &[&str] = &[
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Print this help.",
];

const NO_FILE: &str = "This Redis instance is not configured to use an ACL file. You may want \
                       to specify users via the ACL SETUSER command and then issue a CONFIG \
                       REWRITE (assuming you have a Redis configuration file set) in order to \
                       store users in the Redis configuration.";

/// `ACL subcommand ...`.
pub fn acl(shared: &Shared, sess: &Session, args: &[Bytes]) -> Reply {
    let sub = &args[1];
    let n = args.len();
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match lower.as_str() {
        "setuser" if n >= 3 => setuser(shared, &args[2], &args[3..]),
        "getuser" if n == 3 => getuser(shared, &args[2]),
        "deluser" if n >= 3 => match shared.acl.delete_users(&args[2..]) {
            Ok(deleted) => Reply::Int(deleted as i64),
            Err(e) => Reply::err(e),
        },
        "users" if n == 2 => Reply::Array(
            shared
                .acl
                .all()
                .iter()
                .map(|u| Reply::Bulk(u.name.clone()))
                .collect(),
        ),
        "list" if n == 2 => Reply::Array(
            shared
                .acl
                .all()
                .iter()
                .map(|u| Reply::Bulk(Bytes::from(u.describe())))
                .collect(),
        ),
        "whoami" if n == 2 => Reply::Bulk(
            sess.user
                .as_ref()
                .map_or(Bytes::from_static(b"default"), |u| u.name.clone()),
        ),
        "cat" if n <= 3 => cat(args.get(2)),
        "genpass" if n <= 3 => genpass(args.get(2)),
        "log" if n <= 3 => log(shared, args.get(2)),
        "dryrun" if n >= 4 => dryrun(shared, &args[2], &args[3..]),
        "save" | "load" if n == 2 => Reply::err(NO_FILE),
        "help" if n == 2 => help(HELP),
        "setuser" | "getuser" | "deluser" | "users" | "list" | "whoami" | "cat" | "genpass"
        | "log" | "dryrun" | "save" | "load" | "help" => syntax_error("acl", sub),
        _ => unknown_sub("acl", sub),
    }
}

fn setuser(shared: &Shared, name: &Bytes, ops: &[Bytes]) -> Reply {
    match shared.acl.set_user(name, ops) {
        Ok(()) => Reply::OK,
        Err((op, why)) => Reply::err(format_args!(
            "Error in ACL SETUSER modifier '{}': {why}",
            String::from_utf8_lossy(&op)
        )),
    }
}

fn getuser(shared: &Shared, name: &[u8]) -> Reply {
    let Some(u) = shared.acl.get(name) else {
        return Reply::Nil;
    };
    let s = |t: &'static str| Reply::Bulk(Bytes::from_static(t.as_bytes()));
    let text = |t: String| Reply::Bulk(Bytes::from(t));
    Reply::Map(vec![
        (
            s("flags"),
            Reply::Set(u.flags().into_iter().map(s).collect()),
        ),
        (
            s("passwords"),
            Reply::Array(u.password_hashes().into_iter().map(text).collect()),
        ),
        (s("commands"), text(u.describe_commands())),
        (s("keys"), text(u.keys_description())),
        (s("channels"), text(u.channels_description())),
        (s("selectors"), Reply::Array(Vec::new())),
    ])
}

/// `ACL CAT [category]`: the categories, or the commands (and subcommands) in one.
fn cat(category: Option<&Bytes>) -> Reply {
    let Some(name) = category else {
        return Reply::Array(
            category::ALL
                .iter()
                .map(|(n, _)| Reply::Bulk(Bytes::from_static(n.as_bytes())))
                .collect(),
        );
    };
    let Some(bit) = category::by_name(name) else {
        return Reply::err(format_args!(
            "Unknown category '{}'",
            String::from_utf8_lossy(name)
        ));
    };
    Reply::Array(
        commands::COMMANDS
            .iter()
            .filter(|c| c.categories & bit != 0)
            .map(|c| Reply::Bulk(Bytes::from_static(c.name.as_bytes())))
            .collect(),
    )
}

/// `ACL GENPASS [bits]`: random hex, 256 bits unless told.
fn genpass(bits: Option<&Bytes>) -> Reply {
    let bits = match bits.map(|b| int(b)) {
        None => 256,
        Some(Ok(b)) if (1..=4096).contains(&b) => b as usize,
        Some(_) => {
            return Reply::err(
                "ACL GENPASS argument must be the number of bits for the output password, a \
                 positive number up to 4096",
            );
        }
    };
    let chars = bits.div_ceil(4);
    let mut raw = vec![0u8; chars.div_ceil(2)];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw).is_err() {
        return Reply::err("the system's random source failed");
    }
    let mut hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    hex.truncate(chars);
    Reply::Bulk(Bytes::from(hex))
}

/// `ACL LOG [count | RESET]`.
fn log(shared: &Shared, arg: Option<&Bytes>) -> Reply {
    let count = match arg {
        Some(a) if is(a, "reset") => {
            shared.acl.log_reset();
            return Reply::OK;
        }
        Some(a) => match int(a) {
            Ok(c) => usize::try_from(c).unwrap_or(0),
            Err(_) => return Reply::err("value is not an integer or out of range"),
        },
        None => 10,
    };
    let s = |t: &'static str| Reply::Bulk(Bytes::from_static(t.as_bytes()));
    Reply::Array(
        shared
            .acl
            .log_entries(count)
            .into_iter()
            .map(|e| {
                Reply::Map(vec![
                    (s("count"), Reply::Int(e.count as i64)),
                    (s("reason"), s(e.reason)),
                    (s("context"), s(e.context)),
                    (s("object"), Reply::Bulk(e.object)),
                    (s("username"), Reply::Bulk(e.username)),
                    (s("age-seconds"), Reply::Double(e.age_seconds)),
                    (s("client-info"), Reply::Bulk(Bytes::from(e.client_info))),
                ])
            })
            .collect(),
    )
}

/// `ACL DRYRUN user command args...`.
fn dryrun(shared: &Shared, name: &[u8], cmd: &[Bytes]) -> Reply {
    let Some(user) = shared.acl.get(name) else {
        return Reply::err(format_args!(
            "User '{}' not found",
            String::from_utf8_lossy(name)
        ));
    };
    let Some(spec) = super::lookup(&cmd[0]) else {
        return Reply::err(format_args!(
            "Command '{}' not found",
            String::from_utf8_lossy(&cmd[0])
        ));
    };
    let n = i32::try_from(cmd.len()).unwrap_or(i32::MAX);
    if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
        return Reply::err(format_args!(
            "wrong number of arguments for '{}' command",
            spec.name
        ));
    }
    let full = super::util::full_name(spec.name, cmd);
    let arg = |at: usize| String::from_utf8_lossy(&cmd[at]).into_owned();
    match check_user(&user, spec.name, cmd) {
        Ok(()) => Reply::OK,
        Err(Denied::Command) => Reply::Bulk(Bytes::from(format!(
            "This user has no permissions to run the '{full}' command"
        ))),
        Err(Denied::Key(at)) => Reply::Bulk(Bytes::from(format!(
            "This user has no permissions to access the '{}' key",
            arg(at)
        ))),
        Err(Denied::Channel(at)) => Reply::Bulk(Bytes::from(format!(
            "This user has no permissions to access the '{}' channel",
            arg(at)
        ))),
    }
}
