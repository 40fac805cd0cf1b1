//! The defects adversarial testing found (issue 7 §2), one test each, through the `neurofit`
//! binary as a user meets them: every failure is one `error:` line, a non-zero exit (never an
//! abort), and no output or temporary file left behind.

mod common;

use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

fn fixture(case: &str, f: &str) -> String {
    case_dir("fastl2lir", case).join(f).display().to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A clean failure: exit code 1, exactly one stderr line starting `error:` that contains
/// `expect`, no output file.
fn fails_with(o: &Output, out: &Path, expect: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "exit status {:?}; stderr: {err}",
        o.status
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err:?}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(
        err.to_lowercase().contains(&expect.to_lowercase()),
        "expected '{expect}' in: {err}"
    );
    assert!(
        !out.exists(),
        "an output file was left at {}",
        out.display()
    );
}

/// `neurofit ridge fit --quiet --device cpu --x X --y Y --out OUT` and `extra`.
fn cpu_fit(x: &str, y: &str, out: &str, extra: &[&str]) -> Output {
    bin()
        .args(["ridge", "fit", "--quiet", "--device", "cpu"])
        .args(["--x", x, "--y", y, "--out", out])
        .args(extra)
        .output()
        .unwrap()
}

/// `neurofit ridge predict --device cpu --model MODEL --x X --out OUT`.
fn cpu_predict(model: &str, x: &str, out: &str) -> Output {
    bin()
        .args(["ridge", "predict", "--device", "cpu", "--model", model])
        .args(["--x", x, "--out", out])
        .output()
        .unwrap()
}

fn no_temp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(
            !(name.contains(".tmp") || name.starts_with(".nf")),
            "temporary file {name} left in {}",
            dir.display()
        );
    }
}

/// §2.1 A header claiming a huge shape is refused before any allocation, for every input; a
/// real file above the budget is an out-of-memory error.
#[test]
fn huge_header_is_refused_before_allocating() {
    let d = tmpdir("huge");
    let huge = d.join("huge.npy");
    let bytes = npy_bytes(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000), }",
        &[],
    );
    assert_eq!(bytes.len(), 128);
    std::fs::write(&huge, bytes).unwrap();
    let out = d.join("out.npz");
    let (x, y) = (
        fixture("small_select", "X_train.npy"),
        fixture("small_select", "Y_train.npy"),
    );
    for args in [
        vec!["ridge", "fit", "--x", s(&huge), "--y", &y, "--out", s(&out)],
        vec!["ridge", "fit", "--x", &x, "--y", s(&huge), "--out", s(&out)],
        vec!["gsn", "--data", s(&huge), "--out", s(&out)],
    ] {
        let o = bin().args(&args).output().unwrap();
        fails_with(
            &o,
            &out,
            "truncated: the header describes 80000000000 bytes",
        );
    }
    // predict: the X input and a model member
    let model = d.join("m.npz");
    let ok = cpu_fit(&x, &y, s(&model), &[]);
    assert!(ok.status.success());
    let pred = d.join("p.npy");
    let o = bin()
        .args([
            "ridge",
            "predict",
            "--model",
            s(&model),
            "--x",
            s(&huge),
            "--out",
            s(&pred),
        ])
        .output()
        .unwrap();
    fails_with(&o, &pred, "truncated");
    let bad_model = d.join("bad.npz");
    write_zip(
        &bad_model,
        &[
            ("W.npy", std::fs::read(&huge).unwrap(), false),
            (
                "b.npy",
                npy_bytes(
                    "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), }",
                    &[0; 8],
                ),
                false,
            ),
        ],
    );
    let o = bin()
        .args([
            "ridge",
            "predict",
            "--model",
            s(&bad_model),
            "--x",
            &x,
            "--out",
            s(&pred),
        ])
        .output()
        .unwrap();
    fails_with(&o, &pred, "member W: truncated");
    // a real array above the budget: out of memory, named
    let real = d.join("real.npy");
    std::fs::write(
        &real,
        npy_bytes(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (500, 400), }",
            &vec![0u8; 500 * 400 * 8],
        ),
    )
    .unwrap();
    let o = bin()
        .args([
            "ridge",
            "fit",
            "--x",
            s(&real),
            "--y",
            &y,
            "--out",
            s(&out),
            "--max-memory",
            "1MB",
        ])
        .output()
        .unwrap();
    fails_with(&o, &out, "out of memory");
}

