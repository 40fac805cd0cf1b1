//! GPU vs CPU parity on random data, and chunking invariance (user chunk_size and planner budgets
//! forced tiny) on both backends.

mod common;

use common::*;
use ndarray::{Array2, ArrayD};
use neurofit::cpu::CpuOps;
use neurofit::demo::Rng;
use neurofit::gpu::GpuOps;
use neurofit::ridge::{fit, FitOutput, FitParams};
use neurofit::{Device, Dtype};

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
        ..FitParams::default()
    }
}

fn same(a: &ArrayD<f64>, b: &ArrayD<f64>) -> bool {
    a.shape() == b.shape() && a.iter().zip(b.iter()).all(|(x, y)| x == y)
}

fn parity(n: usize, f: usize, units: usize, k: usize, dtype: Dtype, tol: f64) {
    let Some(gpu) = test_gpu(dtype == Dtype::F64) else {
        return;
    };
    let (x, y) = random(n, f, units, (n * 31 + f) as u64);
    let c = run(&x, &y, params(k, 10.0, dtype, Device::Cpu));
    let g = run(&x, &y, params(k, 10.0, dtype, gpu));
    if k > 0 && k < f {
        assert_eq!(c.selected, g.selected, "selected features differ");
        let cc = c.corr_abs.unwrap().into_dyn();
        assert_close("corr", &g.corr_abs.unwrap().into_dyn(), &cc, tol);
    }
    assert_close("W", &g.model.w, &c.model.w, tol);
    assert_close("b", &g.model.b, &c.model.b, tol);
}

#[test]
fn gpu_matches_cpu_selected_f64() {
    // n > 512 rows: the Gram reduction runs in several accumulating passes; k + 1 = 301 > 256
    // threads and > 32 Cholesky columns: several factor dispatches per system.
    parity(1100, 400, 6, 300, Dtype::F64, 1e-9);
}

#[test]
fn gpu_matches_cpu_selected_f32() {
    parity(300, 150, 9, 20, Dtype::F32, 1e-4);
}

#[test]
fn gpu_matches_cpu_dense_primal_and_dual() {
    parity(200, 60, 5, 0, Dtype::F64, 1e-9);
    parity(50, 120, 5, 0, Dtype::F64, 1e-9);
}

#[test]
fn gram_split_across_bindings() {
    // (F+1)² f64 = 141 MB exceeds lavapipe's 128 MiB binding: G is built and read in row blocks.
    parity(24, 4200, 3, 6, Dtype::F64, 1e-9);
}

#[test]
fn chunk_size_does_not_change_results() {
    let (x, y) = random(120, 80, 23, 5);
    let full = run(&x, &y, params(10, 3.0, Dtype::F64, Device::Cpu));
    let mut p = params(10, 3.0, Dtype::F64, Device::Cpu);
    p.chunk_size = 4;
    let chunked = run(&x, &y, p);
    assert!(same(&full.model.w, &chunked.model.w) && same(&full.model.b, &chunked.model.b));
}

#[test]
fn tiny_cpu_budget_gives_identical_results() {
    let (x, y) = random(120, 80, 23, 6);
    let full = run(&x, &y, params(10, 3.0, Dtype::F64, Device::Cpu));
    let st = CpuOps::solve_stage(120, 80, 23, 10);
    let mut p = params(10, 3.0, Dtype::F64, Device::Cpu);
    p.max_memory = Some(st.fixed + 2 * st.per_item);
    let lim = neurofit::device::planner::Limits::cpu(st.fixed + 2 * st.per_item);
    assert_eq!(
        neurofit::device::planner::items_per_chunk(&st, &lim).unwrap(),
        2,
        "the budget must force chunks of 2 units"
    );
    let tiny = run(&x, &y, p);
    assert!(same(&full.model.w, &tiny.model.w) && same(&full.model.b, &tiny.model.b));
    let mut p = params(10, 3.0, Dtype::F64, Device::Cpu);
    p.max_memory = Some(st.fixed / 2);
    let e = fit(x.view(), y.view().into_dyn(), &p).unwrap_err();
    assert!(e.to_string().contains("memory budget"), "{e}");
}

#[test]
fn tiny_gpu_budget_gives_identical_results() {
    let Some(gpu) = test_gpu(true) else { return };
    let (x, y) = random(120, 80, 23, 7);
    let full = run(&x, &y, params(10, 3.0, Dtype::F64, gpu.clone()));
    let st = GpuOps::solve_stage(120, 80, 23, 10, 8, 8);
    let mut p = params(10, 3.0, Dtype::F64, gpu.clone());
    p.max_memory = Some(st.fixed + 3 * st.per_item);
    let lim = neurofit::device::planner::Limits {
        budget: st.fixed + 3 * st.per_item,
        max_binding: u64::MAX,
        max_items: 65535,
    };
    assert_eq!(
        neurofit::device::planner::items_per_chunk(&st, &lim).unwrap(),
        3,
        "the budget must force chunks of 3 units"
    );
    let tiny = run(&x, &y, p);
    assert!(same(&full.model.w, &tiny.model.w) && same(&full.model.b, &tiny.model.b));
    let mut p = params(10, 3.0, Dtype::F64, gpu);
    p.chunk_size = 1;
    let one = run(&x, &y, p);
    assert!(same(&full.model.w, &one.model.w));
}

#[test]
fn auto_never_picks_a_software_adapter() {
    let r = neurofit::device::resolve(&Device::Auto, Dtype::F32, 1e15).unwrap();
    let adapters = neurofit::gpu::enumerate();
    if adapters.iter().all(|a| a.is_software) {
        assert!(
            r.is_cpu(),
            "auto chose {r:?} although only software adapters exist"
        );
    }
}

#[test]
fn auto_falls_back_to_the_cpu_on_a_gpu_error_but_explicit_gpu_fails() {
    use neurofit::device::{resolve, with_cpu_fallback, Resolved};
    let Some(dev) = test_gpu(false) else { return };
    let gpu = resolve(&dev, Dtype::F32, 1.0).unwrap();
    assert!(!gpu.is_cpu());
    let work = |r: &Resolved| -> neurofit::Result<&'static str> {
        if r.is_cpu() {
            Ok("cpu")
        } else {
            Err(neurofit::Error::Gpu("simulated device loss".into()))
        }
    };
    let (v, warning) = with_cpu_fallback(&Device::Auto, &gpu, "fit", work).unwrap();
    assert_eq!(v, "cpu");
    assert!(warning.unwrap().contains("simulated device loss"));
    assert!(
        with_cpu_fallback(&dev, &gpu, "fit", work).is_err(),
        "an explicit gpu request must not fall back"
    );
    // errors about the input are not retried either
    let bad =
        |_: &Resolved| -> neurofit::Result<()> { Err(neurofit::Error::InvalidInput("bad".into())) };
    assert!(with_cpu_fallback(&Device::Auto, &gpu, "fit", bad).is_err());
}
