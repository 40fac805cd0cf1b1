//! GSN errors, warnings and edge cases (spec §3/§15), each run on the CPU and on the GPU.

mod common;

use common::*;
use ndarray::{Array2, Array3};
use neurofit::gsn::{perform_gsn, GsnOptions, ReturnItem, Uneven};
use neurofit::simulate::Rng;
use neurofit::{Device, Error};

fn data(n: usize, c: usize, t: usize, seed: u64) -> Array3<f64> {
    let mut r = Rng::new(seed);
    let sig = Array2::from_shape_fn((n, c), |_| r.normal());
    Array3::from_shape_fn((n, c, t), |(i, ci, _)| sig[(i, ci)] + 0.7 * r.normal())
}

fn on(device: Device) -> GsnOptions {
    GsnOptions {
        device,
        ..GsnOptions::default()
    }
}

/// GSN on more units than memory holds (40 000 units: ~24 N × N f64 matrices are ~290 GiB) is
/// refused with an out-of-memory error before anything large is allocated, and so is a run whose
/// max_memory is below its plan; calc_shrunken_covariance refuses the same way.
fn gsn_larger_than_memory_is_refused(dev: Device) {
    let big = Array3::<f64>::from_elem((40_000, 3, 2), 1.0);
    let e = perform_gsn(big.view(), &on(dev.clone())).unwrap_err();
    assert!(matches!(e, Error::OutOfMemory(_)), "{e}");
    assert!(e.to_string().contains("40000 units"), "{e}");
    let d = data(200, 20, 3, 5);
    let planned = neurofit::gsn::host_bytes(200, 20, 3);
    let o = GsnOptions {
        max_memory: Some(planned / 2),
        device: Device::Cpu,
        ..on(dev.clone())
    };
    let e = perform_gsn(d.view(), &o).unwrap_err();
    assert!(matches!(e, Error::OutOfMemory(_)), "{e}");
    let wide = Array2::<f64>::from_elem((10, 200_000), 1.0).into_dyn();
    let levels = neurofit::gsn::shrink::default_levels();
    let e =
        neurofit::gsn::calc_shrunken_covariance(wide.view(), 5, &levels, false, &dev).unwrap_err();
    assert!(matches!(e, Error::OutOfMemory(_)), "{e}");
}

/// A leave-out that leaves fewer than 2 observations to train on is an error, not a panic or a
/// covariance divided by zero.
fn calc_leaveout_leaving_too_few_rows_is_an_error(dev: Device) {
    let x = |nobs: usize| {
        Array2::from_shape_fn((nobs, 3), |(i, j)| {
            (i * 3 + j) as f64 + 0.5 * (i * j) as f64
        })
        .into_dyn()
    };
    let levels = neurofit::gsn::shrink::default_levels();
    let calc = |nobs: usize, leaveout: usize| {
        neurofit::gsn::calc_shrunken_covariance(x(nobs).view(), leaveout, &levels, false, &dev)
    };
    // 4 observations, all held out; 3 observations, round(1.5) = 2 held out (half to even)
    for (nobs, leaveout) in [(4, 1), (3, 2)] {
        let e = calc(nobs, leaveout).unwrap_err();
        assert!(
            matches!(e, Error::InsufficientData(_)),
            "{nobs} / {leaveout}: {e}"
        );
    }
    // 2 of 4 held out leaves 2 to train on
    assert!(calc(4, 2).is_ok());
}

