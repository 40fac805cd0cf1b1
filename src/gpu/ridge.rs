//! FastL2LiR on the GPU: correlations, the shared Gram matrix (lower tiles only, split into
//! row blocks that each fit one binding), YᵀX₁, per-unit gather, batched Cholesky + triangular
//! solves and the scatter into W all run as WGSL kernels; top-k selection runs on the host
//! (see README). The dense no-selection path computes its Gram and cross products on the GPU and
//! the one large SPD solve on the host.

use super::context::{DevBuf, GpuContext};
use super::kernels::{Operand, MAX_SYSTEM};
use crate::cpu::with_bias;
use crate::device::planner::{self, Limits, Stage};
use crate::error::{Error, Result};
use crate::linalg;
use crate::ops::RidgeOps;
use crate::Dtype;
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, Axis};
use std::sync::Arc;

/// The GPU implementation of [`RidgeOps`].
pub struct GpuOps {
    ctx: Arc<GpuContext>,
    budget: Option<u64>,
    /// Precision of the GSN scorer (f64 where the adapter has it, unless f32 is asked for).
    pub scorer_dtype: Dtype,
    /// Upper bound on units per chunk (the user's `chunk_size`; 0 = none).
    pub unit_chunk_cap: usize,
}

impl GpuOps {
    /// A backend on `ctx` with an optional memory budget (default: [`GpuContext::default_budget`]).
    pub fn new(ctx: Arc<GpuContext>, budget: Option<u64>) -> Self {
        let scorer_dtype = if ctx.has_f64() {
            Dtype::F64
        } else {
            Dtype::F32
        };
        GpuOps {
            ctx,
            budget,
            scorer_dtype,
            unit_chunk_cap: 0,
        }
    }

    /// The GPU context.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The limits chunks are planned against.
    pub fn limits(&self) -> Limits {
        Limits {
            budget: self.budget.unwrap_or_else(|| self.ctx.default_budget()),
            max_binding: self.ctx.max_binding(),
            max_items: 65535,
        }
    }

    /// The memory plan of [`RidgeOps::solve_selected`]: X₁ and G fixed; per unit its Y column,
    /// H row, system, right-hand side, indices, status and W column. `eb`/`sb` are the storage
    /// and solve element sizes.
    pub fn solve_stage(n: usize, f: usize, units: usize, k: usize, eb: u64, sb: u64) -> Stage {
        let p = f + 1;
        let m = k + 1;
        Stage {
            name: "ridge solve (gpu)",
            items: units as u64,
            fixed: (n * p + p * p) as u64 * eb,
            fixed_binding: (n * p) as u64 * eb,
            per_item: (n + p + f + 1) as u64 * eb
                + (m * m + 2 * m) as u64 * sb
                + (m as u64 + 1) * 4,
            per_item_binding: ((m * m) as u64 * sb).max(p.max(n) as u64 * eb),
        }
    }

    fn solve_dtype(&self) -> Dtype {
        if self.ctx.has_f64() {
            Dtype::F64
        } else {
            Dtype::F32
        }
    }

    fn check_dtype(&self, dtype: Dtype) -> Result<()> {
        if dtype == Dtype::F64 && !self.ctx.has_f64() {
            return Err(Error::DeviceUnavailable(format!(
                "adapter '{}' has no SHADER_F64: use dtype f32 or device cpu",
                self.ctx.info.name
            )));
        }
        Ok(())
    }

