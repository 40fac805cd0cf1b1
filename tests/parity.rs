//! Backend parity and chunking invariance.
//!
//! * One parity test per WGSL entry point against its CPU twin, through the backend primitive
//!   that runs it: `gemm_tn::main` (Gram, cross products), `colstats::{col_sum, center,
//!   col_sumsq}` + `corr::main` (correlations), `gather::main` + `cholesky::{panel, update,
//!   forward, backward}` or, for systems up to 32, `small_cholesky::factor_solve` (selected
//!   solves), `nll::{build, trsm_rows, reduce}` + either factorisation (the shrinkage scorer).
//! * Whole fits and perform_gsn, GPU against CPU.
//! * Chunking (the user's chunk_size, down to one unit, and budgets forced tiny) gives bitwise
//!   identical results on both backends.
//! * `auto` never picks a software adapter and falls back to the CPU on a GPU failure.

mod common;

use common::*;
use ndarray::{Array2, ArrayD};
use neurofit::backend::{Backend, FeatureLayout, Op};
use neurofit::device::planner::{items_per_chunk, Stage};
use neurofit::dispatch::{self, Chosen, Job};
use neurofit::gsn::{perform_gsn, GsnOptions};
use neurofit::ridge::{fit, plan_selected, FitOutput, FitParams, SelectedShape};
use neurofit::simulate::Rng;
use neurofit::{Device, Dtype, Error, Result};

fn random(n: usize, f: usize, units: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let mut r = Rng::new(seed);
    let x = Array2::from_shape_fn((n, f), |(_, j)| r.normal() + 0.1 * (j % 7) as f64);
    let w = Array2::from_shape_fn((f, units), |_| {
        if r.uniform() < 0.05 {
            r.normal()
        } else {
            0.0
        }
    });
    let y = x.dot(&w) + Array2::from_shape_fn((n, units), |_| 0.5 * r.normal());
    (x, y)
}

fn run(x: &Array2<f64>, y: &Array2<f64>, p: FitParams) -> FitOutput {
    fit(x.view(), y.view().into_dyn(), &p).expect("fit")
}

fn params(k: usize, alpha: f64, dtype: Dtype, device: Device) -> FitParams {
    FitParams {
        alpha,
        n_feat: k,
        dtype,
        device,
        keep_corr: true,
        ..FitParams::default()
    }
}

fn same(a: &ArrayD<f64>, b: &ArrayD<f64>) -> bool {
    a.shape() == b.shape()
        && a.iter()
            .zip(b.iter())
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

fn close(what: &str, got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want
        .iter()
        .filter(|v| v.is_finite())
        .fold(1e-300f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            a.is_nan(),
            b.is_nan(),
            "{what}[{i}]: NaN pattern {a} vs {b}"
        );
        if !a.is_nan() {
            assert!(
                (a - b).abs() <= rel * scale,
                "{what}[{i}]: {a} vs {b} (scale {scale:e})"
            );
        }
    }
}

fn backend(dev: &Device, max_memory: Option<u64>) -> Chosen {
    dispatch::resolve(dev, Dtype::F64, f64::INFINITY, max_memory).expect("backend")
}

/// Each primitive as a job: features `x` (`n × f`), targets `y` (`n × q`).
#[derive(Clone, Copy, Debug)]
enum Prim {
    Gram,
    Cross,
    Correlations,
    Solves { k: usize, alpha: f64 },
    Nll,
    SparsePredict { k: usize },
}

struct PrimJob<'a> {
    prim: Prim,
    x: &'a Array2<f64>,
    y: &'a Array2<f64>,
    dtype: Dtype,
}