/// Writes a zip archive of (name, bytes, deflated) members.
fn write_zip(path: &Path, members: &[(&str, Vec<u8>, bool)]) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    for (name, bytes, deflate) in members {
        let method = if *deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        z.start_file(*name, opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

/// A dense fit whose model is ~40 MB, to interrupt while it is written.
fn big_fit_inputs(d: &Path) -> (PathBuf, PathBuf) {
    let (n, f, u) = (60usize, 2500usize, 2000usize);
    let mut r = neurofit::simulate::Rng::new(3);
    let x = ndarray::Array2::from_shape_fn((n, f), |_| r.normal()).into_dyn();
    let y = ndarray::Array2::from_shape_fn((n, u), |_| r.normal()).into_dyn();
    let (xp, yp) = (d.join("x.npy"), d.join("y.npy"));
    neurofit::io::write_npy(&xp, &x).unwrap();
    neurofit::io::write_npy(&yp, &y).unwrap();
    (xp, yp)
}

/// §2.2 SIGINT/SIGTERM at any moment leave no temporary file; an output, if one exists, is
/// complete (the signal came after the rename).
#[cfg(unix)]
#[test]
fn interrupts_leave_no_temporary_file() {
    let d = tmpdir("sig");
    let (x, y) = big_fit_inputs(&d);
    let out_dir = d.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("model.npz");
    let args = |out: &Path| {
        vec![
            "ridge".to_string(),
            "fit".into(),
            "--quiet".into(),
            "--device".into(),
            "cpu".into(),
            "--x".into(),
            s(&x).into(),
            "--y".into(),
            s(&y).into(),
            "--out".into(),
            s(out).into(),
        ]
    };
    let t = Instant::now();
    assert!(bin().args(args(&out)).status().unwrap().success());
    let full = t.elapsed();
    std::fs::remove_file(&out).unwrap();
    // 40 interrupts spread over the second half of the run, where the output is written
    for i in 0..40 {
        let delay = full.mul_f64(0.5 + 0.0125 * i as f64);
        let mut child = bin()
            .args(args(&out))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let sig = if i % 2 == 0 {
            libc::SIGINT
        } else {
            libc::SIGTERM
        };
        // SAFETY: sending a signal to our own child process
        unsafe { libc::kill(child.id() as i32, sig) };
        let _ = child.wait().unwrap();
        no_temp_files(&out_dir);
        if out.exists() {
            neurofit::ridge::RidgeModel::load(&out).expect("an output that exists is complete");
            std::fs::remove_file(&out).unwrap();
        }
    }
}

/// §2.3 Output names up to the file-system limit work (the temporary name does not grow with
/// the output's).
#[test]
fn output_names_up_to_255_bytes_work() {
    let d = tmpdir("long");
    let (x, y) = (
        fixture("small_select", "X_train.npy"),
        fixture("small_select", "Y_train.npy"),
    );
    for len in [246usize, 255] {
        let name = format!("{}.npz", "m".repeat(len - 4));
        let out = d.join(&name);
        let o = cpu_fit(&x, &y, s(&out), &[]);
        assert!(
            o.status.success(),
            "{len}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.exists());
    }
    no_temp_files(&d);
}

/// §2.4 Special files are written through, never replaced; a symbolic link is followed.
#[cfg(unix)]
#[test]
fn special_files_are_written_through_and_links_followed() {
    use std::os::unix::fs::FileTypeExt;
    let d = tmpdir("special");
    let (x, y) = (
        fixture("small_select", "X_train.npy"),
        fixture("small_select", "Y_train.npy"),
    );
    let fit = |out: &str| cpu_fit(&x, &y, out, &[]);
    // a character device stays one: a node of its own (the same device as /dev/null), so that
    // a regression cannot replace the machine's /dev/null
    let dev = d.join("null");
    let c = std::ffi::CString::new(s(&dev)).unwrap();
    // SAFETY: creating a device node at a path we own (needs root; skipped otherwise)
    let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) } == 0;
    if made {
        let o = fit(s(&dev));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(std::fs::metadata(&dev)
            .unwrap()
            .file_type()
            .is_char_device());
    } else {
        eprintln!("note: mknod is not permitted here; the character-device case is not run");
    }
    // a FIFO receives the archive and stays a FIFO
    let fifo = d.join("pipe");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: creating a FIFO at a path we own
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let o = fit(s(&fifo));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = reader.join().unwrap();
    assert!(
        got.starts_with(b"PK"),
        "the FIFO did not receive a zip archive"
    );
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    // a symbolic link stays a link; the file it points to is replaced
    let target = d.join("target.npz");
    std::fs::write(&target, b"old").unwrap();
    let link = d.join("link.npz");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = fit(s(&link));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    neurofit::ridge::RidgeModel::load(&target).expect("the link's target holds the model");
    // a directory is refused
    let o = fit(s(&d));
    fails_with(&o, Path::new("/nonexistent-marker"), "is a directory");
    no_temp_files(&d);
}

/// §2.5 Listing adapters and GPU runs print nothing on stderr without XDG_RUNTIME_DIR.
#[test]
fn third_party_noise_stays_off_stderr() {
    let o = bin()
        .env_remove("XDG_RUNTIME_DIR")
        .arg("devices")
        .output()
        .unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.trim().is_empty(), "devices printed on stderr: {err}");
    if gpu_available(true) {
        let d = tmpdir("xdg");
        let out = d.join("m.npz");
        let (x, y) = (
            fixture("small_select", "X_train.npy"),
            fixture("small_select", "Y_train.npy"),
        );
        let o = bin()
            .env_remove("XDG_RUNTIME_DIR")
            .args([
                "ridge",
                "fit",
                "--quiet",
                "--device",
                "gpu",
                "--n-feat",
                "10",
                "--x",
                &x,
                "--y",
                &y,
                "--out",
                s(&out),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.trim().is_empty(), "a GPU fit printed on stderr: {err}");
    }
}

/// §2.6 `--max-memory` holds on the dense path too.
#[test]
fn max_memory_holds_on_the_dense_path() {
    let d = tmpdir("dense");
    let out = d.join("m.npz");
    let (x, y) = (
        fixture("small_select", "X_train.npy"),
        fixture("small_select", "Y_train.npy"),
    );
    let o = bin()
        .args([
            "ridge",
            "fit",
            "--device",
            "cpu",
            "--n-feat",
            "0",
            "--max-memory",
            "20KB",
            "--x",
            &x,
            "--y",
            &y,
            "--out",
            s(&out),
        ])
        .output()
        .unwrap();
    fails_with(&o, &out, "memory budget");
}

/// §2.8 Shrinkage levels outside [0, 1] are rejected.
#[test]
fn shrink_levels_outside_the_unit_interval_are_rejected() {
    let d = tmpdir("levels");
    let out = d.join("r.npz");
    let data = case_dir("gsn", "small").join("data.npy");
    for levels in ["-0.5,0.5", "0,2"] {
        let o = bin()
            .args([
                "gsn",
                "--data",
                s(&data),
                "--out",
                s(&out),
                "--shrink-levels",
                levels,
            ])
            .output()
            .unwrap();
        fails_with(&o, &out, "outside [0, 1]");
    }
}

/// §2.9 Data whose covariance overflows f64: an error, not ncsnr 0 everywhere.
#[test]
fn gsn_overflow_is_an_error() {
    let d = tmpdir("overflow");
    let out = d.join("r.npz");
    let data = neurofit::io::read_npy(&case_dir("gsn", "small").join("data.npy")).unwrap() * 1e200;
    let p = d.join("big.npy");
    neurofit::io::write_npy(&p, &data).unwrap();
    let o = bin()
        .args(["gsn", "--device", "cpu", "--data", s(&p), "--out", s(&out)])
        .output()
        .unwrap();
    fails_with(&o, &out, "overflows the float64 range");
}

fn fit_model(d: &Path) -> (PathBuf, String) {
    let (x, y) = (
        fixture("small_select", "X_train.npy"),
        fixture("small_select", "Y_train.npy"),
    );
    let model = d.join("model.npz");
    let o = cpu_fit(&x, &y, s(&model), &["--n-feat", "30"]);
    assert!(o.status.success());
    (model, fixture("small_select", "X_test.npy"))
}

/// The members of a zip archive (name, bytes).
fn zip_members(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut v).unwrap();
            (f.name().to_string(), v)
        })
        .collect()
}

