//! The GSN shrinkage-NLL scorer on the GPU: the shrunk stack is built on the device from one
//! copy of the covariance, factorised by the batched Cholesky (per-level status, a failed level
//! never aborts the batch), the held-out points solved per level, and per-row quadratic forms
//! and log-diagonals reduced on the device; the host adds the N per-row partials in f64.

use super::kernels::linear_groups;
use super::ridge::GpuOps;
use crate::device::planner::{self, Stage};
use crate::error::Result;
use crate::ops::GsnOps;
use bytemuck::{Pod, Zeroable};
use ndarray::ArrayView2;

const NLL_SRC: &str = include_str!("../../shaders/nll.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct NllParams {
    n: u32,
    m: u32,
    i0: u32,
    i1: u32,
}

impl GpuOps {
    /// The memory plan of the GPU scorer in solve precision `sb`: the covariance and points are
    /// fixed; per level the stack entry, its diagonal, the solved points and the row partials.
    pub fn nll_stage(n: usize, m: usize, levels: usize, sb: u64) -> Stage {
        Stage {
            name: "shrinkage NLL (gpu)",
            items: levels as u64,
            fixed: (n * n + n * m + levels) as u64 * sb,
            fixed_binding: (n * n).max(n * m) as u64 * sb,
            per_item: (n * n + n * m + 3 * n) as u64 * sb + 4,
            per_item_binding: (n * n).max(n * m) as u64 * sb,
        }
    }
}

impl GsnOps for GpuOps {
    fn shrinkage_nll(
        &self,
        cov: ArrayView2<f64>,
        pts: ArrayView2<f64>,
        levels: &[f64],
    ) -> Result<Vec<f64>> {
        let ctx = self.context();
        let (m, n) = pts.dim();
        if m == 0 {
            return Ok(vec![f64::NAN; levels.len()]);
        }
        let sreal = self.scorer_dtype;
        let sb = sreal.size();
        let chunk =
            planner::items_per_chunk(&GpuOps::nll_stage(n, m, levels.len(), sb), &self.limits())?
                as usize;
        let covb = ctx.upload_matrix(cov, sreal, "covariance")?;
        let ptsb = ctx.upload_matrix(pts.t(), sreal, "held-out points")?;
        let build = ctx.pipeline("nll", NLL_SRC, "build", sreal, sreal)?;
        let trsm = ctx.pipeline("nll", NLL_SRC, "trsm_rows", sreal, sreal)?;
        let reduce = ctx.pipeline("nll", NLL_SRC, "reduce", sreal, sreal)?;
        let rows_per_pass = (32768 / n.max(1)).max(1);
        let mut out = Vec::with_capacity(levels.len());
        for range in planner::ranges(levels.len(), chunk) {
            let lc = range.len();
            let lev = ctx.upload(&levels[range.clone()], sreal, "levels")?;
            let sys = ctx.zeros(lc * n * n, sb, "shrunk stack")?;
            let diag = ctx.zeros(lc * n, sb, "diagonals")?;
            let y = ctx.zeros(lc * n * m, sb, "solved points")?;
            let status = ctx.zeros(lc, 4, "status")?;
            let rowsq = ctx.zeros(lc * n, sb, "row sums of squares")?;
            let logd = ctx.zeros(lc * n, sb, "log diagonals")?;
            let mut enc = ctx.encoder();
            let params = |i0: usize, i1: usize| {
                ctx.uniform(&NllParams {
                    n: n as u32,
                    m: m as u32,
                    i0: i0 as u32,
                    i1: i1 as u32,
                })
            };
            let p0 = params(0, n);
            let entries = (n * n).max(n * m);
            ctx.dispatch_indexed(
                &mut enc,
                &build,
                &[
                    (0, &covb.buf),
                    (1, &ptsb.buf),
                    (2, &lev.buf),
                    (3, &sys.buf),
                    (4, &diag.buf),
                    (5, &y.buf),
                    (9, &p0),
                ],
                {
                    let (x, y, _) = linear_groups(entries);
                    (x, y, lc as u32)
                },
            )?;
            ctx.batched_cholesky_factor(&mut enc, &sys, &status, &diag, n, lc, sreal, 0.0)?;
            for i0 in (0..n).step_by(rows_per_pass) {
                let pp = params(i0, (i0 + rows_per_pass).min(n));
                ctx.dispatch_indexed(
                    &mut enc,
                    &trsm,
                    &[(3, &sys.buf), (5, &y.buf), (6, &status.buf), (9, &pp)],
                    (m.div_ceil(256) as u32, lc as u32, 1),
                )?;
            }
            ctx.dispatch_indexed(
                &mut enc,
                &reduce,
                &[
                    (3, &sys.buf),
                    (5, &y.buf),
                    (6, &status.buf),
                    (7, &rowsq.buf),
                    (8, &logd.buf),
                    (9, &p0),
                ],
                (n.div_ceil(256) as u32, lc as u32, 1),
            )?;
            ctx.submit(enc, "shrinkage NLL")?;
            let st = ctx.download_u32(&status, "status")?;
            let rs = ctx.download(&rowsq, "row sums")?;
            let ld = ctx.download(&logd, "log diagonals")?;
            for l in 0..lc {
                if st[l] != 0 {
                    out.push(f64::NAN);
                    continue;
                }
                let sumsq: f64 = rs[l * n..(l + 1) * n].iter().sum();
                let logdet: f64 = ld[l * n..(l + 1) * n].iter().map(|d| d.ln()).sum();
                out.push(crate::gsn::shrink::nll_value(sumsq, m, logdet, n));
            }
        }
        Ok(out)
    }
}