impl Job for PrimJob<'_> {
    type Output = Vec<f64>;
    fn run<B: Backend>(&self, be: &B) -> Result<Vec<f64>> {
        let (n, f) = self.x.dim();
        let all = FeatureLayout {
            bias: true,
            correlations: true,
            low_precision_gram: false,
        };
        match self.prim {
            Prim::Gram => {
                let x1 = be.upload_features(self.x.view(), all, self.dtype)?;
                let g = be.gram_to_host(be.gram(&x1)?)?;
                Ok((0..=f)
                    .flat_map(|j| (j..=f).map(move |i| (i, j)))
                    .map(|(i, j)| g.lower(i, j))
                    .collect())
            }
            Prim::Cross => {
                let x1 = be.upload_features(self.x.view(), all, self.dtype)?;
                let t = be.upload_targets(self.y.view(), self.dtype)?;
                Ok(be.cross(&x1, &t)?.iter().copied().collect())
            }
            Prim::Correlations => {
                let x1 = be.upload_features(self.x.view(), all, self.dtype)?;
                let t = be.upload_targets(self.y.view(), self.dtype)?;
                Ok(be.abs_correlations(&x1, &t)?.iter().copied().collect())
            }
            Prim::Solves { k, alpha } => {
                let x1 = be.upload_features(self.x.view(), all, self.dtype)?;
                let g = be.gram(&x1)?;
                let t = be.upload_targets(self.y.view(), self.dtype)?;
                let q = self.y.ncols();
                // a fixed, unit-dependent selection (not |r|-ranked: this tests the solver)
                let idx = Array2::from_shape_fn((q, k + 1), |(u, m)| {
                    if m == k {
                        f as u32
                    } else {
                        ((u * 7 + m * 3) % f) as u32
                    }
                });
                for row in idx.rows() {
                    let mut v = row.to_vec();
                    v.sort_unstable();
                    v.dedup();
                    assert_eq!(v.len(), k + 1, "test selection has duplicates");
                }
                let solved = be.solve_selected(&g, &x1, &t, idx.view(), alpha)?;
                assert!(
                    solved.failed.iter().all(|f| f.is_none()),
                    "{:?}",
                    solved.failed
                );
                // well-conditioned systems: every one refined from its f32 factor where the
                // backend refines (refine.wgsl: up to m = 1024 on lavapipe), none otherwise
                if let Some(want) = refined_systems(&be.describe(), q) {
                    assert_eq!(solved.refined, want, "units refined in mixed precision");
                }
                Ok(solved.theta)
            }
            Prim::SparsePredict { k } => {
                // units = y's columns, k features each (distinct), weights from y
                let q = self.y.ncols();
                let idx = Array2::from_shape_fn((q, k), |(u, m)| ((u * 5 + m * 7) % f) as u32);
                let w = Array2::from_shape_fn((q, k), |(u, m)| self.y[(m % n, u)]);
                let b = ndarray::Array1::from_shape_fn(q, |u| u as f64 * 0.25 - 1.0);
                let none = FeatureLayout {
                    bias: false,
                    correlations: false,
                    low_precision_gram: false,
                };
                let xs = be.upload_features(self.x.view(), none, self.dtype)?;
                Ok(be
                    .sparse_predict(&xs, idx.view(), w.view(), b.view(), self.dtype)?
                    .iter()
                    .copied()
                    .collect())
            }
            Prim::Nll => {
                // the covariance of X's columns, scored on q of its rows
                let cov = self.x.t().dot(self.x) / n as f64;
                let pts = self.x.slice(ndarray::s![..self.y.ncols().min(n), ..]);
                let levels = neurofit::gsn::shrink::default_levels();
                be.shrinkage_nll(cov.view(), pts, &levels, self.dtype)
            }
        }
    }
}

