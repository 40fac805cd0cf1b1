//! Typed host wrappers of the WGSL kernels in `shaders/`: each records its dispatches into a
//! command encoder, splitting work so that per-invocation loops stay within the adapter's
//! [`super::KernelParams`].

use super::buffers::DevBuf;
use super::context::GpuContext;
use super::params::{CHOL_BLOCK, CHOL_SMALL, CHOL_TILE, GEMM_TILE};
use super::pipelines::{PipelineKey, Shader};
use super::refine::REFINE;
use crate::error::Result;
use crate::Dtype;
use bytemuck::{Pod, Zeroable};

pub(super) const GEMM: Shader = Shader {
    name: "gemm_tn",
    source: concat!(
        include_str!("../../shaders/gemm_params.wgsl"),
        include_str!("../../shaders/gemm_tn.wgsl")
    ),
};
pub(super) const GEMM_WIDE: Shader = Shader {
    name: "gemm_tn_wide",
    source: concat!(
        include_str!("../../shaders/gemm_params.wgsl"),
        include_str!("../../shaders/gemm_tn_wide.wgsl")
    ),
};
pub(super) const COLSTATS: Shader = Shader {
    name: "colstats",
    source: include_str!("../../shaders/colstats.wgsl"),
};
pub(super) const CORR: Shader = Shader {
    name: "corr",
    source: include_str!("../../shaders/corr.wgsl"),
};
pub(super) const GATHER: Shader = Shader {
    name: "gather",
    source: include_str!("../../shaders/gather.wgsl"),
};
pub(super) const CHOLESKY: Shader = Shader {
    name: "cholesky",
    source: concat!(
        include_str!("../../shaders/cholesky_params.wgsl"),
        include_str!("../../shaders/cholesky.wgsl")
    ),
};
pub(super) const SMALL_CHOLESKY: Shader = Shader {
    name: "small_cholesky",
    source: concat!(
        include_str!("../../shaders/cholesky_params.wgsl"),
        include_str!("../../shaders/small_cholesky.wgsl")
    ),
};
pub(super) const SPARSE_PREDICT: Shader = Shader {
    name: "sparse_predict",
    source: include_str!("../../shaders/sparse_predict.wgsl"),
};
pub(super) const NLL: Shader = Shader {
    name: "nll",
    source: include_str!("../../shaders/nll.wgsl"),
};

/// Largest system the batched Cholesky accepts (its packed-index arithmetic is exact below it).
pub const MAX_SYSTEM: usize = 5792;

fn u(v: usize) -> u32 {
    v as u32
}

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

/// Four `u32` kernel parameters.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Quad {
    pub a: u32,
    pub b: u32,
    pub c: u32,
    pub d: u32,
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

/// A row-major matrix operand: buffer, leading dimension (row stride) and first column.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    /// The buffer.
    pub buf: &'a DevBuf,
    /// Row stride in elements.
    pub ld: usize,
    /// First column.
    pub off: usize,
}

impl<'a> Operand<'a> {
    /// The whole of a row-major matrix with `ld` columns.
    pub fn whole(buf: &'a DevBuf, ld: usize) -> Self {
        Operand { buf, ld, off: 0 }
    }
}

/// One `gemm_tn` product: `C (m × n, row stride ldc) = Aᵀ B` over `rows` rows.
pub struct Gemm<'a> {
    /// `A` (`rows × ≥ m`).
    pub a: Operand<'a>,
    /// `B` (`rows × ≥ n`).
    pub b: Operand<'a>,
    /// The output.
    pub c: &'a DevBuf,
    /// Output row stride.
    pub ldc: usize,
    /// Output rows.
    pub m: usize,
    /// Output columns.
    pub n: usize,
    /// Rows reduced over.
    pub rows: usize,
    /// `Some(d)`: skip tiles above the diagonal of the global matrix whose first row is `d`.
    pub lower_diag: Option<usize>,
}

/// The buffers of one batch of per-unit systems.
pub struct Systems<'a> {
    /// `units × m × m` matrices (lower triangles).
    pub sys: &'a DevBuf,
    /// `units × m` right-hand sides, then solutions.
    pub rhs: &'a DevBuf,
    /// `units` status words.
    pub status: &'a DevBuf,
    /// `units × m` original diagonals.
    pub diag: &'a DevBuf,
    /// System size.
    pub m: usize,
    /// Systems in the batch.
    pub units: usize,
}

