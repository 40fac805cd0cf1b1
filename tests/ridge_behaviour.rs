//! Every row of the spec's error table (fastl2lir-spec §10), what neurofit does instead of the
//! reference's crash or garbage, and the memory budget on every path: each test on the CPU and
//! on the GPU.

mod common;

use common::*;
use ndarray::{Array1, Array2, Array3};
use neurofit::ridge::{fit, FitParams, RidgeModel, SelectSample, SpatialNorm};
use neurofit::simulate::Rng;
use neurofit::{Device, Dtype, Error};

fn data(n: usize, f: usize, u: usize) -> (Array2<f64>, Array2<f64>) {
    let mut r = Rng::new(11);
    let x = Array2::from_shape_fn((n, f), |_| r.normal());
    let y = Array2::from_shape_fn((n, u), |_| r.normal());
    (x, y)
}

fn a_cancelled_fit_stops_with_interrupted(dev: Device) {
    let (x, y) = data(40, 30, 6);
    let cancel = neurofit::Cancel::new();
    cancel.cancel();
    for per_unit in [false, true] {
        let mut q = p(5, &dev);
        q.save_select_feat = per_unit;
        q.cancel = Some(cancel.clone());
        let e = fit(x.view(), y.view().into_dyn(), &q).unwrap_err();
        assert!(
            matches!(e, Error::Interrupted(_)),
            "per_unit={per_unit}: {e:?}"
        );
        // an unset flag changes nothing
        q.cancel = Some(neurofit::Cancel::new());
        let a = fit(x.view(), y.view().into_dyn(), &q).unwrap();
        q.cancel = None;
        let b = fit(x.view(), y.view().into_dyn(), &q).unwrap();
        assert_eq!(a.model.w, b.model.w);
    }
}

/// f32 fits centre X before the products (issue 10): on fMRI-like data (voxel baselines ~100)
/// they stay within 1e-4 of the f64 fit, where un-centred f32 products were ~3e-3 off.
fn f32_fit_is_within_1e_4_of_the_f64_fit() {
    let sim = neurofit::simulate::simulate(400, 800, 60, 3);
    let mean = sim.x.mean().unwrap();
    assert!(
        mean.abs() > 50.0,
        "the generator has voxel baselines (mean {mean})"
    );
    let fit_in = |dtype| {
        let q = FitParams {
            alpha: 100.0,
            n_feat: 60,
            dtype,
            device: Device::Cpu,
            ..FitParams::default()
        };
        fit(sim.x.view(), sim.y.view().into_dyn(), &q).unwrap()
    };
    let (a, b) = (fit_in(Dtype::F64), fit_in(Dtype::F32));
    assert_eq!(a.selected, b.selected, "f32 changed the selection");
    for (name, x, y) in [("W", &a.model.w, &b.model.w), ("b", &a.model.b, &b.model.b)] {
        let scale = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let d = max_abs_diff(x, y);
        eprintln!("f32 vs f64 {name}: relative {:e}", d / scale);
        assert!(
            d <= 1e-4 * scale,
            "{name}: f32 differs from f64 by {:e} relative",
            d / scale
        );
    }
}

/// Chunks large enough that the CPU keeps each chunk's cross products and |r| (≥ 1 MiB apiece)
/// for the next one: the default chunks (157 units: 16 for progress, the last one smaller)
/// reuse them and release them at the smaller last chunk, and neither changes a bit of W, b or
/// the selection against chunks of 7 units, whose buffers are too small to keep; f64 and f32.
fn recycled_chunk_buffers_change_nothing() {
    let (n, f, u) = (30, 1100, 2500);
    let sim = neurofit::simulate::simulate(n, f, u, 5);
    for dtype in [Dtype::F64, Dtype::F32] {
        let fit_with = |chunk_size| {
            let q = FitParams {
                alpha: 10.0,
                n_feat: 8,
                chunk_size,
                dtype,
                device: Device::Cpu,
                ..FitParams::default()
            };
            fit(sim.x.view(), sim.y.view().into_dyn(), &q).unwrap()
        };
        // 157 units × 1100 features × 8 bytes = 1.4 MB per buffer
        let whole = fit_with(0);
        let chunked = fit_with(7);
        assert_eq!(whole.selected, chunked.selected, "{dtype:?}: selection");
        assert_eq!(whole.model.w, chunked.model.w, "{dtype:?}: W");
        assert_eq!(whole.model.b, chunked.model.b, "{dtype:?}: b");
    }
}

