//! Access control lists (`ACL`, `AUTH user pass`): users with passwords, the commands,
//! keys and channels each may use, checked before a command runs — Redis 7.0's model
//! (`acl.c`), per proxy as in Redis Cluster, where each node has its own users
//! (`docs/compat.md`, "ACL").
//!
//! - [`category`]: the command categories; [`commands`]: every Redis 7.0 command and
//!   subcommand with its categories and what its keys need (generated from redis-server's
//!   `COMMAND`, so `+@read` names the same commands as in Redis).
//! - [`user`]: one user's rules (`ACL SETUSER` modifiers), the permission check and the
//!   descriptions `ACL LIST` and `ACL GETUSER` give.
//! - [`log`]: `ACL LOG`, the bounded record of refusals.
//! - This module: [`Acl`], the users of the proxy, shared by its connections; a connection
//!   holds its user as an [`Arc`] and the generation it read it at, so a check costs one
//!   atomic load while no user changes.

pub mod category;
pub mod commands;
pub mod log;
pub mod user;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

pub use user::{Denied, User};

/// The command's keys are read.
pub const KEY_READ: u8 = 1;
/// The command's keys are written (inserted, updated or deleted).
pub const KEY_WRITE: u8 = 2;

/// A Redis command or subcommand as ACLs see it.
#[derive(Debug)]
pub struct AclCommand {
    /// Lower-case name; a subcommand is `container|sub`.
    pub name: &'static str,
    /// Its categories (bits of [`category`]).
    pub categories: u32,
    /// What its keys need: [`KEY_READ`], [`KEY_WRITE`], both or neither (then any key
    /// pattern that matches grants it, as in Redis).
    pub key_access: u8,
}

impl AclCommand {
    const fn new(name: &'static str, categories: u32, key_access: u8) -> Self {
        AclCommand {
            name,
            categories,
            key_access,
        }
    }
}

/// The id of a command or subcommand: its index in [`commands::COMMANDS`].
pub type CommandId = usize;

/// The id of `name` (case-insensitive; `container|sub` for a subcommand).
pub fn command_id(name: &[u8]) -> Option<CommandId> {
    if name.len() > 64 {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    commands::COMMANDS
        .binary_search_by(|c| c.name.as_bytes().cmp(&lower[..]))
        .ok()
}

/// The ids of `parent`'s subcommands (empty: it has none).
pub fn subcommands(parent: CommandId) -> std::ops::Range<CommandId> {
    let prefix = format!("{}|", commands::COMMANDS[parent].name);
    let all = commands::COMMANDS;
    let start = all.partition_point(|c| c.name < prefix.as_str());
    let end = start + all[start..].partition_point(|c| c.name.starts_with(&prefix));
    start..end
}

/// Whether `id` is a subcommand.
pub fn is_subcommand(id: CommandId) -> bool {
    commands::COMMANDS[id].name.contains('|')
}

/// The id a command line is checked under: its subcommand's when it is a container and its
/// first argument names one, else the command's.
pub fn id_of_call(args: &[Bytes]) -> Option<CommandId> {
    let id = command_id(args.first()?)?;
    let Some(sub) = args.get(1) else {
        return Some(id);
    };
    let subs = subcommands(id);
    if subs.is_empty() || sub.len() > 64 {
        return Some(id);
    }
    let full = format!(
        "{}|{}",
        commands::COMMANDS[id].name,
        String::from_utf8_lossy(sub).to_ascii_lowercase()
    );
    Some(command_id(full.as_bytes()).unwrap_or(id))
}

/// What the keys of a call of `id` need: its key specs' union, except where Redis computes
/// the flags from the arguments (`setGetKeys`: `SET` reads its key only with `GET`).
pub fn key_access(id: CommandId, args: &[Bytes]) -> u8 {
    let command = &commands::COMMANDS[id];
    if command.name == "set" && !args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"get")) {
        return KEY_WRITE;
    }
    command.key_access
}

/// The users of this proxy.
#[derive(Debug)]
pub struct Acl {
    users: RwLock<BTreeMap<Bytes, Arc<User>>>,
    /// Bumped on every change of any user: connections re-read theirs when it moved.
    generation: AtomicU64,
    log: Mutex<log::AclLog>,
}

/// A connection's user: who it is, and the rules it read at `generation`.
#[derive(Debug, Clone)]
pub struct SessionUser {
    /// The user's name.
    pub name: Bytes,
    rules: Arc<User>,
    generation: u64,
}

