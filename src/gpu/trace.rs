//! An opt-in trace of where a GPU fit's wall time goes on the host side: with
//! `NEUROFIT_GPU_TRACE=1` every buffer upload and creation, every wait for a submission and every
//! read-back prints one line to stderr with its wall time and bytes. For diagnosing a real
//! adapter (the kernels' own time comes from `neurofit bench`'s timestamps); off, it costs one
//! cached environment lookup per call.

use std::sync::OnceLock;
use std::time::Instant;

/// The environment variable that turns the trace on (`1`).
pub const TRACE_ENV: &str = "NEUROFIT_GPU_TRACE";

/// Whether the trace is on (read once per process).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var(TRACE_ENV).is_ok_and(|v| v.trim() == "1"))
}

/// Prints `kind what: ms, bytes` since `start` when the trace is on.
pub(super) fn span(kind: &str, what: &str, start: Instant, bytes: u64) {
    if enabled() {
        eprintln!(
            "gpu trace: {kind:<8} {what}: {:.3} ms, {bytes} bytes",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
}