/// The CLI's peak memory for GSN on 1500 units stays within the plan (`host_bytes`, plus the
/// process's own ~tens of MB), and a --max-memory below the plan is refused with no output.
#[cfg(target_os = "linux")]
fn gsn_peak_memory_stays_within_its_plan() {
    let d = tmpdir("gsn-rss");
    let (n, c, t) = (1500, 100, 3);
    let path = d.join("data.npy");
    neurofit::io::write_npy(&path, &data(n, c, t, 8).into_dyn()).unwrap();
    let out = d.join("out.npz");
    let mut cmd = bin();
    cmd.args(["gsn", "--quiet", "--device", "cpu", "--data"])
        .arg(&path)
        .arg("--out")
        .arg(&out);
    let (ok, rss) = peak_rss(cmd);
    assert!(ok && out.exists(), "GSN failed");
    let plan = neurofit::gsn::host_bytes(n, c, t) + (64 << 20);
    assert!(rss <= plan, "peak RSS {rss} bytes above the plan {plan}");
    let small = d.join("small.npz");
    let o = bin()
        .args([
            "gsn",
            "--quiet",
            "--device",
            "cpu",
            "--max-memory",
            "100MB",
            "--data",
        ])
        .arg(&path)
        .arg("--out")
        .arg(&small)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("memory budget"), "{err}");
    assert!(!small.exists());
}

fn too_few_trials_or_conditions_are_errors(dev: Device) {
    let e = perform_gsn(data(4, 10, 1, 1).view(), &on(dev.clone())).unwrap_err();
    assert!(
        e.to_string()
            .contains("Number of trials must be at least 2."),
        "{e}"
    );
    let e = perform_gsn(data(4, 1, 3, 1).view(), &on(dev.clone())).unwrap_err();
    assert!(e.to_string().contains("at least 2 conditions"), "{e}");
}

fn inf_is_rejected_and_nan_is_missing_data(dev: Device) {
    let mut d = data(4, 10, 3, 2);
    d[(1, 2, 0)] = f64::INFINITY;
    assert!(matches!(
        perform_gsn(d.view(), &on(dev.clone())),
        Err(Error::NonFinite(_))
    ));
    d[(1, 2, 0)] = f64::NAN;
    assert!(perform_gsn(d.view(), &on(dev.clone())).is_ok());
}

fn bad_option_values_are_errors(dev: Device) {
    assert!(matches!(
        "bogus".parse::<Uneven>(),
        Err(Error::UnknownOption(_))
    ));
    assert!(matches!(
        "reference".parse::<Uneven>(),
        Err(Error::UnknownOption(_))
    ));
    assert!(matches!(
        ReturnItem::parse_list("cN,cX"),
        Err(Error::UnknownOption(_))
    ));
    let o = GsnOptions {
        shrink_levels: Some(vec![]),
        ..on(dev.clone())
    };
    assert!(perform_gsn(data(3, 10, 2, 3).view(), &o).is_err());
}

fn a_condition_without_valid_trials_is_an_error_in_fast_mode(dev: Device) {
    let mut d = data(3, 10, 2, 4);
    d[(0, 4, 0)] = f64::NAN;
    d[(2, 4, 1)] = f64::NAN;
    let e = perform_gsn(d.view(), &on(dev.clone())).unwrap_err();
    assert!(e.to_string().contains("at least 1 valid trial"), "{e}");
    // the reference asserts here: the kind the Python package maps to AssertionError
    assert!(matches!(e, Error::InsufficientData(_)), "{e:?}");
    let o = GsnOptions {
        uneven: Uneven::Missing,
        ..on(dev.clone())
    };
    assert!(
        perform_gsn(d.view(), &o).is_ok(),
        "missing mode handles per-unit NaN"
    );
}

fn two_conditions_give_all_nan_and_level_zero_with_a_warning(dev: Device) {
    let r = perform_gsn(data(3, 2, 4, 5).view(), &on(dev.clone())).unwrap();
    assert_eq!(r.shrinklevel_n, 0.0);
    assert_eq!(r.shrinklevel_d, 0.0);
    assert!(r
        .warnings
        .iter()
        .any(|w| w.contains("All covariance matrices were singular.")));
}

fn lopsided_trial_counts_warn(dev: Device) {
    let mut d = data(3, 10, 3, 6);
    for c in 0..10 {
        if ![0, 5, 6].contains(&c) {
            for t in 1..3 {
                d[(0, c, t)] = f64::NAN;
            }
        }
    }
    let r = perform_gsn(d.view(), &on(dev.clone())).unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("ntrialBC is lopsided! setting to 1")),
        "{:?}",
        r.warnings
    );
}

