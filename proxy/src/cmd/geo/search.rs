//! `GEORADIUS`, `GEORADIUSBYMEMBER` (and their `_RO` forms), `GEOSEARCH` and
//! `GEOSEARCHSTORE`, run alone at their place in the pipeline, in up to three rounds:
//!
//! 1. `ZCARD` of the source (its type and existence: WRONGTYPE comes before any argument
//!    error, as in Redis) with the scores of the members a centre may be taken from;
//! 2. the parse ([`super::parse::query`]) and, when the key exists, one score-range read
//!    (`ZRANGEBYSCORE min (max`) per cell of the nine that cover the area, all in one batch
//!    to the key's range; the proxy decodes each score and keeps what lies inside;
//! 3. for the STORE forms, one `Replace` of the destination.
//!
//! Not atomic, as `ZRANGESTORE` across ranges is not: a write between the rounds is seen
//! or not. A cell holding many members is read whole (as Redis scans it whole).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use net::message::kv::{KvOp, OpResult, ZSetOp};
use net::message::zset::by;

use super::hash::{boxes_to_read, fixed4, position_of, score_range};
use super::parse::{Query, Sort, members_named, query};
use crate::cmd::action::{AsyncCommand, keyed};
use crate::cmd::util::{exec_error, unexpected};
use crate::db::DbRouter;
use crate::resp::Reply;
use crate::route::ExecError;

pub use super::parse::Kind;

/// A geo search command and its arguments (parsed once the key's state is known).
#[derive(Debug, Clone)]
pub struct GeoSearch {
    kind: Kind,
    args: Vec<Bytes>,
}

impl GeoSearch {
    /// The command `kind` with all its arguments (name included).
    pub fn new(kind: Kind, args: Vec<Bytes>) -> Self {
        Self { kind, args }
    }
}

impl AsyncCommand for GeoSearch {
    fn run<'a>(self: Box<Self>, router: &'a DbRouter<'_>) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            match run(router, *self).await {
                Ok(r) | Err(r) => r,
            }
        })
    }
}

/// Members the searches read from their cells (`tierkv_geo_members_read` in `INFO stats`).
static MEMBERS_READ: AtomicU64 = AtomicU64::new(0);
/// Of those, members inside the search area (`tierkv_geo_members_matched`): a low ratio
/// means dense cells read for little.
static MEMBERS_MATCHED: AtomicU64 = AtomicU64::new(0);

/// The members the searches of this process read and matched, since start.
pub fn members_read_and_matched() -> (u64, u64) {
    (
        MEMBERS_READ.load(Ordering::Relaxed),
        MEMBERS_MATCHED.load(Ordering::Relaxed),
    )
}

/// A member inside the area.
#[derive(Debug, Clone)]
struct Point {
    member: Bytes,
    score: f64,
    lon: f64,
    lat: f64,
    /// Metres from the centre.
    dist_m: f64,
}

async fn run(router: &DbRouter<'_>, cmd: GeoSearch) -> Result<Reply, Reply> {
    let src = cmd.args[cmd.kind.source_at()].clone();
    let (exists, scores) = key_state(router, &src, members_named(cmd.kind, &cmd.args)).await?;
    let q = query(cmd.kind, &cmd.args, exists.then_some(&scores))?;
    let points = if exists {
        ordered(read_area(router, &src, &q).await?, &q)
    } else if q.store.is_none() {
        return Ok(Reply::Array(Vec::new()));
    } else {
        Vec::new()
    };
    match &q.store {
        None => Ok(reply(points, &q)),
        Some((dest, storedist)) => store(router, dest, points, *storedist, q.search.to_m).await,
    }
}

/// Whether the key exists (WRONGTYPE if it is not a sorted set) and the scores of `members`.
async fn key_state(
    router: &DbRouter<'_>,
    key: &Bytes,
    members: Vec<Bytes>,
) -> Result<(bool, HashMap<Bytes, f64>), Reply> {
    let mut ops = vec![keyed(key, zop(ZSetOp::Card { key: key.clone() }))];
    if !members.is_empty() {
        let op = ZSetOp::Scores {
            key: key.clone(),
            members: members.clone(),
        };
        ops.push(keyed(key, zop(op)));
    }
    let mut res = router.exec(ops).await.into_iter();
    let exists = match res.next() {
        Some(Ok(OpResult::Int { value })) => value > 0,
        Some(Ok(other)) => return Err(unexpected(&other)),
        Some(Err(e)) => return Err(exec_error(&e)),
        None => return Err(Reply::err("internal error: no result")),
    };
    let scores = match res.next() {
        None => HashMap::new(),
        Some(Ok(OpResult::Floats { values })) => members
            .into_iter()
            .zip(values)
            .filter_map(|(m, s)| Some((m, s?)))
            .collect(),
        Some(Ok(other)) => return Err(unexpected(&other)),
        Some(Err(e)) => return Err(exec_error(&e)),
    };
    Ok((exists, scores))
}

