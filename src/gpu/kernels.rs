//! Typed host wrappers for the WGSL kernels in `shaders/`: each records its dispatches into a
//! command encoder, splitting work so that per-invocation loops stay short.

use super::context::{DevBuf, GpuContext};
use crate::error::Result;
use crate::Dtype;
use bytemuck::{Pod, Zeroable};

const GEMM_SRC: &str = include_str!("../../shaders/gemm_tn.wgsl");
const COLSTATS_SRC: &str = include_str!("../../shaders/colstats.wgsl");
const CORR_SRC: &str = include_str!("../../shaders/corr.wgsl");
const GATHER_SRC: &str = include_str!("../../shaders/gather.wgsl");
const CHOL_SRC: &str = include_str!("../../shaders/cholesky.wgsl");
const SCATTER_SRC: &str = include_str!("../../shaders/scatter.wgsl");

/// Rows of the reduction per `gemm_tn` dispatch on software adapters (llvmpipe loop cap).
pub const GEMM_ROWS_SOFTWARE: usize = 512;
/// Rows of the reduction per `gemm_tn` dispatch on hardware adapters (watchdog-friendly).
pub const GEMM_ROWS_HARDWARE: usize = 4096;
/// Rows per column-statistics dispatch.
pub const COLSTAT_ROWS: usize = 16384;
/// Columns per triangular-solve dispatch.
pub const SOLVE_COLS: usize = 512;
/// Largest system the batched Cholesky accepts (its packed-index arithmetic is exact below it).
pub const MAX_SYSTEM: usize = 5792;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GemmParams {
    m: u32,
    n: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    a_off: u32,
    b_off: u32,
    r0: u32,
    r1: u32,
    accumulate: u32,
    lower_only: u32,
    diag_off: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ColParams {
    cols: u32,
    ld: u32,
    r0: u32,
    r1: u32,
    accumulate: u32,
    count: u32,
    pad0: u32,
    pad1: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Quad {
    a: u32,
    b: u32,
    c: u32,
    d: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CholParams {
    m: u32,
    j0: u32,
    j1: u32,
    tol: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GatherParams {
    m: u32,
    ldg: u32,
    g_r0: u32,
    g_r1: u32,
    write_rhs: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

fn u(v: usize) -> u32 {
    v as u32
}

/// Workgroups for `total` threads of 256, split over x and y (≤ 65 535 each).
pub fn linear_groups(total: usize) -> (u32, u32, u32) {
    let g = total.div_ceil(256).max(1);
    if g <= 65535 {
        (u(g), 1, 1)
    } else {
        (65535, u(g.div_ceil(65535)), 1)
    }
}

/// A matrix operand of `gemm_tn`: buffer, leading dimension, column offset.
pub struct Operand<'a> {
    /// The buffer.
    pub buf: &'a DevBuf,
    /// Row stride in elements.
    pub ld: usize,
    /// First column.
    pub off: usize,
}

impl GpuContext {
    fn gemm_rows(&self) -> usize {
        if self.info.is_software {
            GEMM_ROWS_SOFTWARE
        } else {
            GEMM_ROWS_HARDWARE
        }
    }

    /// `C (m × n, ldc) = Aᵀ B` over `rows` rows. With `lower_diag = Some(d)`, tiles above the
    /// diagonal of the global matrix (row offset `d`) are skipped.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_tn(
        &self,
        enc: &mut wgpu::CommandEncoder,
        a: Operand,
        b: Operand,
        c: &DevBuf,
        ldc: usize,
        m: usize,
        n: usize,
        rows: usize,
        lower_diag: Option<usize>,
        dtype: Dtype,
    ) -> Result<()> {
        let pl = self.pipeline("gemm_tn", GEMM_SRC, "main", dtype, dtype)?;
        let step = self.gemm_rows();
        let groups = (u(n.div_ceil(64)), u(m.div_ceil(64)), 1);
        let mut r0 = 0;
        while r0 < rows.max(1) {
            let r1 = (r0 + step).min(rows);
            let params = self.uniform(&GemmParams {
                m: u(m),
                n: u(n),
                lda: u(a.ld),
                ldb: u(b.ld),
                ldc: u(ldc),
                a_off: u(a.off),
                b_off: u(b.off),
                r0: u(r0),
                r1: u(r1),
                accumulate: u32::from(r0 > 0),
                lower_only: u32::from(lower_diag.is_some()),
                diag_off: u(lower_diag.unwrap_or(0)),
            });
            self.dispatch(enc, &pl, &[&a.buf.buf, &b.buf.buf, &c.buf, &params], groups)?;
            r0 += step;
        }
        Ok(())
    }

    /// Centres the columns of `data` (`rows × cols`, row stride `ld`) in place and writes the
    /// centred sums of squares into `ss` (scratch `sums` receives the column sums).
    #[allow(clippy::too_many_arguments)]
    pub fn center_columns(
        &self,
        enc: &mut wgpu::CommandEncoder,
        data: &DevBuf,
        sums: &DevBuf,
        ss: &DevBuf,
        rows: usize,
        cols: usize,
        ld: usize,
        dtype: Dtype,
    ) -> Result<()> {
        let sum = self.pipeline("colstats", COLSTATS_SRC, "col_sum", dtype, dtype)?;
        let sumsq = self.pipeline("colstats", COLSTATS_SRC, "col_sumsq", dtype, dtype)?;
        let center = self.pipeline("colstats", COLSTATS_SRC, "center", dtype, dtype)?;
        let params = |r0: usize, r1: usize| {
            self.uniform(&ColParams {
                cols: u(cols),
                ld: u(ld),
                r0: u(r0),
                r1: u(r1),
                accumulate: u32::from(r0 > 0),
                count: u(rows),
                pad0: 0,
                pad1: 0,
            })
        };
        let slices: Vec<(usize, usize)> = (0..rows.div_ceil(COLSTAT_ROWS))
            .map(|i| (i * COLSTAT_ROWS, ((i + 1) * COLSTAT_ROWS).min(rows)))
            .collect();
        for &(r0, r1) in &slices {
            let p = params(r0, r1);
            self.dispatch(enc, &sum, &[&data.buf, &sums.buf, &p], linear_groups(cols))?;
        }
        for &(r0, r1) in &slices {
            let p = params(r0, r1);
            self.dispatch(
                enc,
                &center,
                &[&data.buf, &sums.buf, &p],
                linear_groups((r1 - r0) * cols),
            )?;
        }
        for &(r0, r1) in &slices {
            let p = params(r0, r1);
            self.dispatch(enc, &sumsq, &[&data.buf, &ss.buf, &p], linear_groups(cols))?;
        }
        Ok(())
    }

    /// Turns cross products into |r| in place (see `corr.wgsl`).
    #[allow(clippy::too_many_arguments)]
    pub fn finish_corr(
        &self,
        enc: &mut wgpu::CommandEncoder,
        r: &DevBuf,
        ssx: &DevBuf,
        ssy: &DevBuf,
        units: usize,
        cols: usize,
        n: usize,
        dtype: Dtype,
    ) -> Result<()> {
        let pl = self.pipeline("corr", CORR_SRC, "main", dtype, dtype)?;
        let p = self.uniform(&Quad {
            a: u(units),
            b: u(cols),
            c: u(cols),
            d: u(n),
        });
        self.dispatch(
            enc,
            &pl,
            &[&r.buf, &ssx.buf, &ssy.buf, &p],
            linear_groups(units * cols),
        )
    }

    /// Gathers the selected systems of `units` units from one row block of G.
    #[allow(clippy::too_many_arguments)]
    pub fn gather(
        &self,
        enc: &mut wgpu::CommandEncoder,
        g_block: &DevBuf,
        block_rows: (usize, usize),
        h: &DevBuf,
        idx: &DevBuf,
        sys: &DevBuf,
        rhs: &DevBuf,
        diag: &DevBuf,
        alpha: &DevBuf,
        m: usize,
        ldg: usize,
        units: usize,
        write_rhs: bool,
        real: Dtype,
        sreal: Dtype,
    ) -> Result<()> {
        let pl = self.pipeline("gather", GATHER_SRC, "main", real, sreal)?;
        let p = self.uniform(&GatherParams {
            m: u(m),
            ldg: u(ldg),
            g_r0: u(block_rows.0),
            g_r1: u(block_rows.1),
            write_rhs: u32::from(write_rhs),
            pad0: 0,
            pad1: 0,
            pad2: 0,
        });
        self.dispatch(
            enc,
            &pl,
            &[
                &g_block.buf,
                &h.buf,
                &idx.buf,
                &sys.buf,
                &rhs.buf,
                &p,
                &alpha.buf,
                &diag.buf,
            ],
            {
                let (x, y, _) = linear_groups(m * m);
                (x, y, u(units))
            },
        )
    }

    /// Columns per `factor` dispatch for systems of size `m`: each invocation's trailing update
    /// walks ~m²/512 entries per column, kept below ~40 000 loop trips per dispatch.
    pub fn chol_cols(m: usize) -> usize {
        (20_000_000 / (m * m).max(1)).clamp(1, 64)
    }

    /// Factorises `units` systems of size `m` in place (see `cholesky.wgsl`); a pivot
    /// `≤ tol · (original diagonal)` marks the system failed in `status`.
    #[allow(clippy::too_many_arguments)]
    pub fn batched_cholesky_factor(
        &self,
        enc: &mut wgpu::CommandEncoder,
        sys: &DevBuf,
        status: &DevBuf,
        diag: &DevBuf,
        m: usize,
        units: usize,
        sreal: Dtype,
        tol: f32,
    ) -> Result<()> {
        let factor = self.pipeline("cholesky", CHOL_SRC, "factor", sreal, sreal)?;
        let step = Self::chol_cols(m);
        for j0 in (0..m).step_by(step) {
            let p = self.uniform(&CholParams {
                m: u(m),
                j0: u(j0),
                j1: u((j0 + step).min(m)),
                tol,
            });
            // `factor` reads the diagonals (binding 4), not the right-hand sides (binding 1)
            self.dispatch_indexed(
                enc,
                &factor,
                &[(0, &sys.buf), (2, &status.buf), (3, &p), (4, &diag.buf)],
                (u(units), 1, 1),
            )?;
        }
        Ok(())
    }

    /// Factorises and solves `units` systems of size `m` in place (see `cholesky.wgsl`), with
    /// the singular-pivot tolerance of [`crate::linalg::singular_pivot_tolerance`].
    #[allow(clippy::too_many_arguments)]
    pub fn batched_cholesky_solve(
        &self,
        enc: &mut wgpu::CommandEncoder,
        sys: &DevBuf,
        rhs: &DevBuf,
        status: &DevBuf,
        diag: &DevBuf,
        m: usize,
        units: usize,
        sreal: Dtype,
    ) -> Result<()> {
        let eps = match sreal {
            Dtype::F64 => f64::EPSILON,
            Dtype::F32 => f32::EPSILON as f64,
        };
        let tol = crate::linalg::singular_pivot_tolerance(m, eps) as f32;
        self.batched_cholesky_factor(enc, sys, status, diag, m, units, sreal, tol)?;
        let forward = self.pipeline("cholesky", CHOL_SRC, "forward", sreal, sreal)?;
        let backward = self.pipeline("cholesky", CHOL_SRC, "backward", sreal, sreal)?;
        let groups = (u(units), 1, 1);
        let run =
            |enc: &mut wgpu::CommandEncoder, pl: &wgpu::ComputePipeline, j0: usize, j1: usize| {
                let p = self.uniform(&CholParams {
                    m: u(m),
                    j0: u(j0),
                    j1: u(j1),
                    tol,
                });
                self.dispatch(enc, pl, &[&sys.buf, &rhs.buf, &status.buf, &p], groups)
            };
        for j0 in (0..m).step_by(SOLVE_COLS) {
            run(enc, &forward, j0, (j0 + SOLVE_COLS).min(m))?;
        }
        let starts: Vec<usize> = (0..m).step_by(SOLVE_COLS).collect();
        for &j0 in starts.iter().rev() {
            run(enc, &backward, j0, (j0 + SOLVE_COLS).min(m))?;
        }
        Ok(())
    }

    /// Scatters solutions into transposed W (`units × f`) and the biases.
    #[allow(clippy::too_many_arguments)]
    pub fn scatter(
        &self,
        enc: &mut wgpu::CommandEncoder,
        theta: &DevBuf,
        idx: &DevBuf,
        wt: &DevBuf,
        bias: &DevBuf,
        m: usize,
        f: usize,
        units: usize,
        real: Dtype,
        sreal: Dtype,
    ) -> Result<()> {
        let pl = self.pipeline("scatter", SCATTER_SRC, "main", real, sreal)?;
        let p = self.uniform(&Quad {
            a: u(m),
            b: u(f),
            c: 0,
            d: 0,
        });
        self.dispatch(
            enc,
            &pl,
            &[&theta.buf, &idx.buf, &wt.buf, &bias.buf, &p],
            (u(m.div_ceil(256)), u(units), 1),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_groups_stay_within_the_dispatch_limit() {
        for total in [
            1usize,
            256,
            257,
            65535 * 256,
            65535 * 256 + 1,
            5792 * 5792,
            40_000_000,
        ] {
            let (x, y, z) = linear_groups(total);
            assert!(x <= 65535 && y <= 65535 && z == 1, "{total}: {x} {y}");
            assert!(
                x as usize * y as usize * 256 >= total,
                "{total}: too few threads"
            );
        }
        // the largest system the solver accepts needs the y split
        assert!(linear_groups(MAX_SYSTEM * MAX_SYSTEM).1 > 1);
    }
}
