//! The deterministic split of GSN (spec §4): MT19937 seeded with 42 (the standard 32-bit
//! initialisation), doubles built as `((a >> 5)·2^26 + (b >> 6)) / 2^53`, and the permutation as
//! the ascending argsort of the first n doubles.

/// MT19937 (the `rand_mt` crate, standard `init_genrand` seeding) with numpy's 53-bit doubles.
pub struct Mt19937(rand_mt::Mt);

impl Mt19937 {
    /// Seeds with the standard `init_genrand` initialisation.
    pub fn new(seed: u32) -> Self {
        Mt19937(rand_mt::Mt::new(seed))
    }

    /// Next 32-bit output (tempered).
    pub fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// A double in [0, 1) with 53 random bits (`genrand_res53`, numpy's `random_sample`).
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
