//! Memory budgets: parsing `--max-memory` sizes and the platform defaults.

use crate::error::{Error, Result};

/// Default GPU budget when neither the user nor the platform says more: 2 GiB for discrete
/// GPUs, 1 GiB otherwise. wgpu has no free-memory query; pass `max_memory` to use more.
pub const DEFAULT_GPU_BUDGET_DISCRETE: u64 = 2 << 30;
/// Default GPU budget for integrated, virtual and software adapters.
pub const DEFAULT_GPU_BUDGET_OTHER: u64 = 1 << 30;
/// Budget used for the CPU when the available memory cannot be read.
pub const FALLBACK_CPU_BUDGET: u64 = 4 << 30;

/// Parses a size such as `2GiB`, `512MiB`, `1.5GB`, `100000` (bytes). Units: B, K/KB, KiB, M/MB,
/// MiB, G/GB, GiB, T/TB, TiB (case-insensitive; decimal units are powers of 1000).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| Error::InvalidInput(format!("memory size '{s}': expected e.g. 2GiB")))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        other => {
            return Err(Error::InvalidInput(format!(
                "memory size '{s}': unknown unit '{other}'"
            )))
        }
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(Error::InvalidInput(format!(
            "memory size '{s}' must be at least one byte"
        )));
    }
    Ok(bytes as u64)
}

/// Formats bytes as a short human-readable string (GiB/MiB/KiB).
pub fn format_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// 80 % of the memory the operating system reports as available (`sysinfo`), else 4 GiB.
pub fn default_cpu_budget() -> u64 {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    match sys.available_memory() {
        0 => FALLBACK_CPU_BUDGET,
        avail => avail / 10 * 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("512 MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("100000").unwrap(), 100_000);
        assert_eq!(parse_size("4k").unwrap(), 4000);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn cpu_budget_is_positive() {
        assert!(default_cpu_budget() > 0);
    }
}
