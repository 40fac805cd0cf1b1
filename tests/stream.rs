//! Out-of-core, sparse and sharded FastL2LiR (issue 9), on the CPU and on the GPU: Y read from a
//! `.npy` chunk by chunk gives the in-memory fit bit for bit; shards merged give the one-process
//! fit bit for bit; sparse models predict like dense ones; merges refuse missing and foreign
//! parts; peak memory stays near the budget for a Y larger than it.

mod common;

use common::*;
use ndarray::{Array2, ArrayD};
use neurofit::ridge::stream::{self, Model, Shard};
use neurofit::ridge::targets::{NpyTargets, Targets};
use neurofit::ridge::{fit, FitParams};
use neurofit::simulate::Rng;
use neurofit::{Device, Dtype};
use std::path::{Path, PathBuf};

fn bits(a: &ArrayD<f64>) -> Vec<u64> {
    a.iter().map(|v| v.to_bits()).collect()
}

/// X (n × f) and an N-d Y (n × 3 × 5 × 7 = 105 units) with a few informative features.
fn data(n: usize, f: usize, seed: u64) -> (Array2<f64>, ArrayD<f64>) {
    let mut r = Rng::new(seed);
    let x = Array2::from_shape_fn((n, f), |(_, j)| r.normal() + 0.1 * (j % 5) as f64);
    let w = Array2::from_shape_fn(
        (f, 105),
        |_| if r.uniform() < 0.05 { r.normal() } else { 0.0 },
    );
    let y = x.dot(&w) + Array2::from_shape_fn((n, 105), |_| 0.3 * r.normal());
    // the flat units become (3, 5, 7) in Fortran order
    let y3 = neurofit::ridge::shape::unflatten_units(y.view(), &[3, 5, 7]);
    (x, y3)
}

fn params(dev: &Device, dtype: Dtype) -> FitParams {
    FitParams {
        alpha: 5.0,
        n_feat: 12,
        dtype,
        device: dev.clone(),
        ..FitParams::default()
    }
}

fn write(d: &Path, name: &str, a: &ArrayD<f64>) -> PathBuf {
    let p = d.join(name);
    neurofit::io::write_npy(&p, a).unwrap();
    p
}

/// Y in C order and (written transposed as a Fortran-order file) read by chunks equals the
/// in-memory flattening.
fn npy_targets_read_like_memory() {
    let d = tmpdir("targets");
    let (_, y) = data(30, 20, 1);
    let flat = neurofit::ridge::shape::flatten_units(y.view());
    let c = NpyTargets::open(&write(&d, "c.npy", &y)).unwrap();
    // a Fortran-order file: the same array stored column-major
    let fpath = d.join("f.npy");
    let dict = format!(
        "{{'descr': '<f8', 'fortran_order': True, 'shape': ({}, {}, {}, {}), }}",
        30, 3, 5, 7
    );
    // y.t() iterates the reversed axes in C order = y in Fortran order
    let data: Vec<u8> = y.t().iter().flat_map(|v| v.to_le_bytes()).collect();
    let bytes = npy_bytes(&dict, &data);
    std::fs::write(&fpath, bytes).unwrap();
    let f = NpyTargets::open(&fpath).unwrap();
    for t in [&c as &dyn Targets, &f] {
        assert_eq!(t.units(), 105);
        for r in [0..105, 0..1, 17..64, 104..105] {
            let got = t.read(r.clone()).unwrap();
            assert_eq!(got, flat.slice(ndarray::s![.., r]).to_owned());
        }
    }
}

/// One process reading Y by chunks (dense or sparse) equals the in-memory fit bit for bit, in
/// f64 and f32.
fn streamed_fit_equals_in_memory(dev: Device) {
    for dtype in [Dtype::F64, Dtype::F32] {
        streamed_fit_equals_in_memory_in(&dev, dtype);
    }
}

