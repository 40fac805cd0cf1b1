//! Kernel constants, one set per adapter, written once here and injected into every WGSL source
//! as `const` declarations (with the `real`/`sreal` precision aliases), so the host's dispatch
//! arithmetic and the shaders cannot disagree.

use crate::backend::LOW_VARIANCE;
use crate::Dtype;

/// The constants the kernels and their host wrappers share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelParams {
    /// Threads of a one-dimensional workgroup (`WG` in WGSL).
    pub workgroup: u32,
    /// Side of the output tile of the matrix product: 64 runs `gemm_tn.wgsl` (`TILE`; its 16×16
    /// threads hold 4×4 outputs each), 128 runs `gemm_tn_wide.wgsl` (8×8 outputs per thread).
    pub tile: u32,
    /// Reduction rows loaded per step of `gemm_tn` (`KT`).
    pub k_step: u32,
    /// Workgroups per dispatch dimension.
    pub max_groups: u32,
    /// Reduction rows per `gemm_tn` dispatch.
    pub gemm_rows: usize,
    /// Rows per column-statistics dispatch.
    pub colstat_rows: usize,
    /// Columns per triangular-solve dispatch of the batched solver.
    pub solve_cols: usize,
    /// Target loop trips of one row block of the NLL triangular solve.
    pub trsm_trips: usize,
    /// Largest system solved by mixed-precision refinement (`refine.wgsl`, one workgroup per
    /// system and refinement step); larger ones are factored in f64.
    pub refine_max_system: usize,
}

impl KernelParams {
    /// The constants for an adapter. Software adapters (llvmpipe/lavapipe) stop every loop
    /// after 65 535 iterations per invocation, silently: their per-dispatch work is cut so that
    /// no invocation comes near it. Hardware adapters get longer dispatches (fewer submits),
    /// still short enough for display watchdogs.
    pub fn for_adapter(is_software: bool) -> Self {
        let tile = gemm_tile_override().unwrap_or(if is_software {
            SOFTWARE_GEMM_TILE
        } else {
            GEMM_TILE
        });
        KernelParams {
            workgroup: 256,
            tile,
            k_step: 16,
            max_groups: 65535,
            gemm_rows: if is_software {
                512 * 64 / tile as usize
            } else {
                4096
            },
            colstat_rows: if is_software { 16384 } else { 65536 },
            solve_cols: if is_software { 512 } else { 4096 },
            trsm_trips: if is_software { 32_768 } else { 262_144 },
            refine_max_system: if is_software {
                SOFTWARE_REFINE_MAX_SYSTEM
            } else {
                super::kernels::MAX_SYSTEM
            },
        }
    }

    /// The WGSL prelude: precision aliases and every shared constant.
    pub fn prelude(&self, real: Dtype, sreal: Dtype) -> String {
        let ty = |d: Dtype| if d == Dtype::F64 { "f64" } else { "f32" };
        format!(
            "alias real = {};\nalias sreal = {};\n\
             const WG: u32 = {}u;\nconst TILE: u32 = {}u;\nconst KT: u32 = {}u;\n\
             const CB: u32 = {}u;\nconst CT: u32 = {}u;\nconst CS: u32 = {}u;\n\
             const LOW_VARIANCE: f32 = {:e};\n\
             // correlation of a zero-variance unit; the host reads it back as NaN\n\
             const UNDEFINED_CORR: f32 = -1.0;\n",
            ty(real),
            ty(sreal),
            self.workgroup,
            SOFTWARE_GEMM_TILE,
            self.k_step,
            CHOL_BLOCK,
            CHOL_TILE,
            CHOL_SMALL,
            LOW_VARIANCE,
        )
    }

    /// Workgroups for `total` one-dimensional threads, split over x and y.
    pub fn linear_groups(&self, total: usize) -> (u32, u32, u32) {
        let g = total.div_ceil(self.workgroup as usize).max(1);
        let max = self.max_groups as usize;
        if g <= max {
            (g as u32, 1, 1)
        } else {
            (max as u32, g.div_ceil(max) as u32, 1)
        }
    }

    /// Rows per NLL triangular-solve dispatch for `n` variables.
    pub fn trsm_rows(&self, n: usize) -> usize {
        (self.trsm_trips / n.max(1)).max(1)
    }
}

/// Output tile side of the matrix product on hardware adapters: 128 × 128 (`gemm_tn_wide.wgsl`,
/// 8 × 8 outputs in registers per thread).
pub const GEMM_TILE: u32 = 128;

/// Output tile side of the matrix product on software adapters: 64 × 64 (`gemm_tn.wgsl`, 4 × 4
/// outputs per thread). llvmpipe runs invocations as SIMD lanes, where 64 accumulators per lane
/// spill.
pub const SOFTWARE_GEMM_TILE: u32 = 64;

/// The environment variable that overrides the tile side, and so the kernel, on every adapter
/// (`64` or `128`; read when a device is opened): the tests run the hardware kernel on lavapipe
/// with it.
pub const GEMM_TILE_ENV: &str = "NEUROFIT_GPU_TILE";

fn gemm_tile_override() -> Option<u32> {
    match std::env::var(GEMM_TILE_ENV).ok()?.trim() {
        "64" => Some(64),
        "128" => Some(128),
        other => {
            log::warn!("{GEMM_TILE_ENV}={other} ignored: expected 64 or 128");
            None
        }
    }
}

