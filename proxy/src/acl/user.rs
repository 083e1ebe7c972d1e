//! One user: the `ACL SETUSER` modifiers (`ACLSetUser`, `ACLSetSelector`), the permission
//! check (`ACLSelectorCheckCmd`) and the descriptions of `ACL LIST` / `ACL GETUSER`
//! (`ACLDescribeUser`, `ACLDescribeSelectorCommandRules`). Selectors (`(...)`) are not built.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;

use super::commands::COMMANDS;
use super::{CommandId, KEY_READ, KEY_WRITE, category, command_id, is_subcommand, subcommands};

/// Words of the command bitmap (room for 512 commands and subcommands; Redis 7.0 has 366).
const WORDS: usize = 8;

/// Why a command is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The command (or subcommand) is not allowed.
    Command,
    /// The key at this argument position is not allowed.
    Key(usize),
    /// The channel at this argument position is not allowed.
    Channel(usize),
}

/// A key pattern and the access it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyPattern {
    pattern: Bytes,
    /// [`KEY_READ`] | [`KEY_WRITE`].
    access: u8,
}

/// A user's rules.
#[derive(Debug, Clone)]
pub struct User {
    /// The name.
    pub name: Bytes,
    enabled: bool,
    nopass: bool,
    /// `sanitize-payload` (true) or `skip-sanitize-payload` (false), when set.
    sanitize: Option<bool>,
    /// SHA-256 of each password, in the order added.
    passwords: Vec<[u8; 32]>,
    commands: [u64; WORDS],
    /// Every command bit is set (`+@all` and no `-` since).
    allcommands: bool,
    /// `+@all` was the last of `+@all`/`-@all`: commands Redis may add later are allowed
    /// (Redis's reserved bit); decides whether the description starts `+@all` or `-@all`.
    future: bool,
    /// First arguments allowed for a command whose bit is not set (`+select|0`).
    firstargs: BTreeMap<CommandId, Vec<Bytes>>,
    allkeys: bool,
    keys: Vec<KeyPattern>,
    allchannels: bool,
    channels: Vec<Bytes>,
    /// [`User::rules_text`], computed once per version of the rules.
    rules_text: OnceLock<Bytes>,
}

/// The SHA-256 of `pass`.
pub fn hash_password(pass: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, pass);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `#hash` / `!hash` argument: exactly 64 lower-case hex digits.
fn parse_hash(text: &[u8]) -> Result<[u8; 32], &'static str> {
    const BAD: &str = "The password hash must be exactly 64 characters and contain only \
                       lowercase hexadecimal characters";
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if text.len() != 64 {
        return Err(BAD);
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        out[i] = (digit(pair[0]).ok_or(BAD)? << 4) | digit(pair[1]).ok_or(BAD)?;
    }
    Ok(out)
}

const SYNTAX: &str = "Syntax error";
const UNKNOWN: &str = "Unknown command or category name in ACL";

impl User {
    /// A new user: off, no password, no command, key or channel (`ACLCreateUser`).
    pub fn new(name: Bytes) -> User {
        User {
            name,
            enabled: false,
            nopass: false,
            sanitize: None,
            passwords: Vec::new(),
            commands: [0; WORDS],
            allcommands: false,
            future: false,
            firstargs: BTreeMap::new(),
            allkeys: false,
            keys: Vec::new(),
            allchannels: false,
            channels: Vec::new(),
            rules_text: OnceLock::new(),
        }
    }

    /// The user's keys, channels and commands as `ACL SETUSER` modifiers separated by
    /// spaces (no pattern or first argument holds one): what a script's `Eval` carries so
    /// that the DS node checks the script's calls ([`User::from_rules`] reads it back).
    pub fn rules_text(&self) -> Bytes {
        self.rules_text
            .get_or_init(|| {
                let mut parts = Vec::new();
                let keys = self.keys_description();
                if !keys.is_empty() {
                    parts.push(keys);
                }
                if !self.allchannels {
                    parts.push("resetchannels".into());
                }
                let channels = self.channels_description();
                if !channels.is_empty() {
                    parts.push(channels);
                }
                parts.push(self.describe_commands());
                Bytes::from(parts.join(" "))
            })
            .clone()
    }

