//! GSN benchmarks (criterion): perform_gsn at N = 200, 500, 1000 (C = 200, T = 3, low-rank signal
//! plus noise) and the shrinkage-NLL scorer alone (51 levels) at N = 500, 1000. CPU always; GPU
//! when a hardware adapter exists or `NEUROFIT_BENCH_GPU` names a device.

mod common;

use common::devices;
use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array2;
use neurofit::backend::Backend;
use neurofit::dispatch::{self, Job};
use neurofit::gsn::{perform_gsn, GsnOptions};
use neurofit::simulate::{gsn_responses, Rng};
use neurofit::Dtype;
use std::time::Duration;

/// The scorer alone, as a job on the chosen backend.
struct Nll<'a> {
    cov: &'a Array2<f64>,
    pts: &'a Array2<f64>,
    levels: &'a [f64],
}

impl Job for Nll<'_> {
    type Output = Vec<f64>;
    fn run<B: Backend>(&self, be: &B) -> neurofit::Result<Vec<f64>> {
        be.shrinkage_nll(self.cov.view(), self.pts.view(), self.levels, Dtype::F64)
    }
}

fn gsn(c: &mut Criterion) {
    let mut g = c.benchmark_group("perform_gsn_C200_T3");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(2));
    for n in [200usize, 500, 1000] {
        let data = gsn_responses(n, 200, 3, 1.5, n as u64);
        for (name, dev) in devices() {
            let opt = GsnOptions {
                device: dev,
                ..GsnOptions::default()
            };
            g.bench_function(format!("N{n}/{name}"), |b| {
                b.iter(|| perform_gsn(data.view(), &opt).expect("gsn"))
            });
        }
    }
    g.finish();
    let mut g = c.benchmark_group("shrinkage_nll_51_levels");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(2));
    let levels = neurofit::gsn::shrink::default_levels();
    for n in [500usize, 1000] {
        let mut r = Rng::new(3);
        let a = Array2::from_shape_fn((2 * n, n), |_| r.normal());
        let cov = a.t().dot(&a) / (2 * n) as f64;
        let pts = Array2::from_shape_fn((120, n), |_| r.normal());
        for (name, dev) in devices() {
            let be = dispatch::resolve(&dev, Dtype::F64, f64::INFINITY, None).expect("device");
            let job = Nll {
                cov: &cov,
                pts: &pts,
                levels: &levels,
            };
            g.bench_function(format!("N{n}/{name}"), |b| {
                b.iter(|| be.run(&job).expect("nll"))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, gsn);
criterion_main!(benches);