    /// Lower triangle of `aᵀa` for a host matrix `a` (`r × p`), computed on the GPU in row
    /// blocks; returns a column-major faer matrix whose strict upper triangle is zero.
    fn gram_blocks(
        &self,
        x1: &DevBuf,
        r: usize,
        p: usize,
        dtype: Dtype,
    ) -> Result<Vec<(usize, usize, DevBuf)>> {
        let ctx = &self.ctx;
        let eb = dtype.size();
        let rows = planner::rows_per_binding(p as u64, p as u64, eb, ctx.max_binding())? as usize;
        let mut out = Vec::new();
        let mut enc = ctx.encoder();
        for range in planner::ranges(p, rows) {
            let rb = range.len();
            let blk = ctx.zeros(rb * p, eb, "gram block")?;
            ctx.gemm_tn(
                &mut enc,
                Operand {
                    buf: x1,
                    ld: p,
                    off: range.start,
                },
                Operand {
                    buf: x1,
                    ld: p,
                    off: 0,
                },
                &blk,
                p,
                rb,
                p,
                r,
                Some(range.start),
                dtype,
            )?;
            out.push((range.start, range.end, blk));
        }
        ctx.submit(enc, "gram")?;
        Ok(out)
    }

    /// The lower triangle of `aᵀa` computed on the GPU (row blocks that fit one binding).
    pub fn gram(&self, a: ArrayView2<f64>, dtype: Dtype) -> Result<linalg::Gram> {
        let (r, p) = a.dim();
        let eb = dtype.size();
        let stage = Stage {
            name: "gram (gpu)",
            items: 1,
            fixed: (r * p) as u64 * eb,
            fixed_binding: (r * p) as u64 * eb,
            per_item: (p * p) as u64 * eb,
            per_item_binding: 0,
        };
        planner::items_per_chunk(&stage, &self.limits())?;
        let buf = self.ctx.upload_matrix(a, dtype, "gram input")?;
        let blocks = self.gram_blocks(&buf, r, p, dtype)?;
        let mut g = linalg::Gram::zeros(p);
        for (r0, r1, blk) in blocks {
            let v = self.ctx.download(&blk, "gram block")?;
            for i in r0..r1 {
                for j in 0..=i {
                    g.set_lower(i, j, v[(i - r0) * p + j]);
                }
            }
        }
        Ok(g)
    }

    /// `aᵀ b` (`p × q`) for host `a` (`r × p`) and `b` (`r × q`), chunked over the columns of b.
    fn at_b(&self, a: ArrayView2<f64>, b: ArrayView2<f64>, dtype: Dtype) -> Result<Array2<f64>> {
        let ctx = &self.ctx;
        let (r, p) = a.dim();
        let q = b.ncols();
        let eb = dtype.size();
        let stage = Stage {
            name: "cross product (gpu)",
            items: q as u64,
            fixed: (r * p) as u64 * eb,
            fixed_binding: (r * p) as u64 * eb,
            per_item: (r + p) as u64 * eb,
            per_item_binding: r.max(p) as u64 * eb,
        };
        let chunk = planner::items_per_chunk(&stage, &self.limits())? as usize;
        let abuf = ctx.upload_matrix(a, dtype, "A")?;
        let mut out = Array2::<f64>::zeros((p, q));
        for range in planner::ranges(q, chunk) {
            let qc = range.len();
            let bbuf = ctx.upload_matrix(b.slice(s![.., range.clone()]), dtype, "B chunk")?;
            let cbuf = ctx.zeros(p * qc, eb, "product chunk")?;
            let mut enc = ctx.encoder();
            ctx.gemm_tn(
                &mut enc,
                Operand {
                    buf: &abuf,
                    ld: p,
                    off: 0,
                },
                Operand {
                    buf: &bbuf,
                    ld: qc,
                    off: 0,
                },
                &cbuf,
                qc,
                p,
                qc,
                r,
                None,
                dtype,
            )?;
            ctx.submit(enc, "cross product")?;
            let v = ctx.download(&cbuf, "product chunk")?;
            let blk = Array2::from_shape_vec((p, qc), v).expect("shape");
            out.slice_mut(s![.., range]).assign(&blk);
        }
        Ok(out)
    }
}

