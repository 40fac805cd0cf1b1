//! Shared test helpers: fixture loading, tolerances, the GPU-or-skip policy.
#![allow(dead_code)]

use ndarray::ArrayD;
use neurofit::Device;
use std::path::PathBuf;

/// `../shared/fixtures` beside the checkout (or `NEUROFIT_FIXTURES`); panics with a clear
/// message when missing.
pub fn fixtures_root() -> PathBuf {
    let p = std::env::var("NEUROFIT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    assert!(
        p.is_dir(),
        "fixture folder {} is missing: the tests need ../shared/fixtures beside the checkout (or set NEUROFIT_FIXTURES)",
        p.display()
    );
    p
}

/// A fixture case directory.
pub fn case_dir(model: &str, case: &str) -> PathBuf {
    let d = fixtures_root().join(model).join(case);
    assert!(d.is_dir(), "fixture case {} is missing", d.display());
    d
}

/// Loads `<case>/<name>.npy` as f64.
pub fn load(model: &str, case: &str, name: &str) -> ArrayD<f64> {
    let p = case_dir(model, case).join(format!("{name}.npy"));
    neurofit::io::read_npy(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Loads `<case>/<name>.npy` if present.
pub fn load_opt(model: &str, case: &str, name: &str) -> Option<ArrayD<f64>> {
    let p = case_dir(model, case).join(format!("{name}.npy"));
    p.exists().then(|| load(model, case, name))
}

/// `params.json` of a case.
pub fn params(model: &str, case: &str) -> serde_json::Value {
    let p = case_dir(model, case).join("params.json");
    serde_json::from_str(&std::fs::read_to_string(&p).expect("params.json")).expect("valid JSON")
}

/// max |a − b|, requiring equal shapes and NaN in the same places.
pub fn max_abs_diff(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shape mismatch");
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| {
            if x.is_nan() && y.is_nan() {
                0.0
            } else {
                (x - y).abs()
            }
        })
        .fold(0.0, f64::max)
}

/// Asserts `max|a − b| ≤ rel · max|ref|` (with a floor of `rel` for all-zero references).
pub fn assert_close(what: &str, got: &ArrayD<f64>, reference: &ArrayD<f64>, rel: f64) {
    let scale = reference
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(1.0e-300);
    let d = max_abs_diff(got, reference);
    assert!(
        d <= rel * scale || d <= rel,
        "{what}: max |diff| = {d:e} exceeds {rel:e} × max|ref| ({scale:e}); relative {:e}",
        d / scale
    );
}

/// The GPU device for tests (`NEUROFIT_TEST_GPU`, default `gpu`), or `None` with a visible skip
/// message when no adapter exists. With `NEUROFIT_REQUIRE_GPU=1` a missing adapter fails.
pub fn test_gpu(needs_f64: bool) -> Option<Device> {
    let sel = std::env::var("NEUROFIT_TEST_GPU").unwrap_or_else(|_| "gpu".into());
    let dev: Device = sel.parse().expect("NEUROFIT_TEST_GPU");
    let adapters = neurofit::gpu::enumerate();
    let ok = !adapters.is_empty() && (!needs_f64 || adapters.iter().any(|a| a.shader_f64));
    if ok {
        return Some(dev);
    }
    let msg = format!(
        "no GPU adapter{} found",
        if needs_f64 { " with SHADER_F64" } else { "" }
    );
    if std::env::var("NEUROFIT_REQUIRE_GPU").as_deref() == Ok("1") {
        panic!("NEUROFIT_REQUIRE_GPU=1 but {msg}");
    }
    eprintln!("SKIPPED (GPU test): {msg}; install mesa-vulkan-drivers for lavapipe");
    None
}