/// Where `gather` reads from: one row block `[rows.0, rows.1)` of G (row stride `ldg`), the
/// cross products `h` (right-hand sides, gathered with the first block), the indices and α.
pub struct GatherFrom<'a> {
    /// The row block of G.
    pub g_block: &'a DevBuf,
    /// Its rows `[r0, r1)` of the global matrix.
    pub rows: (usize, usize),
    /// Row stride of G and of `h`.
    pub ldg: usize,
    /// `units × ldg` cross products.
    pub h: &'a DevBuf,
    /// `units × m` indices.
    pub idx: &'a DevBuf,
    /// A one-element buffer holding α in solve precision.
    pub alpha: &'a DevBuf,
}

impl GpuContext {
    /// The pipelines a selection-path fit with storage precision `dtype` and solve precision
    /// `sreal` runs (see [`GpuContext::precompile`]).
    pub fn selection_pipelines(&self, dtype: Dtype, sreal: Dtype) -> Vec<PipelineKey> {
        let gemm = if self.params.tile == GEMM_TILE {
            GEMM_WIDE
        } else {
            GEMM
        };
        let mut keys = vec![
            (COLSTATS, "col_sum", dtype, dtype),
            (COLSTATS, "col_sumsq", dtype, dtype),
            (COLSTATS, "center", dtype, dtype),
            (gemm, "main", dtype, dtype),
            (CORR, "main", dtype, dtype),
            (GATHER, "main", dtype, sreal),
        ];
        let mut factor = vec![sreal];
        if self.mixed_solves(sreal) {
            keys.extend(["narrow", "setup", "step"].map(|e| (REFINE, e, Dtype::F64, Dtype::F64)));
            factor.insert(0, Dtype::F32);
        }
        // the system size is not known yet: both kernels, the small one is quick to compile
        for p in factor {
            keys.extend(["panel", "update"].map(|e| (CHOLESKY, e, p, p)));
            keys.push((SMALL_CHOLESKY, "factor_solve", p, p));
        }
        keys.extend(["forward", "backward"].map(|e| (CHOLESKY, e, sreal, sreal)));
        keys
    }

    /// Records `g` (one dispatch per slice of `params.gemm_rows` reduction rows).
    pub fn gemm_tn(&self, enc: &mut wgpu::CommandEncoder, g: &Gemm, dtype: Dtype) -> Result<()> {
        let shader = if self.params.tile == GEMM_TILE {
            GEMM_WIDE
        } else {
            GEMM
        };
        let pl = self.pipeline(shader, "main", dtype, dtype)?;
        let step = self.params.gemm_rows;
        let tile = self.params.tile as usize;
        let groups = (u(g.n.div_ceil(tile)), u(g.m.div_ceil(tile)), 1);
        let mut r0 = 0;
        while r0 < g.rows.max(1) {
            let r1 = (r0 + step).min(g.rows);
            let params = self.uniform(&GemmParams {
                m: u(g.m),
                n: u(g.n),
                lda: u(g.a.ld),
                ldb: u(g.b.ld),
                ldc: u(g.ldc),
                a_off: u(g.a.off),
                b_off: u(g.b.off),
                r0: u(r0),
                r1: u(r1),
                accumulate: u32::from(r0 > 0),
                lower_only: u32::from(g.lower_diag.is_some()),
                diag_off: u(g.lower_diag.unwrap_or(0)),
            });
            self.dispatch(
                enc,
                &pl,
                &[
                    (0, &g.a.buf.buf),
                    (1, &g.b.buf.buf),
                    (2, &g.c.buf),
                    (3, &params),
                ],
                groups,
            )?;
            r0 += step;
        }
        Ok(())
    }