/// §2.10 A model re-saved by numpy (`np.savez_compressed`, with an extra text member) predicts
/// exactly as the original.
#[test]
fn models_resaved_by_numpy_are_read() {
    let d = tmpdir("resaved");
    let (model, xt) = fit_model(&d);
    let predict = |m: &Path, out: &Path| cpu_predict(s(m), &xt, s(out));
    let p1 = d.join("p1.npy");
    assert!(predict(&model, &p1).status.success());
    let mut members: Vec<(String, Vec<u8>, bool)> = zip_members(&model)
        .into_iter()
        .map(|(n, b)| (n, b, true))
        .collect();
    // numpy writes text as a unicode array: np.array("fitted on subject 3")
    let note: Vec<u8> = "fitted on subject 3"
        .chars()
        .flat_map(|c| (c as u32).to_le_bytes())
        .collect();
    members.push((
        "note.npy".into(),
        npy_bytes(
            "{'descr': '<U19', 'fortran_order': False, 'shape': (), }",
            &note,
        ),
        true,
    ));
    let resaved = d.join("resaved.npz");
    let refs: Vec<(&str, Vec<u8>, bool)> = members
        .iter()
        .map(|(n, b, z)| (n.as_str(), b.clone(), *z))
        .collect();
    write_zip(&resaved, &refs);
    let p2 = d.join("p2.npy");
    let o = predict(&resaved, &p2);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
}

