//! HyperLogLog on strings (Redis `hyperloglog.c`): PFADD, PFCOUNT, PFMERGE, byte for byte in
//! Redis's representation, so an HLL read with GET, moved with DUMP/RESTORE or compared with
//! GETRANGE is the string Redis would hold.
//!
//! ```text
//! header (16 bytes): "HYLL" | encoding u8 (0 dense, 1 sparse) | 3 unused | cached cardinality
//!                    u64 LE (bit 63 set: stale)
//! dense:  16,384 registers of 6 bits, packed little-endian (12,288 bytes)
//! sparse: opcodes  00xxxxxx ZERO (1..64 zero registers) | 01xxxxxx yyyyyyyy XZERO (1..16384)
//!                  1vvvvvxx VAL (value 1..32, 1..4 registers)
//! ```
//!
//! An element's register is the low 14 bits of MurmurHash64A(element, seed 0xadc83b19); its
//! value the position of the first 1 bit in the remaining 50 (plus one). A sparse HLL becomes
//! dense when a value exceeds 32 or it would outgrow `hll-sparse-max-bytes` (3,000, Redis's
//! default). The estimate is Ertl's improved estimator, as Redis computes it.

use bytes::Bytes;
use net::RpcError;
use net::message::hll::HllOp;
use net::message::kv::OpResult;

use super::apply::{Apply, ok_int};
use super::meta::Meta;
use super::store::KvStore;

const P: u32 = 14;
const REGISTERS: usize = 1 << P;
const Q: usize = 64 - P as usize;
const REGISTER_MAX: u8 = 63;
const HDR: usize = 16;
const DENSE_SIZE: usize = HDR + REGISTERS * 6 / 8;
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
const SPARSE_VAL_MAX_VALUE: u8 = 32;
const SPARSE_VAL_MAX_LEN: usize = 4;
const SPARSE_ZERO_MAX_LEN: usize = 64;
/// Redis's default `hll-sparse-max-bytes`.
const SPARSE_MAX_BYTES: usize = 3000;

/// The representation is damaged (Redis: `INVALIDOBJ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt;

fn invalid_obj() -> RpcError {
    RpcError::Redis {
        message: "INVALIDOBJ Corrupted HLL object detected".into(),
    }
}

fn not_hll() -> RpcError {
    RpcError::Redis {
        message: "WRONGTYPE Key is not a valid HyperLogLog string value.".into(),
    }
}

impl<S: KvStore> Apply<'_, '_, S> {
    /// Executes a HyperLogLog operation.
    pub(super) fn hll(&mut self, op: &HllOp) -> Result<OpResult, RpcError> {
        match op {
            HllOp::Add { key, elements } => self.pfadd(key, elements),
            HllOp::Count { key, others } if others.is_empty() => self.pfcount_one(key),
            HllOp::Count { key, others } => {
                let mut max = vec![0u8; REGISTERS];
                for k in std::iter::once(key).chain(others) {
                    if let Some(s) = self.hll_value(k)? {
                        merge_into(&mut max, &s).map_err(|_| invalid_obj())?;
                    }
                }
                ok_int(count_histogram(&raw_histogram(&max)) as i64)
            }
            HllOp::Merge { key, sources } => self.pfmerge(key, sources),
        }
    }

