//! The `neurofit` binary: round trip on a fixture, and bad input → non-zero exit, one clear line
//! on stderr, no output file.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_neurofit"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("neurofit-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fixture(case: &str, f: &str) -> String {
    case_dir("fastl2lir", case).join(f).display().to_string()
}

fn fails_cleanly(args: &[&str], out: &Path, expect: &str) {
    let o = bin().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} should fail");
    assert!(
        err.to_lowercase().contains(&expect.to_lowercase()),
        "{args:?}: stderr was {err}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(!out.exists(), "{args:?} left an output file");
}

#[test]
fn fit_then_predict_reproduces_the_reference() {
    let d = tmpdir("roundtrip");
    let model = d.join("model.npz");
    let pred = d.join("pred.npy");
    for (case, extra) in [
        (
            "chunked_3d",
            vec!["--n-feat", "25", "--alpha", "5", "--chunk-size", "7"],
        ),
        (
            "ssf_norm2",
            vec![
                "--n-feat",
                "15",
                "--alpha",
                "2",
                "--spatial-norm",
                "norm2",
                "--select-sample",
                "remove_nan",
            ],
        ),
        (
            "small_select_f32",
            vec!["--n-feat", "30", "--alpha", "10", "--dtype", "f32"],
        ),
        // chunk_size ≤ 0 means no chunking, as in the reference
        (
            "small_select",
            vec!["--n-feat", "30", "--alpha", "10", "--chunk-size", "-3"],
        ),
    ] {
        let mut args = vec!["ridge", "fit", "--quiet", "--device", "cpu"];
        let (x, y) = (fixture(case, "X_train.npy"), fixture(case, "Y_train.npy"));
        args.extend(["--x", &x, "--y", &y, "--out", model.to_str().unwrap()]);
        args.extend(extra.iter().copied());
        let o = bin().args(&args).output().unwrap();
        assert!(
            o.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let xt = fixture(case, "X_test.npy");
        let o = bin()
            .args([
                "ridge",
                "predict",
                "--model",
                model.to_str().unwrap(),
                "--x",
                &xt,
                "--out",
                pred.to_str().unwrap(),
                "--device",
                "cpu",
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let got = neurofit::io::read_npy(&pred).unwrap();
        let tol = if case.ends_with("f32") { 1e-4 } else { 1e-9 };
        assert_close(case, &got, &load("fastl2lir", case, "Y_pred"), tol);
    }
}

#[test]
fn bad_inputs_fail_cleanly_without_output() {
    let d = tmpdir("bad");
    let out = d.join("model.npz");
    let o = out.to_str().unwrap();
    let x = fixture("small_select", "X_train.npy");
    let y = fixture("small_select", "Y_train.npy");
    let xt = fixture("small_select", "X_test.npy");
    fails_cleanly(
        &[
            "ridge",
            "fit",
            "--x",
            "/nonexistent.npy",
            "--y",
            &y,
            "--out",
            o,
        ],
        &out,
        "nonexistent",
    );
    fails_cleanly(
        &["ridge", "fit", "--x", &x, "--y", &xt, "--out", o],
        &out,
        "samples",
    );
    fails_cleanly(
        &[
            "ridge",
            "fit",
            "--x",
            &x,
            "--y",
            &y,
            "--out",
            o,
            "--spatial-norm",
            "norm3",
        ],
        &out,
        "spatial_norm",
    );
    fails_cleanly(
        &[
            "ridge",
            "fit",
            "--x",
            &x,
            "--y",
            &y,
            "--out",
            o,
            "--select-sample",
            "nan_remove",
        ],
        &out,
        "remove_nan",
    );
    fails_cleanly(
        &[
            "ridge", "fit", "--x", &x, "--y", &y, "--out", o, "--n-feat", "2.5",
        ],
        &out,
        "invalid",
    );
    fails_cleanly(
        &[
            "ridge", "fit", "--x", &x, "--y", &y, "--out", o, "--n-feat", "-1",
        ],
        &out,
        "error",
    );
    fails_cleanly(
        &[
            "ridge", "fit", "--x", &x, "--y", &y, "--out", o, "--dtype", "f16",
        ],
        &out,
        "dtype",
    );
    fails_cleanly(
        &[
            "ridge", "fit", "--x", &x, "--y", &y, "--out", o, "--device", "tpu",
        ],
        &out,
        "device",
    );
    fails_cleanly(
        &[
            "ridge",
            "fit",
            "--x",
            &x,
            "--y",
            &y,
            "--out",
            o,
            "--max-memory",
            "lots",
        ],
        &out,
        "memory size",
    );
    fails_cleanly(
        &[
            "ridge",
            "fit",
            "--x",
            &x,
            "--y",
            &y,
            "--out",
            o,
            "--max-memory",
            "1KiB",
            "--n-feat",
            "10",
            "--device",
            "cpu",
        ],
        &out,
        "memory budget",
    );
    fails_cleanly(
        &[
            "ridge",
            "fit",
            "--x",
            &x,
            "--y",
            &y,
            "--out",
            o,
            "--device",
            "gpu:no-such-gpu",
        ],
        &out,
        "no adapter matches",
    );
    fails_cleanly(
        &[
            "ridge",
            "fit",
            "--x",
            &x,
            "--y",
            &y,
            "--out",
            o,
            "--unknown-flag",
        ],
        &out,
        "unexpected argument",
    );
    // a 3-D X
    let x3 = d.join("x3.npy");
    neurofit::io::write_npy(&x3, &ndarray::Array3::<f64>::zeros((4, 3, 2)).into_dyn()).unwrap();
    fails_cleanly(
        &[
            "ridge",
            "fit",
            "--x",
            x3.to_str().unwrap(),
            "--y",
            &y,
            "--out",
            o,
        ],
        &out,
        "2-D",
    );
    // float16 data
    let f16 = d.join("f16.npy");
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let mut header = "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 8]);
    std::fs::write(&f16, bytes).unwrap();
    fails_cleanly(
        &[
            "ridge",
            "fit",
            "--x",
            f16.to_str().unwrap(),
            "--y",
            &y,
            "--out",
            o,
        ],
        &out,
        // float16 is read (issue 11); this 2-sample X then disagrees with Y
        "X has 2 samples",
    );
    // predict with a model fitted on other features
    let model = d.join("m.npz");
    let o2 = bin()
        .args([
            "ridge",
            "fit",
            "--quiet",
            "--device",
            "cpu",
            "--x",
            &x,
            "--y",
            &y,
            "--out",
            model.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o2.status.success());
    let pred = d.join("p.npy");
    let other = fixture("tiny_noselect", "X_test.npy");
    fails_cleanly(
        &[
            "ridge",
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--x",
            &other,
            "--out",
            pred.to_str().unwrap(),
        ],
        &pred,
        "features",
    );
    fails_cleanly(
        &[
            "ridge",
            "predict",
            "--model",
            &x,
            "--x",
            &xt,
            "--out",
            pred.to_str().unwrap(),
        ],
        &pred,
        "error",
    );
}

#[test]
fn no_adapter_is_a_clear_error_for_explicit_gpu() {
    let d = tmpdir("noadapter");
    let out = d.join("model.npz");
    let x = fixture("small_select", "X_train.npy");
    let y = fixture("small_select", "Y_train.npy");
    let o = bin()
        .env("WGPU_BACKEND", "vulkan")
        .env("VK_ICD_FILENAMES", "/nonexistent.json")
        .env("VK_DRIVER_FILES", "/nonexistent.json")
        .args([
            "ridge",
            "fit",
            "--x",
            &x,
            "--y",
            &y,
            "--out",
            out.to_str().unwrap(),
            "--device",
            "gpu",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("no GPU adapter was found"), "{err}");
    assert!(!out.exists());
}

#[test]
fn neurofit_device_sets_the_default_device() {
    let d = tmpdir("envdev");
    let out = d.join("model.npz");
    let fit = |env: &str, extra: &[&str]| {
        let mut c = bin();
        c.env("NEUROFIT_DEVICE", env).args([
            "ridge",
            "fit",
            "--x",
            &fixture("small_select", "X_train.npy"),
            "--y",
            &fixture("small_select", "Y_train.npy"),
            "--n-feat",
            "30",
            "--out",
            out.to_str().unwrap(),
        ]);
        c.args(extra).output().unwrap()
    };
    let o = fit("cpu", &[]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("on cpu"));
    std::fs::remove_file(&out).unwrap();
    let o = fit("quantum", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("NEUROFIT_DEVICE") && err.contains("quantum"),
        "{err}"
    );
    assert!(!out.exists());
    // --device wins over the variable
    let o = fit("quantum", &["--device", "cpu"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn devices_lists_the_cpu() {
    let o = bin().arg("devices").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("cpu"));
}

#[test]
fn gsn_writes_reference_keys_and_matches_the_fixture() {
    let d = tmpdir("gsn");
    let out = d.join("result.npz");
    let data = case_dir("gsn", "small").join("data.npy");
    let o = bin()
        .args([
            "gsn",
            "--quiet",
            "--device",
            "cpu",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--returns",
            "cN,cSb,eigvals_signal",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names = neurofit::io::NpzReader::open(&out).unwrap().names();
    for k in [
        "mnN",
        "mnS",
        "ncsnr",
        "shrinklevelN",
        "shrinklevelD",
        "numiters",
        "cN",
        "cSb",
        "eigvals_signal",
    ] {
        assert!(names.iter().any(|n| n == k), "missing key {k}");
    }
    assert!(!names.iter().any(|n| n == "cS"), "cS was not asked for");
    let r = neurofit::gsn::GsnResult::load(&out).unwrap();
    assert_close(
        "ncsnr",
        &r.ncsnr.into_dyn(),
        &load("gsn", "small", "ncsnr"),
        1e-9,
    );
    assert_close(
        "cSb",
        &r.c_sb.unwrap().into_dyn(),
        &load("gsn", "small", "cSb"),
        1e-9,
    );
}

#[test]
fn gsn_bad_inputs_fail_cleanly() {
    let d = tmpdir("gsnbad");
    let out = d.join("r.npz");
    let o = out.to_str().unwrap();
    let data = case_dir("gsn", "small").join("data.npy");
    let data = data.to_str().unwrap();
    let x2 = fixture("small_select", "X_train.npy");
    fails_cleanly(&["gsn", "--data", &x2, "--out", o], &out, "3D");
    fails_cleanly(
        &["gsn", "--data", data, "--out", o, "--uneven", "bogus"],
        &out,
        "uneven",
    );
    fails_cleanly(
        &["gsn", "--data", data, "--out", o, "--returns", "cN,cX"],
        &out,
        "returns",
    );
    fails_cleanly(
        &["gsn", "--data", data, "--out", o, "--shrink-levels", "0,a"],
        &out,
        "not a number",
    );
    let one_trial = d.join("t1.npy");
    neurofit::io::write_npy(
        &one_trial,
        &ndarray::Array3::<f64>::zeros((3, 5, 1)).into_dyn(),
    )
    .unwrap();
    fails_cleanly(
        &["gsn", "--data", one_trial.to_str().unwrap(), "--out", o],
        &out,
        "at least 2",
    );
    let one_cond = d.join("c1.npy");
    neurofit::io::write_npy(
        &one_cond,
        &ndarray::Array3::<f64>::zeros((3, 1, 4)).into_dyn(),
    )
    .unwrap();
    fails_cleanly(
        &["gsn", "--data", one_cond.to_str().unwrap(), "--out", o],
        &out,
        "2 conditions",
    );
}