fn p(k: usize, device: &Device) -> FitParams {
    FitParams {
        n_feat: k,
        device: device.clone(),
        ..FitParams::default()
    }
}

fn n_feat_above_features_warns_and_fits_without_selection(dev: Device) {
    let (x, y) = data(40, 10, 3);
    let a = fit(x.view(), y.view().into_dyn(), &p(15, &dev)).unwrap();
    let b = fit(x.view(), y.view().into_dyn(), &p(0, &dev)).unwrap();
    assert!(a
        .warnings
        .iter()
        .any(|w| w.contains("Feature selection is not applied")));
    assert_eq!(a.model.w, b.model.w);
    assert_eq!(a.model.b, b.model.b);
}

fn n_feat_above_features_on_per_unit_path_works(dev: Device) {
    let (x, y) = data(40, 10, 3);
    let mut q = p(15, &dev);
    q.save_select_feat = true;
    let a = fit(x.view(), y.view().into_dyn(), &q).unwrap();
    assert!(a.model.s.as_ref().unwrap().iter().all(|&s| s));
}

fn per_unit_path_without_select_sample_works_and_matches_main_path(dev: Device) {
    let (x, y) = data(60, 30, 4);
    let mut q = p(8, &dev);
    q.save_select_feat = true;
    let per_unit = fit(x.view(), y.view().into_dyn(), &q).unwrap();
    let main = fit(x.view(), y.view().into_dyn(), &p(8, &dev)).unwrap();
    let d = per_unit
        .model
        .w
        .iter()
        .zip(main.model.w.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(d < 1e-10, "per-unit vs main path differ by {d}");
    let mut q = p(8, &dev);
    q.spatial_norm = Some(SpatialNorm::Norm2);
    assert!(fit(x.view(), y.view().into_dyn(), &q).is_ok());
}

fn unknown_option_values_are_errors() {
    assert!(matches!(
        "nan_remove".parse::<SelectSample>(),
        Err(Error::UnknownOption(_))
    ));
    assert!(matches!(
        "norm3".parse::<SpatialNorm>(),
        Err(Error::UnknownOption(_))
    ));
    assert!(matches!(
        "f16".parse::<Dtype>(),
        Err(Error::UnknownOption(_))
    ));
    assert!(matches!(
        "tpu".parse::<Device>(),
        Err(Error::UnknownOption(_))
    ));
}

fn one_dimensional_y_is_an_error(dev: Device) {
    let (x, _) = data(20, 5, 1);
    let y = Array1::<f64>::zeros(20).into_dyn();
    let e = fit(x.view(), y.view(), &p(2, &dev)).unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)) && e.to_string().contains("at least 2 dimensions"));
}

fn row_mismatch_is_an_error(dev: Device) {
    let (x, _) = data(20, 5, 1);
    let y = Array2::<f64>::zeros((19, 2)).into_dyn();
    let e = fit(x.view(), y.view(), &p(2, &dev)).unwrap_err();
    assert!(e.to_string().contains("20 samples"), "{e}");
}

fn n_dimensional_y_is_supported(dev: Device) {
    let (x, _) = data(30, 12, 1);
    let mut r = Rng::new(3);
    let y = Array3::from_shape_fn((30, 2, 3), |_| r.normal()).into_dyn();
    let out = fit(x.view(), y.view(), &p(4, &dev)).unwrap();
    assert_eq!(out.model.w.shape(), &[12, 2, 3]);
    assert_eq!(out.model.b.shape(), &[1, 2, 3]);
}

