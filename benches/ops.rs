//! Criterion benches of each backend operation (CPU, plus a GPU when a hardware adapter exists or
//! `NEUROFIT_BENCH_GPU` names one): Gram, correlations, per-unit selected solves, the shrinkage
//! NLL scorer and predict.

use criterion::{criterion_group, criterion_main, Criterion};
use neurofit::cpu::CpuOps;
use neurofit::device::{resolve, Resolved};
use neurofit::gpu::GpuOps;
use neurofit::ops::{GsnOps, RidgeOps};
use neurofit::ridge::select::{top_k_rows, TieBreak};
use neurofit::Dtype;
use std::time::Duration;

/// A named backend: its ridge ops, GSN ops and (for a GPU) the GPU ops for the Gram.
type Backend = (String, Box<dyn RidgeOps>, Box<dyn GsnOps>, Option<GpuOps>);

fn backends() -> Vec<Backend> {
    let mut v: Vec<Backend> = vec![(
        "cpu".into(),
        Box::new(CpuOps::new(8 << 30)),
        Box::new(CpuOps::new(8 << 30)),
        None,
    )];
    if let Some((d, device)) = neurofit::bench::criterion_gpu() {
        if let Ok(Resolved::Gpu(ctx)) = resolve(&device, Dtype::F32, 1.0) {
            v.push((
                d,
                Box::new(GpuOps::new(ctx.clone(), None)),
                Box::new(GpuOps::new(ctx.clone(), None)),
                Some(GpuOps::new(ctx, None)),
            ));
        }
    }
    v
}

fn ops(c: &mut Criterion) {
    let sim = neurofit::demo::simulate(1000, 4000, 256, 3);
    let x1 = neurofit::cpu::with_bias(sim.x.view());
    let mut g = c.benchmark_group("ops_n1000_F4000_U256");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(2));
    let corr = CpuOps::new(8 << 30)
        .abs_correlations(sim.x.view(), sim.y.view(), Dtype::F64)
        .unwrap();
    let sel = top_k_rows(corr.view(), 200, TieBreak::HigherIndex);
    let levels = neurofit::gsn::shrink::default_levels();
    let a = neurofit::demo::simulate(1200, 500, 1, 4).x;
    let cov = neurofit::linalg::at_b(a.view(), a.view()) / 1200.0;
    let mut cov_sym = cov.clone();
    for i in 0..500 {
        for j in 0..500 {
            cov_sym[(i, j)] = cov[(i.max(j), i.min(j))];
        }
    }
    let pts = neurofit::demo::simulate(120, 500, 1, 5).x - 100.0;
    let (w, b) = CpuOps::new(8 << 30)
        .solve_selected(
            sim.x.view(),
            sim.y.view(),
            sel.view(),
            100.0,
            Dtype::F64,
            0,
            &|_| {},
        )
        .unwrap();
    for (name, ridge, gsn, gpu) in backends() {
        for dtype in [Dtype::F64, Dtype::F32] {
            g.bench_function(format!("gram/{name}/{dtype}"), |bch| {
                bch.iter(|| match &gpu {
                    None => neurofit::linalg::gram_lower(x1.view()),
                    Some(gp) => gp.gram(x1.view(), dtype).expect("gram"),
                })
            });
            g.bench_function(format!("correlations/{name}/{dtype}"), |bch| {
                bch.iter(|| {
                    ridge
                        .abs_correlations(sim.x.view(), sim.y.view(), dtype)
                        .expect("corr")
                })
            });
            g.bench_function(format!("selected_solves_k200/{name}/{dtype}"), |bch| {
                bch.iter(|| {
                    ridge
                        .solve_selected(
                            sim.x.view(),
                            sim.y.view(),
                            sel.view(),
                            100.0,
                            dtype,
                            0,
                            &|_| {},
                        )
                        .expect("solve")
                })
            });
            g.bench_function(format!("predict/{name}/{dtype}"), |bch| {
                bch.iter(|| {
                    ridge
                        .predict(sim.x.view(), w.view(), b.view(), dtype)
                        .expect("predict")
                })
            });
            if gpu.is_none() {
                break; // the CPU computes in f64 whatever the dtype
            }
        }
        g.bench_function(format!("shrinkage_nll_N500/{name}"), |bch| {
            bch.iter(|| {
                gsn.shrinkage_nll(cov_sym.view(), pts.view(), &levels)
                    .expect("nll")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, ops);
criterion_main!(benches);
