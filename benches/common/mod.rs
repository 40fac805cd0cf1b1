//! What the criterion benches share: the devices they run on.
#![allow(dead_code)]

use neurofit::Device;

/// The CPU, plus the GPU a bench should use: `NEUROFIT_BENCH_GPU` if set (e.g. `gpu:0` for
/// lavapipe), else the first hardware adapter.
pub fn devices() -> Vec<(String, Device)> {
    let mut v = vec![("cpu".to_string(), Device::Cpu)];
    if let Ok(d) = std::env::var("NEUROFIT_BENCH_GPU") {
        if let Ok(dev) = d.parse() {
            v.push((d, dev));
        }
        return v;
    }
    if let Some(a) = neurofit::dispatch::adapters()
        .into_iter()
        .find(|a| !a.is_software)
    {
        let id = format!("gpu:{}", a.index);
        if let Ok(dev) = id.parse() {
            v.push((id, dev));
        }
    }
    v
}