fn zop(op: ZSetOp) -> KvOp {
    KvOp::ZSet { op }
}

/// The members inside the area, cell by cell as Redis visits them (`membersOfAllNeighbors`),
/// stopping at `COUNT` with `ANY`.
async fn read_area(router: &DbRouter<'_>, key: &Bytes, q: &Query) -> Result<Vec<Point>, Reply> {
    let ops = boxes_to_read(&q.search.boxes())
        .into_iter()
        .map(|b| {
            let (min, max) = score_range(b);
            let op = ZSetOp::Range {
                key: key.clone(),
                by: by::SCORE,
                min: Bytes::from(min.to_string()),
                max: Bytes::from(format!("({max}")),
                rev: false,
                offset: 0,
                count: -1,
            };
            keyed(key, zop(op))
        })
        .collect();
    let limit = if q.any { q.count } else { 0 } as usize;
    let full = |n: usize| limit > 0 && n >= limit;
    let mut out = Vec::new();
    let mut read = 0u64;
    for res in router.exec(ops).await {
        if full(out.len()) {
            break;
        }
        let items = match res {
            Ok(OpResult::Scored { items }) => items,
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => return Err(exec_error(&e)),
        };
        for (member, score) in items {
            read += 1;
            let (lon, lat) = position_of(score);
            if let Some(dist_m) = q.search.within(lon, lat) {
                out.push(Point {
                    member,
                    score,
                    lon,
                    lat,
                    dist_m,
                });
            }
            if full(out.len()) {
                break;
            }
        }
    }
    MEMBERS_READ.fetch_add(read, Ordering::Relaxed);
    MEMBERS_MATCHED.fetch_add(out.len() as u64, Ordering::Relaxed);
    Ok(out)
}

/// Sorted as asked (a stable sort, as glibc's `qsort` is), cut at `COUNT`.
fn ordered(mut points: Vec<Point>, q: &Query) -> Vec<Point> {
    let by_dist = |a: &Point, b: &Point| a.dist_m.total_cmp(&b.dist_m);
    match q.sort {
        Sort::None => {}
        Sort::Asc => points.sort_by(by_dist),
        Sort::Desc => points.sort_by(|a, b| by_dist(b, a)),
    }
    if q.count > 0 {
        points.truncate(usize::try_from(q.count).unwrap_or(usize::MAX));
    }
    points
}

/// The reply: members, or per member an array of the member and what was asked (distance
/// in the unit with 4 decimals, the score as an integer, the position).
fn reply(points: Vec<Point>, q: &Query) -> Reply {
    let plain = !(q.withdist || q.withhash || q.withcoord);
    let to_m = q.search.to_m;
    Reply::Array(
        points
            .into_iter()
            .map(|p| {
                if plain {
                    return Reply::Bulk(p.member);
                }
                let mut v = vec![Reply::Bulk(p.member)];
                if q.withdist {
                    v.push(Reply::Bulk(Bytes::from(fixed4(p.dist_m / to_m))));
                }
                if q.withhash {
                    v.push(Reply::Int(p.score as i64));
                }
                if q.withcoord {
                    v.push(Reply::Array(vec![
                        Reply::HumanDouble(p.lon),
                        Reply::HumanDouble(p.lat),
                    ]));
                }
                Reply::Array(v)
            })
            .collect(),
    )
}

/// Writes the result as the whole of `dest` (nothing: deletes it); answers how many.
async fn store(
    router: &DbRouter<'_>,
    dest: &Bytes,
    points: Vec<Point>,
    storedist: bool,
    to_m: f64,
) -> Result<Reply, Reply> {
    let n = points.len();
    let (members, scores) = points
        .into_iter()
        .map(|p| {
            let s = if storedist { p.dist_m / to_m } else { p.score };
            (p.member, s)
        })
        .unzip();
    let op = ZSetOp::Replace {
        key: dest.clone(),
        scores,
        members,
    };
    match one(router.exec(vec![keyed(dest, zop(op))]).await) {
        Ok(OpResult::Int { .. }) => Ok(Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))),
        Ok(other) => Err(unexpected(&other)),
        Err(e) => Err(exec_error(&e)),
    }
}

fn one(mut res: Vec<Result<OpResult, ExecError>>) -> Result<OpResult, ExecError> {
    res.pop()
        .unwrap_or_else(|| Err(ExecError::Unavailable("no result".into())))
}
