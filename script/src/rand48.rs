//! Redis's `redisLrand48` (`rand.c`): the 48-bit linear congruential generator of POSIX
//! `lrand48`, so that `math.random` gives the same numbers as Redis for the same seed.

const A: u64 = 0x5_DEEC_E66D;
const C: u64 = 0xB;
const MASK: u64 = (1 << 48) - 1;

/// The largest value [`Rand48::next`] returns plus one (`REDIS_LRAND48_MAX`, `INT32_MAX`).
pub(crate) const MAX: u64 = i32::MAX as u64;

/// The generator's state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rand48(u64);

impl Rand48 {
    /// `redisSrand48(seed)`: the seed's low 32 bits, then `0x330E`.
    pub(crate) fn new(seed: u32) -> Self {
        Self((u64::from(seed) << 16) | 0x330E)
    }

    /// `redisLrand48()`: the next 31-bit value.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = A.wrapping_mul(self.0).wrapping_add(C) & MASK;
        self.0 >> 17
    }
}

#[cfg(test)]
mod tests {
    use super::Rand48;

    #[test]
    fn seed_zero_gives_lrand48s_sequence() {
        // glibc: srand48(0); lrand48() x3.
        let mut r = Rand48::new(0);
        assert_eq!(
            [r.next(), r.next(), r.next()],
            [366850414, 1610402240, 206956554]
        );
    }
}