    /// The HLL string at `key` (`None`: absent); another type or a string that is no HLL is
    /// an error.
    fn hll_value(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, RpcError> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) if is_hll(&s) => Ok(Some(s.to_vec())),
            Some(_) => Err(not_hll()),
        }
    }

    fn pfadd(&mut self, key: &[u8], elements: &[Bytes]) -> Result<OpResult, RpcError> {
        let (old, expire) = self.string_with_expiry(key)?;
        let (mut s, mut updated) = match old {
            None => (new_sparse(), true),
            Some(s) if is_hll(&s) => (s.to_vec(), false),
            Some(_) => return Err(not_hll()),
        };
        for e in elements {
            updated |= add(&mut s, e).map_err(|_| invalid_obj())?;
        }
        if updated {
            invalidate_cache(&mut s);
            self.write_meta(key, &Meta::Str(Bytes::from(s)), expire);
        }
        ok_int(i64::from(updated))
    }

    fn pfcount_one(&mut self, key: &[u8]) -> Result<OpResult, RpcError> {
        let (old, expire) = self.string_with_expiry(key)?;
        let Some(old) = old else {
            return ok_int(0);
        };
        if !is_hll(&old) {
            return Err(not_hll());
        }
        if let Some(card) = cached(&old) {
            return ok_int(card as i64);
        }
        let card = count_histogram(&histogram(&old).map_err(|_| invalid_obj())?);
        let mut s = old.to_vec();
        s[8..16].copy_from_slice(&card.to_le_bytes());
        self.write_meta(key, &Meta::Str(Bytes::from(s)), expire);
        ok_int(card as i64)
    }

    fn pfmerge(&mut self, key: &[u8], sources: &[Bytes]) -> Result<OpResult, RpcError> {
        let mut max = vec![0u8; REGISTERS];
        let mut use_dense = false;
        for k in std::iter::once(key).chain(sources.iter().map(|k| &k[..])) {
            if let Some(s) = self.hll_value(k)? {
                use_dense |= s[4] == DENSE;
                merge_into(&mut max, &s).map_err(|_| invalid_obj())?;
            }
        }
        let (old, expire) = self.string_with_expiry(key)?;
        let mut s = old.map_or_else(new_sparse, |o| o.to_vec());
        if use_dense && s[4] == SPARSE {
            s = sparse_to_dense(&s).map_err(|_| invalid_obj())?;
        }
        for (i, &v) in max.iter().enumerate() {
            if v > 0 {
                set(&mut s, i, v).map_err(|_| invalid_obj())?;
            }
        }
        invalidate_cache(&mut s);
        self.write_meta(key, &Meta::Str(Bytes::from(s)), expire);
        Ok(OpResult::Unit {})
    }
}

/// Whether `s` has a valid HLL header (and a dense one the exact length).
pub fn is_hll(s: &[u8]) -> bool {
    s.len() >= HDR
        && &s[..4] == b"HYLL"
        && s[4] <= SPARSE
        && (s[4] != DENSE || s.len() == DENSE_SIZE)
}

/// An empty HLL: sparse, one XZERO covering every register, cache valid at 0.
pub fn new_sparse() -> Vec<u8> {
    let mut s = Vec::with_capacity(HDR + 2);
    s.extend_from_slice(b"HYLL");
    s.extend_from_slice(&[SPARSE, 0, 0, 0]);
    s.extend_from_slice(&[0; 8]);
    push_zero_run(&mut s, REGISTERS);
    s
}

fn cached(s: &[u8]) -> Option<u64> {
    (s[15] & 0x80 == 0).then(|| u64::from_le_bytes(s[8..16].try_into().unwrap_or_default()))
}

fn invalidate_cache(s: &mut [u8]) {
    s[15] |= 0x80;
}

/// MurmurHash64A (Austin Appleby), little-endian words, as Redis uses it.
pub fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut k = u64::from_le_bytes(c.try_into().unwrap_or_default());
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element falls in and the value it proposes (`hllPatLen`).
fn pattern(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, 0xadc8_3b19);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

fn dense_get(s: &[u8], i: usize) -> u8 {
    let (byte, fb) = (HDR + i * 6 / 8, (i * 6) & 7);
    let b0 = u16::from(s[byte]);
    let b1 = u16::from(s.get(byte + 1).copied().unwrap_or(0));
    (((b0 >> fb) | (b1 << (8 - fb))) & u16::from(REGISTER_MAX)) as u8
}

fn dense_set(s: &mut [u8], i: usize, v: u8) {
    let (byte, fb) = (HDR + i * 6 / 8, (i * 6) & 7);
    let v = u16::from(v);
    let mask = u16::from(REGISTER_MAX);
    s[byte] = ((u16::from(s[byte]) & !(mask << fb)) | (v << fb)) as u8;
    if let Some(b) = s.get_mut(byte + 1) {
        let (m, x) = (mask >> (8 - fb), v >> (8 - fb));
        *b = ((u16::from(*b) & !m) | x) as u8;
    }
}