fn singular_selected_system_names_the_unit(dev: Device) {
    let (mut x, y) = data(30, 6, 2);
    for i in 0..30 {
        x[(i, 1)] = x[(i, 0)];
    }
    let mut y = y;
    for i in 0..30 {
        y[(i, 1)] = 3.0 * x[(i, 0)];
    }
    let mut q = p(2, &dev);
    q.alpha = 0.0;
    let e = fit(x.view(), y.view().into_dyn(), &q).unwrap_err();
    assert!(matches!(e, Error::Singular(_)), "{e}");
    assert!(e.to_string().contains("unit 1"), "{e}");
}

fn all_zero_x_with_alpha_zero_is_singular(dev: Device) {
    let x = Array2::<f64>::zeros((10, 4));
    let y = Array2::<f64>::ones((10, 2));
    let mut q = p(0, &dev);
    q.alpha = 0.0;
    assert!(matches!(
        fit(x.view(), y.view().into_dyn(), &q),
        Err(Error::Singular(_))
    ));
}

fn duplicate_columns_alpha_zero_dense_is_an_error_not_garbage(dev: Device) {
    let (mut x, y) = data(30, 4, 2);
    for i in 0..30 {
        x[(i, 3)] = x[(i, 2)];
    }
    let mut q = p(0, &dev);
    q.alpha = 0.0;
    assert!(matches!(
        fit(x.view(), y.view().into_dyn(), &q),
        Err(Error::Singular(_))
    ));
}

fn single_sample_with_selection_is_an_error(dev: Device) {
    let (x, y) = data(1, 5, 2);
    let e = fit(x.view(), y.view().into_dyn(), &p(2, &dev)).unwrap_err();
    assert!(e.to_string().contains("at least 2 samples"), "{e}");
}

fn non_finite_inputs_are_errors(dev: Device) {
    let (mut x, y) = data(20, 5, 2);
    x[(3, 2)] = f64::NAN;
    assert!(matches!(
        fit(x.view(), y.view().into_dyn(), &p(2, &dev)),
        Err(Error::NonFinite(_))
    ));
    // several bad values: the message names the first in row-major order, whatever X's layout
    // (the parallel scan only decides whether to look)
    x[(1, 4)] = f64::INFINITY;
    x[(3, 0)] = f64::NAN;
    let fortran = {
        let mut t = Array2::<f64>::zeros(ndarray::ShapeBuilder::f(x.raw_dim()));
        t.assign(&x);
        t
    };
    for xs in [x.view(), fortran.view()] {
        match fit(xs, y.view().into_dyn(), &p(2, &dev)) {
            Err(Error::NonFinite(m)) => assert!(m.contains("inf at [1, 4]"), "{m}"),
            other => panic!("expected NonFinite, got {other:?}"),
        }
    }
    let (x, mut y) = data(20, 5, 2);
    y[(0, 0)] = f64::INFINITY;
    assert!(matches!(
        fit(x.view(), y.view().into_dyn(), &p(2, &dev)),
        Err(Error::NonFinite(_))
    ));
    y[(0, 0)] = f64::NAN;
    assert!(matches!(
        fit(x.view(), y.view().into_dyn(), &p(2, &dev)),
        Err(Error::NonFinite(_))
    ));
    let mut q = p(2, &dev);
    q.select_sample = Some(SelectSample::RemoveNan);
    assert!(
        fit(x.view(), y.view().into_dyn(), &q).is_ok(),
        "NaN in Y is fine with remove_nan"
    );
}

fn bad_alpha_is_an_error(dev: Device) {
    let (x, y) = data(20, 5, 2);
    for a in [-1.0, f64::NAN, f64::INFINITY] {
        let mut q = p(2, &dev);
        q.alpha = a;
        assert!(matches!(
            fit(x.view(), y.view().into_dyn(), &q),
            Err(Error::InvalidInput(_))
        ));
    }
}

fn constant_unit_gets_deterministic_selection(dev: Device) {
    // the reference selects an arbitrary block (NaN |r| ranks first there); neurofit ranks NaN
    // last, so every feature ties and the highest indices win
    let (x, mut y) = data(30, 8, 2);
    for i in 0..30 {
        y[(i, 1)] = 2.0;
    }
    let out = fit(x.view(), y.view().into_dyn(), &p(3, &dev)).unwrap();
    assert_eq!(out.selected.unwrap().row(1).to_vec(), vec![7, 6, 5]);
}