// the two kernels' fixed shapes
const _: () = assert!(GEMM_TILE == 128 && SOFTWARE_GEMM_TILE == 64);

/// Block width of the blocked Cholesky (`CB` in `cholesky.wgsl`): its diagonal block holds one
/// element per thread, so `CB² = WG`.
pub const CHOL_BLOCK: usize = 16;

/// Side of the trailing-update tiles of the blocked Cholesky (`CT`): 16 × 16 threads with 2 × 2
/// outputs each.
pub const CHOL_TILE: usize = 32;

// `cholesky.wgsl` declares its workgroup arrays for these sizes: a 16 × 16 diagonal block and
// two 32 × 16 slices of L21, the 32 × 32 tile held 2 × 2 per thread by 16 × 16 threads
const _: () = assert!(CHOL_BLOCK * CHOL_BLOCK == 256 && CHOL_TILE == 32);

/// Largest system factored by `small_cholesky.wgsl` (`CS`): one workgroup of `CS` threads per
/// system, one row per thread, the whole system in workgroup memory (32 × 33 f64: 8.4 KiB).
/// Larger systems go to the blocked kernel (`cholesky.wgsl`).
pub const CHOL_SMALL: usize = 32;

// `small_cholesky.wgsl` declares its workgroup arrays for this size
const _: () = assert!(CHOL_SMALL == 32);

/// Largest system refined on software adapters: a `refine.wgsl` step walks
/// `m·⌈m/WG⌉ + 2k·(⌈k/WG⌉ + 1)` loop trips per invocation, far below llvmpipe's cap at this size.
pub const SOFTWARE_REFINE_MAX_SYSTEM: usize = 1024;

/// The value a correlation kernel writes for an undefined |r|.
pub const UNDEFINED_CORR_SENTINEL: f64 = -1.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocked_cholesky_constants_fit_its_thread_mapping() {
        for sw in [true, false] {
            let p = KernelParams::for_adapter(sw);
            assert_eq!(CHOL_BLOCK * CHOL_BLOCK, p.workgroup as usize);
            assert_eq!(p.workgroup, 256);
        }
    }

    #[test]
    fn linear_groups_stay_within_the_dispatch_limit() {
        let p = KernelParams::for_adapter(true);
        for total in [
            1usize,
            256,
            257,
            65535 * 256,
            65535 * 256 + 1,
            5792 * 5792,
            40_000_000,
        ] {
            let (x, y, z) = p.linear_groups(total);
            assert!(x <= 65535 && y <= 65535 && z == 1, "{total}: {x} {y}");
            assert!(
                x as usize * y as usize * 256 >= total,
                "{total}: too few threads"
            );
        }
        assert!(p.linear_groups(5792 * 5792).1 > 1);
    }

    #[test]
    fn prelude_declares_every_constant() {
        let s = KernelParams::for_adapter(false).prelude(Dtype::F64, Dtype::F32);
        for c in [
            "alias real = f64",
            "alias sreal = f32",
            "const WG",
            "const TILE",
            "const KT",
            "const CS",
            "LOW_VARIANCE",
            "UNDEFINED_CORR",
        ] {
            assert!(s.contains(c), "{c} missing from {s}");
        }
    }

    #[test]
    fn software_dispatches_stay_below_the_loop_cap() {
        let p = KernelParams::for_adapter(true);
        // gemm_tn: KT rows per trip, 4 loads each (the 64 tile)
        if p.tile == SOFTWARE_GEMM_TILE {
            assert!(p.gemm_rows / p.k_step as usize * 4 < 65_535);
        }
        // gemm_tn_wide, where NEUROFIT_GPU_TILE=128 chooses it: 8 rows per trip of 9 loop trips,
        // then 16 stores of 4
        let wide_rows = 512 * 64 / GEMM_TILE as usize;
        assert!(wide_rows / 8 * 9 + 16 * 4 < 65_535);
        // blocked Cholesky: a panel thread walks its rows of the panel (CB²/2 + CB steps
        // each) after the diagonal block's CB steps; an update thread one tile
        for m in [2usize, 64, 301, 1000, 5792, 20_000] {
            let rows = m.div_ceil(p.workgroup as usize);
            let panel = CHOL_BLOCK * 3 + rows * (CHOL_BLOCK * CHOL_BLOCK / 2 + CHOL_BLOCK);
            assert!(panel < 65_535, "m = {m}: {panel}");
        }
        assert!(p.trsm_rows(1000) * 1000 < 65_535);
        // small_cholesky.wgsl: a thread loads and stores m²/CS elements, walks at most m
        // columns of at most m updates, then 2m solve columns
        let s = CHOL_SMALL;
        assert!(2 * s * s / s + s * s + 2 * s < 65_535);
        // refine.wgsl: setup/step walk the matrix-vector product, two triangular solves with
        // the f32 factor and a few vector loops
        let (m, wg) = (p.refine_max_system, p.workgroup as usize);
        let k = m - 1;
        let step = m * m.div_ceil(wg) + 2 * k * (k.div_ceil(wg) + 1) + 8 * m.div_ceil(wg) + 64;
        assert!(step < 65_535 / 2, "refine step: {step}");
    }
}
