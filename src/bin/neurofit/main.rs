//! The `neurofit` command line: parses arguments, calls the library and prints. FastL2LiR fits
//! and predictions and GSN on `.npy`/`.npz` files, device listing, the demo and the benchmark.

mod bench;
mod demo;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Ix2;
use neurofit::device::memory;
use neurofit::io;
use neurofit::ridge::stream::{self, Model, Shard};
use neurofit::ridge::targets::{NpyTargets, Targets};
use neurofit::ridge::{self, FitParams};
use neurofit::{Device, Dtype, Error, Result};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "neurofit",
    version,
    about = "FastL2LiR and GSN on any GPU, with a CPU fallback"
)]
struct Cli {
    /// Print informational messages (device choice, chunking) on stderr.
    #[arg(long, global = true)]
    verbose: bool,
    /// No progress bar.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// FastL2LiR ridge regression with per-unit feature selection.
    Ridge {
        #[command(subcommand)]
        cmd: RidgeCmd,
    },
    /// GSN (perform_gsn): signal and noise covariances with cross-validated shrinkage, ncsnr.
    Gsn(GsnArgs),
    /// Benchmark every kernel and model on the CPU and every hardware GPU; writes JSON, CSV, SVG.
    Bench(BenchArgs),
    /// List GPU adapters and the CPU backend.
    Devices,
    /// Fit and predict on simulated fMRI-like data; prints device, stage timings and accuracy.
    Demo {
        /// Device: auto, cpu, gpu, gpu:N or gpu:NAME.
        #[arg(long, env = "NEUROFIT_DEVICE", default_value = "auto")]
        device: String,
    },
}

#[derive(Subcommand)]
enum RidgeCmd {
    /// Fit a model and write it as .npz (W, b, S, and the options predict needs).
    Fit(FitArgs),
    /// Predict with a saved model (dense, sparse, or a shard directory); writes (n, s1..sk).
    Predict(PredictArgs),
    /// Assemble the model of a shard directory (every part present, all from the same inputs).
    Merge(MergeArgs),
}

#[derive(Args)]
struct MergeArgs {
    /// The directory the shards wrote (`ridge fit --shard I/N --out DIR`).
    dir: PathBuf,
    /// Output model file (.npz).
    #[arg(long)]
    out: PathBuf,
    /// Write a dense W even when the shards are sparse.
    #[arg(long)]
    dense: bool,
}

#[derive(Args)]
struct FitArgs {
    /// Training inputs X (samples × features), .npy.
    #[arg(long)]
    x: PathBuf,
    /// Training targets Y (samples × units…), .npy.
    #[arg(long)]
    y: PathBuf,
    /// Output model file (.npz); with --shard, the directory the parts go to.
    #[arg(long)]
    out: PathBuf,
    /// Store each unit's selected features and weights instead of a dense W.
    #[arg(long)]
    sparse: bool,
    /// Fit only the I-th of N balanced ranges of units (I/N, or `slurm` for an array task).
    #[arg(long)]
    shard: Option<String>,
    /// Refit a shard whose complete part already exists.
    #[arg(long)]
    force: bool,
    /// Ridge penalty (also on the bias).
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// Features per unit; 0 = all (no selection).
    #[arg(long, default_value_t = 0)]
    n_feat: usize,
    /// Units per chunk (≤ 0 = none, as in the reference); results do not depend on it.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    chunk_size: i64,
    /// Precision: f64 or f32 (default f64; f32 when an input is float16).
    #[arg(long)]
    dtype: Option<String>,
    /// Device: auto, cpu, gpu, gpu:N or gpu:NAME.
    #[arg(long, env = "NEUROFIT_DEVICE", default_value = "auto")]
    device: String,
    /// Memory budget, e.g. 2GiB (default: from the platform).
    #[arg(long)]
    max_memory: Option<String>,
    /// Record the selection mask S (per-unit path).
    #[arg(long)]
    save_select_feat: bool,
    /// norm1|norm2|std1|std1mean0|norm1mean0|norm2mean0 (per-unit path).
    #[arg(long)]
    spatial_norm: Option<String>,
    /// remove_nan: drop each unit's NaN rows (per-unit path).
    #[arg(long)]
    select_sample: Option<String>,
}

