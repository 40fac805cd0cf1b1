//! float16 inputs (issue 11): every FastL2LiR fixture's inputs rounded to float16 and fitted
//! from float16 files give the same model, bit for bit, as the same rounded values given as
//! float32 files with `--dtype f32` (the default for float16 inputs); predictions and GSN alike;
//! a float16 Y larger than the memory budget is streamed.

mod common;

use common::*;
use ndarray::ArrayD;
use std::path::{Path, PathBuf};

/// Writes `a` rounded to float16 as a `<f2` file and the same values as a `<f4` file.
fn write_both(d: &Path, name: &str, a: &ArrayD<f64>) -> (PathBuf, PathBuf) {
    let h: Vec<u16> = a
        .iter()
        .map(|&v| half::f16::from_f64(v).to_bits())
        .collect();
    let dict = format!(
        "{{'descr': '<f2', 'fortran_order': False, 'shape': ({}), }}",
        a.shape()
            .iter()
            .map(|d| format!("{d},"))
            .collect::<String>()
    );
    let data: Vec<u8> = h.iter().flat_map(|v| v.to_le_bytes()).collect();
    let bytes = npy_bytes(&dict, &data);
    let p16 = d.join(format!("{name}16.npy"));
    std::fs::write(&p16, bytes).unwrap();
    let f32s = ArrayD::from_shape_vec(
        a.raw_dim(),
        h.iter()
            .map(|&b| half::f16::from_bits(b).to_f32())
            .collect(),
    )
    .unwrap();
    let p32 = d.join(format!("{name}32.npy"));
    neurofit::io::write_npy(&p32, &f32s).unwrap();
    (p16, p32)
}

