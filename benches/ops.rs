//! Criterion benches of each backend primitive (CPU, plus a GPU when a hardware adapter exists or
//! `NEUROFIT_BENCH_GPU` names one): Gram, correlations, per-unit selected solves (with the
//! Y chunk's cross products), the shrinkage NLL scorer and predict-sized cross products.

mod common;

use common::devices;
use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array2;
use neurofit::backend::{Backend, FeatureLayout};
use neurofit::dispatch::{self, Chosen, Job};
use neurofit::ridge::select::{top_k_rows, TieBreak};
use neurofit::Dtype;
use std::time::Duration;

/// One primitive on the chosen backend, data uploaded inside the timed region (as a fit does).
enum Op<'a> {
    Gram(&'a Array2<f64>),
    Correlations(&'a Array2<f64>, &'a Array2<f64>),
    Solves(&'a Array2<f64>, &'a Array2<f64>, &'a Array2<u32>),
    Cross(&'a Array2<f64>, &'a Array2<f64>),
    Nll(&'a Array2<f64>, &'a Array2<f64>, &'a [f64]),
}

struct Run<'a>(Op<'a>, Dtype);

const ALL: FeatureLayout = FeatureLayout {
    bias: true,
    correlations: true,
    low_precision_gram: false,
};
const BIAS: FeatureLayout = FeatureLayout {
    bias: true,
    correlations: false,
    low_precision_gram: false,
};

impl Job for Run<'_> {
    type Output = usize;
    fn run<B: Backend>(&self, be: &B) -> neurofit::Result<usize> {
        let d = self.1;
        Ok(match &self.0 {
            Op::Gram(x) => {
                let f = be.upload_features(x.view(), BIAS, d)?;
                be.gram_to_host(be.gram(&f)?)?.dim()
            }
            Op::Correlations(x, y) => {
                let f = be.upload_features(x.view(), ALL, d)?;
                let t = be.upload_targets(y.view(), d)?;
                be.abs_correlations(&f, &t)?.len()
            }
            Op::Solves(x, y, idx) => {
                let f = be.upload_features(x.view(), BIAS, d)?;
                let g = be.gram(&f)?;
                let t = be.upload_targets(y.view(), d)?;
                be.solve_selected(&g, &f, &t, idx.view(), 100.0)?
                    .theta
                    .len()
            }
            Op::Cross(x, w) => {
                let layout = FeatureLayout {
                    bias: false,
                    correlations: false,
                    low_precision_gram: false,
                };
                let f = be.upload_features(x.t(), layout, d)?;
                let t = be.upload_targets(w.view(), d)?;
                be.cross(&f, &t)?.len()
            }
            Op::Nll(cov, pts, levels) => be.shrinkage_nll(cov.view(), pts.view(), levels, d)?.len(),
        })
    }
}

fn ops(c: &mut Criterion) {
    let sim = neurofit::simulate::simulate(1000, 4000, 256, 3);
    let mut g = c.benchmark_group("ops_n1000_F4000_U256");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(2));
    let corr = Array2::from_shape_fn((256, 4000), |(u, j)| {
        neurofit::linalg::pearson(sim.x.column(j), sim.y.column(u)).map_or(f64::NAN, f64::abs)
    });
    let sel = top_k_rows(corr.view(), 200, TieBreak::HigherIndex);
    let mut idx = Array2::<u32>::from_elem((256, 201), 4000);
    idx.slice_mut(ndarray::s![.., ..200]).assign(&sel);
    let levels = neurofit::gsn::shrink::default_levels();
    let a = neurofit::simulate::simulate(1200, 500, 1, 4).x;
    let cov = neurofit::linalg::at_b(a.view(), a.view()) / 1200.0;
    let pts = neurofit::simulate::simulate(120, 500, 1, 5).x - 100.0;
    let w = Array2::from_shape_fn((4000, 256), |(i, u)| ((i * 7 + u) % 13) as f64 * 0.01);
    for (name, dev) in devices() {
        let Ok(be) = dispatch::resolve(&dev, Dtype::F32, f64::INFINITY, None) else {
            continue;
        };
        let dtypes: &[Dtype] = match be {
            Chosen::Cpu(_) => &[Dtype::F64], // the CPU computes in f64 whatever the dtype
            _ => &[Dtype::F64, Dtype::F32],
        };
        for &dtype in dtypes {
            let mut bench = |op: &str, o: Op| {
                let job = Run(o, dtype);
                g.bench_function(format!("{op}/{name}/{dtype}"), |b| {
                    b.iter(|| be.run(&job).expect(op))
                });
            };
            bench("gram", Op::Gram(&sim.x));
            bench("correlations", Op::Correlations(&sim.x, &sim.y));
            bench("selected_solves_k200", Op::Solves(&sim.x, &sim.y, &idx));
            bench("predict", Op::Cross(&sim.x, &w));
            bench("shrinkage_nll_N500", Op::Nll(&cov, &pts, &levels));
        }
    }
    g.finish();
}

criterion_group!(benches, ops);
criterion_main!(benches);