/// How many of `q` well-conditioned systems the backend described as `describe` refines from
/// f32 factors in this process, where the environment decides it: `Some(q)` for mixed, `Some(0)`
/// for f64, `None` where the GPU chooses by adapter (`main` sets `mixed` for this binary's GPU
/// trials; the child process of [`the_wide_gemm_in_a_child_process`] sets `f64`).
fn refined_systems(describe: &str, q: usize) -> Option<usize> {
    let var = if describe.starts_with("cpu") {
        "NEUROFIT_CPU_SOLVE"
    } else {
        neurofit::gpu::SOLVE_ENV
    };
    match std::env::var(var).as_deref().map(str::trim) {
        Ok("f64") => Some(0),
        Ok("mixed") => Some(q),
        _ if describe.starts_with("cpu") => Some(q),
        _ => None,
    }
}

/// Nearly collinear features (condition numbers ~1e12 with α = 1e-6): no f32 factor can
/// precondition these, so the GPU's refinement gives way to the f64 factorisation for every unit;
/// an exactly duplicated feature with α = 0 gives the f64 path's singular verdict. Both as on
/// the CPU, for systems of `k + 1` at most `CHOL_SMALL` (`small_cholesky.wgsl`) and above it
/// (the blocked `cholesky.wgsl`).
fn ill_conditioned_systems_fall_back_to_f64(dev: Device) {
    for k in [12, 40] {
        ill_conditioned_systems_of(&dev, k);
    }
}

fn ill_conditioned_systems_of(dev: &Device, k: usize) {
    let (n, f, q) = (200, 60, 5);
    let (mut x, y) = random(n, f, q, 77);
    for i in 0..n {
        for j in 1..f {
            x[(i, j)] = x[(i, 0)] + 1e-6 * x[(i, j)];
        }
    }
    struct Solve<'a> {
        x: &'a Array2<f64>,
        y: &'a Array2<f64>,
        k: usize,
        alpha: f64,
        duplicate: bool,
    }
    impl Job for Solve<'_> {
        type Output = (Vec<f64>, Vec<Option<usize>>, usize);
        fn run<B: Backend>(&self, be: &B) -> Result<Self::Output> {
            let f = self.x.ncols();
            let all = FeatureLayout {
                bias: true,
                correlations: true,
                low_precision_gram: false,
            };
            let mut x = self.x.clone();
            if self.duplicate {
                let c = x.column(1).to_owned();
                x.column_mut(2).assign(&c);
            }
            let x1 = be.upload_features(x.view(), all, Dtype::F64)?;
            let g = be.gram(&x1)?;
            let t = be.upload_targets(self.y.view(), Dtype::F64)?;
            let idx = Array2::from_shape_fn((self.y.ncols(), self.k + 1), |(_, m)| {
                if m == self.k {
                    f as u32
                } else {
                    (m + 1) as u32
                }
            });
            let s = be.solve_selected(&g, &x1, &t, idx.view(), self.alpha)?;
            Ok((s.theta, s.failed, s.refined))
        }
    }
    let job = Solve {
        x: &x,
        y: &y,
        k,
        alpha: 1e-6,
        duplicate: false,
    };
    let (ct, cf, _) = backend(&Device::Cpu, None).run(&job).unwrap();
    let (gt, gf, refined) = backend(dev, None).run(&job).unwrap();
    assert!(
        cf.iter().all(|f| f.is_none()) && gf == cf,
        "{gf:?} vs {cf:?}"
    );
    assert_eq!(refined, 0, "an f32 factor cannot precondition cond ~1e12");
    // the f64 factorisations agree to the conditioning (~1e12 · 1e-16)
    close("ill-conditioned θ", &gt, &ct, 1e-3);
    let singular = Solve {
        duplicate: true,
        alpha: 0.0,
        x: &random(n, f, q, 78).0,
        ..job
    };
    let (_, cf, _) = backend(&Device::Cpu, None).run(&singular).unwrap();
    let (_, gf, refined) = backend(dev, None).run(&singular).unwrap();
    assert!(cf.iter().all(|f| f.is_some()), "{cf:?}");
    assert_eq!(gf, cf, "singular verdicts");
    assert_eq!(refined, 0);
}

