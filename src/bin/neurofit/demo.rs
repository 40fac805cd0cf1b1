//! `neurofit demo`: the main job on built-in data. Simulated fMRI-like decoding data through
//! FastL2LiR (fit, predict, held-out accuracy), then simulated responses through GSN.

use ndarray::Ix2;
use neurofit::ridge::{self, FitParams};
use neurofit::{Device, Result};
use std::time::Instant;

/// `neurofit demo`: FastL2LiR fit + predict, then GSN, on simulated data.
pub fn run(device: &str) -> Result<()> {
    let device: Device = crate::parse_device(device)?;
    let (n_train, n_test, voxels, units, k) = (1000, 200, 3000, 300, 200);
    println!("neurofit demo: FastL2LiR on simulated fMRI-like data");
    println!(
        "  {n_train} training + {n_test} test samples, {voxels} voxels -> {units} units, n_feat={k}, alpha=100"
    );
    let t = Instant::now();
    let sim = neurofit::simulate::simulate(n_train + n_test, voxels, units, 7);
    let x = sim.x.slice(ndarray::s![..n_train, ..]).to_owned();
    let y = sim.y.slice(ndarray::s![..n_train, ..]).to_owned();
    let xt = sim.x.slice(ndarray::s![n_train.., ..]).to_owned();
    let yt = sim.y.slice(ndarray::s![n_train.., ..]).to_owned();
    println!("  simulate: {:.3} s", t.elapsed().as_secs_f64());
    let params = FitParams {
        alpha: 100.0,
        n_feat: k,
        device: device.clone(),
        ..FitParams::default()
    };
    let out = ridge::fit(x.view(), y.view().into_dyn(), &params)?;
    println!("  device: {}", out.device);
    for (stage, d) in &out.timings {
        println!("  {stage}: {:.3} s", d.as_secs_f64());
    }
    let t = Instant::now();
    let pred = out.model.predict(xt.view(), &device)?;
    println!("  predict: {:.3} s", t.elapsed().as_secs_f64());
    let pred = pred.into_dimensionality::<Ix2>().expect("2-D");
    let acc = ridge::mean_unit_correlation(pred.view(), yt.view());
    println!("  decoding accuracy (mean per-unit correlation on held-out samples): {acc:.4}");
    demo_gsn(&device)
}

fn demo_gsn(device: &Device) -> Result<()> {
    let (n, c, t) = (200, 200, 3);
    println!("neurofit demo: GSN on simulated responses ({n} units x {c} conditions x {t} trials)");
    let data = neurofit::simulate::gsn_responses(n, c, t, 1.5, 11);
    let opt = neurofit::gsn::GsnOptions {
        device: device.clone(),
        ..Default::default()
    };
    let t0 = Instant::now();
    let r = neurofit::gsn::perform_gsn(data.view(), &opt)?;
    println!("  device (scorer): {}", r.device);
    for (stage, d) in &r.timings {
        println!("  {stage}: {:.3} s", d.as_secs_f64());
    }
    println!("  total: {:.3} s", t0.elapsed().as_secs_f64());
    let mut v: Vec<f64> = r.ncsnr.to_vec();
    v.sort_by(f64::total_cmp);
    println!(
        "  ncsnr: median {:.3}, min {:.3}, max {:.3} (true signal/noise sd ratio ≈ {:.3})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1],
        1.0 / 1.5
    );
    println!(
        "  chosen shrinkage: noise {}, data {}; biconvex iterations {}",
        r.shrinklevel_n, r.shrinklevel_d, r.numiters
    );
    Ok(())
}
