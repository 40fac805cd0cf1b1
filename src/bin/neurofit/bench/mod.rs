//! `neurofit bench`: the kernels (Gram f32/f64, batched Cholesky NLL over an N sweep, per-unit
//! selected solves over a k sweep) and the models end to end (ridge fit fc8-like scaled by
//! `scale`, perform_gsn over an N sweep) on the CPU and every GPU adapter, with median/min/max of
//! R repeats after a warm-up, GFLOP/s from the FLOP count, the max relative error against the CPU
//! f64 result, GPU kernel time from timestamp queries, JSON + CSV + an SVG plot.

pub mod output;
pub mod plot;

use ndarray::{Array2, ArrayView2};
use neurofit::backend::{Backend, FeatureLayout};
use neurofit::dispatch::{self, Chosen, Job};
use neurofit::gsn::{perform_gsn, GsnOptions};
use neurofit::ridge::{fit, FitParams};
use neurofit::simulate::Rng;
use neurofit::{Device, Dtype, Result};
use std::sync::Arc;
use std::time::Instant;

/// Settings of a benchmark run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Small sizes and 3 repeats: finishes in under a minute on a 2-core CPU (also on lavapipe).
    pub quick: bool,
    /// Scale of the fc8-like ridge fit (1.0 = n 1000, F 15000, U 1000, k 500).
    pub scale: f64,
    /// Timed repeats after one warm-up.
    pub repeats: usize,
    /// Also run on software adapters (llvmpipe/lavapipe, SwiftShader, WARP).
    pub include_software: bool,
}

impl BenchConfig {
    /// Defaults for a full or a quick run.
    pub fn new(quick: bool) -> Self {
        BenchConfig {
            quick,
            scale: if quick { 0.05 } else { 1.0 },
            repeats: if quick { 3 } else { 5 },
            include_software: false,
        }
    }
}

/// A device a benchmark runs on.
#[derive(Clone)]
pub struct BenchDevice {
    /// `cpu` or `gpu:N`.
    pub id: String,
    /// Adapter or CPU name.
    pub name: String,
    /// Backend ("rayon/faer", Vulkan, Metal, …).
    pub backend: String,
    /// Driver description.
    pub driver: String,
    /// Device type.
    pub kind: String,
    /// Dtypes it runs (CPU: f64 only — it always computes in f64).
    pub dtypes: Vec<Dtype>,
    /// Whether kernel times come from timestamp queries.
    pub timestamps: bool,
    /// The backend (the CPU or an open GPU).
    pub backend_: Chosen,
}

/// One measured (kernel, size, device, dtype).
#[derive(Debug, Clone)]
pub struct Record {
    /// Kernel or model name.
    pub kernel: String,
    /// What `size` measures (features, units, k, scale).
    pub size_param: String,
    /// The swept size.
    pub size: f64,
    /// Device id.
    pub device: String,
    /// Adapter name.
    pub adapter: String,
    /// Backend.
    pub backend: String,
    /// Driver.
    pub driver: String,
    /// Precision.
    pub dtype: Dtype,
    /// Timed repeats.
    pub repeats: usize,
    /// Median wall time including transfers (s).
    pub median_s: f64,
    /// Fastest repeat (s).
    pub min_s: f64,
    /// Slowest repeat (s).
    pub max_s: f64,
    /// Median GPU kernel time from timestamp queries (s), when available.
    pub kernel_median_s: Option<f64>,
    /// Floating-point operations of one run.
    pub flops: f64,
    /// Max |result − CPU f64 result| / max |CPU f64 result|.
    pub max_rel_err: f64,
    /// Error message when the run failed (timings are then NaN).
    pub error: Option<String>,
}

impl Record {
    /// GFLOP/s at the median wall time.
    pub fn gflops(&self) -> f64 {
        self.flops / self.median_s / 1e9
    }
}

/// The CPU and the GPU adapters to run on.
pub fn bench_devices(include_software: bool) -> Vec<BenchDevice> {
    #[cfg_attr(not(feature = "gpu"), allow(unused_mut))]
    let mut v = vec![BenchDevice {
        id: "cpu".into(),
        name: format!("CPU ({} threads)", rayon::current_num_threads()),
        backend: "rayon+faer".into(),
        driver: String::new(),
        kind: "Cpu".into(),
        dtypes: vec![Dtype::F64],
        timestamps: false,
        backend_: dispatch::cpu(None),
    }];
    #[cfg(feature = "gpu")]
    for a in dispatch::adapters() {
        if a.is_software && !include_software {
            continue;
        }
        let id = format!("gpu:{}", a.index);
        let Ok(dev) = id.parse::<Device>() else {
            continue;
        };
        let Ok(chosen) = dispatch::resolve(&dev, Dtype::F32, f64::INFINITY, None) else {
            continue;
        };
        let mut dtypes = vec![Dtype::F32];
        if a.shader_f64 {
            dtypes.push(Dtype::F64);
        }
        v.push(BenchDevice {
            id,
            name: a.name.clone(),
            backend: format!("{:?}", a.backend),
            driver: a.driver.clone(),
            kind: format!("{:?}", a.device_type),
            dtypes,
            timestamps: a.timestamp_query,
            backend_: chosen,
        });
    }
    #[cfg(not(feature = "gpu"))]
    let _ = include_software;
    v
}