fn no_shrinkage_and_explicit_levels(dev: Device) {
    let d = data(5, 12, 3, 7);
    let r = perform_gsn(
        d.view(),
        &GsnOptions {
            wantshrinkage: false,
            ..on(dev.clone())
        },
    )
    .unwrap();
    assert_eq!((r.shrinklevel_n, r.shrinklevel_d), (1.0, 1.0));
    let r = perform_gsn(
        d.view(),
        &GsnOptions {
            shrink_levels: Some(vec![0.0, 0.5]),
            ..on(dev.clone())
        },
    )
    .unwrap();
    assert!([0.0, 0.5].contains(&r.shrinklevel_n));
}

fn uneven_data_without_enough_repeated_trials_is_an_error(dev: Device) {
    // held-out conditions of randperm(10) are 6 and 5: leave them a single valid trial
    let mut d = data(3, 10, 2, 8);
    for c in [5, 6] {
        d[(0, c, 1)] = f64::NAN;
    }
    let e = perform_gsn(d.view(), &on(dev.clone())).unwrap_err();
    assert!(
        e.to_string()
            .contains("validation data did not have any conditions with at least two observations"),
        "{e}"
    );
    assert!(matches!(e, Error::InsufficientData(_)), "{e:?}");
    // now every training condition has a single valid trial instead
    let mut d = data(3, 10, 2, 9);
    for c in [0, 1, 2, 3, 4, 7, 8, 9] {
        d[(1, c, 0)] = f64::NAN;
    }
    let e = perform_gsn(d.view(), &on(dev.clone())).unwrap_err();
    assert!(
        e.to_string()
            .contains("no condition with at least two valid observations"),
        "{e}"
    );
}

fn shrink_levels_outside_the_unit_interval_are_rejected(dev: Device) {
    let d = data(4, 12, 3, 10);
    for bad in [vec![-0.5, 0.5], vec![0.0, 2.0], vec![f64::NAN]] {
        let o = GsnOptions {
            shrink_levels: Some(bad.clone()),
            ..on(dev.clone())
        };
        let e = perform_gsn(d.view(), &o).unwrap_err();
        assert!(
            matches!(e, Error::InvalidInput(_)) && e.to_string().contains("outside [0, 1]"),
            "{bad:?}: {e}"
        );
    }
}

fn data_whose_covariance_overflows_is_an_error_not_a_silent_answer(dev: Device) {
    let d = data(6, 12, 3, 11) * 1e200;
    let e = perform_gsn(d.view(), &on(dev.clone())).unwrap_err();
    assert!(
        matches!(e, Error::NonFinite(_)) && e.to_string().contains("rescale"),
        "{e}"
    );
    // the same data at a sane scale work, and ncsnr is scale-free
    let small = perform_gsn((d.clone() * 1e-200).view(), &on(dev.clone())).unwrap();
    let big = perform_gsn((d * 1e-180).view(), &on(dev)).unwrap();
    for (a, b) in small.ncsnr.iter().zip(big.ncsnr.iter()) {
        assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0), "{a} vs {b}");
    }
}

