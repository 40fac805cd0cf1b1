//! Every FastL2LiR fixture (outputs of PyFastL2LiR 0.11) on the CPU and on the GPU.
//! Tolerances: f64 1e-9 × max|ref|, f32 1e-4 × max|ref|.

mod common;

use common::*;
use ndarray::Ix2;
use neurofit::ridge::{fit, FitParams};
use neurofit::{Device, Dtype};

const M: &str = "fastl2lir";

fn fit_params(case: &str, device: Device) -> (FitParams, Dtype) {
    let p = params(M, case);
    let fk = &p["fit_kwargs"];
    let dtype: Dtype = fk["dtype"].as_str().unwrap_or("float64").parse().unwrap();
    let fp = FitParams {
        alpha: fk["alpha"].as_f64().unwrap_or(1.0),
        n_feat: fk["n_feat"].as_u64().unwrap_or(0) as usize,
        chunk_size: fk["chunk_size"].as_u64().unwrap_or(0) as usize,
        dtype,
        save_select_feat: fk["save_select_feat"].as_bool().unwrap_or(false),
        spatial_norm: fk["spatial_norm"].as_str().map(|s| s.parse().unwrap()),
        select_sample: fk["select_sample"].as_str().map(|s| s.parse().unwrap()),
        device,
        keep_corr: true,
        ..FitParams::default()
    };
    (fp, dtype)
}

fn run_case(case: &str, device: Device) {
    let (fp, dtype) = fit_params(case, device.clone());
    let tol = match dtype {
        Dtype::F64 => 1e-9,
        Dtype::F32 => 1e-4,
    };
    let x = load(M, case, "X_train")
        .into_dimensionality::<Ix2>()
        .unwrap();
    let y = load(M, case, "Y_train");
    let xt = load(M, case, "X_test")
        .into_dimensionality::<Ix2>()
        .unwrap();
    let out = fit(x.view(), y.view(), &fp).unwrap_or_else(|e| panic!("{case}: fit failed: {e}"));
    let ties = case == "ties";
    let sfx = if ties { "_mergesort" } else { "" };
    assert_close(
        &format!("{case} W"),
        &out.model.w,
        &load(M, case, &format!("W{sfx}")),
        tol,
    );
    assert_close(
        &format!("{case} b"),
        &out.model.b,
        &load(M, case, &format!("b{sfx}")),
        tol,
    );
    let pred = out.model.predict(xt.view(), &device).expect("predict");
    assert_close(
        &format!("{case} Y_pred"),
        &pred,
        &load(M, case, &format!("Y_pred{sfx}")),
        tol,
    );
    if let Some(sel_ref) = load_opt(M, case, "selected_idx") {
        let sel = out
            .selected
            .as_ref()
            .expect("selection path returns selected indices");
        let sel = sel.mapv(|v| v as f64).into_dyn();
        if ties {
            // the reference order is platform dependent; compare supports with W_mergesort
            let wm = load(M, case, "W_mergesort")
                .into_dimensionality::<Ix2>()
                .unwrap();
            for u in 0..sel.shape()[0] {
                let mut got: Vec<usize> =
                    (0..sel.shape()[1]).map(|m| sel[[u, m]] as usize).collect();
                got.sort();
                let want: Vec<usize> = (0..wm.nrows()).filter(|&j| wm[(j, u)] != 0.0).collect();
                assert_eq!(
                    got, want,
                    "ties unit {u}: selected set differs from W_mergesort's support"
                );
            }
        } else {
            assert_eq!(
                sel, sel_ref,
                "{case}: selected indices differ from the reference"
            );
        }
    }
    if let Some(c_ref) = load_opt(M, case, "corr_abs") {
        let c = out.corr_abs.as_ref().expect("corr").clone().into_dyn();
        assert_close(&format!("{case} corr_abs"), &c, &c_ref, tol);
    }
    if case_dir(M, case).join("S.npy").exists() {
        let s_ref = load_bool(M, case, "S");
        let s = out.model.s.as_ref().expect("per-unit path returns S");
        assert_eq!(s, &s_ref, "{case}: S differs");
    }
}

const CASES: [&str; 21] = [
    "alpha0_select",
    "alpha0_wide_dual",
    "chunked_3d",
    "lowvar_voxels",
    "nfeat1",
    "nfeat_ge_features",
    "remove_nan",
    "remove_nan_allfeat",
    "small_select",
    "small_select_f32",
    "ssf_none",
    "ssf_norm1",
    "ssf_norm2",
    "ssf_std1",
    "ssf_std1mean0",
    "ssf_norm1mean0",
    "ssf_norm2mean0",
    "ties",
    "tiny_noselect",
    "wide_noselect_dual",
    "wide_noselect_dual_f32",
];

fn main() {
    let mut suite = Suite::new();
    for case in CASES {
        let needs_f64 = fit_params(case, Device::Cpu).1 == Dtype::F64;
        suite.each_backend(case, needs_f64, move |d| run_case(case, d));
    }
    suite.test(
        "every_fixture_case_is_covered",
        every_fixture_case_is_covered,
    );
    if std::env::var_os(GRAM_ENV).is_none() {
        suite.test(
            "cpu_fixtures_with_the_f32_gram_and_data_residuals",
            cpu_fixtures_with_the_f32_gram,
        );
    }
    if std::env::var_os(SOLVE_ENV).is_none() {
        suite.gpu(
            "gpu_fixtures_with_the_other_solve_path (NEUROFIT_GPU_SOLVE=mixed, then f64)",
            true,
            |_| gpu_fixtures_with_both_solve_paths(),
        );
    }
    suite.run()
}

/// The environment variable that chooses the GPU's per-unit solves.
const SOLVE_ENV: &str = "NEUROFIT_GPU_SOLVE";

/// The GPU factors the systems in f64 on adapters with full-rate f64 (lavapipe among them) and
/// refines them from f32 factors on the others; this runs every GPU case again in child
/// processes with each path forced, so that both meet every fixture whatever the adapter.
fn gpu_fixtures_with_both_solve_paths() {
    for mode in ["mixed", "f64"] {
        common::rerun_trials_with(
            &["gpu::", "--skip", "gpu_fixtures_with"],
            &[(SOLVE_ENV, mode)],
            CASES.len(),
        );
    }
}

/// The environment variable that forces the CPU's f32 Gram matrix for f64 selection fits.
const GRAM_ENV: &str = "NEUROFIT_CPU_GRAM";

/// The f64 fixtures' Gram matrices are small enough that the cost rule keeps most of them in
/// f64; this runs every CPU case again in a child process with the f32 Gram matrix and data
/// residuals forced (the variable is read per upload, so it cannot be set for one trial).
fn cpu_fixtures_with_the_f32_gram() {
    common::rerun_trials_with(&["cpu::"], &[(GRAM_ENV, "f32")], CASES.len());
}

fn every_fixture_case_is_covered() {
    for e in std::fs::read_dir(fixtures_root().join(M)).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            let name = e.file_name().into_string().unwrap();
            assert!(
                CASES.contains(&name.as_str()),
                "fixture case {name} has no test"
            );
        }
    }
}
