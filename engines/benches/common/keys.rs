//! The key sets shared by the Masstree benchmarks.

/// A key set: makes the key with index `i` into `out`.
#[derive(Clone, Copy, Debug)]
pub enum Keys {
    /// Random 16-byte keys.
    Random16,
    /// 40-byte URL-like keys sharing a 24-byte prefix.
    Prefix40,
    /// 8-byte big-endian integers 0..n.
    Int8,
}

/// splitmix64.
pub fn mix(mut x: u64) -> u64 {
    // splitmix64
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Keys {
    /// Returns the key set's name.
    pub fn name(self) -> &'static str {
        match self {
            Keys::Random16 => "random16",
            Keys::Prefix40 => "prefix40",
            Keys::Int8 => "int8",
        }
    }

    /// Makes key `i` into `out`.
    pub fn make(self, i: u64, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Keys::Random16 => {
                out.extend_from_slice(&mix(i).to_be_bytes());
                out.extend_from_slice(&mix(i ^ 0xabcd_ef01_2345_6789).to_be_bytes());
            }
            Keys::Prefix40 => {
                out.extend_from_slice(b"https://www.example.com/");
                let h = mix(i);
                for shift in (0..64).step_by(4).rev() {
                    out.push(b"0123456789abcdef"[((h >> shift) & 15) as usize]);
                }
            }
            Keys::Int8 => out.extend_from_slice(&i.to_be_bytes()),
        }
    }
}
