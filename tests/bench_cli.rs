//! `neurofit bench --quick` (on lavapipe in CI): the JSON parses and has every kernel, the CSV and
//! the SVG are written.

mod common;

use std::process::Command;

#[test]
fn quick_bench_writes_json_csv_and_svg() {
    // GPU results are required where CI demands a GPU; elsewhere the CPU rows suffice
    let gpu = common::test_gpu(false).is_some();
    let dir = std::env::temp_dir().join(format!("neurofit-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = Command::new(env!("CARGO_BIN_EXE_neurofit"))
        .args([
            "bench",
            "--quick",
            "--include-software",
            "--quiet",
            "--out",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(dir.join("bench.json")).expect("bench.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(doc["schema"], "neurofit-bench/1");
    let results = doc["results"].as_array().expect("results");
    for k in [
        "gram",
        "cholesky_nll",
        "selected_solves",
        "ridge_fit",
        "perform_gsn",
    ] {
        let rows: Vec<_> = results.iter().filter(|r| r["kernel"] == k).collect();
        assert!(!rows.is_empty(), "kernel {k} missing");
        for r in &rows {
            assert!(r["error"].is_null(), "{k} failed: {}", r["error"]);
            assert!(r["median_s"].as_f64().unwrap() > 0.0);
            assert!(
                r["max_rel_err"].as_f64().unwrap() < 1e-1,
                "{k}: {}",
                r["max_rel_err"]
            );
            for key in [
                "min_s", "max_s", "gflops", "flops", "adapter", "backend", "dtype", "device",
            ] {
                assert!(!r[key].is_null(), "{k}: {key} missing");
            }
        }
        if gpu {
            assert!(
                rows.iter().any(|r| r["device"] != "cpu"),
                "{k}: no GPU rows"
            );
            if doc["devices"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["timestamp_query"] == true)
            {
                assert!(
                    rows.iter().any(|r| r["kernel_median_s"].as_f64().is_some()),
                    "{k}: no kernel time"
                );
            }
        }
    }
    assert!(
        !doc["fits"].as_array().unwrap().is_empty(),
        "no power-law fits"
    );
    let csv = std::fs::read_to_string(dir.join("bench.csv")).expect("bench.csv");
    assert!(csv.lines().count() == results.len() + 1);
    let svg = std::fs::read_to_string(dir.join("bench.svg")).expect("bench.svg");
    assert!(
        svg.starts_with("<svg") && svg.contains("polyline") && svg.trim_end().ends_with("</svg>")
    );
}
