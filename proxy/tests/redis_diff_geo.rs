//! The GEO commands against a real `redis-server`: a fixed corpus naming every command,
//! option and error, then thousands of random GEO commands (positions near Sicily, near the
//! poles, on the antimeridian and at the limits; keys in one range and across ranges; a
//! string key for WRONGTYPE) sent to both, in RESP2 and in RESP3, every reply compared byte
//! for byte, and now and then the whole of every key (`ZRANGE … WITHSCORES`: the stored
//! geohash scores and the STORE results). Each member has positions of its own, so no two
//! members are equally far from a centre (Redis's partial sort orders ties its own way).
//! Fails under `CI=true` when redis-server is missing, skips otherwise
//! (`test_support::redis`).
#![allow(clippy::unwrap_used)]

mod common;

use common::diff::{Differ, Rng};
use common::{Client, Env};

/// `{g}…` share a range; the plain names spread over ranges.
const KEYS: &[&str] = &["{g}a", "{g}b", "{g}c", "p", "q", "r"];
const MEMBERS: &[&str] = &["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"];
/// Two positions per member (`m<i>` uses `POSITIONS[i]`), none shared.
const POSITIONS: &[[&str; 2]] = &[
    ["13.361389 38.115556", "13.5 38.2"],
    ["15.087269 37.502669", "15.1 37.6"],
    ["13.583333 37.316667", "14.01 37.73"],
    ["-179.99 0.5", "179.97 -0.3"],
    ["12.758489 38.788135", "12.9 38.02"],
    ["0.1 85.05", "-120.3 -84.9"],
    ["180 85.05112878", "-180 -85.05112878"],
    ["13.1 38.01", "14.9 37.1"],
];
const BAD_POSITIONS: &[&str] = &["200 0", "0 86", "x 1", "1 inf", "-181 10", "1e400 0"];
const CENTRES: &[&str] = &[
    "13.361389 38.115556",
    "15 37",
    "14.5 37.6",
    "13.4 38.1",
    "12.8 38.7",
    "0 0",
    "179.99 0",
    "-179.9 0.1",
    "0 85",
    "-120 -84.95",
    "-45.5 84",
];
const RADII: &[&str] = &[
    "0", "1", "50", "100", "150", "300", "100000", "200", "5000", "6000000", "-1", "x", "1.5e3",
];
const UNITS: &[&str] = &["m", "km", "km", "km", "ft", "mi", "KM", "yd"];
const OPTIONS: &[&str] = &[
    "",
    "WITHDIST",
    "WITHHASH",
    "WITHCOORD",
    "ASC",
    "DESC",
    "COUNT 2",
    "COUNT 1 ANY",
    "ANY",
    "COUNT 0",
    "COUNT x",
    "COUNT",
    "WITHDIST WITHCOORD WITHHASH",
    "DESC COUNT 3",
    "bogus",
];

