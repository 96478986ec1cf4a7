//! A small, fast, seedable random number generator (xoshiro256**, seeded through splitmix64) and the
//! draws the simulated workers need. No crates: this builds offline.

/// One step of splitmix64: turns any seed (0 included) into well-mixed state words.
fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The generator for ``stream`` (a worker's id) under ``seed``: different workers draw independent
    /// sequences, the same (seed, stream) the same one.
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut x = seed ^ stream.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        Rng { s: [splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x)] }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in [lo, hi], both included (Python's ``randint``).
    pub fn int_inclusive(&mut self, lo: u32, hi: u32) -> u32 {
        let n = u64::from(hi - lo) + 1;
        lo + ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u32
    }

    /// Exponential with the given mean (Python's ``expovariate(1 / mean)``).
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.uniform()).ln() // 1 - u lies in (0, 1]: no ln(0)
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// A random (version 4, RFC 4122 variant) UUID.
    pub fn uuid4(&mut self) -> u128 {
        let u = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
        (u & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62)
    }
}

/// ``u`` lower-case and hyphenated, as Python's ``str(uuid.UUID(...))``, written into ``out``.
pub fn uuid_text(u: u128, out: &mut [u8; 36]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut at = 0;
    for (i, byte) in u.to_be_bytes().iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[at] = b'-';
            at += 1;
        }
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    std::str::from_utf8(out).expect("hex digits and hyphens")
}

#[cfg(test)]
mod tests {
    use super::{uuid_text, Rng};

    #[test]
    fn uuid_has_version_and_variant() {
        let mut r = Rng::new(0, 0);
        let mut buf = [0; 36];
        assert_eq!(uuid_text(0x0b6c3a4e_1111_4222_8333_444455556666, &mut buf), "0b6c3a4e-1111-4222-8333-444455556666");
        for _ in 0..100 {
            let u = uuid_text(r.uuid4(), &mut buf);
            assert_eq!(u.len(), 36);
            assert_eq!(&u[14..15], "4");
            assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        }
    }

    #[test]
    fn draws_stay_in_range() {
        let mut r = Rng::new(7, 3);
        for _ in 0..10_000 {
            let k = r.int_inclusive(300, 4000);
            assert!((300..=4000).contains(&k));
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            assert!(r.exponential(0.5) >= 0.0);
        }
        let mean: f64 = (0..100_000).map(|_| r.exponential(2.0)).sum::<f64>() / 100_000.0;
        assert!((mean - 2.0).abs() < 0.05, "{mean}");
    }
}