/// Runs a case on a device in a dtype, returning the values compared with the CPU f64 result.
type Runner = Box<dyn Fn(&BenchDevice, Dtype) -> Result<Vec<f64>>>;

/// One benchmark case: a kernel at one size.
struct Case {
    kernel: &'static str,
    size_param: &'static str,
    size: f64,
    flops: f64,
    run: Runner,
}

fn rel_err(got: &[f64], reference: &[f64]) -> f64 {
    let scale = reference
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let d = got
        .iter()
        .zip(reference)
        .filter(|(a, b)| !(a.is_nan() && b.is_nan()))
        .map(|(a, b)| (a - b).abs())
        .fold(
            0.0f64,
            |m, v| if v.is_nan() { f64::INFINITY } else { m.max(v) },
        );
    if scale > 0.0 {
        d / scale
    } else {
        d
    }
}

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut r = Rng::new(seed);
    Array2::from_shape_fn((rows, cols), |_| r.normal())
}

fn device_of(dev: &BenchDevice) -> Device {
    dev.id.parse().unwrap_or(Device::Cpu)
}

/// The lower triangle of `aᵀa`, packed by columns.
struct GramJob {
    a: Arc<Array2<f64>>,
    dtype: Dtype,
}

impl Job for GramJob {
    type Output = Vec<f64>;
    fn run<B: Backend>(&self, be: &B) -> Result<Vec<f64>> {
        let layout = FeatureLayout {
            bias: false,
            correlations: false,
            low_precision_gram: false,
        };
        let f = be.upload_features(self.a.view(), layout, self.dtype)?;
        let g = be.gram_to_host(be.gram(&f)?)?;
        let p = self.a.ncols();
        let mut out = Vec::with_capacity(p * (p + 1) / 2);
        for j in 0..p {
            for i in j..p {
                out.push(g.lower(i, j));
            }
        }
        Ok(out)
    }
}

/// The shrinkage-NLL curve.
struct NllJob {
    cov: Arc<Array2<f64>>,
    pts: Arc<Array2<f64>>,
    levels: Vec<f64>,
    dtype: Dtype,
}

impl Job for NllJob {
    type Output = Vec<f64>;
    fn run<B: Backend>(&self, be: &B) -> Result<Vec<f64>> {
        be.shrinkage_nll(self.cov.view(), self.pts.view(), &self.levels, self.dtype)
    }
}

/// Gram + YᵀX₁ + gather + Cholesky solves of given selections.
struct SolvesJob {
    x: ArrayView2<'static, f64>,
    y: ArrayView2<'static, f64>,
    idx: Arc<Array2<u32>>,
    dtype: Dtype,
}

impl Job for SolvesJob {
    type Output = Vec<f64>;
    fn run<B: Backend>(&self, be: &B) -> Result<Vec<f64>> {
        let layout = FeatureLayout {
            bias: true,
            correlations: false,
            low_precision_gram: false,
        };
        let x1 = be.upload_features(self.x, layout, self.dtype)?;
        let g = be.gram(&x1)?;
        let t = be.upload_targets(self.y, self.dtype)?;
        Ok(be
            .solve_selected(&g, &x1, &t, self.idx.view(), 100.0)?
            .theta)
    }
}

