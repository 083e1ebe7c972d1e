//! The arguments of the GEO commands, with Redis 7.0's error texts and their order
//! (`georadiusGeneric`: the options are read left to right and the first bad one answers;
//! a `FROMMEMBER` whose member is missing answers where it stands).

use std::collections::HashMap;

use bytes::Bytes;

use super::hash::{self, Search, Shape};
use crate::cmd::util::{self, is, syntax};
use crate::resp::Reply;

/// Which search command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `GEORADIUS key lon lat radius unit ...`.
    Radius,
    /// `GEORADIUS_RO` (no STORE).
    RadiusRo,
    /// `GEORADIUSBYMEMBER key member radius unit ...`.
    ByMember,
    /// `GEORADIUSBYMEMBER_RO` (no STORE).
    ByMemberRo,
    /// `GEOSEARCH key FROM... BY... ...`.
    Search,
    /// `GEOSEARCHSTORE dest src FROM... BY... ... [STOREDIST]`.
    SearchStore,
}

impl Kind {
    /// The position of the source key.
    pub fn source_at(self) -> usize {
        if self == Kind::SearchStore { 2 } else { 1 }
    }

    fn geosearch(self) -> bool {
        matches!(self, Kind::Search | Kind::SearchStore)
    }

    fn can_store(self) -> bool {
        matches!(self, Kind::Radius | Kind::ByMember)
    }
}

/// Result order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// As found (cell by cell, by score in a cell).
    None,
    /// Nearest first.
    Asc,
    /// Farthest first.
    Desc,
}

/// A parsed search.
#[derive(Debug, Clone)]
pub struct Query {
    /// Centre, shape and unit (unset when the key does not exist: never used then).
    pub search: Search,
    /// `WITHDIST`.
    pub withdist: bool,
    /// `WITHHASH`.
    pub withhash: bool,
    /// `WITHCOORD`.
    pub withcoord: bool,
    /// `ASC`/`DESC` (COUNT without ANY implies ASC).
    pub sort: Sort,
    /// `COUNT` (0: all).
    pub count: u64,
    /// `ANY`: stop reading at `count` matches.
    pub any: bool,
    /// The destination and whether it stores distances (`STOREDIST`).
    pub store: Option<(Bytes, bool)>,
}

/// The members whose scores the parse may need (`GEORADIUSBYMEMBER`'s, every `FROMMEMBER`'s).
pub fn members_named(kind: Kind, args: &[Bytes]) -> Vec<Bytes> {
    match kind {
        Kind::ByMember | Kind::ByMemberRo => args.get(2).cloned().into_iter().collect(),
        Kind::Search | Kind::SearchStore => args
            .windows(2)
            .skip(kind.source_at())
            .filter(|w| is(&w[0], "frommember"))
            .map(|w| w[1].clone())
            .collect(),
        Kind::Radius | Kind::RadiusRo => Vec::new(),
    }
}

/// `ERR invalid longitude,latitude pair …` (`%f` each).
pub fn invalid_pair(lon: f64, lat: f64) -> Reply {
    Reply::err(format_args!(
        "invalid longitude,latitude pair {lon:.6},{lat:.6}"
    ))
}

/// A double as `getDoubleFromObject` reads it (`strtod`: an overflow or an underflow to zero
/// is refused), or `ERR <msg>`.
fn double(s: &[u8], msg: &str) -> Result<f64, Reply> {
    let bad = || Reply::err(msg);
    let v = util::float(s).map_err(|_| bad())?;
    let text = s.to_ascii_lowercase();
    let mantissa = text.split(|&c| c == b'e').next().unwrap_or(&[]);
    let overflow = v.is_infinite() && !text.windows(3).any(|w| w == b"inf");
    let underflow = v == 0.0 && mantissa.iter().any(|c| (b'1'..=b'9').contains(c));
    if overflow || underflow {
        return Err(bad());
    }
    Ok(v)
}

