//! The deterministic split of GSN (spec §4): MT19937 seeded with 42 (the standard 32-bit
//! initialisation), doubles built as `((a >> 5)·2^26 + (b >> 6)) / 2^53`, and the permutation as
//! the ascending argsort of the first n doubles.

/// The Mersenne Twister MT19937 generator.
pub struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    /// Seeds with the standard `init_genrand` initialisation.
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
            let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.index = 0;
    }

    /// Next 32-bit output (tempered).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// A double in [0, 1) with 53 random bits (`genrand_res53`).
    pub fn next_f64(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }
}

/// `deterministic_randperm(n)`: the argsort of the first `n` doubles of MT19937(42).
pub fn randperm(n: usize) -> Vec<usize> {
    let mut rng = Mt19937::new(42);
    let v: Vec<f64> = (0..n).map(|_| rng.next_f64()).collect();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]).then(i.cmp(&j)));
    idx
}

/// numpy's `round` (half to even) of `n / leaveout`.
pub fn held_out_count(n: usize, leaveout: usize) -> usize {
    let x = n as f64 / leaveout as f64;
    let r = x.round();
    if (x - x.trunc() - 0.5).abs() < f64::EPSILON && (r as usize) % 2 == 1 {
        r as usize - 1
    } else {
        r as usize
    }
}

/// The split of `n` cases: (held-out, training) indices.
pub fn split(n: usize) -> (Vec<usize>, Vec<usize>) {
    let p = randperm(n);
    let v = held_out_count(n, 5);
    (p[..v].to_vec(), p[v..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_doubles_match_numpy() {
        let mut r = Mt19937::new(42);
        let want = [0.3745401188473625, 0.9507143064099162, 0.7319939418114051];
        for w in want {
            assert_eq!(r.next_f64(), w);
        }
    }

    #[test]
    fn half_to_even() {
        assert_eq!(held_out_count(30, 5), 6);
        assert_eq!(held_out_count(2, 5), 0);
        assert_eq!(held_out_count(3, 5), 1);
        assert_eq!(held_out_count(25, 10), 2);
        assert_eq!(held_out_count(35, 10), 4);
    }
}
