//! Simulated data for the demo, the benchmarks, the examples and tests: fMRI-like decoding data
//! ([`simulate`]: voxels carry smooth latent sources plus noise, each unit is driven by a few
//! voxels) and GSN responses ([`gsn_responses`]: a low-rank signal plus independent noise).

use ndarray::{Array2, Array3, Axis};

/// A small, fast, seedable generator (SplitMix64) with Gaussian draws (Box–Muller).
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Simulated decoding data: `X` (`n × voxels`), `Y` (`n × units`), with `sources` latent
/// signals; each unit depends on 6 voxels.
pub struct Simulated {
    /// Voxel responses.
    pub x: Array2<f64>,
    /// Unit responses.
    pub y: Array2<f64>,
}

/// Generates `n` samples of the simulated data.
pub fn simulate(n: usize, voxels: usize, units: usize, seed: u64) -> Simulated {
    let mut rng = Rng::new(seed);
    let sources = 8.min(voxels).max(1);
    let mix = Array2::from_shape_fn((sources, voxels), |(s, v)| {
        let centre = (s as f64 + 0.5) * voxels as f64 / sources as f64;
        let d = (v as f64 - centre) / (voxels as f64 / sources as f64);
        (-d * d).exp()
    });
    let latent = Array2::from_shape_fn((n, sources), |_| rng.normal());
    let baseline = Array2::from_shape_fn((1, voxels), |_| 100.0 + 10.0 * rng.uniform());
    let noise = Array2::from_shape_fn((n, voxels), |_| rng.normal());
    let x = latent.dot(&mix) * 2.0 + noise + &baseline;
    let mut w = Array2::<f64>::zeros((voxels, units));
    for u in 0..units {
        for _ in 0..6 {
            let v = (rng.next_u64() % voxels as u64) as usize;
            w[(v, u)] += rng.normal();
        }
    }
    let xc = &x - &x.mean_axis(Axis(0)).expect("n > 0").insert_axis(Axis(0));
    let y = xc.dot(&w) + Array2::from_shape_fn((n, units), |_| rng.normal());
    Simulated { x, y }
}

/// GSN responses `n units × c conditions × t trials`: a rank-`min(10, n)` signal (unit variance
/// per unit on average) plus independent noise of standard deviation `noise_sd`.
pub fn gsn_responses(n: usize, c: usize, t: usize, noise_sd: f64, seed: u64) -> Array3<f64> {
    let mut r = Rng::new(seed);
    let rank = 10.min(n).max(1);
    let basis = Array2::from_shape_fn((n, rank), |_| r.normal());
    let signal = Array2::from_shape_fn((rank, c), |_| r.normal());
    let s = basis.dot(&signal) / (rank as f64).sqrt();
    Array3::from_shape_fn((n, c, t), |(i, ci, _)| s[(i, ci)] + noise_sd * r.normal())
}
