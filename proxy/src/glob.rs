//! Redis's glob patterns (`stringmatchlen` in `util.c`), matched in O(|pattern| · |subject|)
//! time whatever the pattern: `KEYS a*a*a*…b` against a long key used to backtrack
//! exponentially and hold the proxy's runtime for minutes.
//!
//! The pattern is read as tokens — `*`, or a one-byte matcher (`?`, a literal, an escaped
//! literal, a `[...]` class) — by the classic greedy algorithm that, on a mismatch, backtracks
//! only to the last `*` seen; nothing is compiled or allocated. Redis glob has no nested
//! constructs, so this gives exactly Redis's result, quirks included:
//! - `\x` is a literal `x`; a trailing `\` is a literal `\`;
//! - in a class, `^` first negates, `a-z` is a range (ends swapped if reversed; `a-]` is a
//!   range too, so that `]` does not close the class), `\x` is a literal, and a class without
//!   its `]` runs to the end of the pattern;
//! - an empty subject matches only the empty pattern (`*` does not match `""`; the commands
//!   treat a bare `*` pattern as "everything" before matching);
//! - the case-insensitive variant (`CONFIG GET`) folds ASCII case, except for an escaped
//!   byte inside a class, which Redis compares exactly.

/// A glob pattern (borrowed; nothing is compiled or allocated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern<'p> {
    p: &'p [u8],
    nocase: bool,
}

impl<'p> Pattern<'p> {
    /// `pattern`, matched case-sensitively (as KEYS, SCAN and HSCAN match).
    pub fn new(pattern: &'p [u8]) -> Self {
        Self {
            p: pattern,
            nocase: false,
        }
    }

    /// `pattern`, matched ignoring ASCII case (as `CONFIG GET` matches).
    pub fn nocase(pattern: &'p [u8]) -> Self {
        Self {
            p: pattern,
            nocase: true,
        }
    }

    /// Whether `s` matches.
    pub fn matches(&self, s: &[u8]) -> bool {
        self.matches_counting(s).0
    }

    /// Whether `s` matches, and the steps it took (loop turns plus pattern bytes examined):
    /// never more than `2 · (|pattern| + 1) · (|s| + 1)`.
    pub fn matches_counting(&self, s: &[u8]) -> (bool, u64) {
        let mut m = self.matching(s);
        loop {
            if let Some(r) = m.run(u64::MAX) {
                return (r, m.steps);
            }
        }
    }

    /// A match of `s` to run in slices ([`Matching::run`]).
    pub fn matching<'s>(&self, s: &'s [u8]) -> Matching<'p, 's> {
        Matching {
            pat: *self,
            s,
            pi: 0,
            si: 0,
            star: None,
            steps: 0,
        }
    }
}

/// A match in progress, resumable: a long one runs in slices of steps so that its caller can
/// yield to other work between them.
#[derive(Debug, Clone)]
pub struct Matching<'p, 's> {
    pat: Pattern<'p>,
    s: &'s [u8],
    /// Next pattern byte and next subject byte.
    pi: usize,
    si: usize,
    /// After the last `*` seen: the pattern index after it and where its run now ends.
    star: Option<(usize, usize)>,
    steps: u64,
}

impl Matching<'_, '_> {
    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Runs until the match is decided (`Some`) or about `budget` more steps were taken
    /// (`None`: call again to continue).
    pub fn run(&mut self, budget: u64) -> Option<bool> {
        let (p, s) = (self.pat.p, self.s);
        if s.is_empty() {
            // Redis: an empty subject matches only the empty pattern, even `*`.
            return Some(p.is_empty());
        }
        let limit = self.steps.saturating_add(budget);
        while self.steps < limit {
            self.steps += 1;
            if self.si == s.len() {
                while p.get(self.pi) == Some(&b'*') {
                    self.pi += 1;
                    self.steps += 1;
                }
                return Some(self.pi == p.len());
            }
            match p.get(self.pi) {
                Some(b'*') => {
                    while p.get(self.pi) == Some(&b'*') {
                        self.pi += 1;
                        self.steps += 1;
                    }
                    self.star = Some((self.pi, self.si));
                    continue;
                }
                Some(_) => {
                    let (next, hit) = one(p, self.pi, s[self.si], self.pat.nocase);
                    self.steps += (next - self.pi) as u64;
                    if hit {
                        self.pi = next;
                        self.si += 1;
                        continue;
                    }
                }
                None => {}
            }
            // A mismatch: let the last star take one more byte and retry what follows it.
            let Some((after, from)) = self.star else {
                return Some(false);
            };
            self.pi = after;
            self.si = from + 1;
            self.star = Some((after, from + 1));
        }
        None
    }
}

fn eq(a: u8, b: u8, nocase: bool) -> bool {
    a == b || (nocase && a.eq_ignore_ascii_case(&b))
}

