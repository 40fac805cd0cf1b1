//! Prints the stage timings of perform_gsn on simulated low-rank data.
//! `cargo run --release --example profile_gsn -- N [C] [T] [device]`

fn main() -> neurofit::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (n, c, t) = (num(0, 1000), num(1, 200), num(2, 3));
    let device = a.get(3).map(|s| s.parse()).transpose()?.unwrap_or_default();
    let data = neurofit::simulate::gsn_responses(n, c, t, 1.5, n as u64);
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