fn primitive_parity(dev: Device, prim: Prim, n: usize, f: usize, q: usize, dtype: Dtype) {
    let (x, y) = random(n, f, q, (n * 13 + f * 7 + q) as u64);
    let job = PrimJob {
        prim,
        x: &x,
        y: &y,
        dtype,
    };
    let cpu = backend(&Device::Cpu, None).run(&job).unwrap();
    let gpu = backend(&dev, None).run(&job).unwrap();
    let tol = if dtype == Dtype::F64 { 1e-9 } else { 1e-4 };
    close(&format!("{prim:?}"), &gpu, &cpu, tol);
}

fn fit_parity(dev: Device, n: usize, f: usize, units: usize, k: usize, dtype: Dtype, tol: f64) {
    let (x, y) = random(n, f, units, (n * 31 + f) as u64);
    let c = run(&x, &y, params(k, 10.0, dtype, Device::Cpu));
    let g = run(&x, &y, params(k, 10.0, dtype, dev));
    if k > 0 && k < f {
        assert_eq!(c.selected, g.selected, "selected features differ");
        let cc = c.corr_abs.unwrap().into_dyn();
        assert_close("corr", &g.corr_abs.unwrap().into_dyn(), &cc, tol);
    }
    assert_close("W", &g.model.w, &c.model.w, tol);
    assert_close("b", &g.model.b, &c.model.b, tol);
}

/// The user's chunk_size, down to one unit per chunk, does not change W or b by a single bit.
fn chunk_size_does_not_change_results(dev: Device) {
    let (x, y) = random(400, 1500, 23, 5);
    let full = run(&x, &y, params(10, 3.0, Dtype::F64, dev.clone()));
    for chunk in [1usize, 2, 4, 7] {
        let mut p = params(10, 3.0, Dtype::F64, dev.clone());
        p.chunk_size = chunk;
        let chunked = run(&x, &y, p);
        assert!(
            same(&full.model.w, &chunked.model.w) && same(&full.model.b, &chunked.model.b),
            "chunk_size {chunk} changed the result"
        );
        assert_eq!(full.selected, chunked.selected);
    }
}

/// A budget that forces chunks of 2 units gives the same bits; one too small is an error.
fn tiny_budget_gives_identical_results(dev: Device) {
    let (x, y) = random(120, 80, 23, 6);
    let full = run(&x, &y, params(10, 3.0, Dtype::F64, dev.clone()));
    let probe = backend(&dev, None);
    let stage = plan(&probe, 120, 80, 23, 10);
    let budget = stage.fixed + 2 * stage.per_item;
    let tiny_be = backend(&dev, Some(budget));
    let lim = limits(&tiny_be);
    assert_eq!(
        items_per_chunk(&stage, &lim).unwrap(),
        2,
        "the budget must force chunks of 2 units"
    );
    let mut p = params(10, 3.0, Dtype::F64, dev.clone());
    p.max_memory = Some(budget);
    let tiny = run(&x, &y, p);
    assert!(same(&full.model.w, &tiny.model.w) && same(&full.model.b, &tiny.model.b));
    let mut p = params(10, 3.0, Dtype::F64, dev);
    p.max_memory = Some(stage.fixed / 2);
    let e = fit(x.view(), y.view().into_dyn(), &p).unwrap_err();
    assert!(matches!(e, Error::OutOfMemory(_)), "{e}");
}

fn plan(c: &Chosen, n: usize, f: usize, u: usize, k: usize) -> Stage {
    struct P(usize, usize, usize, usize);
    impl Job for P {
        type Output = Stage;
        fn run<B: Backend>(&self, be: &B) -> Result<Stage> {
            let shape = SelectedShape::in_memory(self.0, self.1, self.2, self.3);
            plan_selected(be, &shape, Dtype::F64)
        }
    }
    c.run(&P(n, f, u, k)).unwrap()
}