    /// The permissions [`User::rules_text`] describes (`None`: not such a text).
    pub fn from_rules(text: &[u8]) -> Option<User> {
        let mut user = User::new(Bytes::new());
        for op in text.split(|&c| c == b' ').filter(|op| !op.is_empty()) {
            user.apply_selector(op).ok()?;
        }
        Some(user)
    }

    /// `on`.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `nopass`.
    pub fn nopass(&self) -> bool {
        self.nopass
    }

    /// Every command, key and channel is allowed: checks can be skipped.
    pub fn unrestricted(&self) -> bool {
        self.allcommands && self.allkeys && self.allchannels
    }

    /// Whether `pass` authenticates this user (it must be on).
    pub fn accepts(&self, pass: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let hashed = hash_password(pass);
        // Compare every byte of every password whatever the first difference.
        self.passwords.iter().fold(false, |found, p| {
            let diff = p
                .iter()
                .zip(hashed.iter())
                .fold(0u8, |a, (x, y)| a | (x ^ y));
            found | (diff == 0)
        })
    }

    /// `requirepass`: `resetpass` then `>pass`, or `nopass` for an empty one.
    pub fn set_only_password(&mut self, pass: &[u8]) {
        self.passwords.clear();
        if pass.is_empty() {
            self.nopass = true;
        } else {
            self.nopass = false;
            self.passwords.push(hash_password(pass));
        }
    }

