//! The GPU implementation of [`Backend`]: every primitive runs as WGSL kernels on data resident
//! in device buffers. A features matrix is uploaded once per fit (with its bias column; its
//! centred copy for the correlations is made on the device); the Gram matrix stays on the
//! device in row blocks that each fit one binding; a chunk of targets is uploaded once and its
//! correlations, cross products, gathered systems, Cholesky factorisations and solves run
//! without leaving the device; each call reads its results back in the same submit.

use super::buffers::{floats, words, DevBuf};
use super::context::GpuContext;
use super::kernels::{GatherFrom, Gemm, Operand, Systems, MAX_SYSTEM};
use super::params::UNDEFINED_CORR_SENTINEL;
use crate::backend::{Backend, FeatureLayout, Op, Solved};
use crate::device::planner::{self, Limits, Stage};
use crate::error::{Error, Result};
use crate::linalg;
use crate::Dtype;
use ndarray::{Array2, ArrayView1, ArrayView2};
use std::sync::Arc;

/// The GPU backend: a shared context and a memory budget.
#[derive(Clone)]
pub struct GpuBackend {
    ctx: Arc<GpuContext>,
    budget: Option<u64>,
}

/// A features matrix on the device.
pub struct GpuFeatures {
    x: DevBuf,
    rows: usize,
    /// Columns including the bias.
    cols: usize,
    /// Columns without the bias.
    features: usize,
    dtype: Dtype,
    /// The centred copy (same row stride) and its column sums of squares.
    centred: Option<(DevBuf, DevBuf)>,
}

/// A chunk of targets on the device.
pub struct GpuTargets {
    y: DevBuf,
    rows: usize,
    cols: usize,
}

/// The lower triangle of a Gram matrix on the device, in row blocks `[r0, r1)` of full rows.
pub struct GpuGram {
    blocks: Vec<(usize, usize, DevBuf)>,
    dim: usize,
}

impl GpuBackend {
    /// A backend on `ctx` with an optional memory budget (default:
    /// [`GpuContext::default_budget`]).
    pub fn new(ctx: Arc<GpuContext>, budget: Option<u64>) -> Self {
        GpuBackend { ctx, budget }
    }

    /// The context.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Precision of the small solves: f64 where the adapter has it.
    fn solve_dtype(&self) -> Dtype {
        if self.ctx.has_f64() {
            Dtype::F64
        } else {
            Dtype::F32
        }
    }
}

impl Backend for GpuBackend {
    type Features = GpuFeatures;
    type Targets = GpuTargets;
    type Gram = GpuGram;

    fn describe(&self) -> String {
        self.ctx.describe()
    }

    fn limits(&self) -> Limits {
        Limits {
            budget: self.budget.unwrap_or_else(|| self.ctx.default_budget()),
            max_binding: self.ctx.max_binding(),
            max_items: self.ctx.params.max_groups as u64,
        }
    }