fn limits(c: &Chosen) -> neurofit::device::planner::Limits {
    struct L;
    impl Job for L {
        type Output = neurofit::device::planner::Limits;
        fn run<B: Backend>(&self, be: &B) -> Result<Self::Output> {
            Ok(be.limits())
        }
    }
    c.run(&L).unwrap()
}

/// The scorer in chunks of one level gives the same bits.
fn chunked_scorer_equals_unchunked(dev: Device) {
    let (c, pts) = random_cov(40, 9, false);
    let levels = neurofit::gsn::shrink::default_levels();
    struct S<'a>(&'a Array2<f64>, &'a Array2<f64>, &'a [f64]);
    impl Job for S<'_> {
        type Output = (Vec<f64>, Stage);
        fn run<B: Backend>(&self, be: &B) -> Result<Self::Output> {
            let st = be.plan(
                Op::ShrinkageNll {
                    levels: self.2.len(),
                    n: self.0.nrows(),
                    m: self.1.nrows(),
                },
                Dtype::F64,
            );
            Ok((
                be.shrinkage_nll(self.0.view(), self.1.view(), self.2, Dtype::F64)?,
                st,
            ))
        }
    }
    let (full, st) = backend(&dev, None).run(&S(&c, &pts, &levels)).unwrap();
    let tiny_be = backend(&dev, Some(st.fixed + st.per_item));
    assert_eq!(
        items_per_chunk(&st, &limits(&tiny_be)).unwrap(),
        1,
        "one level per chunk"
    );
    let (tiny, _) = tiny_be.run(&S(&c, &pts, &levels)).unwrap();
    assert_eq!(
        full.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        tiny.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

fn random_cov(n: usize, seed: u64, indefinite: bool) -> (Array2<f64>, Array2<f64>) {
    let mut r = Rng::new(seed);
    let a = Array2::from_shape_fn((n + 3, n), |_| r.normal());
    let mut c = a.t().dot(&a) / (n as f64 + 2.0);
    if indefinite && n > 1 {
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    c[(i, j)] *= 3.0;
                }
            }
        }
    }
    let pts = Array2::from_shape_fn((2 * n + 5, n), |_| r.normal());
    (c, pts)
}

fn scorer_matches_cpu_on_spd_and_indefinite_stacks(dev: Device) {
    let levels = neurofit::gsn::shrink::default_levels();
    struct S<'a>(&'a Array2<f64>, &'a Array2<f64>, &'a [f64]);
    impl Job for S<'_> {
        type Output = Vec<f64>;
        fn run<B: Backend>(&self, be: &B) -> Result<Vec<f64>> {
            be.shrinkage_nll(self.0.view(), self.1.view(), self.2, Dtype::F64)
        }
    }
    for n in [1usize, 7, 64, 300] {
        for indefinite in [false, true] {
            let (c, pts) = random_cov(n, n as u64 + 17, indefinite);
            let cpu = backend(&Device::Cpu, None)
                .run(&S(&c, &pts, &levels))
                .unwrap();
            let gpu = backend(&dev, None).run(&S(&c, &pts, &levels)).unwrap();
            close(&format!("N={n} indefinite={indefinite}"), &gpu, &cpu, 1e-9);
            if indefinite && n > 1 {
                assert!(
                    cpu.iter().any(|v| v.is_nan()),
                    "N={n}: the indefinite stack should fail at high levels"
                );
            }
        }
    }
}