fn zero_norm_spatial_norm_is_an_error(dev: Device) {
    let (mut x, y) = data(20, 4, 1);
    for j in 0..4 {
        x[(5, j)] = 0.0;
    }
    let mut q = p(0, &dev);
    q.spatial_norm = Some(SpatialNorm::Norm1);
    assert!(matches!(
        fit(x.view(), y.view().into_dyn(), &q),
        Err(Error::NonFinite(_))
    ));
}

fn predict_validates_its_input(dev: Device) {
    let (x, y) = data(20, 5, 2);
    let out = fit(x.view(), y.view().into_dyn(), &p(2, &dev)).unwrap();
    let wrong = Array2::<f64>::zeros((4, 6));
    assert!(out
        .model
        .predict(wrong.view(), &dev)
        .unwrap_err()
        .to_string()
        .contains("6 features"));
    let mut bad = Array2::<f64>::zeros((4, 5));
    bad[(0, 0)] = f64::NAN;
    assert!(matches!(
        out.model.predict(bad.view(), &dev),
        Err(Error::NonFinite(_))
    ));
    let m = RidgeModel {
        spatial_norm: Some(SpatialNorm::Norm1),
        ..out.model.clone()
    };
    assert!(
        m.validate().is_err(),
        "spatial_norm without S must be rejected"
    );
    let empty = RidgeModel {
        w: Array2::<f64>::zeros((0, 2)).into_dyn(),
        ..out.model
    };
    assert!(
        empty.validate().is_err(),
        "an unfitted model must be rejected"
    );
}

fn fortran_order_npy_reads_like_c_order() {
    let c = Array2::from_shape_fn((3, 4), |(i, j)| (i * 10 + j) as f64);
    let f = c.t().as_standard_layout().into_owned().reversed_axes(); // same values, Fortran layout
    assert!(!f.is_standard_layout());
    let p = std::env::temp_dir().join(format!("neurofit-forder-{}.npy", std::process::id()));
    neurofit::io::write_npy(&p, &f.clone().into_dyn()).unwrap();
    let back = neurofit::io::read_npy(&p).unwrap();
    assert_eq!(back, c.into_dyn());
    let f32p = std::env::temp_dir().join(format!("neurofit-f32-{}.npy", std::process::id()));
    neurofit::io::write_npy(&f32p, &Array2::<f32>::ones((2, 2)).into_dyn()).unwrap();
    assert_eq!(
        neurofit::io::read_npy(&f32p).unwrap(),
        Array2::<f64>::ones((2, 2)).into_dyn()
    );
}

fn singular_system_names_the_unit_on_the_explicit_device(dev: Device) {
    let (mut x, mut y) = data(30, 6, 2);
    for i in 0..30 {
        x[(i, 1)] = x[(i, 0)];
        y[(i, 1)] = 3.0 * x[(i, 0)];
    }
    let mut q = p(2, &dev);
    q.alpha = 0.0;
    let e = fit(x.view(), y.view().into_dyn(), &q).unwrap_err();
    assert!(
        matches!(e, Error::Singular(_)) && e.to_string().contains("unit 1"),
        "{e}"
    );
}

fn the_budget_holds_on_every_path(dev: Device) {
    // 1 MB holds neither X₁ (300 × 401) nor G (401²): refused, not ignored (on a GPU the budget
    // is the device's; host arrays count against the host's memory)
    let (x, y) = data(300, 400, 200);
    for (k, sel) in [(0, "dense"), (20, "selection"), (500, "n_feat > F")] {
        let mut q = p(k, &dev);
        q.max_memory = Some(1 << 20);
        let e = fit(x.view(), y.view().into_dyn(), &q).unwrap_err();
        assert!(matches!(e, Error::OutOfMemory(_)), "{sel}: {e}");
    }
    let mut q = p(20, &dev);
    q.max_memory = Some(1 << 20);
    q.save_select_feat = true;
    let e = fit(x.view(), y.view().into_dyn(), &q).unwrap_err();
    assert!(matches!(e, Error::OutOfMemory(_)), "per-unit: {e}");
}