impl RidgeOps for GpuOps {
    fn abs_correlations(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        dtype: Dtype,
    ) -> Result<Array2<f64>> {
        self.check_dtype(dtype)?;
        let ctx = &self.ctx;
        let (n, f) = x.dim();
        let units = y.ncols();
        let eb = dtype.size();
        let stage = Stage {
            name: "correlations (gpu)",
            items: units as u64,
            fixed: (n * f + 2 * f) as u64 * eb,
            fixed_binding: (n * f) as u64 * eb,
            per_item: (n + f + 2) as u64 * eb,
            per_item_binding: n.max(f) as u64 * eb,
        };
        let mut chunk = planner::items_per_chunk(&stage, &self.limits())? as usize;
        if self.unit_chunk_cap > 0 {
            chunk = chunk.min(self.unit_chunk_cap);
        }
        let xc = ctx.upload_matrix(x, dtype, "X")?;
        let sx = ctx.zeros(f, eb, "column sums")?;
        let ssx = ctx.zeros(f, eb, "ssx")?;
        let mut enc = ctx.encoder();
        ctx.center_columns(&mut enc, &xc, &sx, &ssx, n, f, f, dtype)?;
        ctx.submit(enc, "centre X")?;
        let mut out = Array2::<f64>::zeros((units, f));
        for range in planner::ranges(units, chunk) {
            let uc = range.len();
            let yc = ctx.upload_matrix(y.slice(s![.., range.clone()]), dtype, "Y chunk")?;
            let sy = ctx.zeros(uc, eb, "unit sums")?;
            let ssy = ctx.zeros(uc, eb, "ssy")?;
            let r = ctx.zeros(uc * f, eb, "correlations")?;
            let mut enc = ctx.encoder();
            ctx.center_columns(&mut enc, &yc, &sy, &ssy, n, uc, uc, dtype)?;
            ctx.gemm_tn(
                &mut enc,
                Operand {
                    buf: &yc,
                    ld: uc,
                    off: 0,
                },
                Operand {
                    buf: &xc,
                    ld: f,
                    off: 0,
                },
                &r,
                f,
                uc,
                f,
                n,
                None,
                dtype,
            )?;
            ctx.finish_corr(&mut enc, &r, &ssx, &ssy, uc, f, n, dtype)?;
            ctx.submit(enc, "correlations")?;
            let v = ctx.download(&r, "correlations")?;
            let blk = Array2::from_shape_vec((uc, f), v).expect("shape");
            out.slice_mut(s![range, ..])
                .assign(&blk.mapv(|v| if v < 0.0 { f64::NAN } else { v }));
        }
        Ok(out)
    }

