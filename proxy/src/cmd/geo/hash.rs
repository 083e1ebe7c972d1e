//! The geohash arithmetic of Redis's `geohash.c` and `geohash_helper.c`, as pure functions:
//! the 26-step interleaved hash a geo set stores as a sorted-set score, its decoding, the
//! nine boxes that cover a search area, the haversine distance and the reply numbers. Every
//! floating-point expression keeps Redis's order of operations, so scores, coordinates and
//! distances come out bit for bit as Redis computes them. A leaf.

use std::f64::consts::PI;

/// Steps of a stored hash: 26 per coordinate, 52 bits.
pub const STEP_MAX: u8 = 26;
/// Southern limit of a position (EPSG:900913).
pub const LAT_MIN: f64 = -85.05112878;
/// Northern limit of a position.
pub const LAT_MAX: f64 = 85.05112878;
/// Western limit of a position.
pub const LONG_MIN: f64 = -180.0;
/// Eastern limit of a position.
pub const LONG_MAX: f64 = 180.0;
/// Earth's quadratic mean radius for WGS-84, in metres.
pub const EARTH_RADIUS_M: f64 = 6372797.560856;
const MERCATOR_MAX: f64 = 20037726.37;
const D_R: f64 = PI / 180.0;

/// A geohash of `step` bits per coordinate (`bits` holds `2 * step` bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashBits {
    /// The interleaved bits, longitude in the odd positions.
    pub bits: u64,
    /// Bits per coordinate, 1..=32 (0 with `bits` 0: an excluded box).
    pub step: u8,
}

impl HashBits {
    /// The excluded box (Redis's `GZERO`).
    pub const ZERO: HashBits = HashBits { bits: 0, step: 0 };

    fn is_zero(self) -> bool {
        self.bits == 0 && self.step == 0
    }
}

/// A range of one coordinate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Lower bound.
    pub min: f64,
    /// Upper bound.
    pub max: f64,
}

/// The cell a hash names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Area {
    /// Its longitudes.
    pub lon: Span,
    /// Its latitudes.
    pub lat: Span,
}

const WGS84_LON: Span = Span {
    min: LONG_MIN,
    max: LONG_MAX,
};
const WGS84_LAT: Span = Span {
    min: LAT_MIN,
    max: LAT_MAX,
};

/// Whether a position is inside the limits Redis accepts.
pub fn valid(lon: f64, lat: f64) -> bool {
    (LONG_MIN..=LONG_MAX).contains(&lon) && (LAT_MIN..=LAT_MAX).contains(&lat)
}

fn interleave(xlo: u32, ylo: u32) -> u64 {
    const B: [u64; 5] = [
        0x5555_5555_5555_5555,
        0x3333_3333_3333_3333,
        0x0F0F_0F0F_0F0F_0F0F,
        0x00FF_00FF_00FF_00FF,
        0x0000_FFFF_0000_FFFF,
    ];
    const S: [u32; 5] = [1, 2, 4, 8, 16];
    let (mut x, mut y) = (u64::from(xlo), u64::from(ylo));
    for i in (0..5).rev() {
        x = (x | (x << S[i])) & B[i];
        y = (y | (y << S[i])) & B[i];
    }
    x | (y << 1)
}

/// The latitude bits (low half) and longitude bits (high half) of an interleaved hash.
fn deinterleave(interleaved: u64) -> u64 {
    const B: [u64; 6] = [
        0x5555_5555_5555_5555,
        0x3333_3333_3333_3333,
        0x0F0F_0F0F_0F0F_0F0F,
        0x00FF_00FF_00FF_00FF,
        0x0000_FFFF_0000_FFFF,
        0x0000_0000_FFFF_FFFF,
    ];
    const S: [u32; 6] = [0, 1, 2, 4, 8, 16];
    let (mut x, mut y) = (interleaved, interleaved >> 1);
    for i in 0..6 {
        x = (x | (x >> S[i])) & B[i];
        y = (y | (y >> S[i])) & B[i];
    }
    x | (y << 32)
}