/// A prediction whose output (10⁶ samples × 10⁶ units: 8 TB) cannot fit is refused with an
/// out-of-memory error before anything large is allocated, dense and sparse.
fn predict_larger_than_memory_is_refused(dev: Device) {
    let (f, u, rows) = (4usize, 1_000_000usize, 1_000_000usize);
    let w = Array2::<f64>::from_elem((f, u), 0.5);
    let m = RidgeModel::from_flat_owned(w, Array1::zeros(u), None, &[u], Dtype::F64, None).unwrap();
    let x = Array2::<f64>::from_elem((rows, f), 1.0);
    let e = m.predict(x.view(), &dev).unwrap_err();
    assert!(matches!(e, Error::OutOfMemory(_)), "dense: {e}");
    assert!(e.to_string().contains("predict"), "{e}");
    let sparse = neurofit::ridge::stream::SparseModel::from_dense(&m).unwrap();
    let e = sparse.predict(x.view(), &dev).unwrap_err();
    assert!(matches!(e, Error::OutOfMemory(_)), "sparse: {e}");
}

fn f32_overflow_is_named(dev: Device) {
    let (mut x, y) = data(20, 5, 2);
    x[(2, 3)] = 1e300;
    let mut q = p(2, &dev);
    q.dtype = Dtype::F32;
    let e = fit(x.view(), y.view().into_dyn(), &q).unwrap_err();
    assert!(
        matches!(e, Error::NonFinite(_)) && e.to_string().contains("overflows float32"),
        "{e}"
    );
    // the same value is fine in an f64 fit
    let mut q = p(2, &dev);
    q.dtype = Dtype::F64;
    assert!(fit(x.view(), y.view().into_dyn(), &q).is_ok());
}

fn explicit_gpu_without_a_matching_adapter_is_a_clear_error() {
    let adapters = neurofit::dispatch::adapters();
    if let Some(a) = adapters.iter().find(|a| !a.shader_f64) {
        let d: Device = format!("gpu:{}", a.index).parse().unwrap();
        let e = neurofit::dispatch::resolve(&d, Dtype::F64, 1.0, None).unwrap_err();
        assert!(e.to_string().contains("SHADER_F64"), "{e}");
    }
    let d: Device = "gpu:no-such-adapter-name".parse().unwrap();
    let e = neurofit::dispatch::resolve(&d, Dtype::F32, 1.0, None).unwrap_err();
    assert!(matches!(e, Error::DeviceUnavailable(_)));
}