/// The fixed corpus: every command, option and error at least once.
const FIXED: &[&str] = &[
    "GEOADD {g}a 13.361389 38.115556 m0 15.087269 37.502669 m1",
    "GEOADD {g}a NX 13.583333 37.316667 m2 13.5 38.2 m0",
    "GEOADD {g}a XX CH 13.5 38.2 m0 1 1 m9",
    "GEOADD {g}a NX XX 1 1 m0",
    "GEOADD {g}a CH CH CH",
    "GEOADD {g}a 1 2",
    "GEOADD {g}a 200 1 m0",
    "GEOADD {g}a 1 86 m0",
    "GEOADD {g}a x 1 m0",
    "GEOADD {g}a GT 1 1 m0",
    "GEOADD s 1 1 m0",
    "GEOADD {g}a 1 1",
    "TYPE {g}a",
    "ZRANGE {g}a 0 -1 WITHSCORES",
    "GEOPOS {g}a m0 nope m1",
    "GEOPOS nokey m0",
    "GEOPOS s m0",
    "GEOPOS {g}a",
    "GEOHASH {g}a m0 m1 nope",
    "GEOHASH nokey m0",
    "GEOHASH s m0",
    "GEODIST {g}a m0 m1",
    "GEODIST {g}a m0 m1 km",
    "GEODIST {g}a m0 m1 MI",
    "GEODIST {g}a m0 m1 ft",
    "GEODIST {g}a m0 m1 yd",
    "GEODIST {g}a m0 m1 km x",
    "GEODIST {g}a m0 nope",
    "GEODIST nokey m0 m1",
    "GEODIST s m0 m1",
    "GEODIST s m0 m1 yd",
    "GEODIST {g}a m0",
    "GEORADIUS {g}a 15 37 200 km",
    "GEORADIUS {g}a 15 37 200 km WITHDIST WITHCOORD WITHHASH ASC",
    "GEORADIUS {g}a 15 37 200 km DESC COUNT 1",
    "GEORADIUS {g}a 15 37 200 km COUNT 1 ANY",
    "GEORADIUS {g}a 15 37 200 km ANY",
    "GEORADIUS {g}a 15 37 200 km COUNT 0",
    "GEORADIUS {g}a 15 37 200 km COUNT -1",
    "GEORADIUS {g}a 15 37 200 km COUNT",
    "GEORADIUS {g}a 15 37 200 km STORE",
    "GEORADIUS {g}a 15 37 200 km STORE {g}b",
    "ZRANGE {g}b 0 -1 WITHSCORES",
    "GEORADIUS {g}a 15 37 200 km STOREDIST {g}b",
    "ZRANGE {g}b 0 -1 WITHSCORES",
    "GEORADIUS {g}a 15 37 200 km STOREDIST p",
    "ZRANGE p 0 -1 WITHSCORES",
    "GEORADIUS {g}a 15 37 1 m STORE p",
    "EXISTS p",
    "GEORADIUS nokey 15 37 200 km STORE {g}b",
    "EXISTS {g}b",
    "GEORADIUS nokey 15 37 200 km",
    "GEORADIUS nokey 15 37 x km",
    "GEORADIUS {g}a 15 37 200 km WITHDIST STORE {g}b",
    "GEORADIUS {g}a 200 37 200 km",
    "GEORADIUS {g}a 15 37 x km",
    "GEORADIUS {g}a 15 37 -1 km",
    "GEORADIUS {g}a 15 37 1 yd",
    "GEORADIUS {g}a 15 37 1 km bogus",
    "GEORADIUS s 200 37 1 km",
    "GEORADIUS_RO {g}a 15 37 200 km WITHDIST",
    "GEORADIUS_RO {g}a 15 37 200 km STORE {g}b",
    "GEORADIUS_RO {g}a 15 37 200 km STOREDIST {g}b",
    "GEORADIUSBYMEMBER {g}a m0 200 km WITHDIST ASC",
    "GEORADIUSBYMEMBER {g}a m0 200 km STORE {g}c",
    "ZRANGE {g}c 0 -1 WITHSCORES",
    "GEORADIUSBYMEMBER {g}a nope 200 km",
    "GEORADIUSBYMEMBER {g}a nope x km",
    "GEORADIUSBYMEMBER {g}a m0 x km",
    "GEORADIUSBYMEMBER nokey nope x km",
    "GEORADIUSBYMEMBER nokey nope x km STORE {g}c",
    "GEORADIUSBYMEMBER nokey nope x km bogus",
    "GEORADIUSBYMEMBER s m0 1 km",
    "GEORADIUSBYMEMBER_RO {g}a m1 100 km WITHCOORD",
    "GEORADIUSBYMEMBER_RO {g}a m1 100 km STORE {g}c",
    "GEOSEARCH {g}a FROMMEMBER m0 BYRADIUS 200 km ASC WITHDIST",
    "GEOSEARCH {g}a FROMLONLAT 15 37 BYBOX 400 400 km DESC WITHCOORD",
    "GEOSEARCH {g}a FROMLONLAT 15 37 BYBOX 400 400 km COUNT 1 ANY WITHHASH",
    "GEOSEARCH {g}a FROMMEMBER m0 FROMLONLAT 15 37 BYRADIUS 1 km",
    "GEOSEARCH {g}a FROMLONLAT 15 37 FROMMEMBER m0 BYRADIUS 1 km",
    "GEOSEARCH {g}a FROMMEMBER m0 FROMMEMBER m1 BYRADIUS 100 km",
    "GEOSEARCH {g}a FROMMEMBER m0 BYRADIUS 1 km BYBOX 1 1 km",
    "GEOSEARCH {g}a FROMMEMBER m0 BYBOX 1 1 km BYRADIUS 1 km",
    "GEOSEARCH {g}a FROMMEMBER nope BYRADIUS 1 km",
    "GEOSEARCH {g}a FROMMEMBER m0",
    "GEOSEARCH {g}a BYRADIUS 1 km",
    "geosearch {g}a BYRADIUS 1 km",
    "GEOSEARCH {g}a FROMLONLAT 15 37 BYBOX -1 1 km",
    "GEOSEARCH {g}a FROMLONLAT 15 37 BYBOX x 1 km",
    "GEOSEARCH {g}a FROMLONLAT 15 37 BYBOX 1 x km",
    "GEOSEARCH {g}a FROMLONLAT 15 37 BYBOX 1 1 yd",
    "GEOSEARCH {g}a FROMLONLAT 15 37 BYBOX 1 1",
    "GEOSEARCH {g}a FROMLONLAT 15 37 BYRADIUS 1 km STORE {g}b",
    "GEOSEARCH {g}a FROMLONLAT 15 37 BYRADIUS 1 km STOREDIST",
    "GEOSEARCH {g}a FROMLONLAT 15 37 BYRADIUS 1 km ANY",
    "GEOSEARCH {g}a FROMLONLAT 15 200 BYRADIUS 1 km",
    "GEOSEARCH nokey FROMMEMBER nope BYRADIUS 1 km",
    "GEOSEARCH nokey FROMMEMBER nope",
    "GEOSEARCH s FROMMEMBER nope BYRADIUS 1 km",
    "GEOSEARCH {g}a FROMLONLAT 15 37 BYRADIUS 1 km",
    "GEOSEARCHSTORE {g}b {g}a FROMMEMBER m0 BYRADIUS 200 km",
    "ZRANGE {g}b 0 -1 WITHSCORES",
    "GEOSEARCHSTORE {g}b {g}a FROMMEMBER m0 BYRADIUS 200 km STOREDIST COUNT 2 DESC",
    "ZRANGE {g}b 0 -1 WITHSCORES",
    "GEOSEARCHSTORE q {g}a FROMLONLAT 15 37 BYBOX 500 500 km STOREDIST",
    "ZRANGE q 0 -1 WITHSCORES",
    "GEOSEARCHSTORE {g}b {g}a FROMMEMBER m0 BYRADIUS 200 km WITHDIST",
    "GEOSEARCHSTORE {g}b {g}a FROMMEMBER m0 BYRADIUS 200 km STORE x",
    "GEOSEARCHSTORE {g}b nokey FROMMEMBER m0 BYRADIUS 200 km",
    "EXISTS {g}b",
    "GEOSEARCHSTORE {g}b s FROMMEMBER m0 BYRADIUS 200 km",
    "ZADD {g}c 5 plain",
    "GEOPOS {g}c plain",
    "GEOHASH {g}c plain",
    // Scores no GEOADD writes decode as Redis's `(uint64_t)score` cast makes them.
    "ZADD {g}c -1 neg 1e300 huge inf pinf -inf ninf 9007199254740993 big 0.5 half",
    "GEOPOS {g}c neg huge pinf ninf big half",
    "GEOHASH {g}c neg huge pinf ninf big half",
    "GEODIST {g}c neg big km",
    "GEOSEARCH {g}c FROMMEMBER half BYRADIUS 100 km WITHHASH WITHCOORD WITHDIST",
    "GEORADIUS {g}a 15 37",
    "GEOSEARCH {g}a FROMLONLAT",
    "GEOSEARCHSTORE {g}b {g}a FROMLONLAT 1 1",
];