fn is_zero(op: u8) -> bool {
    op & 0xc0 == 0
}

fn is_xzero(op: u8) -> bool {
    op & 0xc0 == 0x40
}

fn val_value(op: u8) -> u8 {
    ((op >> 2) & 0x1f) + 1
}

fn val_len(op: u8) -> usize {
    usize::from(op & 0x3) + 1
}

fn val_op(value: u8, len: usize) -> u8 {
    0x80 | ((value - 1) << 2) | (len - 1) as u8
}

/// A run of `len` zero registers as one ZERO or XZERO opcode.
fn push_zero_run(out: &mut Vec<u8>, len: usize) {
    if len > SPARSE_ZERO_MAX_LEN {
        out.push(0x40 | ((len - 1) >> 8) as u8);
        out.push(((len - 1) & 0xff) as u8);
    } else {
        out.push((len - 1) as u8);
    }
}

/// The opcode at `p`: (registers it covers, its length in bytes).
fn op_at(s: &[u8], p: usize) -> Result<(usize, usize), Corrupt> {
    let op = s[p];
    Ok(if is_zero(op) {
        (usize::from(op & 0x3f) + 1, 1)
    } else if is_xzero(op) {
        let low = *s.get(p + 1).ok_or(Corrupt)?;
        ((usize::from(op & 0x3f) << 8 | usize::from(low)) + 1, 2)
    } else {
        (val_len(op), 1)
    })
}

/// Adds an element; true when a register grew.
pub fn add(s: &mut Vec<u8>, element: &[u8]) -> Result<bool, Corrupt> {
    let (index, count) = pattern(element);
    set(s, index, count)
}