#[derive(Args)]
struct PredictArgs {
    /// Model written by `ridge fit`.
    #[arg(long)]
    model: PathBuf,
    /// Inputs X (samples × features), .npy.
    #[arg(long)]
    x: PathBuf,
    /// Output predictions (.npy).
    #[arg(long)]
    out: PathBuf,
    /// Device: auto, cpu, gpu, gpu:N or gpu:NAME.
    #[arg(long, env = "NEUROFIT_DEVICE", default_value = "auto")]
    device: String,
}

#[derive(Args)]
struct GsnArgs {
    /// Responses, units × conditions × trials (.npy; NaN = missing).
    #[arg(long)]
    data: PathBuf,
    /// Output file (.npz, the reference's key names).
    #[arg(long)]
    out: PathBuf,
    /// Device for the shrinkage-NLL scorer: auto, cpu, gpu, gpu:N or gpu:NAME.
    #[arg(long, env = "NEUROFIT_DEVICE", default_value = "auto")]
    device: String,
    /// Precision: f64 or f32 (default f64; f32 when an input is float16).
    #[arg(long)]
    dtype: Option<String>,
    /// Memory budget, e.g. 2GiB.
    #[arg(long)]
    max_memory: Option<String>,
    /// NaN handling: fast (whole-trial) or missing (per-unit).
    #[arg(long, default_value = "fast")]
    uneven: String,
    /// Score only the level 1.0 (no shrinkage).
    #[arg(long)]
    no_shrinkage: bool,
    /// Explicit comma-separated levels in [0, 1], e.g. 0,0.5,1.
    #[arg(long, allow_hyphen_values = true)]
    shrink_levels: Option<String>,
    /// Optional outputs: cN,cS,cNb,cSb,eigvecs_signal,eigvals_signal,eigvecs_difference,eigvals_difference.
    #[arg(long, default_value = "cN,cS,cNb,cSb")]
    returns: String,
}

#[derive(Args)]
struct BenchArgs {
    /// Small sizes, 3 repeats: under a minute on a 2-core CPU.
    #[arg(long)]
    quick: bool,
    /// Scale of the fc8-like ridge fit (default 1, or 0.05 with --quick).
    #[arg(long)]
    scale: Option<f64>,
    /// Timed repeats after one warm-up (default 5, or 3 with --quick).
    #[arg(long)]
    repeats: Option<usize>,
    /// Also run on software adapters (llvmpipe/lavapipe, SwiftShader, WARP).
    #[arg(long)]
    include_software: bool,
    /// Output folder for bench.json, bench.csv and bench.svg.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
}

struct StderrLogger {
    verbose: bool,
}

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn || (self.verbose && m.level() <= log::Level::Info)
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) && r.target().starts_with("neurofit") {
            let tag = match r.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                _ => "info",
            };
            eprintln!("{tag}: {}", r.args());
        }
    }
    fn flush(&self) {}
}

fn read_matrix(path: &Path, what: &str, budget: u64) -> Result<ndarray::Array2<f64>> {
    let a = io::read_npy_within(path, budget)?;
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix2>().map_err(|_| {
        Error::InvalidInput(format!(
            "{what} ({}) must be 2-D (samples × features), got shape {shape:?}",
            io::shown(path)
        ))
    })
}

fn progress_bar(quiet: bool) -> Option<ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} units")
            .expect("template")
            .progress_chars("=> "),
    );
    Some(pb)
}

/// The precision asked for, else f32 when any input is float16 (its values are exact in f32,
/// and f32 halves the memory and time of an f64 fit), else f64 as the references.
fn dtype_for(asked: Option<&str>, inputs: &[&Path]) -> Result<Dtype> {
    if let Some(d) = asked {
        return d.parse();
    }
    for p in inputs {
        if io::npy_kind(p)? == io::npy::Kind::F16 {
            log::info!(
                "{} is float16: fitting in f32 (--dtype f64 to override)",
                io::shown(p)
            );
            return Ok(Dtype::F32);
        }
    }
    Ok(Dtype::F64)
}

