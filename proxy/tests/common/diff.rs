//! Differential tests against a real `redis-server`: the same command lines sent to it and
//! to the proxy, replies compared, differences collected and reported together.

use super::Client;

/// A deterministic generator of random commands (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The arguments of a command line (split at single spaces; empty ones dropped).
pub fn args(line: &str) -> Vec<&[u8]> {
    line.split(' ')
        .filter(|a| !a.is_empty())
        .map(str::as_bytes)
        .collect()
}

/// A `redis-server` client and a proxy client fed the same commands.
pub struct Differ {
    pub redis: Client,
    pub proxy: Client,
    diffs: Vec<String>,
    sent: usize,
}

impl Differ {
    pub fn new(redis: Client, proxy: Client) -> Differ {
        Differ {
            redis,
            proxy,
            diffs: Vec::new(),
            sent: 0,
        }
    }

    /// Sends `line` to both without comparing (setup: `FLUSHALL`, `HELLO 3`, ...).
    pub fn both(&mut self, line: &str) {
        self.redis.cmd(line);
        self.proxy.cmd(line);
    }

    /// Sends `line` to both and compares the replies byte for byte; Redis's reply.
    pub fn check(&mut self, line: &str) -> String {
        self.check_as(line, |_, reply| reply.to_string())
    }

    /// Sends `line` to both and compares the replies as `comparable` (line, reply) shapes
    /// them (for replies Redis orders or picks at random); Redis's reply.
    pub fn check_as(&mut self, line: &str, comparable: impl Fn(&str, &str) -> String) -> String {
        let want = self.redis.cmd_args(&args(line));
        let got = self.proxy.cmd_args(&args(line));
        self.sent += 1;
        if comparable(line, &want) != comparable(line, &got) {
            self.diffs.push(format!(
                "#{} {line:?}\n  redis: {want:?}\n  proxy: {got:?}",
                self.sent
            ));
        }
        want
    }

    /// Fails with the first 30 differences, if any.
    pub fn assert_same(&self) {
        assert!(
            self.diffs.is_empty(),
            "{} differences in {} commands:\n{}",
            self.diffs.len(),
            self.sent,
            self.diffs
                .iter()
                .take(30)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Whether a reply carries elements: a non-empty array or a bulk string.
pub fn carries_elements(reply: &str) -> bool {
    (reply.starts_with('*') && !reply.starts_with("*0") && !reply.starts_with("*-"))
        || (reply.starts_with('$') && !reply.starts_with("$-"))
}