fn streamed_fit_equals_in_memory_in(dev: &Device, dtype: Dtype) {
    let d = tmpdir(&format!(
        "mem-{}-{dtype}",
        dev.to_string().replace(':', "_")
    ));
    let (x, y) = data(80, 60, 2);
    let yp = write(&d, "y.npy", &y);
    let p = params(dev, dtype);
    let mem = fit(x.view(), y.view(), &p).unwrap();
    let t = NpyTargets::open(&yp).unwrap();
    let mut small = p.clone();
    small.chunk_size = 7; // many chunks
    let Model::Dense(dense) = stream::fit_part(x.view(), &t, &small, Shard::ALL, false)
        .unwrap()
        .into_model()
        .unwrap()
    else {
        panic!("dense")
    };
    assert_eq!(bits(&dense.w), bits(&mem.model.w));
    assert_eq!(bits(&dense.b), bits(&mem.model.b));
    let Model::Sparse(sparse) = stream::fit_part(x.view(), &t, &small, Shard::ALL, true)
        .unwrap()
        .into_model()
        .unwrap()
    else {
        panic!("sparse")
    };
    let back = sparse.to_dense().unwrap();
    assert_eq!(bits(&back.w), bits(&mem.model.w));
    assert_eq!(sparse.idx, mem.selected.clone().unwrap());
    // predictions agree (the sparse one sums only the selected products)
    let xt = x.slice(ndarray::s![..10, ..]).to_owned();
    let pd = mem.model.predict(xt.view(), &Device::Cpu).unwrap();
    let ps = sparse.predict(xt.view(), dev).unwrap();
    let tol = if dtype == Dtype::F64 { 1e-12 } else { 1e-5 };
    assert_close("sparse predict", &ps, &pd, tol);
    // an f32 model sees X through its f32 rounding only (rounded as it is uploaded)
    let rounded = xt.mapv(|v| dtype.round(v));
    let pr = sparse.predict(rounded.view(), dev).unwrap();
    assert_eq!(bits(&pr), bits(&ps), "X rounded first or on upload");
    // dense -> sparse -> dense is the identity on W
    let again = stream::SparseModel::from_dense(&mem.model).unwrap();
    assert_eq!(bits(&again.to_dense().unwrap().w), bits(&mem.model.w));
}

