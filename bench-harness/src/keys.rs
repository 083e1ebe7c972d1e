//! Key choosers as YCSB defines them (`core/src/main/java/site/ycsb/generator`): uniform,
//! zipfian (Gray et al., "Quickly generating billion-record synthetic databases", constant
//! 0.99) scrambled by FNV so popular keys are spread over the keyspace, and "latest" (zipfian
//! over recency: the newest records are the most popular).

use rand::Rng;

/// YCSB's zipfian constant.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

/// 64-bit FNV-1a of a number's little-endian bytes, as YCSB's `Utils.fnvhash64`.
pub fn fnv64(v: u64) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in v.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// The key of record `n`: `user` + its FNV hash, so insertion order is not key order.
pub fn record_key(n: u64) -> String {
    format!("user{}", fnv64(n))
}

/// Zipfian over `[0, items)` with an incrementally maintained zeta.
#[derive(Debug, Clone)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
    zeta2: f64,
}

fn zeta(from: u64, to: u64, theta: f64, initial: f64) -> f64 {
    (from..to).fold(initial, |acc, i| acc + 1.0 / ((i + 1) as f64).powf(theta))
}

impl Zipfian {
    /// A generator over `items` items.
    pub fn new(items: u64) -> Self {
        let items = items.max(1);
        let theta = ZIPFIAN_CONSTANT;
        let zeta2 = zeta(0, 2, theta, 0.0);
        let zetan = zeta(0, items, theta, 0.0);
        let mut z = Zipfian {
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta: 0.0,
            zeta2,
        };
        z.eta = z.eta_for(items);
        z
    }

    fn eta_for(&self, items: u64) -> f64 {
        (1.0 - (2.0 / items as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2 / self.zetan)
    }

    /// Grows the item count (inserts), updating zeta incrementally.
    pub fn grow_to(&mut self, items: u64) {
        if items > self.items {
            self.zetan = zeta(self.items, items, self.theta, self.zetan);
            self.items = items;
            self.eta = self.eta_for(items);
        }
    }

    /// The next item; 0 is the most popular.
    pub fn next(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.r#gen();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let v = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.items - 1)
    }
}

/// How the next record of an operation is chosen.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    /// Every record equally likely.
    Uniform,
    /// Zipfian popularity, scrambled over the keyspace.
    Zipfian(Zipfian),
    /// Zipfian over recency: record `count - 1 - z`.
    Latest(Zipfian),
}

impl KeyChooser {
    /// Picks a record number in `[0, count)`.
    pub fn pick(&mut self, count: u64, rng: &mut impl Rng) -> u64 {
        let count = count.max(1);
        match self {
            KeyChooser::Uniform => rng.gen_range(0..count),
            KeyChooser::Zipfian(z) => {
                // YCSB's ScrambledZipfianGenerator: popularity from a fixed large zipfian,
                // hashed onto the records.
                fnv64(z.next(rng)) % count
            }
            KeyChooser::Latest(z) => {
                z.grow_to(count);
                count - 1 - z.next(rng).min(count - 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn zipfian_favours_low_items_and_stays_in_range() {
        let z = Zipfian::new(1000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut hits = vec![0u32; 1000];
        for _ in 0..100_000 {
            hits[z.next(&mut rng) as usize] += 1;
        }
        assert!(
            hits[0] > hits[10] && hits[10] > hits[500],
            "{:?}",
            &hits[..12]
        );
        // With theta 0.99 over 1000 items, item 0 draws roughly 13 % of requests.
        assert!(
            (8_000..20_000).contains(&hits[0]),
            "item 0 drew {}",
            hits[0]
        );
    }

    #[test]
    fn latest_prefers_the_newest_records() {
        let mut k = KeyChooser::Latest(Zipfian::new(1));
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let newest = (0..10_000).filter(|_| k.pick(500, &mut rng) >= 490).count();
        assert!(newest > 3_000, "newest 10 of 500 drew {newest} of 10000");
    }

    #[test]
    fn record_keys_are_scattered() {
        assert_ne!(record_key(1), record_key(2));
        assert!(record_key(7).starts_with("user"));
    }
}