/// The hash of a position in `lon`×`lat` with `step` bits per coordinate (`geohashEncode`);
/// `None` outside the ranges or the WGS-84 limits.
pub fn encode_in(lon_r: Span, lat_r: Span, lon: f64, lat: f64, step: u8) -> Option<HashBits> {
    if step == 0 || step > 32 || !valid(lon, lat) {
        return None;
    }
    if lat < lat_r.min || lat > lat_r.max || lon < lon_r.min || lon > lon_r.max {
        return None;
    }
    let scale = (1u64 << step) as f64;
    let lat_offset = (lat - lat_r.min) / (lat_r.max - lat_r.min) * scale;
    let lon_offset = (lon - lon_r.min) / (lon_r.max - lon_r.min) * scale;
    // C converts the offsets to uint32_t by truncation.
    Some(HashBits {
        bits: interleave(lat_offset as u32, lon_offset as u32),
        step,
    })
}

/// The WGS-84 hash of a position (`geohashEncodeWGS84`).
pub fn encode(lon: f64, lat: f64, step: u8) -> Option<HashBits> {
    encode_in(WGS84_LON, WGS84_LAT, lon, lat, step)
}

/// The 52-bit score a geo set stores for a valid position.
pub fn score_of(lon: f64, lat: f64) -> Option<u64> {
    encode(lon, lat, STEP_MAX).map(align52)
}

/// The cell of a hash within `lon`×`lat` (`geohashDecode`).
fn decode_in(lon_r: Span, lat_r: Span, hash: HashBits) -> Area {
    let sep = deinterleave(hash.bits);
    let lat_scale = lat_r.max - lat_r.min;
    let lon_scale = lon_r.max - lon_r.min;
    let ilat = f64::from(sep as u32);
    let ilon = f64::from((sep >> 32) as u32);
    let cells = (1u64 << hash.step) as f64;
    Area {
        lat: Span {
            min: lat_r.min + (ilat / cells) * lat_scale,
            max: lat_r.min + ((ilat + 1.0) / cells) * lat_scale,
        },
        lon: Span {
            min: lon_r.min + (ilon / cells) * lon_scale,
            max: lon_r.min + ((ilon + 1.0) / cells) * lon_scale,
        },
    }
}

/// The WGS-84 cell of a hash.
pub fn decode(hash: HashBits) -> Area {
    decode_in(WGS84_LON, WGS84_LAT, hash)
}

/// The position a stored score stands for: the centre of its cell, clamped to the limits
/// (`decodeGeohash`). Any score decodes, as in Redis (the score is cast to `uint64_t`).
pub fn position_of(score: f64) -> (f64, f64) {
    let area = decode(HashBits {
        bits: c_cast_u64(score),
        step: STEP_MAX,
    });
    let lon = ((area.lon.min + area.lon.max) / 2.0).clamp(LONG_MIN, LONG_MAX);
    let lat = ((area.lat.min + area.lat.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    (lon, lat)
}

/// `(uint64_t)score` as x86-64 compiles it (scores outside `u64` give what the CPU gives).
fn c_cast_u64(x: f64) -> u64 {
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    // cvttsd2si: the "integer indefinite" value for NaN and out-of-range inputs.
    let cvtt = |v: f64| {
        if v.is_nan() || !(-TWO63..TWO63).contains(&v) {
            1u64 << 63
        } else {
            (v as i64) as u64
        }
    };
    if x >= TWO63 {
        cvtt(x - TWO63) ^ (1 << 63)
    } else {
        cvtt(x)
    }
}

/// The 11-character standard geohash of a stored score (`GEOHASH`): the position re-encoded
/// with latitudes -90..90; the 11th character is always `0` (52 bits).
pub fn geohash_string(score: f64) -> [u8; 11] {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let (lon, lat) = position_of(score);
    let std_lon = Span {
        min: -180.0,
        max: 180.0,
    };
    let std_lat = Span {
        min: -90.0,
        max: 90.0,
    };
    let bits = encode_in(std_lon, std_lat, lon, lat, STEP_MAX).map_or(0, |h| h.bits);
    let mut out = [b'0'; 11];
    for (i, c) in out.iter_mut().take(10).enumerate() {
        let idx = (bits >> (52 - (i + 1) * 5)) & 0x1f;
        *c = ALPHABET[idx as usize];
    }
    out
}

/// The hash shifted to 52 bits: the smallest score inside its cell.
pub fn align52(hash: HashBits) -> u64 {
    hash.bits << (52 - u32::from(hash.step) * 2)
}

/// The scores of the members inside a cell: `min <= score < max`.
pub fn score_range(hash: HashBits) -> (u64, u64) {
    let next = HashBits {
        bits: hash.bits + 1,
        step: hash.step,
    };
    (align52(hash), align52(next))
}

fn deg_rad(a: f64) -> f64 {
    a * D_R
}

fn rad_deg(a: f64) -> f64 {
    a / D_R
}

/// The distance along a meridian between two latitudes, in metres.
fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_M * (deg_rad(lat2) - deg_rad(lat1)).abs()
}

/// The haversine distance between two positions in metres (`geohashGetDistance`).
pub fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let lon1r = deg_rad(lon1);
    let lon2r = deg_rad(lon2);
    let v = ((lon2r - lon1r) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let lat1r = deg_rad(lat1);
    let lat2r = deg_rad(lat2);
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

/// A search area: a circle or an axis-aligned box around a centre, sizes in `unit`s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// `BYRADIUS`.
    Radius(f64),
    /// `BYBOX width height`.
    Box(f64, f64),
}

/// A search: its centre, shape and the metres in one unit of its sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Search {
    /// Centre longitude.
    pub lon: f64,
    /// Centre latitude.
    pub lat: f64,
    /// Circle or box.
    pub shape: Shape,
    /// Metres per unit.
    pub to_m: f64,
}