fn cases(cfg: &BenchConfig) -> Vec<Case> {
    let q = cfg.quick;
    let mut v: Vec<Case> = Vec::new();
    // Gram X₁ᵀX₁ (lower triangle), features sweep
    let n_gram = if q { 128 } else { 1024 };
    let gram_sizes: &[usize] = if q {
        &[128, 256, 512]
    } else {
        &[512, 1024, 2048, 4096, 8192]
    };
    for &p in gram_sizes {
        let a = Arc::new(random(n_gram, p, p as u64));
        v.push(Case {
            kernel: "gram",
            size_param: "features",
            size: p as f64,
            flops: (n_gram * p * (p + 1)) as f64,
            run: Box::new(move |dev, dtype| {
                dev.backend_.run(&GramJob {
                    a: a.clone(),
                    dtype,
                })
            }),
        });
    }
    // batched Cholesky NLL (51 levels), units sweep
    let nll_sizes: &[usize] = if q {
        &[16, 32, 64]
    } else {
        &[64, 128, 256, 512, 1024]
    };
    let levels = neurofit::gsn::shrink::default_levels();
    for &n in nll_sizes {
        let m = 64;
        let a = random(2 * n, n, n as u64 + 1);
        let cov = Arc::new(a.t().dot(&a) / (2 * n) as f64);
        let pts = Arc::new(random(m, n, 7));
        let levels = levels.clone();
        let s = levels.len() as f64;
        let nf = n as f64;
        v.push(Case {
            kernel: "cholesky_nll",
            size_param: "units",
            size: nf,
            flops: s * (nf * nf * nf / 3.0 + nf * nf * m as f64 + 2.0 * nf * m as f64),
            run: Box::new(move |dev, dtype| {
                dev.backend_.run(&NllJob {
                    cov: cov.clone(),
                    pts: pts.clone(),
                    levels: levels.clone(),
                    dtype,
                })
            }),
        });
    }
    // per-unit selected solves (Gram + YᵀX₁ + gather + (k+1)² Cholesky), k sweep
    let (sn, sf, su) = if q { (128, 256, 32) } else { (1000, 4000, 256) };
    let k_sizes: &[usize] = if q {
        &[8, 32, 64]
    } else {
        &[32, 64, 128, 256, 512]
    };
    // the data live for the whole run: leaked once so that the jobs can borrow them
    let sim: &'static neurofit::simulate::Simulated =
        Box::leak(Box::new(neurofit::simulate::simulate(sn, sf, su, 5)));
    let corr = Array2::from_shape_fn((su, sf), |(u, j)| {
        neurofit::linalg::pearson(sim.x.column(j), sim.y.column(u))
            .map(f64::abs)
            .unwrap_or(f64::NAN)
    });
    for &k in k_sizes {
        let sel = neurofit::ridge::select::top_k_rows(
            corr.view(),
            k,
            neurofit::ridge::select::TieBreak::HigherIndex,
        );
        let mut idx = Array2::<u32>::from_elem((su, k + 1), sf as u32);
        idx.slice_mut(ndarray::s![.., ..k]).assign(&sel);
        let idx = Arc::new(idx);
        let (nf, pf, uf, mf) = (sn as f64, (sf + 1) as f64, su as f64, (k + 1) as f64);
        v.push(Case {
            kernel: "selected_solves",
            size_param: "k",
            size: k as f64,
            flops: nf * pf * (pf + 1.0)
                + 2.0 * nf * pf * uf
                + uf * (mf * mf * mf / 3.0 + 2.0 * mf * mf),
            run: Box::new(move |dev, dtype| {
                dev.backend_.run(&SolvesJob {
                    x: sim.x.view(),
                    y: sim.y.view(),
                    idx: idx.clone(),
                    dtype,
                })
            }),
        });
    }
    // ridge fit, fc8-like scaled
    let s = cfg.scale;
    let (rn, rf, ru, rk) = (
        (1000.0 * s).round().max(8.0) as usize,
        (15000.0 * s).round().max(16.0) as usize,
        (1000.0 * s).round().max(2.0) as usize,
        (500.0 * s).round().max(1.0) as usize,
    );
    let rsim = Arc::new(neurofit::simulate::simulate(rn, rf, ru, 9));
    let (nf, ff, uf, kf) = (rn as f64, rf as f64, ru as f64, rk as f64);
    v.push(Case {
        kernel: "ridge_fit",
        size_param: "scale",
        size: s,
        flops: nf * ff * ff + 4.0 * nf * ff * uf + uf * (kf + 1.0).powi(3) / 3.0,
        run: Box::new(move |dev, dtype| {
            let p = FitParams {
                alpha: 100.0,
                n_feat: rk,
                dtype,
                device: device_of(dev),
                ..FitParams::default()
            };
            let out = fit(rsim.x.view(), rsim.y.view().into_dyn(), &p)?;
            Ok(out
                .model
                .w
                .iter()
                .chain(out.model.b.iter())
                .copied()
                .collect())
        }),
    });
    // perform_gsn, units sweep (C conditions × 3 trials, low-rank signal + noise)
    let c = if q { 40 } else { 200 };
    let gsn_sizes: &[usize] = if q { &[16, 32] } else { &[100, 200, 500, 1000] };
    for &n in gsn_sizes {
        let data = Arc::new(neurofit::simulate::gsn_responses(
            n,
            c,
            3,
            1.5,
            n as u64 + 3,
        ));
        let nf = n as f64;
        v.push(Case {
            kernel: "perform_gsn",
            size_param: "units",
            size: nf,
            flops: 2.0 * 51.0 * nf * nf * nf / 3.0 + 2.0 * nf * nf * (c * 3) as f64,
            run: Box::new(move |dev, dtype| {
                let o = GsnOptions {
                    device: device_of(dev),
                    dtype,
                    ..GsnOptions::default()
                };
                let r = perform_gsn(data.view(), &o)?;
                Ok(r.c_sb
                    .map(|a| a.iter().copied().collect())
                    .unwrap_or_default())
            }),
        });
    }
    v
}