fn ridge_fit(a: FitArgs, quiet: bool) -> Result<()> {
    let dtype = dtype_for(a.dtype.as_deref(), &[&a.x, &a.y])?;
    let device = parse_device(&a.device)?;
    let max_memory = a
        .max_memory
        .as_deref()
        .map(memory::parse_size)
        .transpose()?;
    let spatial_norm = a.spatial_norm.as_deref().map(str::parse).transpose()?;
    let select_sample = a.select_sample.as_deref().map(str::parse).transpose()?;
    let budget = max_memory.unwrap_or_else(memory::default_cpu_budget);
    let x = read_matrix(&a.x, "X", budget)?;
    let pb = progress_bar(quiet);
    let progress: Option<ridge::Progress> = pb.clone().map(|pb| {
        Arc::new(move |done: usize, total: usize| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        }) as ridge::Progress
    });
    let params = FitParams {
        alpha: a.alpha,
        n_feat: a.n_feat,
        chunk_size: a.chunk_size.max(0) as usize,
        dtype,
        save_select_feat: a.save_select_feat,
        spatial_norm,
        select_sample,
        device,
        max_memory,
        keep_corr: false,
        progress,
        cancel: None,
    };
    let shard: Option<Shard> = a.shard.as_deref().map(str::parse).transpose()?;
    let streamed = 0 < params.n_feat && params.n_feat < x.ncols() && !params.per_unit_path();
    if streamed {
        // the selection path reads Y from its file chunk by chunk: Y never has to fit
        let y = NpyTargets::open(&a.y)?;
        return fit_streamed(&a, &x, &y, &params, shard, pb, quiet);
    }
    if a.sparse || shard.is_some() {
        return Err(Error::InvalidInput(
            "--sparse and --shard take the selection path: 0 < --n-feat < features, without --save-select-feat/--spatial-norm/--select-sample".into(),
        ));
    }
    let y = io::read_npy_within(&a.y, budget.saturating_sub(8 * x.len() as u64))?;
    let out = ridge::fit(x.view(), y.view(), &params)?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    out.model.save(&a.out, params.alpha, params.n_feat)?;
    if !quiet {
        eprintln!(
            "fitted {:?} on {} in {:.3} s; wrote {}",
            out.path,
            out.device,
            out.timings.iter().map(|t| t.1.as_secs_f64()).sum::<f64>(),
            io::shown(&a.out)
        );
    }
    Ok(())
}

/// The selection path with Y read by chunks: one process, or one shard of a directory.
fn fit_streamed(
    a: &FitArgs,
    x: &ndarray::Array2<f64>,
    y: &NpyTargets,
    params: &FitParams,
    shard: Option<Shard>,
    pb: Option<ProgressBar>,
    quiet: bool,
) -> Result<()> {
    let t = Instant::now();
    let target = match shard {
        Some(s) => {
            std::fs::create_dir_all(&a.out).map_err(|e| io::io_err(&a.out, e))?;
            let path = s.part_path(&a.out);
            let fp = stream::fingerprint(x.view(), y, params, a.sparse)?;
            if !a.force && stream::part_is_complete(&path, &fp) {
                if !quiet {
                    eprintln!(
                        "shard {}/{} is complete ({}); skipped (--force refits)",
                        s.index,
                        s.count,
                        io::shown(&path)
                    );
                }
                return Ok(());
            }
            path
        }
        None => a.out.clone(),
    };
    let whole = shard.unwrap_or(Shard::ALL);
    let units = whole.range(y.units()).len();
    let device = if a.sparse {
        let part = stream::fit_part(x.view(), y, params, whole, true)?;
        let device = part.device.clone();
        match shard {
            Some(_) => part.save(&target)?,
            None => part
                .into_model()?
                .save(&target, params.alpha, params.n_feat)?,
        }
        device
    } else {
        // W is written to the file chunk by chunk, never held whole
        stream::fit_dense_to_file(x.view(), y, params, whole, &target, shard.is_some())?
    };
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if !quiet {
        eprintln!(
            "fitted {units} units on {device} in {:.3} s; wrote {}",
            t.elapsed().as_secs_f64(),
            io::shown(&target)
        );
    }
    Ok(())
}

fn ridge_merge(a: MergeArgs, quiet: bool) -> Result<()> {
    let merged = stream::merge(&a.dir, a.dense)?;
    merged.model.save(&a.out, merged.alpha, merged.n_feat)?;
    if !quiet {
        eprintln!("merged {} into {}", io::shown(&a.dir), io::shown(&a.out));
    }
    Ok(())
}

