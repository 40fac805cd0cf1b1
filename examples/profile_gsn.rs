//! Prints the stage timings of perform_gsn on simulated low-rank data.
//! `cargo run --release --example profile_gsn -- N [C] [T] [device] [repeats]`: with repeats > 1
//! the call runs that many times in this process and every total is printed (the stages are the
//! last run's).

fn main() -> neurofit::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (n, c, t) = (num(0, 1000), num(1, 200), num(2, 3));
    let device = a.get(3).map(|s| s.parse()).transpose()?.unwrap_or_default();
    let repeats = num(4, 1).max(1);
    let data = neurofit::simulate::gsn_responses(n, c, t, 1.5, n as u64);
    let opt = neurofit::gsn::GsnOptions {
        device,
        ..Default::default()
    };
    let mut totals = Vec::new();
    let mut res = None;
    for _ in 0..repeats {
        let t0 = std::time::Instant::now();
        let r = neurofit::gsn::perform_gsn(data.view(), &opt)?;
        totals.push(t0.elapsed().as_secs_f64());
        res = Some(r);
    }
    let res = res.expect("repeats ≥ 1");
    let shown: Vec<String> = totals.iter().map(|s| format!("{s:.4}")).collect();
    let mut sorted = totals.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "device {} total {} s (median {:.4}), levels {} / {}, numiters {}",
        res.device,
        shown.join(", "),
        sorted[sorted.len() / 2],
        res.shrinklevel_n,
        res.shrinklevel_d,
        res.numiters
    );
    for (stage, d) in res.timings {
        println!("  {stage}: {:.4} s", d.as_secs_f64());
    }
    Ok(())
}
