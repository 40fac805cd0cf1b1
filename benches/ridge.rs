//! FastL2LiR fit benchmarks at realistic sizes (criterion). CPU always; GPU when a hardware
//! adapter exists or `NEUROFIT_BENCH_GPU` names a device (e.g. `gpu:0` for lavapipe).
//!
//! `cargo bench --bench ridge` runs all; `cargo bench --bench ridge -- fc8` filters.
//! Shapes follow the issue: fc8-like (n=1000, F=15000, U=1000, k=500, α=100; f64 and f32),
//! a smaller F=4000 variant, and conv4-like chunked (units (5,28,28), chunk_size 784).

mod common;

use common::devices;
use criterion::{criterion_group, criterion_main, Criterion};
use neurofit::ridge::{fit, FitParams};
use neurofit::Dtype;
use std::time::Duration;

/// One fit shape: `n × f` inputs, units of `unit_shape`, `k` features per unit, `chunk_size`.
struct Shape<'a> {
    n: usize,
    f: usize,
    unit_shape: &'a [usize],
    k: usize,
    chunk: usize,
}

fn bench_case(c: &mut Criterion, name: &str, shape: Shape, dtypes: &[Dtype]) {
    let Shape {
        n,
        f,
        unit_shape,
        k,
        chunk,
    } = shape;
    let units: usize = unit_shape.iter().product();
    let sim = neurofit::simulate::simulate(n, f, units, 1);
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
    let both = [Dtype::F64, Dtype::F32];
    let fc8 = |f| Shape {
        n: 1000,
        f,
        unit_shape: &[1000],
        k: 500,
        chunk: 0,
    };
    bench_case(c, "fc8_n1000_F15000_U1000_k500", fc8(15000), &both);
    bench_case(c, "F4000_n1000_U1000_k500", fc8(4000), &both);
    let conv4 = Shape {
        n: 1000,
        f: 15000,
        unit_shape: &[5, 28, 28],
        k: 500,
        chunk: 784,
    };
    bench_case(
        c,
        "conv4_n1000_F15000_U5x28x28_k500_chunk784",
        conv4,
        &[Dtype::F64],
    );
}

criterion_group!(benches, ridge);
criterion_main!(benches);
