//! JSON and CSV output of `neurofit bench` (schema in the README).

use super::{power_law, BenchConfig, BenchDevice, Record};
use neurofit::{Error, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

fn num(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

/// Series key of a record: (kernel, device, dtype).
pub fn series_key(r: &Record) -> (String, String, String) {
    (r.kernel.clone(), r.device.clone(), r.dtype.to_string())
}

/// The power-law fits of every sweep series.
pub fn fits(records: &[Record]) -> Vec<Value> {
    let mut series: BTreeMap<(String, String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.error.is_none() && r.kernel != "ridge_fit")
    {
        series
            .entry(series_key(r))
            .or_default()
            .push((r.size, r.median_s));
    }
    series
        .into_iter()
        .filter_map(|((k, d, t), pts)| {
            power_law(&pts).map(|(e, c)| json!({"kernel": k, "device": d, "dtype": t, "exponent": e, "coefficient": c, "points": pts.len()}))
        })
        .collect()
}

/// The whole result document.
pub fn to_json(cfg: &BenchConfig, devices: &[BenchDevice], records: &[Record]) -> Value {
    let devs: Vec<Value> = devices
        .iter()
        .map(|d| {
            json!({"id": d.id, "name": d.name, "backend": d.backend, "driver": d.driver, "type": d.kind,
                   "dtypes": d.dtypes.iter().map(|t| t.to_string()).collect::<Vec<_>>(), "timestamp_query": d.timestamps})
        })
        .collect();
    let res: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "kernel": r.kernel, "size_param": r.size_param, "size": r.size, "device": r.device,
                "adapter": r.adapter, "backend": r.backend, "driver": r.driver, "dtype": r.dtype.to_string(),
                "repeats": r.repeats, "median_s": num(r.median_s), "min_s": num(r.min_s), "max_s": num(r.max_s),
                "kernel_median_s": r.kernel_median_s.map(num).unwrap_or(Value::Null),
                "flops": r.flops, "gflops": num(r.gflops()),
                "kernel_gflops": r.kernel_median_s.map(|k| num(r.flops / k / 1e9)).unwrap_or(Value::Null),
                "max_rel_err": num(r.max_rel_err), "error": r.error,
            })
        })
        .collect();
    json!({
        "schema": "neurofit-bench/1",
        "neurofit_version": env!("CARGO_PKG_VERSION"),
        "created_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "quick": cfg.quick, "scale": cfg.scale, "repeats": cfg.repeats,
        "host": {"cpu_threads": rayon::current_num_threads(), "os": std::env::consts::OS, "arch": std::env::consts::ARCH},
        "devices": devs,
        "results": res,
        "fits": fits(records),
    })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV with one row per record.
pub fn to_csv(records: &[Record]) -> String {
    let mut out = String::from(
        "kernel,size_param,size,device,adapter,backend,dtype,repeats,median_s,min_s,max_s,kernel_median_s,flops,gflops,max_rel_err,error\n",
    );
    for r in records {
        let f = |v: f64| {
            if v.is_finite() {
                format!("{v:e}")
            } else {
                String::new()
            }
        };
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.kernel,
            r.size_param,
            r.size,
            r.device,
            csv_field(&r.adapter),
            r.backend,
            r.dtype,
            r.repeats,
            f(r.median_s),
            f(r.min_s),
            f(r.max_s),
            r.kernel_median_s.map(f).unwrap_or_default(),
            f(r.flops),
            f(r.gflops()),
            f(r.max_rel_err),
            csv_field(r.error.as_deref().unwrap_or("")),
        ));
    }
    out
}

/// Writes `bench.json`, `bench.csv` and `bench.svg` into `dir` (created if needed).
pub fn write_all(
    dir: &Path,
    cfg: &BenchConfig,
    devices: &[BenchDevice],
    records: &[Record],
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        msg: e.to_string(),
    })?;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        neurofit::io::write_atomic(&path, |w| {
            use std::io::Write;
            w.write_all(text.as_bytes()).map_err(|e| Error::Io {
                path: path.display().to_string(),
                msg: e.to_string(),
            })
        })
    };
    let doc = to_json(cfg, devices, records);
    write(
        "bench.json",
        serde_json::to_string_pretty(&doc).expect("valid JSON"),
    )?;
    write("bench.csv", to_csv(records))?;
    write("bench.svg", super::plot::svg(records))?;
    Ok(())
}
