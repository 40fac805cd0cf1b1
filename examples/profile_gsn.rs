//! Prints the stage timings of perform_gsn on simulated low-rank data.
//! `cargo run --release --example profile_gsn -- N [C] [T] [device]`
use ndarray::{Array2, Array3};
use neurofit::demo::Rng;

fn main() -> neurofit::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (n, c, t) = (num(0, 1000), num(1, 200), num(2, 3));
    let device = a.get(3).map(|s| s.parse()).transpose()?.unwrap_or_default();
    let mut r = Rng::new(n as u64);
    let basis = Array2::from_shape_fn((n, 10), |_| r.normal());
    let sig = Array2::from_shape_fn((10, c), |_| r.normal());
    let s = basis.dot(&sig) / 10f64.sqrt();
    let data = Array3::from_shape_fn((n, c, t), |(i, ci, _)| s[(i, ci)] + 1.5 * r.normal());
    let opt = neurofit::gsn::GsnOptions {
        device,
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let res = neurofit::gsn::perform_gsn(data.view(), &opt)?;
    println!(
        "device {} total {:.3} s, levels {} / {}, numiters {}",
        res.device,
        t0.elapsed().as_secs_f64(),
        res.shrinklevel_n,
        res.shrinklevel_d,
        res.numiters
    );
    for (stage, d) in res.timings {
        println!("  {stage}: {:.3} s", d.as_secs_f64());
    }
    Ok(())
}
