//! Shared test helpers: fixture loading, tolerances, the GPU-or-skip policy.
#![allow(dead_code)]

use ndarray::ArrayD;
use neurofit::Device;
use std::path::PathBuf;
use std::process::Command;

/// Runs this test binary again in a child process with the arguments `args` (a filter, `--skip`
/// …) and the environment `env`, and asserts that it succeeds with at least `min_passed` trials
/// passed: for settings read once per process (or per upload), which a trial cannot set for
/// itself.
pub fn rerun_trials_with(args: &[&str], env: &[(&str, &str)], min_passed: usize) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(args).arg("--test-threads=1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let settings: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert!(
        out.status.success(),
        "with {}:\n{text}\n{}",
        settings.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let passed = text.matches("... ok").count();
    assert!(
        passed >= min_passed,
        "only {passed} trials passed with {}:\n{text}",
        settings.join(" ")
    );
}

/// The `neurofit` binary of this build.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_neurofit"))
}

/// The bytes of a `.npy` file: the header `dict` (padded as numpy does) followed by `data`.
pub fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut h = dict.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend((h.len() as u16).to_le_bytes());
    v.extend(h.as_bytes());
    v.extend(data);
    v
}

/// A fresh, empty temporary folder for one test.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("neurofit-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `cmd` and returns whether it succeeded and its high-water RSS (VmHWM) in bytes, polled
/// every 5 ms until it exits (getrusage would count the parent's pages the child shared before
/// exec).
#[cfg(target_os = "linux")]
pub fn peak_rss(mut cmd: Command) -> (bool, u64) {
    let mut child = cmd.spawn().unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut rss = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status) {
            if let Some(kb) = text
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                rss = rss.max(kb * 1024);
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            return (st.success(), rss);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// `../shared/fixtures` beside the checkout (or `NEUROFIT_FIXTURES`); panics with a clear
/// message when missing.
pub fn fixtures_root() -> PathBuf {
    let p = std::env::var("NEUROFIT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    assert!(
        p.is_dir(),
        "fixture folder {} is missing: the tests need ../shared/fixtures beside the checkout (or set NEUROFIT_FIXTURES)",
        p.display()
    );
    p
}

/// A fixture case directory.
pub fn case_dir(model: &str, case: &str) -> PathBuf {
    let d = fixtures_root().join(model).join(case);
    assert!(d.is_dir(), "fixture case {} is missing", d.display());
    d
}

/// Loads `<case>/<name>.npy` as f64.
pub fn load(model: &str, case: &str, name: &str) -> ArrayD<f64> {
    let p = case_dir(model, case).join(format!("{name}.npy"));
    neurofit::io::read_npy(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Loads a bool `.npy` array.
pub fn load_bool(model: &str, case: &str, name: &str) -> ndarray::ArrayD<bool> {
    let p = case_dir(model, case).join(format!("{name}.npy"));
    let f = std::fs::File::open(&p).unwrap();
    let len = f.metadata().unwrap().len();
    let mut r = std::io::BufReader::new(f);
    let h = neurofit::io::npy::read_header(&mut r, len).unwrap();
    neurofit::io::npy::read_bool(&mut r, &h).unwrap()
}

/// Loads `<case>/<name>.npy` if present.
pub fn load_opt(model: &str, case: &str, name: &str) -> Option<ArrayD<f64>> {
    let p = case_dir(model, case).join(format!("{name}.npy"));
    p.exists().then(|| load(model, case, name))
}

/// `params.json` of a case.
pub fn params(model: &str, case: &str) -> serde_json::Value {
    let p = case_dir(model, case).join("params.json");
    serde_json::from_str(&std::fs::read_to_string(&p).expect("params.json")).expect("valid JSON")
}

/// max |a − b|, requiring equal shapes and NaN in the same places.
pub fn max_abs_diff(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shape mismatch");
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| {
            if x.is_nan() && y.is_nan() {
                0.0
            } else {
                (x - y).abs()
            }
        })
        .fold(0.0, f64::max)
}

/// Asserts `max|a − b| ≤ rel · max|ref|` (with a floor of `rel` for all-zero references).
pub fn assert_close(what: &str, got: &ArrayD<f64>, reference: &ArrayD<f64>, rel: f64) {
    let scale = reference
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(1.0e-300);
    let d = max_abs_diff(got, reference);
    assert!(
        d <= rel * scale || d <= rel,
        "{what}: max |diff| = {d:e} exceeds {rel:e} × max|ref| ({scale:e}); relative {:e}",
        d / scale
    );
}

/// Whether a GPU adapter for the tests exists (with `SHADER_F64` when `needs_f64`).
pub fn gpu_available(needs_f64: bool) -> bool {
    neurofit::gpu::adapters::quiet_runtime_dir();
    let adapters = neurofit::dispatch::adapters();
    !adapters.is_empty() && (!needs_f64 || adapters.iter().any(|a| a.shader_f64))
}

/// The device the GPU tests use: `NEUROFIT_TEST_GPU`, default `gpu`.
pub fn gpu_device() -> Device {
    let sel = std::env::var("NEUROFIT_TEST_GPU").unwrap_or_else(|_| "gpu".into());
    sel.parse().expect("NEUROFIT_TEST_GPU")
}

fn gpu_required() -> bool {
    std::env::var("NEUROFIT_REQUIRE_GPU").as_deref() == Ok("1")
}

/// The GPU device for tests, or `None` with a visible skip message when no adapter exists.
/// With `NEUROFIT_REQUIRE_GPU=1` a missing adapter fails.
pub fn test_gpu(needs_f64: bool) -> Option<Device> {
    if gpu_available(needs_f64) {
        return Some(gpu_device());
    }
    let msg = format!(
        "no GPU adapter{} found",
        if needs_f64 { " with SHADER_F64" } else { "" }
    );
    if gpu_required() {
        panic!("NEUROFIT_REQUIRE_GPU=1 but {msg}");
    }
    eprintln!("SKIPPED (GPU test): {msg}; install mesa-vulkan-drivers for lavapipe");
    None
}

/// A test binary's trials (libtest-mimic): each test instantiated on the CPU and on the GPU.
/// Where no adapter exists the GPU trials are reported as *ignored* (counted in the summary
/// line, with a message), not as passed; with `NEUROFIT_REQUIRE_GPU=1` they fail instead.
pub struct Suite {
    trials: Vec<libtest_mimic::Trial>,
    skipped: usize,
}

fn trial(name: String, f: impl FnOnce() + Send + 'static) -> libtest_mimic::Trial {
    libtest_mimic::Trial::test(name, move || {
        f();
        Ok(())
    })
}

impl Suite {
    /// An empty suite (and, before the harness starts threads, a private XDG_RUNTIME_DIR).
    pub fn new() -> Self {
        neurofit::gpu::adapters::quiet_runtime_dir();
        Suite {
            trials: Vec::new(),
            skipped: 0,
        }
    }

    /// A test that needs no device choice.
    pub fn test(&mut self, name: &str, f: impl FnOnce() + Send + 'static) {
        self.trials.push(trial(name.to_string(), f));
    }

    /// A test on the GPU only (e.g. GPU/CPU parity).
    pub fn gpu(&mut self, name: &str, needs_f64: bool, f: impl FnOnce(Device) + Send + 'static) {
        let name = format!("gpu::{name}");
        if gpu_available(needs_f64) {
            self.trials.push(trial(name, move || f(gpu_device())));
        } else if gpu_required() {
            self.trials.push(trial(name, move || {
                panic!(
                    "NEUROFIT_REQUIRE_GPU=1 but no GPU adapter{} was found",
                    if needs_f64 { " with SHADER_F64" } else { "" }
                )
            }));
        } else {
            self.skipped += 1;
            self.trials.push(trial(name, || {}).with_ignored_flag(true));
        }
    }

    /// The same test on the CPU (`cpu::name`) and on the GPU (`gpu::name`).
    pub fn each_backend(
        &mut self,
        name: &str,
        needs_f64: bool,
        f: impl Fn(Device) + Send + Sync + Clone + 'static,
    ) {
        let g = f.clone();
        self.trials
            .push(trial(format!("cpu::{name}"), move || f(Device::Cpu)));
        self.gpu(name, needs_f64, g);
    }

    /// Runs the trials selected by the command line and exits.
    pub fn run(self) -> ! {
        if self.skipped > 0 {
            eprintln!(
                "SKIPPED (GPU tests): {} GPU trials are reported as ignored: no GPU adapter found (install mesa-vulkan-drivers for lavapipe; NEUROFIT_REQUIRE_GPU=1 makes this a failure)",
                self.skipped
            );
        }
        libtest_mimic::run(&libtest_mimic::Arguments::from_args(), self.trials).exit()
    }
}
