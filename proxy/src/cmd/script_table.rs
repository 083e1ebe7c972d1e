//! The command table scripts call into ([`script::commands::Commands`]): the proxy's own
//! translation of Redis commands ([`super::data::data_command`]), so a command means the same
//! inside a script as outside it. ds-node runs scripts at apply time with it; the proxy runs
//! scripts without keys with it too ([`KeylessHost`]).

use bytes::Bytes;
use net::keyspace::Db;
use net::message::kv::KvOp;
use script::commands::{CallEnv, Commands, Plan};
use script::{Resp, Value};

use super::action::Action;
use super::data::data_command;
use super::table::lookup;
use crate::acl::{Denied, User};
use crate::resp::Reply;
use crate::route::ExecError;
use crate::script_value::to_value;

/// The proxy's command table, as scripts see it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyCommands;

impl Commands for ProxyCommands {
    fn plan(&self, argv: &[Bytes], env: CallEnv<'_>) -> Plan {
        let refuse = |text: &str| Plan::Reply(Value::Error(text.into()));
        let Some(spec) = argv.first().and_then(|name| lookup(name)) else {
            return refuse("ERR Unknown Redis command called from script");
        };
        let n = i32::try_from(argv.len()).unwrap_or(i32::MAX);
        if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
            return refuse("ERR Wrong number of args calling Redis command from script");
        }
        if spec.flags.contains(&"noscript") {
            return refuse("ERR This Redis command is not allowed from script");
        }
        if let Some(rules) = env.user
            && let Err(why) = script_user_may(rules, spec.name, argv)
        {
            return refuse(&why);
        }
        if let Some(reply) = keyless(spec.name, argv, env.now_ms) {
            return Plan::Reply(to_value(reply, env.resp));
        }
        let max_bulk = net::limits::DEFAULT_MAX_VALUE_BYTES as u64;
        let action = match spec.name {
            "sort" | "sort_ro" => Some(super::sort::in_script(spec.name, argv)),
            _ => data_command(spec.name, argv, env.now_ms, max_bulk),
        };
        match action {
            Some(Action::Reply(reply)) => Plan::Reply(to_value(reply, env.resp)),
            Some(Action::Data { ops, finish }) => {
                let ops: Vec<KvOp> = crate::db::scope(ops, env.db)
                    .into_iter()
                    .map(|(_, op)| op)
                    .collect();
                let resp = env.resp;
                Plan::Ops {
                    ops,
                    finish: Box::new(move |results| {
                        let results = results
                            .into_iter()
                            .map(|r| r.map_err(ExecError::Rpc))
                            .collect();
                        to_value(finish(results), resp)
                    }),
                }
            }
            Some(_) => refuse(&format!(
                "ERR '{}' cannot run inside a script on tierkv (it needs several rounds)",
                spec.name
            )),
            None => refuse("ERR This Redis command is not allowed from script"),
        }
    }

    fn acl_check(&self, argv: &[Bytes], user: Option<&[u8]>) -> Result<bool, String> {
        let invalid = || "ERR Invalid command passed to redis.acl_check_cmd()".to_string();
        let spec = argv
            .first()
            .and_then(|name| lookup(name))
            .ok_or_else(invalid)?;
        match user {
            None => Ok(true),
            Some(rules) => Ok(script_user_may(rules, spec.name, argv).is_ok()),
        }
    }
}

/// Whether the user whose rules are `rules` may run `argv` from a script; the error is
/// Redis's (`scriptVerifyACL`).
fn script_user_may(rules: &[u8], name: &str, argv: &[Bytes]) -> Result<(), String> {
    let Some(user) = parsed_user(rules) else {
        return Err("ERR The user executing the script has rules this node cannot read".into());
    };
    match super::acl::check_user(&user, name, argv) {
        Ok(()) => Ok(()),
        Err(denied) => Err(format!(
            "ERR The user executing the script {}",
            match denied {
                Denied::Command => "can't run this command or subcommand",
                Denied::Key(_) =>
                    "can't access at least one of the keys mentioned in the command arguments",
                Denied::Channel(_) => "can't publish to the channel mentioned in the command",
            }
        )),
    }
}

/// Users parsed from script rules, per thread (a shard's, or a proxy worker's): the last
/// [`PARSED_USERS`] rule texts seen.
const PARSED_USERS: usize = 16;

thread_local! {
    static PARSED: std::cell::RefCell<Vec<(Bytes, std::sync::Arc<User>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn parsed_user(rules: &[u8]) -> Option<std::sync::Arc<User>> {
    PARSED.with(|cell| {
        let mut cache = cell.borrow_mut();
        if let Some(i) = cache.iter().position(|(text, _)| &text[..] == rules) {
            let hit = cache.remove(i);
            let user = hit.1.clone();
            cache.push(hit);
            return Some(user);
        }
        let user = std::sync::Arc::new(User::from_rules(rules)?);
        if cache.len() >= PARSED_USERS {
            cache.remove(0);
        }
        cache.push((Bytes::copy_from_slice(rules), user.clone()));
        Some(user)
    })
}

/// The commands without keys a script may call, answered at once.
fn keyless(name: &str, argv: &[Bytes], now_ms: u64) -> Option<Reply> {
    Some(match name {
        "ping" => match argv.get(1) {
            Some(msg) => Reply::Bulk(msg.clone()),
            None => Reply::Simple("PONG"),
        },
        "echo" => Reply::Bulk(argv.get(1)?.clone()),
        // The entry's clock: the same on every replica.
        "time" => Reply::Array(vec![
            Reply::Bulk(Bytes::from((now_ms / 1000).to_string())),
            Reply::Bulk(Bytes::from(((now_ms % 1000) * 1000).to_string())),
        ]),
        _ => return None,
    })
}

/// What a script without keys calls when the proxy runs it to find where it must run:
/// commands without keys are answered; the first call on a key is remembered (it decides the
/// script's range and hash slot) and ends the run with an error, since the script will run
/// again, for real, in that range.
#[derive(Debug)]
pub struct KeylessHost {
    /// The database of the script's client.
    pub db: Db,
    /// The proxy's clock when the script started.
    pub now_ms: u64,
    /// The first key a call touched.
    pub first_key: Option<Bytes>,
    /// The ACL rules of the script's user (`None`: allowed everything).
    pub user: Option<Bytes>,
}

impl script::Host for KeylessHost {
    fn call(&mut self, argv: &[Bytes], resp: Resp) -> Value {
        let stop = || Value::Error("ERR the script continues where its keys live".into());
        if self.first_key.is_some() {
            return stop();
        }
        let env = CallEnv {
            db: self.db,
            now_ms: self.now_ms,
            resp,
            user: self.user.as_deref(),
        };
        match ProxyCommands.plan(argv, env) {
            Plan::Reply(v) => v,
            Plan::Ops { ops, .. } => {
                self.first_key = ops
                    .iter()
                    .find_map(|op| op.keys_in_db(self.db).first().map(|(_, k)| (*k).clone()));
                stop()
            }
        }
    }

    fn acl_check(&mut self, argv: &[Bytes]) -> Result<bool, String> {
        ProxyCommands.acl_check(argv, self.user.as_deref())
    }
}
