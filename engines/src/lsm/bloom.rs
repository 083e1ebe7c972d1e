//! The bloom filter of a run and the key hash it uses (`docs/format/key-index.md` §2.3: the hash
//! and the probe sequence are part of the on-device format).

use super::format::DecodeError;

/// Returns the 64-bit hash of `key` the filter probes with.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64 ^ key.len() as u64;
    for chunk in key.chunks(8) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(b))
            .wrapping_mul(0xBF58_476D_1CE4_E5B9)
            .rotate_left(31);
    }
    fmix64(h)
}

fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// A bloom filter: `bits` bits (a multiple of 64), `k` probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    bytes: Vec<u8>,
    bits: u64,
    k: u32,
}

impl Bloom {
    /// Returns an empty filter sized for `expected` keys at `bits_per_key` bits each.
    pub fn new(expected: u64, bits_per_key: u32) -> Self {
        let bits = expected
            .saturating_mul(u64::from(bits_per_key))
            .max(64)
            .div_ceil(64)
            * 64;
        // round(bits-per-key × ln 2), clamped.
        let k = ((f64::from(bits_per_key) * std::f64::consts::LN_2).round() as u32).clamp(1, 16);
        Self {
            bytes: vec![0; (bits / 8) as usize],
            bits,
            k,
        }
    }

    /// Rebuilds a filter from its bytes and parameters (as read from a run).
    pub fn from_parts(bytes: Vec<u8>, bits: u64, k: u32) -> Result<Self, DecodeError> {
        if bits == 0 || bits % 64 != 0 || bytes.len() as u64 * 8 != bits || !(1..=16).contains(&k) {
            return Err(DecodeError("bloom filter size or probes do not match"));
        }
        Ok(Self { bytes, bits, k })
    }

    fn probes(&self, hash: u64) -> impl Iterator<Item = u64> + '_ {
        let delta = (hash >> 32) | 1;
        (0..u64::from(self.k)).map(move |i| hash.wrapping_add(i.wrapping_mul(delta)) % self.bits)
    }

    /// Adds a key by its [`key_hash`].
    pub fn insert(&mut self, hash: u64) {
        let delta = (hash >> 32) | 1;
        for i in 0..u64::from(self.k) {
            let bit = hash.wrapping_add(i.wrapping_mul(delta)) % self.bits;
            self.bytes[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    }

    /// Returns false if the key with this [`key_hash`] is certainly absent.
    pub fn may_contain(&self, hash: u64) -> bool {
        self.probes(hash).all(|bit| {
            self.bytes
                .get((bit / 8) as usize)
                .is_some_and(|b| b & (1 << (bit % 8)) != 0)
        })
    }

    /// Returns the filter's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Returns the filter size in bits.
    pub fn bits(&self) -> u64 {
        self.bits
    }

    /// Returns the number of probes.
    pub fn k(&self) -> u32 {
        self.k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every inserted key is found; absent keys are rejected about 1 % of the time at 10 bits
    /// per key.
    #[test]
    fn no_false_negatives_and_about_one_percent_false_positives() {
        let mut b = Bloom::new(10_000, 10);
        assert_eq!(b.k(), 7);
        for i in 0..10_000u64 {
            b.insert(key_hash(format!("key-{i}").as_bytes()));
        }
        for i in 0..10_000u64 {
            assert!(b.may_contain(key_hash(format!("key-{i}").as_bytes())));
        }
        let fp = (0..100_000u64)
            .filter(|i| b.may_contain(key_hash(format!("other-{i}").as_bytes())))
            .count();
        assert!(fp < 2_000, "{fp} false positives in 100000");
    }

    /// The hash is fixed by the format: these values (computed independently from the
    /// format doc's description) must never change.
    #[test]
    fn key_hash_is_stable() {
        assert_eq!(key_hash(b""), 0x9ca0_66f1_a4ab_2eea);
        assert_eq!(key_hash(b"a"), 0xf9a4_019e_7bd4_c126);
        assert_eq!(key_hash(b"abcdefgh"), 0xc038_a156_f9ea_33b6);
        assert_eq!(key_hash(b"r\x00\x01key:42:M"), 0xd954_dc03_4ec5_07dc);
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
        assert_ne!(key_hash(b"abcdefgh"), key_hash(b"abcdefgh\0"));
        let b = Bloom::new(1, 10);
        assert!(Bloom::from_parts(b.bytes().to_vec(), b.bits(), b.k()).is_ok());
        assert!(Bloom::from_parts(vec![0; 7], 64, 7).is_err());
    }
}