fn ridge_predict(a: PredictArgs) -> Result<()> {
    let device = parse_device(&a.device)?;
    let budget = memory::default_cpu_budget();
    let model = Model::load(&a.model)?;
    let x = read_matrix(&a.x, "X", budget)?;
    let y = model.predict(x.view(), &device)?;
    match model.dtype() {
        Dtype::F64 => io::write_npy(&a.out, &y),
        Dtype::F32 => io::write_npy(&a.out, &y.mapv(|v| v as f32)),
    }
}

fn run_gsn(a: GsnArgs, quiet: bool) -> Result<()> {
    use neurofit::gsn::{GsnOptions, ReturnItem};
    let dtype = dtype_for(a.dtype.as_deref(), &[&a.data])?;
    let shrink_levels = a
        .shrink_levels
        .as_deref()
        .map(|s| {
            s.split(',')
                .map(|v| {
                    v.trim().parse::<f64>().map_err(|_| {
                        Error::InvalidInput(format!("shrink level '{v}' is not a number"))
                    })
                })
                .collect::<Result<Vec<f64>>>()
        })
        .transpose()?;
    let opt = GsnOptions {
        wantshrinkage: !a.no_shrinkage,
        shrink_levels,
        uneven: a.uneven.parse()?,
        returns: ReturnItem::parse_list(&a.returns)?,
        device: parse_device(&a.device)?,
        dtype,
        max_memory: a
            .max_memory
            .as_deref()
            .map(memory::parse_size)
            .transpose()?,
        cancel: None,
    };
    let raw = io::read_npy_within(
        &a.data,
        opt.max_memory.unwrap_or_else(memory::default_cpu_budget),
    )?;
    let shape = raw.shape().to_vec();
    let data = raw.into_dimensionality::<ndarray::Ix3>().map_err(|_| {
        Error::InvalidInput(format!(
            "data must be voxels x conditions x trials (3D), got shape {shape:?}"
        ))
    })?;
    let r = neurofit::gsn::perform_gsn(data.view(), &opt)?;
    r.save(&a.out, dtype)?;
    if !quiet {
        eprintln!(
            "GSN on {}: shrinklevelN {} shrinklevelD {} numiters {}; wrote {}",
            r.device,
            r.shrinklevel_n,
            r.shrinklevel_d,
            r.numiters,
            io::shown(&a.out)
        );
    }
    Ok(())
}

fn run_bench(a: BenchArgs, quiet: bool) -> Result<()> {
    let mut cfg = bench::BenchConfig::new(a.quick);
    if let Some(s) = a.scale {
        if !(s.is_finite() && s > 0.0 && s <= 4.0) {
            return Err(Error::InvalidInput(format!(
                "--scale must be in (0, 4], got {s}"
            )));
        }
        cfg.scale = s;
    }
    if let Some(r) = a.repeats {
        if r == 0 {
            return Err(Error::InvalidInput("--repeats must be at least 1".into()));
        }
        cfg.repeats = r;
    }
    cfg.include_software = a.include_software;
    let devices = bench::bench_devices(cfg.include_software);
    let total = bench::total_runs(&cfg, &devices);
    let pb = progress_bar(quiet);
    if let Some(pb) = &pb {
        pb.set_length(total as u64);
        pb.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
    }
    for d in &devices {
        eprintln!("device {}: {} ({}) {}", d.id, d.name, d.backend, d.driver);
    }
    let records = bench::run(&cfg, &devices, &|done, msg| {
        if let Some(pb) = &pb {
            pb.set_position(done as u64);
            pb.set_message(msg.to_string());
        }
    });
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    bench::output::write_all(&a.out, &cfg, &devices, &records)?;
    println!(
        "{:<16} {:>8} {:<8} {:<4} {:>11} {:>11} {:>11} {:>9} {:>9}",
        "kernel",
        "size",
        "device",
        "type",
        "median s",
        "kernel s",
        "min..max",
        "GFLOP/s",
        "rel err"
    );
    for r in &records {
        if let Some(e) = &r.error {
            println!(
                "{:<16} {:>8} {:<8} {:<4} error: {e}",
                r.kernel, r.size, r.device, r.dtype
            );
            continue;
        }
        println!(
            "{:<16} {:>8} {:<8} {:<4} {:>11.4e} {:>11} {:>11} {:>9.2} {:>9.1e}",
            r.kernel,
            r.size,
            r.device,
            r.dtype,
            r.median_s,
            r.kernel_median_s
                .map(|k| format!("{k:.4e}"))
                .unwrap_or_else(|| "-".into()),
            format!("{:.2}x", r.max_s / r.min_s),
            r.gflops(),
            r.max_rel_err
        );
    }
    println!(
        "wrote {}/bench.json, bench.csv, bench.svg",
        io::shown(&a.out)
    );
    Ok(())
}