/// A dense W streamed into the model file chunk by chunk equals the in-memory fit bit for bit,
/// and dense parts streamed into part files merge to it.
fn dense_w_streamed_to_file_equals_in_memory(dev: Device) {
    let d = tmpdir(&format!("dense-{}", dev.to_string().replace(':', "_")));
    let (x, y) = data(60, 45, 6);
    let t = NpyTargets::open(&write(&d, "y.npy", &y)).unwrap();
    for dtype in [Dtype::F64, Dtype::F32] {
        let mut p = params(&dev, dtype);
        let mem = fit(x.view(), y.view(), &p).unwrap();
        p.chunk_size = 9;
        let path = d.join(format!("model-{dtype}.npz"));
        stream::fit_dense_to_file(x.view(), &t, &p, Shard::ALL, &path, false).unwrap();
        let Model::Dense(m) = Model::load(&path).unwrap() else {
            panic!("dense")
        };
        assert_eq!(m.w.shape(), mem.model.w.shape());
        assert_eq!(bits(&m.w), bits(&mem.model.w), "{dtype} W");
        assert_eq!(bits(&m.b), bits(&mem.model.b), "{dtype} b");
        let dir = d.join(format!("parts-{dtype}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..3 {
            let s = Shard::new(i, 3).unwrap();
            stream::fit_dense_to_file(x.view(), &t, &p, s, &s.part_path(&dir), true).unwrap();
        }
        let Model::Dense(merged) = stream::merge(&dir, false).unwrap().model else {
            panic!("dense")
        };
        assert_eq!(bits(&merged.w), bits(&mem.model.w), "{dtype} merged W");
        assert_eq!(bits(&merged.b), bits(&mem.model.b), "{dtype} merged b");
    }
}

/// Shards merged give the one-process model bit for bit (dense and sparse, f64 and f32).
fn shards_merge_to_the_one_process_fit(dev: Device) {
    let d = tmpdir(&format!("shards-{}", dev.to_string().replace(':', "_")));
    let (x, y) = data(70, 50, 3);
    let t = NpyTargets::open(&write(&d, "y.npy", &y)).unwrap();
    for dtype in [Dtype::F64, Dtype::F32] {
        let p = params(&dev, dtype);
        for sparse in [false, true] {
            let whole = stream::fit_part(x.view(), &t, &p, Shard::ALL, sparse)
                .unwrap()
                .into_model()
                .unwrap();
            let dir = d.join(format!("parts-{dtype}-{sparse}"));
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..4 {
                let s = Shard::new(i, 4).unwrap();
                stream::fit_part(x.view(), &t, &p, s, sparse)
                    .unwrap()
                    .save(&s.part_path(&dir))
                    .unwrap();
            }
            let merged = stream::merge(&dir, false).unwrap().model;
            match (whole, merged) {
                (Model::Dense(a), Model::Dense(b)) => {
                    assert_eq!(bits(&a.w), bits(&b.w));
                    assert_eq!(bits(&a.b), bits(&b.b));
                }
                (Model::Sparse(a), Model::Sparse(b)) => assert_eq!(a, b),
                _ => panic!("the merged form differs"),
            }
        }
    }
}

/// A missing or foreign part is an error naming it.
fn merge_refuses_missing_and_foreign_parts() {
    let d = tmpdir("foreign");
    let (x, y) = data(40, 30, 4);
    let t = NpyTargets::open(&write(&d, "y.npy", &y)).unwrap();
    let dir = d.join("parts");
    std::fs::create_dir_all(&dir).unwrap();
    let p = params(&Device::Cpu, Dtype::F64);
    for i in [0, 2] {
        let s = Shard::new(i, 3).unwrap();
        stream::fit_part(x.view(), &t, &p, s, true)
            .unwrap()
            .save(&s.part_path(&dir))
            .unwrap();
    }
    let e = stream::merge(&dir, false).unwrap_err().to_string();
    assert!(
        e.contains("missing 1 of 3 parts: part-00001-of-00003.npz"),
        "{e}"
    );
    let mut other = p.clone();
    other.alpha = 6.0;
    let s = Shard::new(1, 3).unwrap();
    stream::fit_part(x.view(), &t, &other, s, true)
        .unwrap()
        .save(&s.part_path(&dir))
        .unwrap();
    let e = stream::merge(&dir, false).unwrap_err().to_string();
    assert!(
        e.contains("part-00001-of-00003.npz") && e.contains("foreign part"),
        "{e}"
    );
}

/// Through the CLI: shards, skip of a complete shard, --force, merge, predict on the directory,
/// `--shard slurm` from the array-task variables.
fn cli_shards_skip_force_merge_predict() {
    let d = tmpdir("cli");
    let (x, y) = data(60, 40, 5);
    let xp = write(&d, "x.npy", &x.clone().into_dyn());
    let yp = write(&d, "y.npy", &y);
    let dir = d.join("parts");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let o = bin()
            .args([
                "ridge", "fit", "--device", "cpu", "--n-feat", "8", "--alpha", "2",
            ])
            .args(["--x", &s(&xp), "--y", &s(&yp)])
            .args(extra)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let out = s(&dir);
    run(&["--sparse", "--shard", "0/3", "--out", &out], &[]);
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "11"),
        ("SLURM_ARRAY_TASK_MIN", "10"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
    ];
    run(&["--sparse", "--shard", "slurm", "--out", &out], &slurm);
    assert!(Shard::new(1, 3).unwrap().part_path(&dir).exists());
    run(&["--sparse", "--shard", "2/3", "--out", &out], &[]);
    let again = run(&["--sparse", "--shard", "2/3", "--out", &out], &[]);
    assert!(
        again.contains("skipped"),
        "a complete shard must be skipped: {again}"
    );
    let forced = run(
        &["--sparse", "--shard", "2/3", "--out", &out, "--force"],
        &[],
    );
    assert!(!forced.contains("skipped"));
    // an f32 fit of f64 inputs: the part's fingerprint (of X rounded to f32) is the one the
    // re-run computes, so the complete shard is skipped too
    let out32 = s(&d.join("parts32"));
    let f32_shard = [
        "--dtype", "f32", "--sparse", "--shard", "0/2", "--out", &out32,
    ];
    run(&f32_shard, &[]);
    let again = run(&f32_shard, &[]);
    assert!(
        again.contains("skipped"),
        "a complete f32 shard must be skipped: {again}"
    );
    let whole = d.join("whole.npz");
    run(&["--sparse", "--out", &s(&whole)], &[]);
    let merged = d.join("merged.npz");
    let o = bin()
        .args(["ridge", "merge", &out, "--out", &s(&merged)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (Model::Sparse(a), Model::Sparse(b)) =
        (Model::load(&whole).unwrap(), Model::load(&merged).unwrap())
    else {
        panic!("sparse models")
    };
    assert_eq!(a, b);
    let pred_dir = d.join("pd.npy");
    let pred_file = d.join("pf.npy");
    for (m, p) in [(&out, &pred_dir), (&s(&merged), &pred_file)] {
        let o = bin()
            .args([
                "ridge",
                "predict",
                "--device",
                "cpu",
                "--model",
                m,
                "--x",
                &s(&xp),
                "--out",
                &s(p),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(
        std::fs::read(&pred_dir).unwrap(),
        std::fs::read(&pred_file).unwrap()
    );
    // a merge with a part missing writes nothing
    std::fs::remove_file(Shard::new(1, 3).unwrap().part_path(&dir)).unwrap();
    let bad = d.join("bad.npz");
    let o = bin()
        .args(["ridge", "merge", &out, "--out", &s(&bad)])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("part-00001-of-00003.npz"));
    assert!(!bad.exists());
}

/// A Y file larger than the budget is streamed: the child's peak RSS stays far below Y's f64
/// size, and the fit equals the in-memory one on the same units.
#[cfg(target_os = "linux")]
fn peak_memory_follows_the_budget_not_y() {
    let d = tmpdir("rss");
    let mut r = Rng::new(9);
    let (n, f, u) = (200usize, 100usize, 60_000usize);
    let x = Array2::from_shape_fn((n, f), |_| r.normal());
    let y = Array2::from_shape_fn((n, u), |_| r.normal() as f32);
    let xp = write(&d, "x.npy", &x.clone().into_dyn());
    let yp = d.join("y.npy");
    neurofit::io::write_npy(&yp, &y.clone().into_dyn()).unwrap();
    let out = d.join("m.npz");
    let sub = y.slice(ndarray::s![.., ..500]).mapv(f64::from).into_dyn();
    drop(y);
    let y_f64 = (n * u * 8) as u64;
    let dense_out = d.join("dense.npz");
    for (form, out) in [("--sparse", &out), ("--chunk-size=0", &dense_out)] {
        let mut cmd = bin();
        cmd.args([
            "ridge",
            "fit",
            "--quiet",
            "--device",
            "cpu",
            "--n-feat",
            "10",
            form,
            "--dtype",
            "f32",
            "--max-memory",
            "16MB",
            "--x",
            xp.to_str().unwrap(),
            "--y",
            yp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let (ok, rss) = peak_rss(cmd);
        assert!(ok && rss > 0, "{form}: the fit failed");
        assert!(
            rss < y_f64 / 2,
            "{form}: peak RSS {rss} bytes for a Y of {y_f64} bytes as f64 under a 16 MB budget"
        );
    }
    // the first 500 units equal an in-memory fit of those units
    let Model::Sparse(m) = Model::load(&out).unwrap() else {
        panic!("sparse")
    };
    let p = FitParams {
        n_feat: 10,
        dtype: Dtype::F32,
        device: Device::Cpu,
        ..FitParams::default()
    };
    let mem = fit(x.view(), sub.view(), &p).unwrap();
    assert_eq!(m.idx.slice(ndarray::s![..500, ..]), mem.selected.unwrap());
    let wm = mem.model.w_flat();
    for u in 0..500 {
        for (r, &j) in m.idx.row(u).iter().enumerate() {
            assert_eq!(
                m.weight[(u, r)].to_bits(),
                wm[(j as usize, u)].to_bits(),
                "unit {u}"
            );
        }
    }
    assert_eq!(m.n_features, f);
}

fn main() {
    let mut suite = Suite::new();
    suite.test("npy_targets_read_like_memory", npy_targets_read_like_memory);
    suite.each_backend(
        "streamed_fit_equals_in_memory",
        true,
        streamed_fit_equals_in_memory,
    );
    suite.each_backend(
        "shards_merge_to_the_one_process_fit",
        true,
        shards_merge_to_the_one_process_fit,
    );
    suite.each_backend(
        "dense_w_streamed_to_file_equals_in_memory",
        true,
        dense_w_streamed_to_file_equals_in_memory,
    );
    suite.test(
        "merge_refuses_missing_and_foreign_parts",
        merge_refuses_missing_and_foreign_parts,
    );
    suite.test(
        "cli_shards_skip_force_merge_predict",
        cli_shards_skip_force_merge_predict,
    );
    #[cfg(target_os = "linux")]
    suite.test(
        "peak_memory_follows_the_budget_not_y",
        peak_memory_follows_the_budget_not_y,
    );
    suite.run()
}