fn perform_gsn_matches_cpu(dev: Device) {
    let d = neurofit::simulate::gsn_responses(30, 40, 3, 0.7, 21);
    let c = perform_gsn(
        d.view(),
        &GsnOptions {
            device: Device::Cpu,
            ..GsnOptions::default()
        },
    )
    .unwrap();
    let g = perform_gsn(
        d.view(),
        &GsnOptions {
            device: dev,
            ..GsnOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        (c.shrinklevel_n, c.shrinklevel_d, c.numiters),
        (g.shrinklevel_n, g.shrinklevel_d, g.numiters)
    );
    assert_close(
        "cSb",
        &g.c_sb.unwrap().into_dyn(),
        &c.c_sb.unwrap().into_dyn(),
        1e-9,
    );
}

fn scorer_names_the_binding_limit_when_one_matrix_is_too_large(dev: Device) {
    let Chosen::Gpu(g) = backend(&dev, Some(1 << 40)) else {
        panic!("expected a GPU")
    };
    let n = ((g.context().max_binding() / 8) as f64).sqrt() as usize + 1;
    if n > 8000 {
        eprintln!("note: this adapter's binding limit needs N = {n}, too large for a test");
        return;
    }
    let cov = Array2::<f64>::eye(n);
    let pts = Array2::<f64>::zeros((2, n));
    let e = g
        .shrinkage_nll(cov.view(), pts.view(), &[0.5], Dtype::F64)
        .unwrap_err();
    assert!(
        e.to_string().contains("max_storage_buffer_binding_size"),
        "{e}"
    );
}

/// Vulkan adapters report their device-local memory, and the default GPU budget follows it (an
/// 80 GB GPU is not planned as a 2 GiB one).
fn the_default_gpu_budget_follows_device_memory(dev: Device) {
    let Chosen::Gpu(g) = backend(&dev, None) else {
        panic!("expected a GPU")
    };
    let ctx = g.context();
    if ctx.info.backend == wgpu::Backend::Vulkan {
        let m = ctx.info.device_memory.expect("Vulkan reports its heaps");
        assert!(m > 0);
        assert_eq!(ctx.default_budget(), m / 10 * 8);
    }
}

fn auto_never_picks_a_software_adapter() {
    let r = dispatch::resolve(&Device::Auto, Dtype::F32, 1e15, None).unwrap();
    if dispatch::adapters().iter().all(|a| a.is_software) {
        assert!(
            r.is_cpu(),
            "auto chose {r:?} although only software adapters exist"
        );
    }
}

struct FailsOnGpu;
impl Job for FailsOnGpu {
    type Output = &'static str;
    fn run<B: Backend>(&self, be: &B) -> Result<&'static str> {
        if be.describe().starts_with("cpu") {
            Ok("cpu")
        } else {
            Err(Error::Gpu("simulated device loss".into()))
        }
    }
}

struct BadInput;
impl Job for BadInput {
    type Output = ();
    fn run<B: Backend>(&self, _be: &B) -> Result<()> {
        Err(Error::InvalidInput("bad".into()))
    }
}

fn auto_falls_back_to_the_cpu_on_a_gpu_error_but_explicit_gpu_fails(dev: Device) {
    let gpu = backend(&dev, None);
    assert!(!gpu.is_cpu());
    let ran = dispatch::run_on(&Device::Auto, &gpu, None, "fit", &FailsOnGpu).unwrap();
    assert_eq!(ran.output, "cpu");
    assert!(ran.fallback.unwrap().contains("simulated device loss"));
    assert!(
        dispatch::run_on(&dev, &gpu, None, "fit", &FailsOnGpu).is_err(),
        "an explicit gpu request must not fall back"
    );
    assert!(
        dispatch::run_on(&Device::Auto, &gpu, None, "fit", &BadInput).is_err(),
        "errors about the input are not retried"
    );
}

/// Software adapters run the 64-tile `gemm_tn`; hardware ones the 128-tile `gemm_tn_wide`. The
/// tile is chosen when the (process-wide) device opens, so the hardware kernel is tested here by
/// running this binary's GPU trials again in a child process with it forced. The child also
/// factors every system in f64 (`NEUROFIT_GPU_SOLVE=f64`), the path the default mixed-precision
/// refinement falls back to, so that it keeps its own run of every solve trial.
fn the_wide_gemm_in_a_child_process() {
    common::rerun_trials_with(
        &["gpu::", "--skip", "gemm_tn_wide"],
        &[
            ("NEUROFIT_GPU_TILE", "128"),
            (neurofit::gpu::SOLVE_ENV, "f64"),
        ],
        20,
    );
}