fn run(args: &[String]) {
    let o = bin().args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn every_fixture_fits_alike_from_float16_and_float32() {
    let root = fixtures_root().join("fastl2lir");
    let mut cases: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    assert!(cases.len() >= 21);
    for case in cases {
        let d = tmpdir(&case);
        let fk = params("fastl2lir", &case)["fit_kwargs"].clone();
        let (x16, x32) = write_both(&d, "x", &load("fastl2lir", &case, "X_train"));
        let (y16, y32) = write_both(&d, "y", &load("fastl2lir", &case, "Y_train"));
        let (t16, t32) = write_both(&d, "t", &load("fastl2lir", &case, "X_test"));
        let mut opts: Vec<String> = vec!["--quiet".into(), "--device".into(), "cpu".into()];
        opts.extend([
            "--alpha".into(),
            fk["alpha"].as_f64().unwrap_or(1.0).to_string(),
        ]);
        opts.extend([
            "--n-feat".into(),
            fk["n_feat"].as_u64().unwrap_or(0).to_string(),
        ]);
        opts.extend([
            "--chunk-size".into(),
            fk["chunk_size"].as_u64().unwrap_or(0).to_string(),
        ]);
        if fk["save_select_feat"].as_bool() == Some(true) {
            opts.push("--save-select-feat".into());
        }
        for k in ["spatial_norm", "select_sample"] {
            if let Some(v) = fk[k].as_str() {
                opts.extend([format!("--{}", k.replace('_', "-")), v.into()]);
            }
        }
        let (m16, m32) = (d.join("m16.npz"), d.join("m32.npz"));
        let fit = |x: &Path, y: &Path, out: &Path, dtype: &[&str]| {
            let mut a: Vec<String> = vec!["ridge".into(), "fit".into()];
            a.extend(opts.iter().cloned());
            a.extend(dtype.iter().map(|v| v.to_string()));
            a.extend([
                "--x".into(),
                s(x),
                "--y".into(),
                s(y),
                "--out".into(),
                s(out),
            ]);
            run(&a);
        };
        fit(&x16, &y16, &m16, &[]);
        fit(&x32, &y32, &m32, &["--dtype", "f32"]);
        let (a, b) = (
            neurofit::ridge::stream::Model::load(&m16).unwrap(),
            neurofit::ridge::stream::Model::load(&m32).unwrap(),
        );
        assert_eq!(
            a.dtype(),
            neurofit::Dtype::F32,
            "{case}: float16 inputs default to f32"
        );
        assert_eq!(
            std::fs::read(&m16).unwrap(),
            std::fs::read(&m32).unwrap(),
            "{case}: the float16 and float32 fits differ"
        );
        drop(b);
        let (p16, p32) = (d.join("p16.npy"), d.join("p32.npy"));
        for (t, p) in [(&t16, &p16), (&t32, &p32)] {
            run(&[
                "ridge".into(),
                "predict".into(),
                "--device".into(),
                "cpu".into(),
                "--model".into(),
                s(&m16),
                "--x".into(),
                s(t),
                "--out".into(),
                s(p),
            ]);
        }
        assert_eq!(
            std::fs::read(&p16).unwrap(),
            std::fs::read(&p32).unwrap(),
            "{case}: predictions"
        );
    }
}

#[test]
fn gsn_reads_float16_data() {
    let d = tmpdir("gsn");
    let (g16, g32) = write_both(&d, "g", &load("gsn", "small", "data"));
    let (r16, r32) = (d.join("r16.npz"), d.join("r32.npz"));
    for (g, r, extra) in [(&g16, &r16, vec![]), (&g32, &r32, vec!["--dtype", "f32"])] {
        let mut a: Vec<String> = [
            "gsn",
            "--quiet",
            "--device",
            "cpu",
            "--data",
            &s(g),
            "--out",
            &s(r),
        ]
        .iter()
        .map(|v| v.to_string())
        .collect();
        a.extend(extra.iter().map(|v| v.to_string()));
        run(&a);
    }
    assert_eq!(std::fs::read(&r16).unwrap(), std::fs::read(&r32).unwrap());
}

#[test]
fn float16_inf_and_nan_are_the_usual_errors() {
    let d = tmpdir("inf");
    let mut x = load("fastl2lir", "small_select", "X_train");
    x[[0, 0]] = f64::INFINITY;
    let (x16, _) = write_both(&d, "x", &x);
    let y = case_dir("fastl2lir", "small_select").join("Y_train.npy");
    let o = bin()
        .args([
            "ridge",
            "fit",
            "--device",
            "cpu",
            "--n-feat",
            "5",
            "--x",
            &s(&x16),
            "--y",
            &s(&y),
        ])
        .args(["--out", &s(&d.join("m.npz"))])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error: non-finite value: X has inf at [0, 0]"),
        "{err}"
    );
}

/// A float16 Y of 24 MB (96 MB as f64) under a 16 MB budget: streamed in its own dtype.
#[cfg(target_os = "linux")]
#[test]
fn a_float16_y_larger_than_the_budget_streams() {
    let d = tmpdir("stream");
    let mut r = neurofit::simulate::Rng::new(4);
    let x = ndarray::Array2::from_shape_fn((200, 100), |_| r.normal()).into_dyn();
    let y = ndarray::Array2::from_shape_fn((200, 60_000), |_| r.normal()).into_dyn();
    let (x16, _) = write_both(&d, "x", &x);
    let (y16, _) = write_both(&d, "y", &y);
    drop(y);
    let out = d.join("m.npz");
    let mut cmd = bin();
    cmd.args([
        "ridge", "fit", "--quiet", "--device", "cpu", "--n-feat", "10", "--sparse",
    ])
    .args([
        "--max-memory",
        "16MB",
        "--x",
        &s(&x16),
        "--y",
        &s(&y16),
        "--out",
        &s(&out),
    ]);
    let (ok, rss) = peak_rss(cmd);
    assert!(ok && rss > 0);
    assert!(
        rss < 48_000_000,
        "peak RSS {rss} for a float16 Y of 24 MB (96 MB as f64)"
    );
}