/// §2.11 One precise line for each malformed input.
#[test]
fn messages_are_one_precise_line() {
    let d = tmpdir("msg");
    let out = d.join("out.npz");
    let y = fixture("small_select", "Y_train.npy");
    let fit = |x: &Path| {
        bin()
            .args([
                "ridge",
                "fit",
                "--device",
                "cpu",
                "--x",
                s(x),
                "--y",
                &y,
                "--out",
                s(&out),
            ])
            .output()
            .unwrap()
    };
    // a malformed header
    let bad = d.join("bad.npy");
    std::fs::write(
        &bad,
        npy_bytes(
            "{'descr': '<f8', 'fortran_order': Maybe, 'shape': (2, 2), }",
            &[0; 32],
        ),
    )
    .unwrap();
    fails_with(
        &fit(&bad),
        &out,
        "malformed .npy header: fortran_order is 'Maybe'",
    );
    // a path with a newline stays on one line
    let nl = d.join("with\nnewline.npy");
    fails_with(&fit(&nl), &out, "with\\nnewline.npy");
    // junk after a valid array (512 MiB, sparse) is refused from the header alone
    let junk = d.join("junk.npy");
    std::fs::write(
        &junk,
        npy_bytes(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }",
            &[0; 32],
        ),
    )
    .unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&junk).unwrap();
    f.set_len(f.metadata().unwrap().len() + (512 << 20))
        .unwrap();
    drop(f);
    let t = Instant::now();
    fails_with(
        &fit(&junk),
        &out,
        "536870912 bytes of unexpected data after the array",
    );
    assert!(t.elapsed() < Duration::from_secs(30));
    // f32 overflow of a finite value
    let x = neurofit::io::read_npy(Path::new(&fixture("small_select", "X_train.npy"))).unwrap();
    let mut x = x;
    x[[0, 0]] = 1e300;
    let big = d.join("big.npy");
    neurofit::io::write_npy(&big, &x).unwrap();
    let o = bin()
        .args([
            "ridge",
            "fit",
            "--device",
            "cpu",
            "--dtype",
            "f32",
            "--x",
            s(&big),
            "--y",
            &y,
            "--out",
            s(&out),
        ])
        .output()
        .unwrap();
    fails_with(&o, &out, "overflows float32");
    // a CRC-mismatched member, and a member whose shape overflows
    let (model, xt) = fit_model(&d);
    let pred = d.join("p.npy");
    let predict = |m: &Path| cpu_predict(s(m), &xt, s(&pred));
    let mut bytes = std::fs::read(&model).unwrap();
    let w = bytes.windows(5).position(|w| w == b"W.npy").unwrap();
    let magic = w + bytes[w..]
        .windows(6)
        .position(|m| m == b"\x93NUMPY")
        .unwrap();
    bytes[magic + 128 + 3] ^= 0x55; // a byte of W's data, inside the stored member
    let corrupt = d.join("corrupt.npz");
    std::fs::write(&corrupt, bytes).unwrap();
    fails_with(
        &predict(&corrupt),
        &pred,
        "member W is corrupt: its CRC-32 checksum does not match",
    );
    let overflow = d.join("overflow.npz");
    let mut members: Vec<(String, Vec<u8>, bool)> = zip_members(&model)
        .into_iter()
        .map(|(n, b)| (n, b, false))
        .collect();
    for m in members.iter_mut().filter(|m| m.0 == "W.npy") {
        m.1 = npy_bytes(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }",
            &[],
        );
    }
    let refs: Vec<(&str, Vec<u8>, bool)> = members
        .iter()
        .map(|(n, b, z)| (n.as_str(), b.clone(), *z))
        .collect();
    write_zip(&overflow, &refs);
    fails_with(
        &predict(&overflow),
        &pred,
        "member W: the header's shape [4611686018427387904, 4] of <f8 overflows",
    );
}