/// Raises register `index` to `count`; true when it grew.
fn set(s: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Corrupt> {
    if s[4] == DENSE {
        if count > dense_get(s, index) {
            dense_set(s, index, count);
            return Ok(true);
        }
        return Ok(false);
    }
    sparse_set(s, index, count)
}

/// `hllSparseSet`: splits the opcode covering `index` into at most five, then merges equal
/// neighbouring VAL opcodes; promotes to dense when the value or the size demands it.
fn sparse_set(s: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Corrupt> {
    if count > SPARSE_VAL_MAX_VALUE {
        return promote(s, index, count);
    }
    let (mut p, mut first, mut span, mut prev) = (HDR, 0usize, 0usize, None);
    while p < s.len() {
        let (sp, oplen) = op_at(s, p)?;
        span = sp;
        if index < first + span {
            break;
        }
        prev = Some(p);
        p += oplen;
        first += span;
    }
    if span == 0 || p >= s.len() {
        return Err(Corrupt);
    }
    let op = s[p];
    let (runlen, oldlen) = op_at(s, p)?;
    let is_val = !is_zero(op) && !is_xzero(op);
    if is_val && val_value(op) >= count {
        return Ok(false);
    }
    if runlen == 1 && (is_val || is_zero(op)) {
        s[p] = val_op(count, 1);
    } else {
        let last = first + span - 1;
        let mut seq = Vec::with_capacity(5);
        if is_val {
            let cur = val_value(op);
            if index != first {
                seq.push(val_op(cur, index - first));
            }
            seq.push(val_op(count, 1));
            if index != last {
                seq.push(val_op(cur, last - index));
            }
        } else {
            if index != first {
                push_zero_run(&mut seq, index - first);
            }
            seq.push(val_op(count, 1));
            if index != last {
                push_zero_run(&mut seq, last - index);
            }
        }
        if seq.len() > oldlen && s.len() + seq.len() - oldlen > SPARSE_MAX_BYTES {
            return promote(s, index, count);
        }
        s.splice(p..p + oldlen, seq);
    }
    merge_vals(s, prev.unwrap_or(HDR));
    Ok(true)
}

/// Merges adjacent VAL opcodes of one value (at most five opcodes from `from`).
fn merge_vals(s: &mut Vec<u8>, from: usize) {
    let mut p = from;
    let mut scan = 5;
    while p < s.len() && scan > 0 {
        scan -= 1;
        if is_xzero(s[p]) {
            p += 2;
            continue;
        }
        if is_zero(s[p]) {
            p += 1;
            continue;
        }
        if p + 1 < s.len() && !is_zero(s[p + 1]) && !is_xzero(s[p + 1]) {
            let (v1, v2) = (val_value(s[p]), val_value(s[p + 1]));
            let len = val_len(s[p]) + val_len(s[p + 1]);
            if v1 == v2 && len <= SPARSE_VAL_MAX_LEN {
                s[p + 1] = val_op(v1, len);
                s.remove(p);
                continue;
            }
        }
        p += 1;
    }
}

fn promote(s: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Corrupt> {
    let mut dense = sparse_to_dense(s)?;
    let grew = count > dense_get(&dense, index);
    if grew {
        dense_set(&mut dense, index, count);
    }
    *s = dense;
    Ok(grew)
}

/// `hllSparseToDense` (the header, cache included, is kept).
fn sparse_to_dense(s: &[u8]) -> Result<Vec<u8>, Corrupt> {
    let mut dense = vec![0u8; DENSE_SIZE];
    dense[..HDR].copy_from_slice(&s[..HDR]);
    dense[4] = DENSE;
    let mut idx = 0;
    each_run(s, |start, len, value| {
        if value > 0 {
            (start..start + len).for_each(|i| dense_set(&mut dense, i, value));
        }
        idx = start + len;
    })?;
    if idx != REGISTERS {
        return Err(Corrupt);
    }
    Ok(dense)
}

/// Calls `f(first register, run length, value)` for each opcode of a sparse HLL; a run past
/// the last register or a truncated opcode is corruption.
fn each_run(s: &[u8], mut f: impl FnMut(usize, usize, u8)) -> Result<(), Corrupt> {
    let (mut p, mut idx) = (HDR, 0);
    while p < s.len() {
        let (len, oplen) = op_at(s, p)?;
        let value = if is_zero(s[p]) || is_xzero(s[p]) {
            0
        } else {
            val_value(s[p])
        };
        if idx + len > REGISTERS {
            return Err(Corrupt);
        }
        f(idx, len, value);
        idx += len;
        p += oplen;
    }
    if idx != REGISTERS {
        return Err(Corrupt);
    }
    Ok(())
}

/// Raises `max` to the registers of `s` (`hllMerge`).
fn merge_into(max: &mut [u8], s: &[u8]) -> Result<(), Corrupt> {
    if s[4] == DENSE {
        for (i, m) in max.iter_mut().enumerate() {
            *m = (*m).max(dense_get(s, i));
        }
        return Ok(());
    }
    each_run(s, |start, len, value| {
        for m in &mut max[start..start + len] {
            *m = (*m).max(value);
        }
    })
}

/// How many registers hold each value.
fn histogram(s: &[u8]) -> Result<[u32; 64], Corrupt> {
    let mut h = [0u32; 64];
    if s[4] == DENSE {
        (0..REGISTERS).for_each(|i| h[usize::from(dense_get(s, i))] += 1);
    } else {
        each_run(s, |_, len, value| h[usize::from(value)] += len as u32)?;
    }
    Ok(h)
}

fn raw_histogram(registers: &[u8]) -> [u32; 64] {
    let mut h = [0u32; 64];
    registers
        .iter()
        .for_each(|&v| h[usize::from(v.min(REGISTER_MAX))] += 1);
    h
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if prev == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if prev == z {
            return z / 3.0;
        }
    }
}

/// Ertl's estimate from the register histogram (`hllCount`).
fn count_histogram(h: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - f64::from(h[Q + 1])) / m);
    for j in (1..=Q).rev() {
        z += f64::from(h[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(h[0]) / m);
    const ALPHA_INF: f64 = 0.721_347_520_444_481_7;
    (ALPHA_INF * m * m / z).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(s: &[u8]) -> u64 {
        count_histogram(&histogram(s).unwrap_or([0; 64]))
    }

    fn unhex(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap_or(0))
            .collect()
    }

    /// The strings redis-server 7.0.15 holds after `PFADD h1 a b c` and after 100 `PFADD h2
    /// el:<i>` (read with GET): the hash, the register choice and the sparse opcodes all match.
    #[test]
    fn pfadd_builds_the_exact_string_redis_builds() {
        let mut h1 = new_sparse();
        for e in ["a", "b", "c"] {
            add(&mut h1, e.as_bytes()).unwrap_or(false);
        }
        invalidate_cache(&mut h1);
        assert_eq!(
            h1,
            unhex("48594c4c01000000000000000000008060f38050b1844bfb80425a")
        );
        let mut h2 = new_sparse();
        for i in 0..100 {
            add(&mut h2, format!("el:{i}").as_bytes()).unwrap_or(false);
            invalidate_cache(&mut h2);
        }
        let want = unhex(concat!(
            "48594c4c010000000000000000000080409a8440e980414780405e801b8840aa80405d80407388",
            "40b380188040a2840380178040fa8040e5804142840b801a84406780404284411c804058804052",
            "80404e841784405a804128802e8040b38840978440418440968821844047884078884212840d80",
            "41a880410a8041e680058040b180408e8c4076803d84409e8440fa8041a48041598440bf842980",
            "405b88278841859040758040468440c98440d7884100884133802d8041d0804095883080412c8c",
            "40408440818440689040f28840bf80358010801788407d80404388368440939000804092802184",
            "406488258c40f38840d68840818440b09012843680405c8427804155842184416980029041fc80",
            "41cf80409e84410280398442a68c408f"
        ));
        assert_eq!(h2, want);
        // Redis's PFCOUNT answers 100 and caches it as 0x64 LE.
        assert_eq!(estimate(&h2), 100);
    }

    #[test]
    fn an_empty_hll_is_one_xzero_with_a_valid_zero_cache() {
        let s = new_sparse();
        assert_eq!(s.len(), 18);
        assert_eq!(&s[16..], &[0x7f, 0xff]);
        assert!(is_hll(&s));
        assert_eq!(cached(&s), Some(0));
        assert_eq!(estimate(&s), 0);
    }

    #[test]
    fn sparse_and_dense_agree_register_for_register() {
        let mut sparse = new_sparse();
        let mut dense = sparse_to_dense(&sparse).unwrap_or_default();
        for i in 0..2000u32 {
            let e = format!("element:{i}");
            let a = add(&mut sparse, e.as_bytes()).unwrap_or(false);
            let b = add(&mut dense, e.as_bytes()).unwrap_or(false);
            assert_eq!(a, b, "{e}");
        }
        let (mut m1, mut m2) = (vec![0u8; REGISTERS], vec![0u8; REGISTERS]);
        merge_into(&mut m1, &sparse).unwrap_or(());
        merge_into(&mut m2, &dense).unwrap_or(());
        assert_eq!(m1, m2);
        assert_eq!(estimate(&sparse), estimate(&dense));
    }

    #[test]
    fn estimates_stay_within_a_few_percent() {
        let mut s = new_sparse();
        for n in [10u32, 100, 1000, 10_000, 50_000] {
            let mut h = new_sparse();
            for i in 0..n {
                add(&mut h, format!("{n}-{i}").as_bytes()).unwrap_or(false);
            }
            let e = estimate(&h) as f64;
            assert!(
                (e - f64::from(n)).abs() <= f64::from(n) * 0.05 + 1.0,
                "{n}: {e}"
            );
            s = h;
        }
        assert_eq!(s[4], DENSE);
    }

    #[test]
    fn corrupted_sparse_encodings_are_detected_not_trusted() {
        let mut s = new_sparse();
        s.push(0x00); // an extra ZERO opcode: 16385 registers
        assert_eq!(histogram(&s), Err(Corrupt));
        let mut t = new_sparse();
        t.truncate(17); // half an XZERO
        assert_eq!(histogram(&t), Err(Corrupt));
        assert!(!is_hll(b"HYLL\x02xxxxxxxxxxx"));
        assert!(!is_hll(b"HYLL\x00xxxxxxxxxxx"));
    }
}