type Case = (&'static str, fn(Device));

/// An f32 fit and an f32 model see X only through its f32 rounding, on every path (selection,
/// dense primal, dense dual, per-unit) and in predict (plain and with spatial_norm): results are
/// bit for bit those of X rounded first (the backends round as they upload, not a copy).
fn f32_fits_see_x_through_its_f32_rounding(dev: Device) {
    // how many values differ in their bits (0 when identical)
    let differ = |a: &ndarray::ArrayD<f64>, b: &ndarray::ArrayD<f64>| {
        assert_eq!(a.shape(), b.shape());
        a.iter()
            .zip(b.iter())
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count()
    };
    for (n, f, k, per_unit) in [
        (40, 30, 6, false),
        (40, 12, 0, false),
        (10, 30, 0, false),
        (40, 30, 6, true),
    ] {
        let (x, y) = data(n, f, 4);
        // values that f32 cannot hold exactly
        let x = x.mapv(|v| v * (1.0 + 1e-9));
        let xr = x.mapv(|v| Dtype::F32.round(v));
        let mut q = p(k, &dev);
        q.dtype = Dtype::F32;
        q.save_select_feat = per_unit;
        let a = fit(x.view(), y.view().into_dyn(), &q).unwrap();
        let b = fit(xr.view(), y.view().into_dyn(), &q).unwrap();
        let case = format!("n {n}, F {f}, k {k}, per-unit {per_unit}");
        assert_eq!(differ(&a.model.w, &b.model.w), 0, "W: {case}");
        assert_eq!(differ(&a.model.b, &b.model.b), 0, "b: {case}");
        let pa = a.model.predict(x.view(), &dev).unwrap();
        let pb = a.model.predict(xr.view(), &dev).unwrap();
        assert_eq!(differ(&pa, &pb), 0, "predict: {case}");
    }
    let (x, y) = data(40, 30, 4);
    let x = x.mapv(|v| v * (1.0 + 1e-9));
    let xr = x.mapv(|v| Dtype::F32.round(v));
    let mut q = p(6, &dev);
    q.dtype = Dtype::F32;
    q.spatial_norm = Some(SpatialNorm::Norm1);
    let m = fit(x.view(), y.view().into_dyn(), &q).unwrap().model;
    let pa = m.predict(x.view(), &dev).unwrap();
    let pb = m.predict(xr.view(), &dev).unwrap();
    assert_eq!(differ(&pa, &pb), 0, "predict with spatial_norm");
}

fn main() {
    let cases: Vec<Case> = vec![
        (
            "f32_fits_see_x_through_its_f32_rounding",
            f32_fits_see_x_through_its_f32_rounding,
        ),
        (
            "n_feat_above_features_warns_and_fits_without_selection",
            n_feat_above_features_warns_and_fits_without_selection,
        ),
        (
            "n_feat_above_features_on_per_unit_path_works",
            n_feat_above_features_on_per_unit_path_works,
        ),
        (
            "per_unit_path_without_select_sample_works_and_matches_main_path",
            per_unit_path_without_select_sample_works_and_matches_main_path,
        ),
        (
            "one_dimensional_y_is_an_error",
            one_dimensional_y_is_an_error,
        ),
        ("row_mismatch_is_an_error", row_mismatch_is_an_error),
        ("n_dimensional_y_is_supported", n_dimensional_y_is_supported),
        (
            "singular_selected_system_names_the_unit",
            singular_selected_system_names_the_unit,
        ),
        (
            "all_zero_x_with_alpha_zero_is_singular",
            all_zero_x_with_alpha_zero_is_singular,
        ),
        (
            "duplicate_columns_alpha_zero_dense_is_an_error_not_garbage",
            duplicate_columns_alpha_zero_dense_is_an_error_not_garbage,
        ),
        (
            "single_sample_with_selection_is_an_error",
            single_sample_with_selection_is_an_error,
        ),
        ("non_finite_inputs_are_errors", non_finite_inputs_are_errors),
        ("bad_alpha_is_an_error", bad_alpha_is_an_error),
        (
            "constant_unit_gets_deterministic_selection",
            constant_unit_gets_deterministic_selection,
        ),
        (
            "zero_norm_spatial_norm_is_an_error",
            zero_norm_spatial_norm_is_an_error,
        ),
        ("predict_validates_its_input", predict_validates_its_input),
        (
            "singular_system_names_the_unit_on_the_explicit_device",
            singular_system_names_the_unit_on_the_explicit_device,
        ),
        (
            "the_budget_holds_on_every_path",
            the_budget_holds_on_every_path,
        ),
        ("f32_overflow_is_named", f32_overflow_is_named),
        (
            "predict_larger_than_memory_is_refused",
            predict_larger_than_memory_is_refused,
        ),
        (
            "a_cancelled_fit_stops_with_interrupted",
            a_cancelled_fit_stops_with_interrupted,
        ),
    ];
    let mut suite = Suite::new();
    for (name, f) in cases {
        suite.each_backend(name, true, f);
    }
    suite.test(
        "f32_fit_is_within_1e_4_of_the_f64_fit",
        f32_fit_is_within_1e_4_of_the_f64_fit,
    );
    suite.test(
        "recycled_chunk_buffers_change_nothing",
        recycled_chunk_buffers_change_nothing,
    );
    suite.test(
        "unknown_option_values_are_errors",
        unknown_option_values_are_errors,
    );
    suite.test(
        "fortran_order_npy_reads_like_c_order",
        fortran_order_npy_reads_like_c_order,
    );
    suite.test(
        "explicit_gpu_without_a_matching_adapter_is_a_clear_error",
        explicit_gpu_without_a_matching_adapter_is_a_clear_error,
    );
    suite.run()
}