impl Search {
    /// The distance in metres from the centre to a position if it is inside
    /// (`geoWithinShape`).
    pub fn within(&self, lon: f64, lat: f64) -> Option<f64> {
        match self.shape {
            Shape::Radius(r) => {
                let d = distance(self.lon, self.lat, lon, lat);
                (d <= r * self.to_m).then_some(d)
            }
            Shape::Box(w, h) => {
                if lat_distance(self.lat, lat) > h * self.to_m / 2.0 {
                    return None;
                }
                if distance(lon, lat, self.lon, lat) > w * self.to_m / 2.0 {
                    return None;
                }
                Some(distance(self.lon, self.lat, lon, lat))
            }
        }
    }

    /// Min and max longitude, min and max latitude of the area (`geohashBoundingBox`).
    fn bounds(&self) -> [f64; 4] {
        let (height, width) = match self.shape {
            Shape::Radius(r) => (self.to_m * r, self.to_m * r),
            Shape::Box(w, h) => (self.to_m * (h / 2.0), self.to_m * (w / 2.0)),
        };
        let lat_delta = rad_deg(height / EARTH_RADIUS_M);
        let lon_top = rad_deg(width / EARTH_RADIUS_M / deg_rad(self.lat + lat_delta).cos());
        let lon_bottom = rad_deg(width / EARTH_RADIUS_M / deg_rad(self.lat - lat_delta).cos());
        let d = if self.lat < 0.0 { lon_bottom } else { lon_top };
        [
            self.lon - d,
            self.lat - lat_delta,
            self.lon + d,
            self.lat + lat_delta,
        ]
    }

    fn radius_m(&self) -> f64 {
        let r = match self.shape {
            Shape::Radius(r) => r,
            Shape::Box(w, h) => ((w / 2.0) * (w / 2.0) + (h / 2.0) * (h / 2.0)).sqrt(),
        };
        r * self.to_m
    }

    /// The nine cells to read, in Redis's order (centre, N, S, E, W, NE, NW, SE, SW);
    /// [`HashBits::ZERO`] for a cell the area cannot reach
    /// (`geohashCalculateAreasByShapeWGS84`).
    pub fn boxes(&self) -> [HashBits; 9] {
        let [min_lon, min_lat, max_lon, max_lat] = self.bounds();
        let mut steps = steps_for_radius(self.radius_m(), self.lat);
        let (mut hash, mut n) = cells(self.lon, self.lat, steps);
        let too_coarse = decode(n[0]).lat.max < max_lat
            || decode(n[1]).lat.min > min_lat
            || decode(n[2]).lon.max < max_lon
            || decode(n[3]).lon.min > min_lon;
        if steps > 1 && too_coarse {
            steps -= 1;
            (hash, n) = cells(self.lon, self.lat, steps);
        }
        let [north, south, east, west, ne, nw, se, sw] = n;
        let mut out = [hash, north, south, east, west, ne, nw, se, sw];
        if steps >= 2 {
            let area = decode(hash);
            let mut drop = |idx: [usize; 3]| idx.iter().for_each(|&i| out[i] = HashBits::ZERO);
            if area.lat.min < min_lat {
                drop([2, 8, 7]);
            }
            if area.lat.max > max_lat {
                drop([1, 5, 6]);
            }
            if area.lon.min < min_lon {
                drop([4, 8, 6]);
            }
            if area.lon.max > max_lon {
                drop([3, 7, 5]);
            }
        }
        out
    }
}