/// Pipelines compiled ahead on background threads while four threads ask for them: each is
/// compiled exactly once, every request gets it, and asking again compiles nothing.
fn precompiled_pipelines_are_shared() {
    let ctx = std::sync::Arc::new(neurofit::gpu::GpuContext::open(0).expect("open adapter 0"));
    let dtype = if ctx.has_f64() {
        Dtype::F64
    } else {
        Dtype::F32
    };
    let keys = ctx.selection_pipelines(dtype, dtype);
    let distinct: std::collections::HashSet<String> = keys
        .iter()
        .map(|(s, e, r, sr)| format!("{}/{e}/{r}/{sr}", s.name))
        .collect();
    assert!(distinct.len() >= 8, "{} pipelines", distinct.len());
    assert_eq!(ctx.compiled_pipelines(), 0);
    ctx.precompile(keys.clone());
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (ctx, keys) = (&ctx, &keys);
            scope.spawn(move || {
                // each thread in another order
                for i in 0..keys.len() {
                    let (s, e, r, sr) = keys[(i + t * 3) % keys.len()];
                    ctx.pipeline(s, e, r, sr).expect("pipeline");
                }
            });
        }
    });
    assert_eq!(ctx.compiled_pipelines(), distinct.len());
    ctx.precompile(keys.clone());
    for &(s, e, r, sr) in &keys {
        ctx.pipeline(s, e, r, sr).expect("pipeline");
    }
    assert_eq!(ctx.compiled_pipelines(), distinct.len());
}