    fn solve_selected(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        sel: ArrayView2<u32>,
        alpha: f64,
        dtype: Dtype,
        unit_offset: usize,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<(Array2<f64>, Array1<f64>)> {
        self.check_dtype(dtype)?;
        let ctx = &self.ctx;
        let (n, f) = x.dim();
        let p = f + 1;
        let units = y.ncols();
        let m = sel.ncols() + 1;
        if m > MAX_SYSTEM {
            return Err(Error::InvalidInput(format!(
                "n_feat = {} exceeds the GPU solver's limit of {} features per unit; use device cpu",
                m - 1,
                MAX_SYSTEM - 1
            )));
        }
        let eb = dtype.size();
        let sreal = self.solve_dtype();
        let sb = sreal.size();
        let stage = GpuOps::solve_stage(n, f, units, m - 1, eb, sb);
        let mut chunk = planner::items_per_chunk(&stage, &self.limits())? as usize;
        if self.unit_chunk_cap > 0 {
            chunk = chunk.min(self.unit_chunk_cap);
        }
        let x1 = ctx.upload_matrix(with_bias(x).view(), dtype, "X1")?;
        let blocks = self.gram_blocks(&x1, n, p, dtype)?;
        let alpha_buf = ctx.upload(&[alpha], sreal, "alpha")?;
        let mut w = Array2::<f64>::zeros((f, units));
        let mut b = Array1::<f64>::zeros(units);
        for range in planner::ranges(units, chunk) {
            let uc = range.len();
            let yb = ctx.upload_matrix(y.slice(s![.., range.clone()]), dtype, "Y chunk")?;
            let h = ctx.zeros(uc * p, eb, "H")?;
            let mut idx_host: Vec<u32> = Vec::with_capacity(uc * m);
            for u in range.clone() {
                idx_host.extend(sel.row(u).iter().copied());
                idx_host.push(f as u32);
            }
            let idx = ctx.upload_u32(&idx_host, "selected indices")?;
            let sys = ctx.zeros(uc * m * m, sb, "systems")?;
            let rhs = ctx.zeros(uc * m, sb, "right-hand sides")?;
            let status = ctx.zeros(uc, 4, "status")?;
            let diag = ctx.zeros(uc * m, sb, "diagonals")?;
            let wt = ctx.zeros(uc * f, eb, "W chunk")?;
            let bias = ctx.zeros(uc, eb, "b chunk")?;
            let mut enc = ctx.encoder();
            ctx.gemm_tn(
                &mut enc,
                Operand {
                    buf: &yb,
                    ld: uc,
                    off: 0,
                },
                Operand {
                    buf: &x1,
                    ld: p,
                    off: 0,
                },
                &h,
                p,
                uc,
                p,
                n,
                None,
                dtype,
            )?;
            for (i, (r0, r1, blk)) in blocks.iter().enumerate() {
                ctx.gather(
                    &mut enc,
                    blk,
                    (*r0, *r1),
                    &h,
                    &idx,
                    &sys,
                    &rhs,
                    &diag,
                    &alpha_buf,
                    m,
                    p,
                    uc,
                    i == 0,
                    dtype,
                    sreal,
                )?;
            }
            ctx.batched_cholesky_solve(&mut enc, &sys, &rhs, &status, &diag, m, uc, sreal)?;
            ctx.scatter(&mut enc, &rhs, &idx, &wt, &bias, m, f, uc, dtype, sreal)?;
            ctx.submit(enc, "per-unit solves")?;
            let st = ctx.download_u32(&status, "status")?;
            if let Some((i, &s)) = st.iter().enumerate().find(|(_, &s)| s != 0) {
                return Err(Error::Singular(format!(
                    "unit {} (flat index, Fortran order): its {m}x{m} selected system is not positive definite (Cholesky pivot {}); use alpha > 0 or avoid collinear features",
                    unit_offset + range.start + i,
                    s - 1
                )));
            }
            let wv = ctx.download(&wt, "W chunk")?;
            let bv = ctx.download(&bias, "b chunk")?;
            let wblk = Array2::from_shape_vec((uc, f), wv).expect("shape");
            w.slice_mut(s![.., range.clone()]).assign(&wblk.t());
            let end = range.end;
            b.slice_mut(s![range]).assign(&Array1::from(bv));
            progress(end);
        }
        Ok((w, b))
    }

    fn solve_dense(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        alpha: f64,
        dtype: Dtype,
    ) -> Result<(Array2<f64>, Array1<f64>)> {
        self.check_dtype(dtype)?;
        let (n, f) = x.dim();
        let x1 = with_bias(x);
        let theta = if n > f + 1 {
            let mut g = self.gram(x1.view(), dtype)?;
            g.add_diag(alpha);
            let rhs = self.at_b(x1.view(), y, dtype)?;
            linalg::spd_solve(g, rhs.view(), "ridge primal system X1'X1 + alpha I")?
        } else {
            let mut k = self.gram(x1.t(), dtype)?;
            k.add_diag(alpha);
            let z = linalg::spd_solve(k, y, "ridge dual system X1 X1' + alpha I")?;
            self.at_b(x1.view(), z.view(), dtype)?
        };
        Ok((
            theta.slice(s![0..f, ..]).to_owned(),
            theta.row(f).to_owned(),
        ))
    }

    fn predict(
        &self,
        x: ArrayView2<f64>,
        w: ArrayView2<f64>,
        b: ArrayView1<f64>,
        dtype: Dtype,
    ) -> Result<Array2<f64>> {
        self.check_dtype(dtype)?;
        let mut out = self.at_b(x.t(), w, dtype)?;
        out += &b.insert_axis(Axis(0));
        Ok(out)
    }
}