    /// Centres the first `cols` columns of `data` (`rows × ld`) in place and writes their
    /// centred sums of squares into `ss` (`sums` receives the column sums).
    pub fn center_columns(
        &self,
        enc: &mut wgpu::CommandEncoder,
        data: Operand,
        stats: (&DevBuf, &DevBuf),
        rows: usize,
        cols: usize,
        dtype: Dtype,
    ) -> Result<()> {
        let (sums, ss) = stats;
        let sum = self.pipeline(COLSTATS, "col_sum", dtype, dtype)?;
        let sumsq = self.pipeline(COLSTATS, "col_sumsq", dtype, dtype)?;
        let center = self.pipeline(COLSTATS, "center", dtype, dtype)?;
        let params = |r0: usize, r1: usize| {
            self.uniform(&ColParams {
                cols: u(cols),
                ld: u(data.ld),
                r0: u(r0),
                r1: u(r1),
                accumulate: u32::from(r0 > 0),
                count: u(rows),
                pad0: 0,
                pad1: 0,
            })
        };
        let step = self.params.colstat_rows;
        let slices: Vec<(usize, usize)> = (0..rows.div_ceil(step))
            .map(|i| (i * step, ((i + 1) * step).min(rows)))
            .collect();
        let groups = |n: usize| self.params.linear_groups(n);
        for &(r0, r1) in &slices {
            let p = params(r0, r1);
            self.dispatch(
                enc,
                &sum,
                &[(0, &data.buf.buf), (1, &sums.buf), (2, &p)],
                groups(cols),
            )?;
        }
        for &(r0, r1) in &slices {
            let p = params(r0, r1);
            self.dispatch(
                enc,
                &center,
                &[(0, &data.buf.buf), (1, &sums.buf), (2, &p)],
                groups((r1 - r0) * cols),
            )?;
        }
        for &(r0, r1) in &slices {
            let p = params(r0, r1);
            self.dispatch(
                enc,
                &sumsq,
                &[(0, &data.buf.buf), (1, &ss.buf), (2, &p)],
                groups(cols),
            )?;
        }
        Ok(())
    }

    /// Turns the cross products in `r` (`units × cols`, over `n` samples) into |r| in place
    /// (see `corr.wgsl`); `ss` are the features' and the units' sums of squares.
    pub fn finish_corr(
        &self,
        enc: &mut wgpu::CommandEncoder,
        r: &DevBuf,
        ss: (&DevBuf, &DevBuf),
        (units, cols, n): (usize, usize, usize),
        dtype: Dtype,
    ) -> Result<()> {
        let pl = self.pipeline(CORR, "main", dtype, dtype)?;
        let p = self.uniform(&Quad {
            a: u(units),
            b: u(cols),
            c: u(cols),
            d: u(n),
        });
        self.dispatch(
            enc,
            &pl,
            &[(0, &r.buf), (1, &ss.0.buf), (2, &ss.1.buf), (3, &p)],
            self.params.linear_groups(units * cols),
        )
    }

    /// Gathers the systems of `s.units` units from one row block of G (see `GatherFrom`).
    pub fn gather(
        &self,
        enc: &mut wgpu::CommandEncoder,
        from: &GatherFrom,
        s: &Systems,
        types: (Dtype, Dtype),
    ) -> Result<()> {
        let pl = self.pipeline(GATHER, "main", types.0, types.1)?;
        let p = self.uniform(&GatherParams {
            m: u(s.m),
            ldg: u(from.ldg),
            g_r0: u(from.rows.0),
            g_r1: u(from.rows.1),
            write_rhs: u32::from(from.rows.0 == 0),
            pad0: 0,
            pad1: 0,
            pad2: 0,
        });
        let (x, y, _) = self.params.linear_groups(s.m * s.m);
        self.dispatch(
            enc,
            &pl,
            &[
                (0, &from.g_block.buf),
                (1, &from.h.buf),
                (2, &from.idx.buf),
                (3, &s.sys.buf),
                (4, &s.rhs.buf),
                (5, &p),
                (6, &from.alpha.buf),
                (7, &s.diag.buf),
            ],
            (x, y, u(s.units)),
        )
    }

    /// Records sparse predictions (see `sparse_predict.wgsl`): buffers `[x, idx, w, b, out]`,
    /// shape `(rows, units, k, f)`.
    pub fn sparse_predict(
        &self,
        enc: &mut wgpu::CommandEncoder,
        bufs: [&DevBuf; 5],
        (rows, units, k, f): (usize, usize, usize, usize),
        dtype: Dtype,
    ) -> Result<()> {
        let pl = self.pipeline(SPARSE_PREDICT, "main", dtype, dtype)?;
        let p = self.uniform(&Quad {
            a: u(rows),
            b: u(units),
            c: u(k),
            d: u(f),
        });
        let [x, idx, w, b, out] = bufs;
        self.dispatch(
            enc,
            &pl,
            &[
                (0, &x.buf),
                (1, &idx.buf),
                (2, &w.buf),
                (3, &b.buf),
                (4, &out.buf),
                (5, &p),
            ],
            self.params.linear_groups(rows * units),
        )
    }