/// Parses `--device` (whose default comes from NEUROFIT_DEVICE), naming the variable when the
/// bad value came from it.
pub(crate) fn parse_device(s: &str) -> Result<Device> {
    use neurofit::device::DEVICE_ENV;
    s.parse()
        .map_err(|e: Error| match std::env::var(DEVICE_ENV) {
            Ok(v) if v == s => Error::UnknownOption(format!("{DEVICE_ENV}: {e}")),
            _ => e,
        })
}

fn devices() {
    #[cfg(feature = "gpu")]
    {
        let adapters = neurofit::dispatch::adapters();
        if adapters.is_empty() {
            println!("no GPU adapters found");
        }
        for a in &adapters {
            println!(
            "gpu:{}  {}  backend={:?}  type={:?}{}  f64={}  timestamps={}  max_binding={}  max_buffer={}  driver={}",
            a.index,
            a.name,
            a.backend,
            a.device_type,
            if a.is_software { " (software: never chosen by auto)" } else { "" },
            match (a.shader_f64, a.full_rate_f64) {
                (false, _) => "no",
                (true, true) => "yes (full rate: systems factored in f64)",
                (true, false) => "yes (reduced rate: systems refined from f32 factors)",
            },
            if a.timestamp_query { "yes" } else { "no" },
            memory::format_size(a.max_binding),
            memory::format_size(a.max_buffer),
            if a.driver.is_empty() { "?" } else { &a.driver },
            );
            if let Some(m) = a.device_memory {
                println!("       device memory={}", memory::format_size(m));
            }
        }
    }
    #[cfg(not(feature = "gpu"))]
    println!("no GPU support in this build (cargo feature `gpu`)");
    println!(
        "cpu    {} threads (rayon)  f64=yes  default budget={}",
        rayon::current_num_threads(),
        memory::format_size(memory::default_cpu_budget())
    );
}

/// SIGINT, SIGTERM and SIGHUP delete the temporary file of a write in progress and exit with
/// 128 + the signal's number (130 for Ctrl-C), so an interrupted command leaves no partial or
/// temporary output.
fn clean_up_on_interrupt() {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            std::thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    io::abandon_pending_writes(128 + sig);
                }
            });
        }
    }
}

fn main() {
    // before any thread exists: keep Mesa's XDG_RUNTIME_DIR complaint off stderr
    #[cfg(feature = "gpu")]
    neurofit::gpu::adapters::quiet_runtime_dir();
    clean_up_on_interrupt();
    let cli = Cli::parse();
    let logger = Box::leak(Box::new(StderrLogger {
        verbose: cli.verbose,
    }));
    let _ = log::set_logger(logger);
    log::set_max_level(log::LevelFilter::Info);
    let r = match cli.cmd {
        Cmd::Ridge {
            cmd: RidgeCmd::Fit(a),
        } => ridge_fit(a, cli.quiet),
        Cmd::Ridge {
            cmd: RidgeCmd::Predict(a),
        } => ridge_predict(a),
        Cmd::Ridge {
            cmd: RidgeCmd::Merge(a),
        } => ridge_merge(a, cli.quiet),
        Cmd::Gsn(a) => run_gsn(a, cli.quiet),
        Cmd::Bench(a) => run_bench(a, cli.quiet),
        Cmd::Devices => {
            devices();
            Ok(())
        }
        Cmd::Demo { device } => demo::run(&device),
    };
    if let Err(e) = r {
        // one line, whatever the message holds
        let msg: String = e
            .to_string()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