/// Tests `c` against the one-byte token at `p[i]` (anything but `*`); returns the index
/// after the token and whether `c` matched.
fn one(p: &[u8], i: usize, c: u8, nocase: bool) -> (usize, bool) {
    match p[i] {
        b'?' => (i + 1, true),
        b'[' => class(p, i + 1, c, nocase),
        b'\\' if i + 1 < p.len() => (i + 2, eq(p[i + 1], c, nocase)),
        x => (i + 1, eq(x, c, nocase)),
    }
}

/// Tests `c` against the class whose body starts at `p[i]` (after the `[`); returns the
/// index after the class and whether `c` is in it.
fn class(p: &[u8], mut i: usize, c: u8, nocase: bool) -> (usize, bool) {
    let not = p.get(i) == Some(&b'^');
    if not {
        i += 1;
    }
    let mut hit = false;
    loop {
        match p.get(i) {
            // Unterminated: the class runs to the end of the pattern.
            None => break,
            // An escaped byte is compared exactly, even ignoring case (as Redis does).
            Some(b'\\') if i + 1 < p.len() => {
                hit |= p[i + 1] == c;
                i += 2;
            }
            Some(b']') => {
                i += 1;
                break;
            }
            Some(&a) if i + 2 < p.len() && p[i + 1] == b'-' => {
                let b = p[i + 2];
                let (lo, hi) = if a > b { (b, a) } else { (a, b) };
                hit |= if nocase {
                    (lo.to_ascii_lowercase()..=hi.to_ascii_lowercase())
                        .contains(&c.to_ascii_lowercase())
                } else {
                    (lo..=hi).contains(&c)
                };
                i += 3;
            }
            Some(&x) => {
                hit |= eq(x, c, nocase);
                i += 1;
            }
        }
    }
    (i, hit != not)
}