impl SessionUser {
    /// The user's rules as last read.
    pub fn rules(&self) -> &Arc<User> {
        &self.rules
    }
}

/// Why a connection's user cannot run anything any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserGone;

impl Acl {
    /// The users at start: `default` (all commands, keys and channels; no password unless
    /// `requirepass` is given).
    pub fn new(requirepass: Option<&[u8]>) -> Acl {
        let mut default = User::new(Bytes::from_static(b"default"));
        for op in ["+@all", "~*", "&*", "on", "nopass"] {
            default
                .apply(op.as_bytes())
                .expect("the default user's rules are valid");
        }
        if let Some(pass) = requirepass {
            default.set_only_password(pass);
        }
        let mut users = BTreeMap::new();
        users.insert(default.name.clone(), Arc::new(default));
        Acl {
            users: RwLock::new(users),
            generation: AtomicU64::new(0),
            log: Mutex::new(log::AclLog::default()),
        }
    }

    /// The user `name`.
    pub fn get(&self, name: &[u8]) -> Option<Arc<User>> {
        self.users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Every user, by name.
    pub fn all(&self) -> Vec<Arc<User>> {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users.values().cloned().collect()
    }

    /// The connection state of a user who just authenticated (or of `default` at connect).
    pub fn session_user(&self, name: &[u8]) -> Option<SessionUser> {
        let generation = self.generation.load(Ordering::Acquire);
        let rules = self.get(name)?;
        Some(SessionUser {
            name: rules.name.clone(),
            rules,
            generation,
        })
    }

    /// `user`'s current rules (re-read when a user changed since it last looked), or
    /// [`UserGone`] when the user was deleted: its connections are closed.
    pub fn refresh(&self, user: &mut SessionUser) -> Result<(), UserGone> {
        let now = self.generation.load(Ordering::Acquire);
        if now == user.generation {
            return Ok(());
        }
        let rules = self.get(&user.name).ok_or(UserGone)?;
        user.rules = rules;
        user.generation = now;
        Ok(())
    }

    /// Whether a new connection is authenticated at once: `default` is on and has `nopass`.
    pub fn default_is_open(&self) -> bool {
        self.get(b"default")
            .is_some_and(|u| u.enabled() && u.nopass())
    }

    /// The user `name` if `pass` authenticates it (it exists, is on, and has `nopass` or a
    /// password whose SHA-256 is `pass`'s).
    pub fn authenticate(&self, name: &[u8], pass: &[u8]) -> Option<SessionUser> {
        let user = self.session_user(name)?;
        user.rules.accepts(pass).then_some(user)
    }

    /// `ACL SETUSER name ops...`: all of `ops` or none (a new user is created only when every
    /// modifier is valid).
    pub fn set_user(&self, name: &[u8], ops: &[Bytes]) -> Result<(), (Bytes, &'static str)> {
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        let mut user = match users.get(name) {
            Some(u) => (**u).clone(),
            None => User::new(Bytes::copy_from_slice(name)),
        };
        for op in ops {
            user.apply(op).map_err(|why| (op.clone(), why))?;
        }
        users.insert(user.name.clone(), Arc::new(user));
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// `ACL DELUSER`: how many of `names` existed (`default` may not be deleted: `Err`).
    pub fn delete_users(&self, names: &[Bytes]) -> Result<usize, &'static str> {
        if names.iter().any(|n| &n[..] == b"default") {
            return Err("The 'default' user cannot be removed");
        }
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        let deleted = names
            .iter()
            .filter(|n| users.remove(&n[..]).is_some())
            .count();
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(deleted)
    }

    /// `CONFIG SET requirepass`: `default`'s only password (empty: `nopass`), as Redis's
    /// `ACLUpdateDefaultUserPassword`.
    pub fn set_default_password(&self, pass: &[u8]) {
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = users.get(&b"default"[..]) {
            let mut user = (**u).clone();
            user.set_only_password(pass);
            users.insert(user.name.clone(), Arc::new(user));
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Records a refusal in `ACL LOG`.
    pub fn log(&self, entry: log::Entry) {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(entry);
    }

    /// `ACL LOG [count]`.
    pub fn log_entries(&self, count: usize) -> Vec<log::Shown> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .newest(count)
    }

    /// `ACL LOG RESET`.
    pub fn log_reset(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).reset();
    }
}

#[cfg(test)]
mod tests;