type Case = (&'static str, fn(Device));

fn main() {
    let cases: [Case; 16] = [
        (
            "too_few_trials_or_conditions_are_errors",
            too_few_trials_or_conditions_are_errors,
        ),
        (
            "inf_is_rejected_and_nan_is_missing_data",
            inf_is_rejected_and_nan_is_missing_data,
        ),
        ("bad_option_values_are_errors", bad_option_values_are_errors),
        (
            "a_condition_without_valid_trials_is_an_error_in_fast_mode",
            a_condition_without_valid_trials_is_an_error_in_fast_mode,
        ),
        (
            "two_conditions_give_all_nan_and_level_zero_with_a_warning",
            two_conditions_give_all_nan_and_level_zero_with_a_warning,
        ),
        ("lopsided_trial_counts_warn", lopsided_trial_counts_warn),
        (
            "no_shrinkage_and_explicit_levels",
            no_shrinkage_and_explicit_levels,
        ),
        (
            "uneven_data_without_enough_repeated_trials_is_an_error",
            uneven_data_without_enough_repeated_trials_is_an_error,
        ),
        (
            "shrink_levels_outside_the_unit_interval_are_rejected",
            shrink_levels_outside_the_unit_interval_are_rejected,
        ),
        (
            "data_whose_covariance_overflows_is_an_error_not_a_silent_answer",
            data_whose_covariance_overflows_is_an_error_not_a_silent_answer,
        ),
        (
            "returns_selector_limits_outputs",
            returns_selector_limits_outputs,
        ),
        (
            "a_cancelled_run_stops_with_interrupted",
            a_cancelled_run_stops_with_interrupted,
        ),
        (
            "eig_scorer_agrees_with_cholesky_per_level",
            eig_scorer_agrees_with_cholesky_per_level,
        ),
        (
            "a_budget_for_one_selection_at_a_time_changes_nothing",
            a_budget_for_one_selection_at_a_time_changes_nothing,
        ),
        (
            "gsn_larger_than_memory_is_refused",
            gsn_larger_than_memory_is_refused,
        ),
        (
            "calc_leaveout_leaving_too_few_rows_is_an_error",
            calc_leaveout_leaving_too_few_rows_is_an_error,
        ),
    ];
    let mut suite = Suite::new();
    for (name, f) in cases {
        suite.each_backend(name, true, f);
    }
    #[cfg(target_os = "linux")]
    suite.test(
        "gsn_peak_memory_stays_within_its_plan",
        gsn_peak_memory_stays_within_its_plan,
    );
    suite.run()
}

/// A budget that holds one level selection's working set but not both side by side: the
/// selections then run one after the other, with the same levels and outputs.
fn a_budget_for_one_selection_at_a_time_changes_nothing(dev: Device) {
    let d = data(60, 20, 3, 31);
    let free = perform_gsn(d.view(), &on(dev.clone())).unwrap();
    // about one selection's peak (the noise selection's 12 held-out points, full route; its rows
    // route on 32 contrast rows takes a little more) besides the matrices GSN holds anyway
    // (`host_bytes`): the budget holds one selection, not two
    let one = neurofit::gsn::shrink::selection_peak_bytes(60, 12, None);
    let o = GsnOptions {
        max_memory: Some(neurofit::gsn::host_bytes(60, 20, 3) + one + one / 4),
        ..on(dev)
    };
    let tight = perform_gsn(d.view(), &o).unwrap();
    assert_eq!(free.shrinklevel_n, tight.shrinklevel_n);
    assert_eq!(free.shrinklevel_d, tight.shrinklevel_d);
    for (a, b) in [(&free.c_nb, &tight.c_nb), (&free.c_sb, &tight.c_sb)] {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let diff = (a - b).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(diff <= 1e-12 * scale, "{diff} vs {scale}");
    }
    for (a, b) in free.nll_n.iter().zip(&tight.nll_n) {
        assert!(a.is_nan() == b.is_nan() && (a.is_nan() || (a - b).abs() <= 1e-12 * a.abs()));
    }
}

fn a_cancelled_run_stops_with_interrupted(dev: Device) {
    let cancel = neurofit::Cancel::new();
    cancel.cancel();
    let o = GsnOptions {
        cancel: Some(cancel),
        ..on(dev.clone())
    };
    let e = perform_gsn(data(5, 12, 3, 12).view(), &o).unwrap_err();
    assert!(matches!(e, Error::Interrupted(_)), "{e:?}");
    // a flag that is not set changes nothing
    let o = GsnOptions {
        cancel: Some(neurofit::Cancel::new()),
        ..on(dev.clone())
    };
    let a = perform_gsn(data(5, 12, 3, 12).view(), &o).unwrap();
    let b = perform_gsn(data(5, 12, 3, 12).view(), &on(dev)).unwrap();
    assert_eq!(a.c_sb, b.c_sb);
}

/// The Cholesky scorer on `dev`, level by level (the arbiter).
struct CholeskyCurve<'a> {
    cov: &'a Array2<f64>,
    pts: &'a Array2<f64>,
    levels: &'a [f64],
}