/// Whether `s` matches `pattern` (case-sensitive).
pub fn matches(pattern: &[u8], s: &[u8]) -> bool {
    Pattern::new(pattern).matches(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A line-by-line port of Redis 7.0's `stringmatchlen_impl` (util.c), recursion and
    /// `skipLongerMatches` included; `at` reads the NUL terminator past the end as C does.
    fn redis_match(p: &[u8], s: &[u8], nocase: bool) -> bool {
        let mut skip = false;
        redis_impl(p, s, nocase, &mut skip)
    }

    fn at(p: &[u8], i: usize) -> u8 {
        p.get(i).copied().unwrap_or(0)
    }

    fn lower(c: u8) -> u8 {
        c.to_ascii_lowercase()
    }

    #[allow(clippy::too_many_lines)]
    fn redis_impl(pat: &[u8], st: &[u8], nocase: bool, skip: &mut bool) -> bool {
        let (mut p, mut plen) = (0usize, pat.len());
        let (mut s, mut slen) = (0usize, st.len());
        while plen > 0 && slen > 0 {
            match at(pat, p) {
                b'*' => {
                    while plen > 0 && at(pat, p + 1) == b'*' {
                        p += 1;
                        plen -= 1;
                    }
                    if plen == 1 {
                        return true;
                    }
                    while slen > 0 {
                        if redis_impl(&pat[p + 1..p + plen], &st[s..s + slen], nocase, skip) {
                            return true;
                        }
                        if *skip {
                            return false;
                        }
                        s += 1;
                        slen -= 1;
                    }
                    *skip = true;
                    return false;
                }
                b'?' => {
                    s += 1;
                    slen -= 1;
                }
                b'[' => {
                    p += 1;
                    plen -= 1;
                    let not = at(pat, p) == b'^';
                    if not {
                        p += 1;
                        plen -= 1;
                    }
                    let mut matched = false;
                    loop {
                        if at(pat, p) == b'\\' && plen >= 2 {
                            p += 1;
                            plen -= 1;
                            if at(pat, p) == st[s] {
                                matched = true;
                            }
                        } else if at(pat, p) == b']' {
                            break;
                        } else if plen == 0 {
                            p -= 1;
                            plen += 1;
                            break;
                        } else if plen >= 3 && at(pat, p + 1) == b'-' {
                            let (mut start, mut end, mut c) = (at(pat, p), at(pat, p + 2), st[s]);
                            if start > end {
                                std::mem::swap(&mut start, &mut end);
                            }
                            if nocase {
                                (start, end, c) = (lower(start), lower(end), lower(c));
                            }
                            p += 2;
                            plen -= 2;
                            if c >= start && c <= end {
                                matched = true;
                            }
                        } else if (!nocase && at(pat, p) == st[s])
                            || (nocase && lower(at(pat, p)) == lower(st[s]))
                        {
                            matched = true;
                        }
                        p += 1;
                        plen -= 1;
                    }
                    if not {
                        matched = !matched;
                    }
                    if !matched {
                        return false;
                    }
                    s += 1;
                    slen -= 1;
                }
                c => {
                    let c = if c == b'\\' && plen >= 2 {
                        p += 1;
                        plen -= 1;
                        at(pat, p)
                    } else {
                        c
                    };
                    if (!nocase && c != st[s]) || (nocase && lower(c) != lower(st[s])) {
                        return false;
                    }
                    s += 1;
                    slen -= 1;
                }
            }
            p += 1;
            plen -= 1;
            if slen == 0 {
                while at(pat, p) == b'*' && plen > 0 {
                    p += 1;
                    plen -= 1;
                }
                break;
            }
        }
        plen == 0 && slen == 0
    }

    /// Cases checked against redis-server 7.0.15 (`HSET h <subject> 1`, then
    /// `HSCAN h 0 MATCH <pattern>`; KEYS/SCAN share `stringmatchlen`): (pattern, subject,
    /// matches).
    const REDIS_CASES: &[(&[u8], &[u8], bool)] = &[
        (b"*", b"", false),
        (b"**", b"", false),
        (b"", b"", true),
        (b"h?llo", b"hello", true),
        (b"h*llo", b"heeeello", true),
        (b"h[ae]llo", b"hallo", true),
        (b"h[^e]llo", b"hello", false),
        (b"h[a-b]llo", b"hbllo", true),
        (b"h[b-a]llo", b"hbllo", true),
        (b"key:\\*", b"key:*", true),
        (b"key:\\*", b"key:a", false),
        (b"user:*:name", b"user:42:name", true),
        (b"a*b", b"acd", false),
        (b"a\\", b"a\\", true),
        (b"a[", b"a[", false),
        (b"a[b", b"ab", true),
        (b"a[bc", b"ac", true),
        (b"a[^b", b"ac", true),
        (b"[a-]x", b"ax", false),
        (b"[a-]x]", b"b", false),
        (b"[a-]]", b"^", true),
        (b"[\\]]", b"]", true),
        (b"[\\]", b"]", true),
        (b"[]a]", b"a", false),
        (b"[]a]", b"]", false),
        (b"[^]", b"a", true),
        (b"[", b"a", false),
        (b"x*", b"x", true),
        (b"*x*", b"x", true),
        (b"?*", b"a", true),
        (b"*?*?", b"a", false),
        (
            b"a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            false,
        ),
    ];

    #[test]
    fn matches_like_redis_server_on_edge_cases() {
        for &(p, s, want) in REDIS_CASES {
            assert_eq!(
                matches(p, s),
                want,
                "{:?} vs {:?}",
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(s)
            );
            assert_eq!(
                redis_match(p, s, false),
                want,
                "reference: {:?} vs {:?}",
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn nocase_folds_ascii_case_like_config_get() {
        let p = Pattern::nocase(b"MAX*");
        assert!(p.matches(b"maxclients"));
        assert!(Pattern::nocase(b"[A-Z]x").matches(b"qX"));
        assert!(!Pattern::nocase(b"[\\A]").matches(b"a"));
        assert!(!Pattern::new(b"MAX*").matches(b"maxclients"));
    }

    #[test]
    fn the_exponential_pattern_takes_a_bounded_number_of_steps() {
        let mut p = b"a*".repeat(20);
        p.push(b'b');
        let s = vec![b'a'; 200];
        let (m, steps) = Pattern::new(&p).matches_counting(&s);
        assert!(!m);
        assert!(steps <= bound(&p, &s), "{steps} steps > {}", bound(&p, &s));
        // Resumed in slices of 7 steps, it reaches the same answer in the same steps.
        let mut slices = Pattern::new(&p).matching(&s);
        let mut turns = 0;
        let r = loop {
            turns += 1;
            if let Some(r) = slices.run(7) {
                break r;
            }
        };
        assert!(!r);
        assert_eq!(slices.steps(), steps);
        assert!(turns > 1);
    }

    fn bound(p: &[u8], s: &[u8]) -> u64 {
        2 * (p.len() as u64 + 1) * (s.len() as u64 + 1)
    }

    /// Bytes from a small alphabet that exercises every construct.
    fn glob_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(&b"ab*?[]^-\\A"[..]), 0..max)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The linear matcher agrees with a port of Redis's recursive one.
        #[test]
        fn agrees_with_redis_stringmatchlen(p in glob_bytes(10), s in glob_bytes(10), nocase in any::<bool>()) {
            let pat = if nocase { Pattern::nocase(&p) } else { Pattern::new(&p) };
            prop_assert_eq!(pat.matches(&s), redis_match(&p, &s, nocase));
        }

        /// Matching never takes more than 2 × (pattern + 1) × (subject + 1) steps, however the
        /// stars are placed.
        #[test]
        fn steps_are_bounded_by_pattern_times_subject(
            p in prop::collection::vec(prop::sample::select(&b"a*b?[]-\\"[..]), 0..64),
            s in prop::collection::vec(prop::sample::select(&b"ab"[..]), 0..256),
        ) {
            let (_, steps) = Pattern::new(&p).matches_counting(&s);
            prop_assert!(steps <= bound(&p, &s), "{} steps > {}", steps, bound(&p, &s));
        }
    }
}