fn triples(rng: &mut Rng, n: u64) -> String {
    (0..n)
        .map(|_| {
            let i = rng.below(MEMBERS.len() as u64) as usize;
            let pos = if rng.below(12) == 0 {
                rng.pick(BAD_POSITIONS)
            } else {
                POSITIONS[i][rng.below(2) as usize]
            };
            format!("{pos} {}", MEMBERS[i])
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn options(rng: &mut Rng) -> String {
    (0..rng.below(3))
        .map(|_| rng.pick(OPTIONS))
        .filter(|o| !o.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One random command.
fn command(rng: &mut Rng) -> String {
    let k = rng.pick(KEYS);
    let m = rng.pick(MEMBERS);
    let (c, r, u) = (rng.pick(CENTRES), rng.pick(RADII), rng.pick(UNITS));
    let o = options(rng);
    let store = match rng.below(6) {
        0 => format!(" STORE {}", rng.pick(KEYS)),
        1 => format!(" STOREDIST {}", rng.pick(KEYS)),
        _ => String::new(),
    };
    let from = if rng.below(2) == 0 {
        format!("FROMMEMBER {m}")
    } else {
        format!("FROMLONLAT {c}")
    };
    let by = if rng.below(2) == 0 {
        format!("BYRADIUS {r} {u}")
    } else {
        format!("BYBOX {} {} {u}", rng.pick(RADII), rng.pick(RADII))
    };
    match rng.below(14) {
        0..=3 => {
            let f = rng.pick(&["", "NX ", "XX ", "CH ", "XX CH ", "NX CH "]);
            let n = 1 + rng.below(3);
            format!("GEOADD {k} {f}{}", triples(rng, n))
        }
        4 => format!("GEOPOS {k} {m} {}", rng.pick(MEMBERS)),
        5 => format!("GEOHASH {k} {m} {}", rng.pick(MEMBERS)),
        6 => format!("GEODIST {k} {m} {} {}", rng.pick(MEMBERS), rng.pick(UNITS)),
        7 => format!("GEORADIUS {k} {c} {r} {u} {o}{store}"),
        8 => format!("GEORADIUS_RO {k} {c} {r} {u} {o}"),
        9 => format!("GEORADIUSBYMEMBER {k} {m} {r} {u} {o}{store}"),
        10 => format!("GEORADIUSBYMEMBER_RO {k} {m} {r} {u} {o}"),
        11 | 12 => format!("GEOSEARCH {k} {from} {by} {o}"),
        _ => format!(
            "GEOSEARCHSTORE {} {k} {from} {by} {o}{}",
            rng.pick(KEYS),
            rng.pick(&["", " STOREDIST"])
        ),
    }
}

fn run_script(seed: u64, protocol3: bool, n: usize) {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(4);
    let mut d = Differ::new(Client::connect(redis.addr()), env.client());
    d.both("FLUSHALL");
    d.both("SET s string");
    if protocol3 {
        d.both("HELLO 3");
    }
    for line in FIXED {
        d.check(line);
    }
    let mut rng = Rng(seed);
    let mut found = 0;
    for _ in 0..n {
        let line = command(&mut rng);
        let want = d.check(&line);
        // Redis answered a non-empty array.
        let hit = want.starts_with('*') && !want.starts_with("*0\r") && !want.starts_with("*-1");
        found += usize::from(hit && line.starts_with("GEO") && line.contains(" BY"));
        found += usize::from(hit && line.starts_with("GEORADIUS"));
        if rng.below(40) == 0 {
            for k in KEYS {
                d.check(&format!("ZRANGE {k} 0 -1 WITHSCORES"));
            }
        }
    }
    d.assert_same();
    // The corpus is not vacuous: many searches find something.
    assert!(found > n / 20, "only {found} searches found members");
    // INFO stats counts what the searches read and kept (process-wide: other tests add).
    let info = d.proxy.cmd("INFO stats");
    let stat = |name: &str| -> u64 {
        let at = info.find(name).unwrap() + name.len() + 1;
        info[at..].split("\r\n").next().unwrap().parse().unwrap()
    };
    let (read, matched) = (
        stat("tierkv_geo_members_read"),
        stat("tierkv_geo_members_matched"),
    );
    assert!(
        matched as usize >= found && read >= matched,
        "read {read}, matched {matched}"
    );
}

#[test]
fn geo_commands_answer_as_redis_server_in_resp2() {
    run_script(18, false, 3000);
}

#[test]
fn geo_commands_answer_as_redis_server_in_resp3() {
    run_script(1818, true, 2000);
}