/// The cells to read, as Redis reads them: every non-excluded one but a repeat of the one
/// read just before (huge radii make neighbours coincide).
pub fn boxes_to_read(boxes: &[HashBits; 9]) -> Vec<HashBits> {
    let mut out: Vec<HashBits> = Vec::with_capacity(9);
    let mut last: Option<HashBits> = None;
    for (i, b) in boxes.iter().enumerate() {
        if b.is_zero() || last == Some(*b) {
            continue;
        }
        out.push(*b);
        // Redis's "last processed" index starts at 0, which also means "none": a box is
        // never compared with the centre.
        if i > 0 {
            last = Some(*b);
        }
    }
    out
}

/// The step whose cells are about as wide as the radius (`geohashEstimateStepsByRadius`).
fn steps_for_radius(mut range_m: f64, lat: f64) -> u8 {
    if range_m == 0.0 {
        return 26;
    }
    let mut step: i32 = 1;
    while range_m < MERCATOR_MAX {
        range_m *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u8
}

/// The cell of a position at `step` and its neighbours N, S, E, W, NE, NW, SE, SW.
fn cells(lon: f64, lat: f64, step: u8) -> (HashBits, [HashBits; 8]) {
    let hash = encode(lon, lat, step).unwrap_or(HashBits { bits: 0, step });
    let at = |dx: i8, dy: i8| move_y(move_x(hash, dx), dy);
    (
        hash,
        [
            at(0, 1),
            at(0, -1),
            at(1, 0),
            at(-1, 0),
            at(1, 1),
            at(-1, 1),
            at(1, -1),
            at(-1, -1),
        ],
    )
}

fn move_x(mut hash: HashBits, d: i8) -> HashBits {
    if d == 0 {
        return hash;
    }
    let shift = 64 - u32::from(hash.step) * 2;
    let mut x = hash.bits & 0xaaaa_aaaa_aaaa_aaaa;
    let y = hash.bits & 0x5555_5555_5555_5555;
    let zz = 0x5555_5555_5555_5555u64 >> shift;
    if d > 0 {
        x = x.wrapping_add(zz + 1);
    } else {
        x |= zz;
        x = x.wrapping_sub(zz + 1);
    }
    x &= 0xaaaa_aaaa_aaaa_aaaau64 >> shift;
    hash.bits = x | y;
    hash
}

fn move_y(mut hash: HashBits, d: i8) -> HashBits {
    if d == 0 {
        return hash;
    }
    let shift = 64 - u32::from(hash.step) * 2;
    let x = hash.bits & 0xaaaa_aaaa_aaaa_aaaa;
    let mut y = hash.bits & 0x5555_5555_5555_5555;
    let zz = 0xaaaa_aaaa_aaaa_aaaau64 >> shift;
    if d > 0 {
        y = y.wrapping_add(zz + 1);
    } else {
        y |= zz;
        y = y.wrapping_sub(zz + 1);
    }
    y &= 0x5555_5555_5555_5555u64 >> shift;
    hash.bits = x | y;
    hash
}

/// A distance as Redis replies it: rounded to 4 decimals (`fixedpoint_d2string`).
pub fn fixed4(d: f64) -> String {
    if d == 0.0 {
        return "0.0000".into();
    }
    // llrint in the default rounding mode: to nearest, ties to even.
    let v = (d * 10000.0).round_ties_even();
    if !v.is_finite() || v.abs() >= 9.2e18 {
        return format!("{d:.4}");
    }
    let v = v as i64;
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    format!("{sign}{}.{:04}", a / 10000, a % 10000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::reply::format_human_double as human;
    use proptest::prelude::*;

    #[test]
    fn stored_scores_match_redis_vectors() {
        // Redis's tests/unit/geo.tcl and the documentation's Palermo/Catania examples.
        assert_eq!(score_of(13.361389, 38.115556), Some(3479099956230698));
        assert_eq!(score_of(15.087269, 37.502669), Some(3479447370796909));
        assert_eq!(score_of(-180.0, LAT_MIN), Some(0));
    }

    #[test]
    fn geohash_strings_match_redis_vectors() {
        let s = |lon, lat| {
            let sc = score_of(lon, lat).unwrap() as f64;
            String::from_utf8(geohash_string(sc).to_vec()).unwrap()
        };
        assert_eq!(s(13.361389, 38.115556), "sqc8b49rny0");
        assert_eq!(s(15.087269, 37.502669), "sqdtr74hyu0");
        // geo.tcl: "GEOHASH is able to return geohash strings" (-5.6, 42.6).
        assert_eq!(s(-5.6, 42.6), "ezs42e44yx0");
    }

    #[test]
    fn positions_and_distances_print_as_redis_does() {
        let (lon, lat) = position_of(3479099956230698.0);
        assert_eq!(human(lon), "13.36138933897018433");
        assert_eq!(human(lat), "38.11555639549629859");
        let (lon2, lat2) = position_of(3479447370796909.0);
        assert_eq!(fixed4(distance(lon, lat, lon2, lat2)), "166274.1516");
        assert_eq!(fixed4(distance(lon, lat, lon2, lat2) / 1000.0), "166.2742");
        assert_eq!(fixed4(0.0), "0.0000");
        assert_eq!(fixed4(0.00004), "0.0000");
        assert_eq!(fixed4(0.00016), "0.0002");
        assert_eq!(human(2.0), "2");
        assert_eq!(human(-0.0), "0");
    }

    #[test]
    fn any_score_decodes_like_a_c_cast() {
        assert_eq!(c_cast_u64(-1.0), u64::MAX);
        assert_eq!(c_cast_u64(f64::INFINITY), 0);
        assert_eq!(c_cast_u64(f64::NEG_INFINITY), 1 << 63);
        assert_eq!(c_cast_u64(3.7), 3);
        let (lon, lat) = position_of(f64::NAN);
        assert!(valid(lon, lat));
    }

    #[test]
    fn a_zero_radius_searches_the_finest_cells() {
        assert_eq!(steps_for_radius(0.0, 0.0), 26);
        assert_eq!(steps_for_radius(1.0e7, 0.0), 1);
        assert!(steps_for_radius(1000.0, 70.0) < steps_for_radius(1000.0, 10.0));
    }

    proptest! {
        #[test]
        fn a_position_decodes_inside_its_own_cell(
            lon in LONG_MIN..=LONG_MAX,
            lat in LAT_MIN..=LAT_MAX,
        ) {
            let h = encode(lon, lat, STEP_MAX).unwrap();
            let area = decode(h);
            // The edges are included: lon 180 and lat LAT_MAX fall on the last cell's edge.
            prop_assert!(area.lon.min <= lon && lon <= area.lon.max + 1e-9);
            prop_assert!(area.lat.min <= lat && lat <= area.lat.max + 1e-9);
            let (dlon, dlat) = position_of(align52(h) as f64);
            prop_assert!((dlon - lon).abs() < 1e-5 && (dlat - lat).abs() < 1e-5);
            prop_assert!(distance(lon, lat, dlon, dlat) < 1.0);
        }

        #[test]
        fn every_point_within_a_radius_is_in_a_box_read(
            lon in -179.0f64..179.0,
            lat in -80.0f64..80.0,
            r in 1.0f64..200_000.0,
            bearing in 0.0f64..std::f64::consts::TAU,
            frac in 0.0f64..1.0,
        ) {
            let search = Search { lon, lat, shape: Shape::Radius(r), to_m: 1.0 };
            // A point at most r away (small-angle offset, then checked exactly).
            let d = r * frac;
            let plat = lat + (d * bearing.cos() / EARTH_RADIUS_M).to_degrees();
            let plon = lon + (d * bearing.sin() / EARTH_RADIUS_M / plat.to_radians().cos()).to_degrees();
            prop_assume!(valid(plon, plat));
            let score = score_of(plon, plat).unwrap();
            let (qlon, qlat) = position_of(score as f64);
            prop_assume!(search.within(qlon, qlat).is_some());
            let found = boxes_to_read(&search.boxes()).into_iter().any(|b| {
                let (lo, hi) = score_range(b);
                lo <= score && score < hi
            });
            prop_assert!(found, "score {} not in any box", score);
        }
    }
}
