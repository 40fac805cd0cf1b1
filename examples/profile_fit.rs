//! Prints the stage timings of one FastL2LiR fit on simulated data.
//! `cargo run --release --example profile_fit -- N F U K [f64|f32] [device]`
use neurofit::ridge::{fit, FitParams};

fn main() -> neurofit::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (n, f, u, k) = (num(0, 1000), num(1, 15000), num(2, 1000), num(3, 500));
    let dtype = a.get(4).map(|s| s.parse()).transpose()?.unwrap_or_default();
    let device = a.get(5).map(|s| s.parse()).transpose()?.unwrap_or_default();
    let sim = neurofit::simulate::simulate(n, f, u, 1);
    let p = FitParams {
        alpha: 100.0,
        n_feat: k,
        dtype,
        device,
        ..FitParams::default()
    };
    let before = cpu_seconds();
    let t = std::time::Instant::now();
    let out = fit(sim.x.view(), sim.y.view().into_dyn(), &p)?;
    println!(
        "device {} total {:.3} s",
        out.device,
        t.elapsed().as_secs_f64()
    );
    let after = cpu_seconds();
    println!(
        "fit CPU time: user {:.2} s, system {:.2} s (the kernel: mostly page faults here)",
        after.0 - before.0,
        after.1 - before.1
    );
    if let Some(sel) = &out.selected {
        let mut u: Vec<u32> = sel.iter().copied().collect();
        u.sort_unstable();
        u.dedup();
        println!("union of selected features: {} of {f}", u.len());
    }
    for (s, d) in out.timings {
        println!("  {s}: {:.3} s", d.as_secs_f64());
    }
    Ok(())
}

/// This process's (user, system) CPU seconds so far.
fn cpu_seconds() -> (f64, f64) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getrusage writes the struct it is given and nothing else.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
        let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        (s(u.ru_utime), s(u.ru_stime))
    }
    #[cfg(not(target_os = "linux"))]
    (0.0, 0.0)
}