    /// Applies one `ACL SETUSER` modifier; the error is Redis's reason text.
    pub fn apply(&mut self, op: &[u8]) -> Result<(), &'static str> {
        if op.is_empty() {
            return Ok(());
        }
        self.rules_text = OnceLock::new();
        let is = |word: &str| op.eq_ignore_ascii_case(word.as_bytes());
        if is("on") {
            self.enabled = true;
        } else if is("off") {
            self.enabled = false;
        } else if is("sanitize-payload") {
            self.sanitize = Some(true);
        } else if is("skip-sanitize-payload") {
            self.sanitize = Some(false);
        } else if is("nopass") {
            self.nopass = true;
            self.passwords.clear();
        } else if is("resetpass") {
            self.nopass = false;
            self.passwords.clear();
        } else if is("reset") {
            for op in ["resetpass", "resetkeys", "resetchannels", "off", "-@all"] {
                self.apply(op.as_bytes())?;
            }
            self.sanitize = Some(true);
        } else if is("clearselectors") {
        } else if op[0] == b'>' || op[0] == b'#' {
            let hash = match op[0] {
                b'>' => hash_password(&op[1..]),
                _ => parse_hash(&op[1..])?,
            };
            if !self.passwords.contains(&hash) {
                self.passwords.push(hash);
            }
            self.nopass = false;
        } else if op[0] == b'<' || op[0] == b'!' {
            let hash = match op[0] {
                b'<' => hash_password(&op[1..]),
                _ => parse_hash(&op[1..])?,
            };
            let at = self
                .passwords
                .iter()
                .position(|p| *p == hash)
                .ok_or("The password you are trying to remove from the user does not exist")?;
            self.passwords.remove(at);
        } else if op[0] == b'(' && op.last() == Some(&b')') {
            return Err("Selectors are not supported by tierkv");
        } else {
            self.apply_selector(op)?;
        }
        Ok(())
    }

    /// The modifiers of keys, channels and commands (`ACLSetSelector`).
    fn apply_selector(&mut self, op: &[u8]) -> Result<(), &'static str> {
        let is = |word: &str| op.eq_ignore_ascii_case(word.as_bytes());
        if is("allkeys") || op == b"~*" {
            self.allkeys = true;
            self.keys.clear();
        } else if is("resetkeys") {
            self.allkeys = false;
            self.keys.clear();
        } else if is("allchannels") || op == b"&*" {
            self.allchannels = true;
            self.channels.clear();
        } else if is("resetchannels") {
            self.allchannels = false;
            self.channels.clear();
        } else if is("allcommands") || is("+@all") {
            self.commands = [u64::MAX; WORDS];
            self.allcommands = true;
            self.future = true;
            self.firstargs.clear();
        } else if is("nocommands") || is("-@all") {
            self.commands = [0; WORDS];
            self.allcommands = false;
            self.future = false;
            self.firstargs.clear();
        } else if op[0] == b'~' || op[0] == b'%' {
            self.add_key_pattern(op)?;
        } else if op[0] == b'&' {
            if self.allchannels {
                return Err(
                    "Adding a pattern after the * pattern (or the 'allchannels' flag) \
                            is not valid and does not have any effect. Try 'resetchannels' to \
                            start with an empty list of channels",
                );
            }
            if op.contains(&b' ') {
                return Err(SYNTAX);
            }
            let pattern = Bytes::copy_from_slice(&op[1..]);
            if !self.channels.contains(&pattern) {
                self.channels.push(pattern);
            }
        } else if op.len() > 1 && (op[0] == b'+' || op[0] == b'-') && op[1] == b'@' {
            let bit = category::by_name(&op[2..]).ok_or(UNKNOWN)?;
            let allow = op[0] == b'+';
            for id in in_category(bit) {
                self.change(id, allow);
            }
        } else if op[0] == b'+' {
            self.allow_command(&op[1..])?;
        } else if op[0] == b'-' {
            let id = command_id(&op[1..]).ok_or(UNKNOWN)?;
            self.change(id, false);
        } else {
            return Err(SYNTAX);
        }
        Ok(())
    }

    /// `~pattern`, `%R~pattern`, `%W~pattern`, `%RW~pattern`.
    fn add_key_pattern(&mut self, op: &[u8]) -> Result<(), &'static str> {
        if self.allkeys {
            return Err(
                "Adding a pattern after the * pattern (or the 'allkeys' flag) is not \
                        valid and does not have any effect. Try 'resetkeys' to start with an \
                        empty list of patterns",
            );
        }
        let (access, offset) = if op[0] == b'%' {
            let mut access = 0u8;
            let mut i = 1;
            loop {
                match op.get(i).map(u8::to_ascii_uppercase) {
                    Some(b'R') if access & KEY_READ == 0 => access |= KEY_READ,
                    Some(b'W') if access & KEY_WRITE == 0 => access |= KEY_WRITE,
                    Some(b'~') => break (access, i + 1),
                    _ => return Err(SYNTAX),
                }
                i += 1;
            }
        } else {
            (KEY_READ | KEY_WRITE, 1)
        };
        let pattern = &op[offset..];
        if pattern.contains(&b' ') {
            return Err(SYNTAX);
        }
        match self.keys.iter_mut().find(|p| p.pattern == pattern) {
            Some(p) => p.access |= access,
            None => self.keys.push(KeyPattern {
                pattern: Bytes::copy_from_slice(pattern),
                access,
            }),
        }
        self.allkeys = false;
        Ok(())
    }

    /// `+command`, `+container|sub`, `+command|firstarg`.
    fn allow_command(&mut self, name: &[u8]) -> Result<(), &'static str> {
        let Some(bar) = name.iter().rposition(|&c| c == b'|') else {
            let id = command_id(name).ok_or(UNKNOWN)?;
            self.change(id, true);
            return Ok(());
        };
        let (parent, sub) = (&name[..bar], &name[bar + 1..]);
        let parent = command_id(parent).ok_or(UNKNOWN)?;
        if is_subcommand(parent) {
            return Err("Allowing first-arg of a subcommand is not supported");
        }
        if sub.is_empty() || sub.contains(&b' ') {
            return Err(SYNTAX);
        }
        if !subcommands(parent).is_empty() {
            let id = command_id(name).ok_or(UNKNOWN)?;
            self.change(id, true);
        } else {
            let args = self.firstargs.entry(parent).or_default();
            if !args.iter().any(|a| a.eq_ignore_ascii_case(sub)) {
                args.push(Bytes::copy_from_slice(sub));
            }
        }
        Ok(())
    }

    fn bit(commands: &[u64; WORDS], id: CommandId) -> bool {
        id < WORDS * 64 && commands[id / 64] & (1 << (id % 64)) != 0
    }

    fn set_bit(&mut self, id: CommandId, on: bool) {
        if id >= WORDS * 64 {
            return;
        }
        if on {
            self.commands[id / 64] |= 1 << (id % 64);
        } else {
            self.commands[id / 64] &= !(1 << (id % 64));
            self.allcommands = false;
        }
    }

    /// Allows or denies a command and, for a container, all its subcommands
    /// (`ACLChangeSelectorPerm`).
    fn change(&mut self, id: CommandId, allow: bool) {
        self.set_bit(id, allow);
        self.firstargs.remove(&id);
        for sub in subcommands(id) {
            self.set_bit(sub, allow);
        }
    }

    /// Checks a command line: `id` from [`super::id_of_call`], the argument positions of its
    /// keys and of its channels (`pattern`: `PSUBSCRIBE`'s, matched literally).
    pub fn check(
        &self,
        id: CommandId,
        args: &[Bytes],
        keys: &[usize],
        channels: &[usize],
        pattern: bool,
    ) -> Result<(), Denied> {
        if !self.allcommands && !Self::bit(&self.commands, id) && !self.first_arg_allowed(id, args)
        {
            return Err(Denied::Command);
        }
        if !self.allkeys {
            let need = super::key_access(id, args);
            for &at in keys {
                let key = args.get(at).map_or(&[][..], |k| &k[..]);
                let granted = self
                    .keys
                    .iter()
                    .any(|p| p.access & need == need && crate::glob::matches(&p.pattern, key));
                if !granted {
                    return Err(Denied::Key(at));
                }
            }
        }
        if !self.allchannels {
            for &at in channels {
                let ch = args.get(at).map_or(&[][..], |c| &c[..]);
                let granted = self.channels.iter().any(|p| {
                    if pattern {
                        p[..] == *ch
                    } else {
                        crate::glob::matches(p, ch)
                    }
                });
                if !granted {
                    return Err(Denied::Channel(at));
                }
            }
        }
        Ok(())
    }

    fn first_arg_allowed(&self, id: CommandId, args: &[Bytes]) -> bool {
        let at = if is_subcommand(id) { 2 } else { 1 };
        match (self.firstargs.get(&id), args.get(at)) {
            (Some(allowed), Some(arg)) => allowed.iter().any(|a| a.eq_ignore_ascii_case(arg)),
            _ => false,
        }
    }
}