fn main() {
    // the GPU trials run the mixed-precision solves (the default of adapters with reduced-rate
    // f64) unless told otherwise; the child process runs the f64 factorisation
    if std::env::var_os(neurofit::gpu::SOLVE_ENV).is_none() {
        std::env::set_var(neurofit::gpu::SOLVE_ENV, "mixed");
    }
    let mut suite = Suite::new();
    let prims: [(&str, Prim, (usize, usize, usize)); 11] = [
        // n > gemm_rows: the reduction runs in several accumulating passes
        (
            "gemm_tn::main (gram, several passes)",
            Prim::Gram,
            (1100, 130, 1),
        ),
        ("gemm_tn::main (cross products)", Prim::Cross, (300, 70, 9)),
        (
            "colstats::{col_sum,center,col_sumsq} + corr::main",
            Prim::Correlations,
            (200, 90, 11),
        ),
        // m = 301 = 18 · 16 + 13: 19 block columns, the last one partial, up to 171 update
        // tiles per block column, the panel longer than the workgroup
        (
            "gather::main + cholesky::{panel,update,forward,backward} (m = 301)",
            Prim::Solves {
                k: 300,
                alpha: 10.0,
            },
            (1100, 400, 4),
        ),
        (
            "gather::main + small_cholesky::factor_solve (m = 6)",
            Prim::Solves { k: 5, alpha: 1.0 },
            (60, 20, 30),
        ),
        // the largest system of the small kernel
        (
            "gather::main + small_cholesky::factor_solve (m = 32)",
            Prim::Solves { k: 31, alpha: 1.0 },
            (100, 40, 31),
        ),
        // the smallest of the blocked kernel: two full blocks and a partial one, three update
        // tiles after the first block column
        (
            "gather::main + cholesky::{panel,update,forward,backward} (m = 33)",
            Prim::Solves { k: 32, alpha: 1.0 },
            (100, 40, 17),
        ),
        (
            "nll::{build,trsm_rows,reduce} + cholesky::{panel,update}",
            Prim::Nll,
            (300, 50, 23),
        ),
        (
            "nll + small_cholesky::factor_solve (N = 1)",
            Prim::Nll,
            (40, 1, 9),
        ),
        (
            "nll + small_cholesky::factor_solve (N = 20)",
            Prim::Nll,
            (60, 20, 7),
        ),
        (
            "sparse_predict::main",
            Prim::SparsePredict { k: 13 },
            (70, 90, 300),
        ),
    ];
    suite.gpu(
        "pipelines::precompile (each pipeline compiled once, shared by every thread)",
        false,
        |_| precompiled_pipelines_are_shared(),
    );
    for (name, prim, (n, f, q)) in prims {
        suite.gpu(&format!("entry_point::{name}"), true, move |d| {
            primitive_parity(d, prim, n, f, q, Dtype::F64)
        });
    }
    suite.gpu("entry_point::f32::gemm_tn (gram)", false, |d| {
        primitive_parity(d, Prim::Gram, 300, 60, 1, Dtype::F32)
    });
    suite.gpu(
        "entry_point::gemm_tn_wide + f64 solves (NEUROFIT_GPU_TILE=128 NEUROFIT_GPU_SOLVE=f64, every GPU trial again)",
        false,
        |_| the_wide_gemm_in_a_child_process(),
    );
    suite.gpu("entry_point::f32::sparse_predict", false, |d| {
        primitive_parity(d, Prim::SparsePredict { k: 9 }, 50, 40, 77, Dtype::F32)
    });
    suite.gpu("entry_point::f32::corr", false, |d| {
        primitive_parity(d, Prim::Correlations, 200, 60, 9, Dtype::F32)
    });
    suite.gpu(
        "entry_point::refine::{narrow,setup,step} (ill-conditioned and singular systems fall back to f64)",
        true,
        ill_conditioned_systems_fall_back_to_f64,
    );
    suite.gpu("fit::selected_f64", true, |d| {
        fit_parity(d, 1100, 400, 6, 300, Dtype::F64, 1e-9)
    });
    suite.gpu("fit::selected_f32", false, |d| {
        fit_parity(d, 300, 150, 9, 20, Dtype::F32, 1e-4)
    });
    suite.gpu("fit::dense_primal_and_dual", true, |d| {
        fit_parity(d.clone(), 200, 60, 5, 0, Dtype::F64, 1e-9);
        fit_parity(d, 50, 120, 5, 0, Dtype::F64, 1e-9);
    });
    // (F+1)² f64 = 141 MB exceeds lavapipe's 128 MiB binding: G is built and read in row blocks
    suite.gpu("fit::gram_split_across_bindings", true, |d| {
        fit_parity(d, 24, 4200, 3, 6, Dtype::F64, 1e-9)
    });
    suite.gpu(
        "scorer_matches_cpu_on_spd_and_indefinite_stacks",
        true,
        scorer_matches_cpu_on_spd_and_indefinite_stacks,
    );
    suite.gpu("perform_gsn_matches_cpu", true, perform_gsn_matches_cpu);
    suite.gpu(
        "scorer_names_the_binding_limit_when_one_matrix_is_too_large",
        true,
        scorer_names_the_binding_limit_when_one_matrix_is_too_large,
    );
    suite.gpu(
        "auto_falls_back_to_the_cpu_on_a_gpu_error_but_explicit_gpu_fails",
        false,
        auto_falls_back_to_the_cpu_on_a_gpu_error_but_explicit_gpu_fails,
    );
    suite.each_backend(
        "chunk_size_does_not_change_results",
        true,
        chunk_size_does_not_change_results,
    );
    suite.each_backend(
        "tiny_budget_gives_identical_results",
        true,
        tiny_budget_gives_identical_results,
    );
    suite.each_backend(
        "chunked_scorer_equals_unchunked",
        true,
        chunked_scorer_equals_unchunked,
    );
    suite.gpu(
        "the_default_gpu_budget_follows_device_memory",
        false,
        the_default_gpu_budget_follows_device_memory,
    );
    suite.test(
        "auto_never_picks_a_software_adapter",
        auto_never_picks_a_software_adapter,
    );
    suite.run()
}
