//! GSN benchmarks (criterion): perform_gsn at N = 200, 500, 1000 (C = 200, T = 3, low-rank signal
//! plus noise) and the shrinkage-NLL scorer alone (51 levels) at N = 500, 1000. CPU always; GPU
//! when a hardware adapter exists or `NEUROFIT_BENCH_GPU` names a device.

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::{Array2, Array3};
use neurofit::demo::Rng;
use neurofit::device::{resolve, Resolved};
use neurofit::gsn::{perform_gsn, GsnOptions};
use neurofit::{Device, Dtype};
use std::time::Duration;

fn devices() -> Vec<(String, Device)> {
    let mut v = vec![("cpu".to_string(), Device::Cpu)];
    v.extend(neurofit::bench::criterion_gpu());
    v
}

/// Low-rank signal plus noise, `n × c × t`.
pub fn simulate(n: usize, c: usize, t: usize, seed: u64) -> Array3<f64> {
    let mut r = Rng::new(seed);
    let rank = 10.min(n);
    let basis = Array2::from_shape_fn((n, rank), |_| r.normal());
    let sig = Array2::from_shape_fn((rank, c), |_| r.normal());
    let s = basis.dot(&sig) / (rank as f64).sqrt();
    Array3::from_shape_fn((n, c, t), |(i, ci, _)| s[(i, ci)] + 1.5 * r.normal())
}

fn gsn(c: &mut Criterion) {
    let mut g = c.benchmark_group("perform_gsn_C200_T3");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(2));
    for n in [200usize, 500, 1000] {
        let data = simulate(n, 200, 3, n as u64);
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
            let res: Resolved = resolve(&dev, Dtype::F64, 1.0).expect("device");
            let ops = neurofit::gsn::backend(&res, None, Dtype::F64);
            g.bench_function(format!("N{n}/{name}"), |b| {
                b.iter(|| {
                    ops.shrinkage_nll(cov.view(), pts.view(), &levels)
                        .expect("nll")
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, gsn);
criterion_main!(benches);