/// Descriptions (`ACL LIST`, `ACL GETUSER`).
impl User {
    /// `ACL GETUSER`'s `flags`.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut out = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            out.push("nopass");
        }
        match self.sanitize {
            Some(false) => out.push("skip-sanitize-payload"),
            Some(true) => out.push("sanitize-payload"),
            None => {}
        }
        out
    }

    /// `ACL GETUSER`'s `passwords`: hex SHA-256 of each.
    pub fn password_hashes(&self) -> Vec<String> {
        self.passwords.iter().map(hex).collect()
    }

    /// `ACL GETUSER`'s `keys`: `~*`, or the patterns with their access.
    pub fn keys_description(&self) -> String {
        if self.allkeys {
            return "~*".into();
        }
        let parts: Vec<String> = self
            .keys
            .iter()
            .map(|p| {
                let prefix = match p.access {
                    KEY_READ => "%R~",
                    KEY_WRITE => "%W~",
                    _ => "~",
                };
                format!("{prefix}{}", String::from_utf8_lossy(&p.pattern))
            })
            .collect();
        parts.join(" ")
    }

    /// `ACL GETUSER`'s `channels`: `&*` or the patterns.
    pub fn channels_description(&self) -> String {
        if self.allchannels {
            return "&*".into();
        }
        let parts: Vec<String> = self
            .channels
            .iter()
            .map(|c| format!("&{}", String::from_utf8_lossy(c)))
            .collect();
        parts.join(" ")
    }

    /// The line of `ACL LIST`.
    pub fn describe(&self) -> String {
        let mut out = format!("user {}", String::from_utf8_lossy(&self.name));
        for flag in self.flags() {
            out.push(' ');
            out.push_str(flag);
        }
        for hash in &self.passwords {
            out.push_str(" #");
            out.push_str(&hex(hash));
        }
        let keys = self.keys_description();
        if !keys.is_empty() {
            out.push(' ');
            out.push_str(&keys);
        }
        if self.allchannels {
            out.push_str(" &*");
        } else {
            out.push_str(" resetchannels");
            let channels = self.channels_description();
            if !channels.is_empty() {
                out.push(' ');
                out.push_str(&channels);
            }
        }
        out.push(' ');
        out.push_str(&self.describe_commands());
        out
    }

    /// The command rules that rebuild this user's bitmap: `+@all` or `-@all`, then the
    /// categories that fit best, then single commands (`ACLDescribeSelectorCommandRules`).
    pub fn describe_commands(&self) -> String {
        let additive = !self.future;
        let mut rules = vec![if additive { "-@all" } else { "+@all" }.to_string()];
        let mut fake = User::new(Bytes::new());
        fake.apply_selector(rules[0].as_bytes())
            .expect("+@all and -@all are valid");
        let mut temp = self.commands;
        let mut applied = [false; category::ALL.len()];
        loop {
            let mut best = None;
            let (mut mindiff, mut maxsame) = (usize::MAX, 0);
            for (j, &(_, bit)) in category::ALL.iter().enumerate() {
                if applied[j] {
                    continue;
                }
                let (on, off) = count(&temp, bit);
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                if same > diff && (diff < mindiff || (diff == mindiff && same > maxsame)) {
                    best = Some(j);
                    mindiff = diff;
                    maxsame = same;
                }
            }
            let Some(j) = best else { break };
            let (name, bit) = category::ALL[j];
            rules.push(format!("{}@{name}", if additive { '+' } else { '-' }));
            for id in in_category(bit) {
                fake.change(id, additive);
                set_in(&mut temp, id, !additive);
                for sub in subcommands(id) {
                    set_in(&mut temp, sub, !additive);
                }
            }
            applied[j] = true;
        }
        for id in (0..COMMANDS.len()).filter(|&id| !is_subcommand(id)) {
            self.describe_single(&mut fake, id, &mut rules);
            for sub in subcommands(id) {
                self.describe_single(&mut fake, sub, &mut rules);
            }
            if !Self::bit(&self.commands, id)
                && let Some(args) = self.firstargs.get(&id)
            {
                for a in args {
                    rules.push(format!(
                        "+{}|{}",
                        COMMANDS[id].name,
                        String::from_utf8_lossy(a)
                    ));
                }
            }
        }
        rules.join(" ")
    }

    fn describe_single(&self, fake: &mut User, id: CommandId, rules: &mut Vec<String>) {
        let user = Self::bit(&self.commands, id);
        if user != Self::bit(&fake.commands, id) {
            rules.push(format!(
                "{}{}",
                if user { '+' } else { '-' },
                COMMANDS[id].name
            ));
            fake.change(id, user);
        }
    }
}

/// The ids of the commands and subcommands in the category `bit`.
fn in_category(bit: u32) -> impl Iterator<Item = CommandId> {
    COMMANDS
        .iter()
        .enumerate()
        .filter(move |(_, c)| c.categories & bit != 0)
        .map(|(id, _)| id)
}

fn set_in(bits: &mut [u64; WORDS], id: CommandId, on: bool) {
    if id < WORDS * 64 {
        if on {
            bits[id / 64] |= 1 << (id % 64);
        } else {
            bits[id / 64] &= !(1 << (id % 64));
        }
    }
}

/// How many commands of the category `bit` are allowed and denied in `bits`.
fn count(bits: &[u64; WORDS], bit: u32) -> (usize, usize) {
    let mut on_off = (0, 0);
    for (id, c) in COMMANDS.iter().enumerate() {
        if c.categories & bit != 0 {
            if User::bit(bits, id) {
                on_off.0 += 1;
            } else {
                on_off.1 += 1;
            }
        }
    }
    on_off
}