/// Number of (case, device, dtype) runs, for progress reporting.
pub fn total_runs(cfg: &BenchConfig, devices: &[BenchDevice]) -> usize {
    let per_case: usize = devices.iter().map(|d| d.dtypes.len()).sum();
    cases(cfg).len() * per_case
}

/// Runs every case on every device; `progress(done)` after each run.
pub fn run(
    cfg: &BenchConfig,
    devices: &[BenchDevice],
    progress: &dyn Fn(usize, &str),
) -> Vec<Record> {
    let mut records = Vec::new();
    let mut done = 0;
    for case in cases(cfg) {
        let cpu = &devices[0];
        let reference = (case.run)(cpu, Dtype::F64).unwrap_or_default();
        for dev in devices {
            for &dtype in &dev.dtypes {
                progress(
                    done,
                    &format!(
                        "{} {}={} on {} {dtype}",
                        case.kernel, case.size_param, case.size, dev.id
                    ),
                );
                records.push(measure(&case, dev, dtype, cfg.repeats, &reference));
                done += 1;
            }
        }
    }
    progress(done, "done");
    records
}

fn measure(
    case: &Case,
    dev: &BenchDevice,
    dtype: Dtype,
    repeats: usize,
    reference: &[f64],
) -> Record {
    let mut rec = Record {
        kernel: case.kernel.into(),
        size_param: case.size_param.into(),
        size: case.size,
        device: dev.id.clone(),
        adapter: dev.name.clone(),
        backend: dev.backend.clone(),
        driver: dev.driver.clone(),
        dtype,
        repeats,
        median_s: f64::NAN,
        min_s: f64::NAN,
        max_s: f64::NAN,
        kernel_median_s: None,
        flops: case.flops,
        max_rel_err: f64::NAN,
        error: None,
    };
    let warm = match (case.run)(dev, dtype) {
        Ok(v) => v,
        Err(e) => {
            rec.error = Some(e.to_string());
            return rec;
        }
    };
    rec.max_rel_err = rel_err(&warm, reference);
    let mut wall = Vec::with_capacity(repeats);
    let mut kern = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        #[cfg(feature = "gpu")]
        if let Chosen::Gpu(g) = &dev.backend_ {
            g.context().start_kernel_timing();
        }
        let t = Instant::now();
        let r = (case.run)(dev, dtype);
        wall.push(t.elapsed().as_secs_f64());
        #[cfg(feature = "gpu")]
        if let Chosen::Gpu(g) = &dev.backend_ {
            if let Some(k) = g.context().stop_kernel_timing() {
                kern.push(k);
            }
        }
        if let Err(e) = r {
            rec.error = Some(e.to_string());
            return rec;
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        }
    };
    rec.min_s = wall.iter().copied().fold(f64::INFINITY, f64::min);
    rec.max_s = wall.iter().copied().fold(0.0, f64::max);
    rec.median_s = med(&mut wall);
    if kern.len() == wall.len() && !kern.is_empty() {
        rec.kernel_median_s = Some(med(&mut kern));
    }
    rec
}

/// Least-squares power law `t = c · size^e` on the larger half (≥ 2 points) of a sweep.
pub fn power_law(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let mut p: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(s, t)| *s > 0.0 && *t > 0.0 && t.is_finite())
        .collect();
    if p.len() < 2 {
        return None;
    }
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let take = (p.len() / 2).max(2).min(p.len());
    let tail = &p[p.len() - take..];
    let n = tail.len() as f64;
    let (sx, sy) = tail
        .iter()
        .fold((0.0, 0.0), |(a, b), (s, t)| (a + s.ln(), b + t.ln()));
    let (mx, my) = (sx / n, sy / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (s, t) in tail {
        sxy += (s.ln() - mx) * (t.ln() - my);
        sxx += (s.ln() - mx).powi(2);
    }
    if sxx == 0.0 {
        return None;
    }
    let e = sxy / sxx;
    Some((e, (my - e * mx).exp()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn power_law_recovers_an_exponent() {
        let pts: Vec<(f64, f64)> = [10.0, 20.0, 40.0, 80.0]
            .iter()
            .map(|&n: &f64| (n, 3e-6 * n.powi(3)))
            .collect();
        let (e, c) = super::power_law(&pts).unwrap();
        assert!((e - 3.0).abs() < 1e-9 && (c - 3e-6).abs() < 1e-15);
    }
}