impl neurofit::dispatch::Job for CholeskyCurve<'_> {
    type Output = Vec<f64>;
    fn run<B: neurofit::backend::Backend>(&self, be: &B) -> neurofit::Result<Vec<f64>> {
        be.shrinkage_nll(
            self.cov.view(),
            self.pts.view(),
            self.levels,
            neurofit::Dtype::F64,
        )
    }
}

fn eig_scorer_agrees_with_cholesky_per_level(dev: Device) {
    let levels = neurofit::gsn::shrink::default_levels();
    let mut r = Rng::new(77);
    let mut cases: Vec<(&str, Array2<f64>, Array2<f64>)> = Vec::new();
    for (name, rows, n) in [("full rank", 400, 60), ("rank deficient", 30, 60)] {
        let x = Array2::from_shape_fn((rows, n), |_| r.normal());
        let mix =
            Array2::from_shape_fn((n, n), |(i, j)| if i == j { 1.0 } else { 0.3 * r.normal() });
        let xm = x.dot(&mix);
        let cov = xm.t().dot(&xm) / rows as f64;
        let pts = Array2::from_shape_fn((25, n), |_| r.normal()).dot(&mix);
        cases.push((name, cov, pts));
    }
    // indefinite: a contiguous top block of levels fails
    let n = 40;
    let b = Array2::from_shape_fn((n, n), |_| r.normal());
    let mut ind = (&b + &b.t()) * 0.3;
    for i in 0..n {
        ind[(i, i)] = 2.0 + r.normal().abs();
    }
    cases.push((
        "indefinite",
        ind,
        Array2::from_shape_fn((10, n), |_| r.normal()),
    ));
    // a zero variance: every level fails
    let (_, mut zero, pz) = cases[0].clone();
    zero.row_mut(3).fill(0.0);
    zero.column_mut(3).fill(0.0);
    cases.push(("zero variance", zero, pz));
    for (name, cov, pts) in &cases {
        let got = neurofit::gsn::shrinkage_nll(cov.view(), pts.view(), &levels, &dev).unwrap();
        let be = neurofit::dispatch::resolve(&dev, neurofit::Dtype::F64, 1.0, None).unwrap();
        let want = be
            .run(&CholeskyCurve {
                cov,
                pts,
                levels: &levels,
            })
            .unwrap();
        let scale = want
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_eq!(a.is_nan(), b.is_nan(), "{name}: level {k}: {a} vs {b}");
            if !b.is_nan() {
                assert!(
                    (a - b).abs() <= 1e-10 * scale.max(1.0),
                    "{name}: level {k}: {a} vs {b}"
                );
            }
        }
        assert_eq!(
            neurofit::gsn::shrink::choose(&got),
            neurofit::gsn::shrink::choose(&want),
            "{name}: chosen level"
        );
        if *name == "rank deficient" {
            assert!(got[50].is_nan() && !got[49].is_nan());
        }
        if *name == "indefinite" {
            assert!(got[50].is_nan() && !got[0].is_nan());
        }
        if *name == "zero variance" {
            assert!(got.iter().all(|v| v.is_nan()));
        }
    }
}

fn returns_selector_limits_outputs(dev: Device) {
    let o = GsnOptions {
        returns: vec![ReturnItem::CSb, ReturnItem::EigvalsSignal],
        ..on(dev)
    };
    let r = perform_gsn(data(5, 12, 3, 12).view(), &o).unwrap();
    assert!(r.c_sb.is_some() && r.eigvals_signal.is_some());
    assert!(r.c_n.is_none() && r.c_s.is_none() && r.c_nb.is_none() && r.eigvecs_signal.is_none());
}
