//! FastL2LiR fit benchmarks at realistic sizes (criterion). CPU always; GPU when a hardware
//! adapter exists or `NEUROFIT_BENCH_GPU` names a device (e.g. `gpu:0` for lavapipe).
//!
//! `cargo bench --bench ridge` runs all; `cargo bench --bench ridge -- fc8` filters.
//! Shapes follow the issue: fc8-like (n=1000, F=15000, U=1000, k=500, α=100; f64 and f32),
//! a smaller F=4000 variant, and conv4-like chunked (units (5,28,28), chunk_size 784).

use criterion::{criterion_group, criterion_main, Criterion};
use neurofit::ridge::{fit, FitParams};
use neurofit::{Device, Dtype};
use std::time::Duration;

fn devices() -> Vec<(String, Device)> {
    let mut v = vec![("cpu".to_string(), Device::Cpu)];
    v.extend(neurofit::bench::criterion_gpu());
    v
}

#[allow(clippy::too_many_arguments)]
fn bench_case(
    c: &mut Criterion,
    name: &str,
    n: usize,
    f: usize,
    unit_shape: &[usize],
    k: usize,
    chunk: usize,
    dtypes: &[Dtype],
) {
    let units: usize = unit_shape.iter().product();
    let sim = neurofit::demo::simulate(n, f, units, 1);
    let mut shape = vec![n];
    shape.extend_from_slice(unit_shape);
    let y = sim
        .y
        .into_shape_with_order(ndarray::IxDyn(&shape))
        .expect("shape");
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    for (dname, dev) in devices() {
        for &dtype in dtypes {
            let params = FitParams {
                alpha: 100.0,
                n_feat: k,
                chunk_size: chunk,
                dtype,
                device: dev.clone(),
                ..FitParams::default()
            };
            g.bench_function(format!("{dname}/{dtype}"), |b| {
                b.iter(|| fit(sim.x.view(), y.view(), &params).expect("fit"))
            });
        }
    }
    g.finish();
}

fn ridge(c: &mut Criterion) {
    bench_case(
        c,
        "fc8_n1000_F15000_U1000_k500",
        1000,
        15000,
        &[1000],
        500,
        0,
        &[Dtype::F64, Dtype::F32],
    );
    bench_case(
        c,
        "F4000_n1000_U1000_k500",
        1000,
        4000,
        &[1000],
        500,
        0,
        &[Dtype::F64, Dtype::F32],
    );
    bench_case(
        c,
        "conv4_n1000_F15000_U5x28x28_k500_chunk784",
        1000,
        15000,
        &[5, 28, 28],
        500,
        784,
        &[Dtype::F64],
    );
}

criterion_group!(benches, ridge);
criterion_main!(benches);
