//! The GSN shrinkage-NLL scorer on the GPU: the shrunk stack is built on the device from one
//! copy of the covariance, factorised by the batched Cholesky (per-level status, a failed level
//! never aborts the batch), the held-out points solved per level, and per-row quadratic forms
//! and diagonals reduced on the device; the host adds the N per-row partials and takes the
//! logarithms in f64 (f64 `log` is not portable SPIR-V).

use super::backend::GpuBackend;
use super::buffers::{floats, words};
use super::context::GpuContext;
use super::kernels::{Systems, NLL};
use crate::backend::{Backend, Op};
use crate::device::planner;
use crate::error::Result;
use crate::linalg::gaussian_nll;
use crate::Dtype;
use bytemuck::{Pod, Zeroable};
use ndarray::ArrayView2;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct NllParams {
    n: u32,
    m: u32,
    i0: u32,
    i1: u32,
}

/// Scores `levels` in precision `sreal` (see [`Backend::shrinkage_nll`]).
pub(super) fn shrinkage_nll(
    backend: &GpuBackend,
    ctx: &GpuContext,
    cov: ArrayView2<f64>,
    pts: ArrayView2<f64>,
    levels: &[f64],
    sreal: Dtype,
) -> Result<Vec<f64>> {
    let (m, n) = pts.dim();
    if m == 0 {
        return Ok(vec![f64::NAN; levels.len()]);
    }
    let sb = sreal.size();
    let stage = backend.plan(
        Op::ShrinkageNll {
            levels: levels.len(),
            n,
            m,
        },
        sreal,
    );
    let chunk = planner::items_per_chunk(&stage, &backend.limits())? as usize;
    let covb = ctx.upload_matrix(cov, false, sreal, "covariance")?;
    let ptsb = ctx.upload_matrix(pts.t(), false, sreal, "held-out points")?;
    let build = ctx.pipeline(NLL, "build", sreal, sreal)?;
    let trsm = ctx.pipeline(NLL, "trsm_rows", sreal, sreal)?;
    let reduce = ctx.pipeline(NLL, "reduce", sreal, sreal)?;
    let rows_per_pass = ctx.params.trsm_rows(n);
    let wg = ctx.params.workgroup as usize;
    let mut out = Vec::with_capacity(levels.len());
    for range in planner::ranges(levels.len(), chunk) {
        let lc = range.len();
        let lev = ctx.upload(&levels[range.clone()], sreal, "levels")?;
        let sys = ctx.zeros(lc * n * n, sb, "shrunk stack")?;
        let diag = ctx.zeros(lc * n, sb, "diagonals")?;
        let y = ctx.zeros(lc * n * m, sb, "solved points")?;
        let status = ctx.zeros(lc, 4, "status")?;
        let rowsq = ctx.zeros(lc * n, sb, "row sums of squares")?;
        let logd = ctx.zeros(lc * n, sb, "diagonals of the factors")?;
        let rhs_unused = ctx.zeros(1, sb, "unused")?;
        let params = |i0: usize, i1: usize| {
            ctx.uniform(&NllParams {
                n: n as u32,
                m: m as u32,
                i0: i0 as u32,
                i1: i1 as u32,
            })
        };
        let mut enc = ctx.encoder();
        let p0 = params(0, n);
        let (gx, gy, _) = ctx.params.linear_groups((n * n).max(n * m));
        ctx.dispatch(
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
            (gx, gy, lc as u32),
        )?;
        let systems = Systems {
            sys: &sys,
            rhs: &rhs_unused,
            status: &status,
            diag: &diag,
            m: n,
            units: lc,
        };
        ctx.batched_cholesky_factor(&mut enc, &systems, sreal, 0.0)?;
        for i0 in (0..n).step_by(rows_per_pass) {
            let pp = params(i0, (i0 + rows_per_pass).min(n));
            ctx.dispatch(
                &mut enc,
                &trsm,
                &[(3, &sys.buf), (5, &y.buf), (6, &status.buf), (9, &pp)],
                (m.div_ceil(wg) as u32, lc as u32, 1),
            )?;
        }
        ctx.dispatch(
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
            (n.div_ceil(wg) as u32, lc as u32, 1),
        )?;
        let bytes = ctx.submit_and_read(enc, &[&status, &rowsq, &logd], "shrinkage NLL")?;
        let st = words(&bytes[0]);
        let rs = floats(&bytes[1], sb);
        let ld = floats(&bytes[2], sb);
        for l in 0..lc {
            if st[l] != 0 {
                out.push(f64::NAN);
                continue;
            }
            let sumsq: f64 = rs[l * n..(l + 1) * n].iter().sum();
            let logdet: f64 = ld[l * n..(l + 1) * n].iter().map(|d| d.ln()).sum();
            out.push(gaussian_nll(sumsq, m, logdet, n));
        }
    }
    Ok(out)
}