const NOT_FLOAT: &str = "value is not a valid float";

/// A longitude and a latitude inside the limits (`extractLongLatOrReply`).
pub fn lon_lat(lon: &[u8], lat: &[u8]) -> Result<(f64, f64), Reply> {
    let lon = double(lon, NOT_FLOAT)?;
    let lat = double(lat, NOT_FLOAT)?;
    if !hash::valid(lon, lat) {
        return Err(invalid_pair(lon, lat));
    }
    Ok((lon, lat))
}

/// Metres per unit (`extractUnitOrReply`).
pub fn unit(u: &[u8]) -> Result<f64, Reply> {
    Ok(match () {
        () if is(u, "m") => 1.0,
        () if is(u, "km") => 1000.0,
        () if is(u, "ft") => 0.3048,
        () if is(u, "mi") => 1609.34,
        () => {
            return Err(Reply::err(
                "unsupported unit provided. please use M, KM, FT, MI",
            ));
        }
    })
}

/// `radius unit` (`extractDistanceOrReply`): the radius and metres per unit.
fn radius(args: &[Bytes]) -> Result<(f64, f64), Reply> {
    let r = double(&args[0], "need numeric radius")?;
    if r < 0.0 {
        return Err(Reply::err("radius cannot be negative"));
    }
    Ok((r, unit(&args[1])?))
}

/// `width height unit` (`extractBoxOrReply`).
fn bbox(args: &[Bytes]) -> Result<(f64, f64, f64), Reply> {
    let w = double(&args[0], "need numeric width")?;
    let h = double(&args[1], "need numeric height")?;
    if h < 0.0 || w < 0.0 {
        return Err(Reply::err("height or width cannot be negative"));
    }
    Ok((w, h, unit(&args[2])?))
}

/// The position of a member from its score, or Redis's error for a missing one.
fn member_at(scores: &HashMap<Bytes, f64>, member: &Bytes) -> Result<(f64, f64), Reply> {
    scores
        .get(member)
        .map(|s| hash::position_of(*s))
        .ok_or_else(|| Reply::err("could not decode requested zset member"))
}

/// The options seen so far (`georadiusGeneric`'s locals).
struct Seen {
    frommember: bool,
    fromloc: bool,
    byradius: bool,
    bybox: bool,
}

/// Parses a search as `georadiusGeneric` does; `scores` is `None` when the key does not
/// exist (the member-relative centres are then not looked up).
pub fn query(
    kind: Kind,
    args: &[Bytes],
    scores: Option<&HashMap<Bytes, f64>>,
) -> Result<Query, Reply> {
    let mut q = Query {
        search: Search {
            lon: 0.0,
            lat: 0.0,
            shape: Shape::Radius(0.0),
            to_m: 1.0,
        },
        withdist: false,
        withhash: false,
        withcoord: false,
        sort: Sort::None,
        count: 0,
        any: false,
        store: (kind == Kind::SearchStore).then(|| (args[1].clone(), false)),
    };
    let base = match kind {
        Kind::Radius | Kind::RadiusRo => {
            (q.search.lon, q.search.lat) = lon_lat(&args[2], &args[3])?;
            let (r, to_m) = radius(&args[4..6])?;
            (q.search.shape, q.search.to_m) = (Shape::Radius(r), to_m);
            6
        }
        Kind::ByMember | Kind::ByMemberRo => {
            if let Some(scores) = scores {
                (q.search.lon, q.search.lat) = member_at(scores, &args[2])?;
                let (r, to_m) = radius(&args[3..5])?;
                (q.search.shape, q.search.to_m) = (Shape::Radius(r), to_m);
            }
            5
        }
        Kind::Search => 2,
        Kind::SearchStore => 3,
    };
    let mut seen = Seen {
        frommember: false,
        fromloc: false,
        byradius: false,
        bybox: false,
    };
    let opts = args.get(base..).unwrap_or(&[]);
    let mut i = 0;
    while i < opts.len() {
        i += option(kind, opts, i, scores, &mut q, &mut seen)?;
    }
    check(kind, args, &q, &seen)?;
    if q.count != 0 && q.sort == Sort::None && !q.any {
        q.sort = Sort::Asc;
    }
    Ok(q)
}