    fn plan(&self, op: Op, dtype: Dtype) -> Stage {
        let eb = dtype.size();
        let sb = self.solve_dtype().size();
        let e = |x: usize| x as u64 * eb;
        match op {
            Op::Features { rows, cols, layout } => {
                let p = cols + usize::from(layout.bias);
                let copies = 1 + usize::from(layout.correlations);
                Stage {
                    name: "features (gpu)",
                    items: 1,
                    fixed: e(copies * rows * p + 2 * cols),
                    fixed_binding: e(rows * p),
                    per_item: 0,
                    per_item_binding: 0,
                }
            }
            Op::Gram { dim, .. } => Stage {
                name: "gram (gpu)",
                items: 1,
                fixed: e(dim * dim),
                // split into row blocks that each fit one binding
                fixed_binding: e(dim),
                per_item: 0,
                per_item_binding: 0,
            },
            Op::SelectedUnits {
                units,
                rows,
                features,
                m,
            } => {
                let p = features + 1;
                let refine = if self.ctx.refines(m, self.solve_dtype()) {
                    GpuContext::refine_bytes(m)
                } else {
                    0
                };
                Stage {
                    name: "per-unit solves (gpu)",
                    items: units as u64,
                    fixed: sb,
                    fixed_binding: 0,
                    // Y column and its centred copy, |r| row, H row; system, rhs, diagonal,
                    // indices and status; the mixed-precision path's buffers
                    per_item: e(2 * rows + features + p)
                        + (m * m + 2 * m) as u64 * sb
                        + (m as u64 + 1) * 4
                        + refine,
                    per_item_binding: e(rows.max(p)).max((m * m) as u64 * sb),
                }
            }
            Op::Cross { q, rows, p } => Stage {
                name: "cross products (gpu)",
                items: q as u64,
                fixed: 0,
                fixed_binding: 0,
                per_item: e(rows + p),
                per_item_binding: e(rows.max(p)),
            },
            Op::SparsePredict { units, rows, k } => Stage {
                name: "sparse predict (gpu)",
                items: units as u64,
                // the samples are planned as Features
                fixed: 0,
                fixed_binding: 0,
                per_item: e(k + 1 + rows) + k as u64 * 4,
                per_item_binding: e(k.max(rows)).max(k as u64 * 4),
            },
            Op::ShrinkageNll { levels, n, m } => {
                let sb = if dtype == Dtype::F32 { 4 } else { sb };
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

    fn upload_features(
        &self,
        a: ArrayView2<f64>,
        layout: FeatureLayout,
        dtype: Dtype,
    ) -> Result<GpuFeatures> {
        self.check_dtype(dtype)?;
        let ctx = &self.ctx;
        if layout.correlations {
            // the selection path: its kernels compile while X uploads
            ctx.precompile(ctx.selection_pipelines(dtype, self.solve_dtype()));
        }
        let (rows, features) = a.dim();
        let cols = features + usize::from(layout.bias);
        let x = ctx.upload_matrix(a, layout.bias, dtype, "features")?;
        let centred = if layout.correlations {
            let mut enc = ctx.encoder();
            let xc = ctx.copy_of(&mut enc, &x, "centred features")?;
            let sums = ctx.zeros(features, dtype.size(), "column sums")?;
            let ss = ctx.zeros(features, dtype.size(), "column sums of squares")?;
            ctx.center_columns(
                &mut enc,
                Operand::whole(&xc, cols),
                (&sums, &ss),
                rows,
                features,
                dtype,
            )?;
            ctx.submit(enc, "centre features")?;
            Some((xc, ss))
        } else {
            None
        };
        Ok(GpuFeatures {
            x,
            rows,
            cols,
            features,
            dtype,
            centred,
        })
    }

    fn upload_targets(&self, y: ArrayView2<f64>, dtype: Dtype) -> Result<GpuTargets> {
        self.check_dtype(dtype)?;
        Ok(GpuTargets {
            y: self.ctx.upload_matrix(y, false, dtype, "targets")?,
            rows: y.nrows(),
            cols: y.ncols(),
        })
    }

    fn gram(&self, a: &GpuFeatures) -> Result<GpuGram> {
        let ctx = &self.ctx;
        let p = a.cols;
        let eb = a.dtype.size();
        let rows = planner::rows_per_binding(p as u64, p as u64, eb, ctx.max_binding())? as usize;
        let mut blocks = Vec::new();
        let mut enc = ctx.encoder();
        for range in planner::ranges(p, rows) {
            let blk = ctx.zeros(range.len() * p, eb, "gram block")?;
            ctx.gemm_tn(
                &mut enc,
                &Gemm {
                    a: Operand {
                        buf: &a.x,
                        ld: p,
                        off: range.start,
                    },
                    b: Operand::whole(&a.x, p),
                    c: &blk,
                    ldc: p,
                    m: range.len(),
                    n: p,
                    rows: a.rows,
                    lower_diag: Some(range.start),
                },
                a.dtype,
            )?;
            blocks.push((range.start, range.end, blk));
        }
        ctx.submit(enc, "gram")?;
        Ok(GpuGram { blocks, dim: p })
    }

    fn gram_to_host(&self, g: GpuGram) -> Result<linalg::Gram> {
        let p = g.dim;
        let mut out = linalg::Gram::zeros(p);
        for (r0, r1, blk) in g.blocks {
            let v = self.ctx.download(&blk, "gram block")?;
            for i in r0..r1 {
                for j in 0..=i {
                    out.set_lower(i, j, v[(i - r0) * p + j]);
                }
            }
        }
        Ok(out)
    }

    fn cross(&self, a: &GpuFeatures, b: &GpuTargets) -> Result<Array2<f64>> {
        let ctx = &self.ctx;
        let (p, q) = (a.cols, b.cols);
        let out = ctx.zeros(p * q, a.dtype.size(), "cross product")?;
        let mut enc = ctx.encoder();
        ctx.gemm_tn(
            &mut enc,
            &Gemm {
                a: Operand::whole(&a.x, p),
                b: Operand::whole(&b.y, q),
                c: &out,
                ldc: q,
                m: p,
                n: q,
                rows: a.rows,
                lower_diag: None,
            },
            a.dtype,
        )?;
        let bytes = ctx.submit_and_read(enc, &[&out], "cross product")?;
        Ok(Array2::from_shape_vec((p, q), floats(&bytes[0], out.elem)).expect("shape"))
    }

    fn abs_correlations(&self, x: &GpuFeatures, y: &GpuTargets) -> Result<Array2<f64>> {
        let ctx = &self.ctx;
        let (xc, ssx) = x.centred.as_ref().ok_or_else(|| {
            Error::InvalidInput("features uploaded without correlation statistics".into())
        })?;
        let (uc, f, eb) = (y.cols, x.features, x.dtype.size());
        let mut enc = ctx.encoder();
        let yc = ctx.copy_of(&mut enc, &y.y, "centred targets")?;
        let sy = ctx.zeros(uc, eb, "unit sums")?;
        let ssy = ctx.zeros(uc, eb, "unit sums of squares")?;
        let r = ctx.zeros(uc * f, eb, "correlations")?;
        ctx.center_columns(
            &mut enc,
            Operand::whole(&yc, uc),
            (&sy, &ssy),
            y.rows,
            uc,
            x.dtype,
        )?;
        ctx.gemm_tn(
            &mut enc,
            &Gemm {
                a: Operand::whole(&yc, uc),
                b: Operand::whole(xc, x.cols),
                c: &r,
                ldc: f,
                m: uc,
                n: f,
                rows: y.rows,
                lower_diag: None,
            },
            x.dtype,
        )?;
        ctx.finish_corr(&mut enc, &r, (ssx, &ssy), (uc, f, y.rows), x.dtype)?;
        let bytes = ctx.submit_and_read(enc, &[&r], "correlations")?;
        let v: Vec<f64> = floats(&bytes[0], eb)
            .into_iter()
            .map(|v| {
                if v == UNDEFINED_CORR_SENTINEL {
                    f64::NAN
                } else {
                    v
                }
            })
            .collect();
        Ok(Array2::from_shape_vec((uc, f), v).expect("shape"))
    }

    fn solve_selected(
        &self,
        g: &GpuGram,
        x: &GpuFeatures,
        y: &GpuTargets,
        idx: ArrayView2<u32>,
        alpha: f64,
    ) -> Result<Solved> {
        let ctx = &self.ctx;
        let (uc, m) = idx.dim();
        if m > MAX_SYSTEM {
            return Err(Error::InvalidInput(format!(
                "n_feat = {} exceeds the GPU solver's limit of {} features per unit; use device cpu",
                m - 1,
                MAX_SYSTEM - 1
            )));
        }
        let p = x.cols;
        let (eb, sreal) = (x.dtype.size(), self.solve_dtype());
        let sb = sreal.size();
        let idx_host: Vec<u32> = idx.iter().copied().collect();
        let idx_buf = ctx.upload_u32(&idx_host, "selected indices")?;
        let alpha_buf = ctx.upload(&[alpha], sreal, "alpha")?;
        let h = ctx.zeros(uc * p, eb, "cross products")?;
        let sys = ctx.zeros(uc * m * m, sb, "systems")?;
        let rhs = ctx.zeros(uc * m, sb, "right-hand sides")?;
        let status = ctx.zeros(uc, 4, "status")?;
        let diag = ctx.zeros(uc * m, sb, "diagonals")?;
        let systems = Systems {
            sys: &sys,
            rhs: &rhs,
            status: &status,
            diag: &diag,
            m,
            units: uc,
        };
        let mut enc = ctx.encoder();
        ctx.gemm_tn(
            &mut enc,
            &Gemm {
                a: Operand::whole(&y.y, uc),
                b: Operand::whole(&x.x, p),
                c: &h,
                ldc: p,
                m: uc,
                n: p,
                rows: y.rows,
                lower_diag: None,
            },
            x.dtype,
        )?;
        for (r0, r1, blk) in &g.blocks {
            let from = GatherFrom {
                g_block: blk,
                rows: (*r0, *r1),
                ldg: p,
                h: &h,
                idx: &idx_buf,
                alpha: &alpha_buf,
            };
            ctx.gather(&mut enc, &from, &systems, (x.dtype, sreal))?;
        }
        if ctx.refines(m, sreal) {
            return ctx.solve_refined(enc, &systems, y.rows, alpha);
        }
        ctx.batched_cholesky_solve(&mut enc, &systems, sreal)?;
        let bytes = ctx.submit_and_read(enc, &[&rhs, &status], "per-unit solves")?;
        Ok(Solved {
            theta: floats(&bytes[0], sb),
            failed: words(&bytes[1])
                .into_iter()
                .map(|s| (s != 0).then(|| s as usize - 1))
                .collect(),
            refined: 0,
        })
    }

    fn sparse_predict(
        &self,
        x: &GpuFeatures,
        idx: ArrayView2<u32>,
        w: ArrayView2<f64>,
        b: ArrayView1<f64>,
        dtype: Dtype,
    ) -> Result<Array2<f64>> {
        self.check_dtype(dtype)?;
        let ctx = &self.ctx;
        let (rows, f) = (x.rows, x.cols);
        let (units, k) = idx.dim();
        let xb = &x.x;
        let ib = ctx.upload_u32(&idx.iter().copied().collect::<Vec<u32>>(), "indices")?;
        let wb = ctx.upload_matrix(w, false, dtype, "weights")?;
        let bb = ctx.upload(&b.to_vec(), dtype, "biases")?;
        let out = ctx.zeros(rows * units, dtype.size(), "predictions")?;
        let mut enc = ctx.encoder();
        ctx.sparse_predict(
            &mut enc,
            [xb, &ib, &wb, &bb, &out],
            (rows, units, k, f),
            dtype,
        )?;
        let bytes = ctx.submit_and_read(enc, &[&out], "sparse predict")?;
        Ok(Array2::from_shape_vec((rows, units), floats(&bytes[0], dtype.size())).expect("shape"))
    }

    fn shrinkage_nll(
        &self,
        cov: ArrayView2<f64>,
        pts: ArrayView2<f64>,
        levels: &[f64],
        dtype: Dtype,
    ) -> Result<Vec<f64>> {
        let sreal = if dtype == Dtype::F32 {
            Dtype::F32
        } else {
            self.solve_dtype()
        };
        super::nll::shrinkage_nll(self, &self.ctx, cov, pts, levels, sreal)
    }
}