/// §2.7 One unit per chunk gives the same model, bit for bit, as no chunking.
#[test]
fn chunk_size_one_is_bitwise_identical() {
    let d = tmpdir("chunk1");
    let mut r = neurofit::simulate::Rng::new(5);
    let x = ndarray::Array2::from_shape_fn((400, 1500), |(_, j)| r.normal() + 0.1 * (j % 7) as f64);
    let y = ndarray::Array2::from_shape_fn((400, 6), |_| r.normal());
    let (xp, yp) = (d.join("x.npy"), d.join("y.npy"));
    neurofit::io::write_npy(&xp, &x.into_dyn()).unwrap();
    neurofit::io::write_npy(&yp, &y.into_dyn()).unwrap();
    let fit = |chunk: &str, out: &Path| {
        let extra = ["--n-feat", "10", "--alpha", "3", "--chunk-size", chunk];
        let o = cpu_fit(s(&xp), s(&yp), s(out), &extra);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        neurofit::ridge::RidgeModel::load(out).unwrap()
    };
    let full = fit("0", &d.join("full.npz"));
    let one = fit("1", &d.join("one.npz"));
    let bits = |a: &ndarray::ArrayD<f64>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert!(
        bits(&full.w) == bits(&one.w),
        "W differs with one unit per chunk"
    );
    assert!(
        bits(&full.b) == bits(&one.b),
        "b differs with one unit per chunk"
    );
}