/// Reads the option at `opts[i]`: how many arguments it took.
fn option(
    kind: Kind,
    opts: &[Bytes],
    i: usize,
    scores: Option<&HashMap<Bytes, f64>>,
    q: &mut Query,
    seen: &mut Seen,
) -> Result<usize, Reply> {
    let a = &opts[i];
    let left = opts.len() - i - 1;
    let gs = kind.geosearch();
    if is(a, "withdist") {
        q.withdist = true;
    } else if is(a, "withhash") {
        q.withhash = true;
    } else if is(a, "withcoord") {
        q.withcoord = true;
    } else if is(a, "any") {
        q.any = true;
    } else if is(a, "asc") {
        q.sort = Sort::Asc;
    } else if is(a, "desc") {
        q.sort = Sort::Desc;
    } else if is(a, "count") && left >= 1 {
        let n = util::int(&opts[i + 1])?;
        if n <= 0 {
            return Err(Reply::err("COUNT must be > 0"));
        }
        q.count = n as u64;
        return Ok(2);
    } else if (is(a, "store") || is(a, "storedist")) && left >= 1 && kind.can_store() {
        q.store = Some((opts[i + 1].clone(), is(a, "storedist")));
        return Ok(2);
    } else if is(a, "storedist") && kind == Kind::SearchStore {
        q.store = q.store.take().map(|(k, _)| (k, true));
    } else if is(a, "frommember") && left >= 1 && gs && !seen.fromloc {
        if let Some(scores) = scores {
            (q.search.lon, q.search.lat) = member_at(scores, &opts[i + 1])?;
        }
        seen.frommember = true;
        return Ok(2);
    } else if is(a, "fromlonlat") && left >= 2 && gs && !seen.frommember {
        (q.search.lon, q.search.lat) = lon_lat(&opts[i + 1], &opts[i + 2])?;
        seen.fromloc = true;
        return Ok(3);
    } else if is(a, "byradius") && left >= 2 && gs && !seen.bybox {
        let (r, to_m) = radius(&opts[i + 1..i + 3])?;
        (q.search.shape, q.search.to_m) = (Shape::Radius(r), to_m);
        seen.byradius = true;
        return Ok(3);
    } else if is(a, "bybox") && left >= 3 && gs && !seen.byradius {
        let (w, h, to_m) = bbox(&opts[i + 1..i + 4])?;
        (q.search.shape, q.search.to_m) = (Shape::Box(w, h), to_m);
        seen.bybox = true;
        return Ok(4);
    } else {
        return Err(syntax());
    }
    Ok(1)
}