    /// Factorises `s.units` systems in place (systems up to `CHOL_SMALL` = 32: `small_cholesky.wgsl`,
    /// one dispatch; larger ones `cholesky.wgsl`: blocked, right-looking); a pivot
    /// `≤ tol · (original diagonal)` marks the system failed in its status word.
    pub fn batched_cholesky_factor(
        &self,
        enc: &mut wgpu::CommandEncoder,
        s: &Systems,
        sreal: Dtype,
        tol: f32,
    ) -> Result<()> {
        if s.m <= CHOL_SMALL {
            return self.small_cholesky(enc, s, sreal, tol, false);
        }
        let panel = self.pipeline(CHOLESKY, "panel", sreal, sreal)?;
        let update = self.pipeline(CHOLESKY, "update", sreal, sreal)?;
        let max_pairs = self.params.max_groups as usize;
        for jb in (0..s.m).step_by(CHOL_BLOCK) {
            let p = self.uniform(&CholParams {
                m: u(s.m),
                j0: u(jb),
                j1: 0,
                tol,
            });
            // `panel` reads the diagonals (binding 4), not the right-hand sides (binding 1)
            self.dispatch(
                enc,
                &panel,
                &[
                    (0, &s.sys.buf),
                    (2, &s.status.buf),
                    (3, &p),
                    (4, &s.diag.buf),
                ],
                (u(s.units), 1, 1),
            )?;
            let rest = s.m.saturating_sub(jb + CHOL_BLOCK);
            let tiles = rest.div_ceil(CHOL_TILE);
            let pairs = tiles * (tiles + 1) / 2;
            for first in (0..pairs).step_by(max_pairs) {
                let p = self.uniform(&CholParams {
                    m: u(s.m),
                    j0: u(jb),
                    j1: u(first),
                    tol,
                });
                self.dispatch(
                    enc,
                    &update,
                    &[(0, &s.sys.buf), (2, &s.status.buf), (3, &p)],
                    (u(s.units), u((pairs - first).min(max_pairs)), 1),
                )?;
            }
        }
        Ok(())
    }

    /// Factorises and solves `s.units` systems in place, with the singular-pivot tolerance of
    /// [`crate::linalg::singular_pivot_tolerance`].
    pub fn batched_cholesky_solve(
        &self,
        enc: &mut wgpu::CommandEncoder,
        s: &Systems,
        sreal: Dtype,
    ) -> Result<()> {
        let eps = match sreal {
            Dtype::F64 => f64::EPSILON,
            Dtype::F32 => f32::EPSILON as f64,
        };
        let tol = crate::linalg::singular_pivot_tolerance(s.m, eps) as f32;
        if s.m <= CHOL_SMALL {
            return self.small_cholesky(enc, s, sreal, tol, true);
        }
        self.batched_cholesky_factor(enc, s, sreal, tol)?;
        let forward = self.pipeline(CHOLESKY, "forward", sreal, sreal)?;
        let backward = self.pipeline(CHOLESKY, "backward", sreal, sreal)?;
        let step = self.params.solve_cols;
        let run = |enc: &mut wgpu::CommandEncoder, pl: &wgpu::ComputePipeline, j0: usize| {
            let p = self.uniform(&CholParams {
                m: u(s.m),
                j0: u(j0),
                j1: u((j0 + step).min(s.m)),
                tol,
            });
            self.dispatch(
                enc,
                pl,
                &[
                    (0, &s.sys.buf),
                    (1, &s.rhs.buf),
                    (2, &s.status.buf),
                    (3, &p),
                ],
                (u(s.units), 1, 1),
            )
        };
        let starts: Vec<usize> = (0..s.m).step_by(step).collect();
        for &j0 in &starts {
            run(enc, &forward, j0)?;
        }
        for &j0 in starts.iter().rev() {
            run(enc, &backward, j0)?;
        }
        Ok(())
    }

    /// Factorises (and with `solve`, solves) `s.units` systems of at most `CHOL_SMALL` in one
    /// dispatch of `small_cholesky.wgsl`: one workgroup per system.
    fn small_cholesky(
        &self,
        enc: &mut wgpu::CommandEncoder,
        s: &Systems,
        sreal: Dtype,
        tol: f32,
        solve: bool,
    ) -> Result<()> {
        debug_assert!(s.m <= CHOL_SMALL);
        let pl = self.pipeline(SMALL_CHOLESKY, "factor_solve", sreal, sreal)?;
        let p = self.uniform(&CholParams {
            m: u(s.m),
            j0: 0,
            j1: u32::from(solve),
            tol,
        });
        self.dispatch(
            enc,
            &pl,
            &[
                (0, &s.sys.buf),
                (1, &s.rhs.buf),
                (2, &s.status.buf),
                (3, &p),
                (4, &s.diag.buf),
            ],
            (u(s.units), 1, 1),
        )
    }
}
