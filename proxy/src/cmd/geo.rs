//! The GEO commands (`geo.c`). A geo set is a sorted set whose scores are 52-bit geohashes
//! ([`hash`]): `GEOADD` is a `ZADD` of the encoded positions, `GEOPOS`, `GEOHASH` and
//! `GEODIST` decode the scores of `ZMSCORE`, and the searches ([`search`]) read the score
//! ranges of up to nine cells of the key and filter them by exact distance in the proxy.
//! `TYPE` says `zset` and every sorted-set command works on a geo set.

pub mod hash;
mod parse;
mod search;

use bytes::Bytes;
use net::message::kv::{KvOp, OpResult, ZSetOp};
use net::message::zset::add_flags;

use super::action::{Action, single};
use super::spec::{RS, Spec, WD, spec};
use super::util::{is, syntax, unexpected};
use crate::resp::Reply;

pub use search::{GeoSearch, Kind, members_read_and_matched};

const WDM: &[&str] = &["write", "denyoom", "movablekeys"];

/// The commands of this module, sorted by name (arity, flags and key positions as Redis 7.0
/// reports them).
pub static SPECS: &[Spec] = &[
    spec!("geoadd", -5, WD, 1, 1, 1),
    spec!("geodist", -4, RS, 1, 1, 1),
    spec!("geohash", -2, RS, 1, 1, 1),
    spec!("geopos", -2, RS, 1, 1, 1),
    spec!("georadius", -6, WDM, 1, 1, 1),
    spec!("georadius_ro", -6, RS, 1, 1, 1),
    spec!("georadiusbymember", -5, WDM, 1, 1, 1),
    spec!("georadiusbymember_ro", -5, RS, 1, 1, 1),
    spec!("geosearch", -7, RS, 1, 1, 1),
    spec!("geosearchstore", -8, WD, 1, 2, 1),
];

/// Dispatches a command of [`SPECS`] (arity already checked).
pub fn dispatch(name: &'static str, args: &[Bytes]) -> Action {
    match build(name, args) {
        Ok(a) => a,
        Err(r) => Action::Reply(r),
    }
}

fn build(name: &'static str, args: &[Bytes]) -> Result<Action, Reply> {
    let kind = match name {
        "geoadd" => return geoadd(args),
        "geopos" | "geohash" => return Ok(decode_members(name == "geopos", args)),
        "geodist" => return geodist(args),
        "georadius" => Kind::Radius,
        "georadius_ro" => Kind::RadiusRo,
        "georadiusbymember" => Kind::ByMember,
        "georadiusbymember_ro" => Kind::ByMemberRo,
        "geosearch" => Kind::Search,
        "geosearchstore" => Kind::SearchStore,
        _ => return Err(Reply::err("internal error: not a command of this module")),
    };
    Ok(Action::rounds(GeoSearch::new(kind, args.to_vec())))
}

/// `GEOADD key [NX|XX] [CH] lon lat member ...`: a `ZADD` of the encoded positions.
fn geoadd(args: &[Bytes]) -> Result<Action, Reply> {
    let mut flags = 0;
    let mut at = 2;
    while let Some(a) = args.get(at) {
        if is(a, "nx") {
            flags |= add_flags::NX;
        } else if is(a, "xx") {
            flags |= add_flags::XX;
        } else if is(a, "ch") {
            flags |= add_flags::CH;
        } else {
            break;
        }
        at += 1;
    }
    let rest = &args[at..];
    let both = add_flags::NX | add_flags::XX;
    if rest.is_empty() || rest.len() % 3 != 0 || flags & both == both {
        return Err(syntax());
    }
    let mut scores = Vec::with_capacity(rest.len() / 3);
    let mut members = Vec::with_capacity(rest.len() / 3);
    for triple in rest.chunks_exact(3) {
        let (lon, lat) = parse::lon_lat(&triple[0], &triple[1])?;
        let score = hash::score_of(lon, lat).ok_or_else(|| parse::invalid_pair(lon, lat))?;
        scores.push(score as f64);
        members.push(triple[2].clone());
    }
    let op = ZSetOp::Add {
        key: args[1].clone(),
        flags,
        scores,
        members,
    };
    Ok(single(&args[1], KvOp::ZSet { op }, |r| match r {
        OpResult::Int { value } => Reply::Int(value),
        other => unexpected(&other),
    }))
}

/// `GEOPOS` (positions) and `GEOHASH` (11-character geohashes) of members; a missing member
/// (or key) answers a null.
fn decode_members(pos: bool, args: &[Bytes]) -> Action {
    let op = ZSetOp::Scores {
        key: args[1].clone(),
        members: args[2..].to_vec(),
    };
    single(&args[1], KvOp::ZSet { op }, move |r| match r {
        OpResult::Floats { values } => Reply::Array(
            values
                .into_iter()
                .map(|v| match v {
                    None if pos => Reply::NilArray,
                    None => Reply::Nil,
                    Some(score) if pos => {
                        let (lon, lat) = hash::position_of(score);
                        Reply::Array(vec![Reply::HumanDouble(lon), Reply::HumanDouble(lat)])
                    }
                    Some(score) => Reply::bulk(&hash::geohash_string(score)),
                })
                .collect(),
        ),
        other => unexpected(&other),
    })
}

/// `GEODIST key m1 m2 [unit]`: the distance, 4 decimals; null when a member is missing.
fn geodist(args: &[Bytes]) -> Result<Action, Reply> {
    let to_m = match args.len() {
        4 => 1.0,
        5 => parse::unit(&args[4])?,
        _ => return Err(syntax()),
    };
    let op = ZSetOp::Scores {
        key: args[1].clone(),
        members: args[2..4].to_vec(),
    };
    Ok(single(&args[1], KvOp::ZSet { op }, move |r| match r {
        OpResult::Floats { values } => match values[..] {
            [Some(a), Some(b)] => {
                let (lon1, lat1) = hash::position_of(a);
                let (lon2, lat2) = hash::position_of(b);
                let d = hash::distance(lon1, lat1, lon2, lat2) / to_m;
                Reply::Bulk(Bytes::from(hash::fixed4(d)))
            }
            _ => Reply::Nil,
        },
        other => unexpected(&other),
    }))
}