/// The checks after the options, in Redis's order.
fn check(kind: Kind, args: &[Bytes], q: &Query, seen: &Seen) -> Result<(), Reply> {
    if q.store.is_some() && (q.withdist || q.withhash || q.withcoord) {
        let who = if kind == Kind::SearchStore {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return Err(Reply::err(format_args!(
            "{who} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )));
    }
    let name = String::from_utf8_lossy(&args[0]);
    if kind.geosearch() && !(seen.frommember || seen.fromloc) {
        return Err(Reply::err(format_args!(
            "exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        )));
    }
    if kind.geosearch() && !(seen.byradius || seen.bybox) {
        return Err(Reply::err(format_args!(
            "exactly one of BYRADIUS and BYBOX can be specified for {name}"
        )));
    }
    if q.any && q.count == 0 {
        return Err(Reply::err("the ANY argument requires COUNT argument"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    fn err(kind: Kind, line: &str) -> String {
        let scores: HashMap<Bytes, f64> = [(Bytes::from_static(b"m"), 3479099956230698.0)].into();
        match query(kind, &args(line), Some(&scores)) {
            Err(Reply::Error(e)) => e,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn bad_arguments_answer_redis_errors_in_redis_order() {
        use Kind::*;
        let cases = [
            (
                Radius,
                "georadius k 200 0 1 m",
                "ERR invalid longitude,latitude pair 200.000000,0.000000",
            ),
            (Radius, "georadius k 0 0 x m", "ERR need numeric radius"),
            (
                Radius,
                "georadius k 0 0 -1 m",
                "ERR radius cannot be negative",
            ),
            (
                Radius,
                "georadius k 0 0 1 yd",
                "ERR unsupported unit provided. please use M, KM, FT, MI",
            ),
            (
                Radius,
                "georadius k 0 0 1 m count 0",
                "ERR COUNT must be > 0",
            ),
            (Radius, "georadius k 0 0 1 m count", "ERR syntax error"),
            (
                Radius,
                "georadius k 0 0 1 m any",
                "ERR the ANY argument requires COUNT argument",
            ),
            (
                RadiusRo,
                "georadius_ro k 0 0 1 m store d",
                "ERR syntax error",
            ),
            (
                Radius,
                "georadius k 0 0 1 m withdist store d",
                "ERR STORE option in GEORADIUS is not compatible with WITHDIST, WITHHASH and WITHCOORD options",
            ),
            (
                ByMember,
                "georadiusbymember k nope 1 m",
                "ERR could not decode requested zset member",
            ),
            (
                Search,
                "geosearch k bybox 1 1 m",
                "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for geosearch",
            ),
            (
                Search,
                "GeoSearch k frommember m",
                "ERR exactly one of BYRADIUS and BYBOX can be specified for GeoSearch",
            ),
            (
                Search,
                "geosearch k frommember m fromlonlat 0 0",
                "ERR syntax error",
            ),
            (
                Search,
                "geosearch k frommember m byradius 1 m bybox 1 1 m",
                "ERR syntax error",
            ),
            (
                Search,
                "geosearch k fromlonlat 0 0 bybox -1 1 m",
                "ERR height or width cannot be negative",
            ),
            (
                Search,
                "geosearch k fromlonlat 0 0 bybox x 1 m",
                "ERR need numeric width",
            ),
            (
                Search,
                "geosearch k frommember m byradius 1 m storedist",
                "ERR syntax error",
            ),
            (
                SearchStore,
                "geosearchstore d k frommember m byradius 1 m withhash",
                "ERR GEOSEARCHSTORE is not compatible with WITHDIST, WITHHASH and WITHCOORD options",
            ),
            (
                Search,
                "geosearch k frommember nope byradius x m",
                "ERR could not decode requested zset member",
            ),
            (
                Radius,
                "georadius k 1e400 0 1 m",
                "ERR value is not a valid float",
            ),
        ];
        for (kind, line, want) in cases {
            assert_eq!(err(kind, line), want, "{line}");
        }
    }

    #[test]
    fn a_missing_key_skips_the_member_lookups_but_not_the_syntax() {
        let q = query(
            Kind::ByMember,
            &args("georadiusbymember k nope 1 m store d"),
            None,
        )
        .unwrap();
        assert_eq!(q.store, Some((Bytes::from_static(b"d"), false)));
        let q = query(
            Kind::Search,
            &args("geosearch k frommember x bybox 1 2 km count 3"),
            None,
        )
        .unwrap();
        assert_eq!((q.count, q.sort), (3, Sort::Asc));
        assert!(query(Kind::Search, &args("geosearch k frommember x"), None).is_err());
    }

    #[test]
    fn members_named_finds_every_frommember() {
        let a = args("geosearchstore d k frommember a frommember b");
        assert_eq!(members_named(Kind::SearchStore, &a), args("a b"));
    }
}
