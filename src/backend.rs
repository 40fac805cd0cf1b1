//! The backend trait: the few primitives the models need, on data that stays resident on the
//! backend between calls. [`crate::cpu::CpuBackend`] (faer + rayon) and, with the `gpu`
//! feature, [`crate::gpu::GpuBackend`] (WGSL kernels through wgpu) implement it; the models in
//! [`crate::ridge`] and [`crate::gsn`] are written once, generic over it, and never know which
//! one runs. A backend never knows which model calls it.
//!
//! Conventions: host matrices are row-major `ndarray` views in f64. A *features* matrix `A`
//! (`r × c`, e.g. X with `r` samples) is uploaded once per fit, optionally with a bias column of
//! ones appended (`X₁ = [X | 1]`, bias index `c`) and optionally with the column statistics the
//! correlations need. A *targets* matrix (`r × q`, a chunk of units of Y) is uploaded per chunk.
//! `dtype` is the storage/arithmetic precision a backend uses where it has a choice; the CPU
//! computes in f64 whatever it is.

use crate::device::planner::{Limits, Stage};
use crate::error::Result;
use crate::linalg;
use crate::Dtype;
use ndarray::{Array2, ArrayView1, ArrayView2};

/// Value a correlation takes when it is undefined (a unit with zero variance): it ranks last.
pub const UNDEFINED_CORR: f64 = f64::NAN;

/// Population variance below which a feature's correlations are set to 0 (the reference rule).
pub const LOW_VARIANCE: f64 = 1e-8;

/// How a features matrix is uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureLayout {
    /// Append a column of ones (`X₁ = [X | 1]`).
    pub bias: bool,
    /// Also prepare what [`Backend::abs_correlations`] needs (centred columns and their sums of
    /// squares, over the columns without the bias).
    pub correlations: bool,
    /// With `correlations`, for an f64 fit: the backend may hold the Gram matrix in f32 and
    /// refine each unit's solve against the f64 data instead (f64 accuracy either way). The
    /// CPU does, unless `NEUROFIT_CPU_SOLVE=f64`; the Gram matrix is then not readable with
    /// [`Backend::gram_to_host`]. [`low_precision_gram_pays`] says when to ask for it.
    pub low_precision_gram: bool,
}

/// Whether holding the selection path's Gram matrix in f32 ([`FeatureLayout::low_precision_gram`])
/// is expected to pay for a fit of `units` units with `k` selected of `features` features: it
/// halves the Gram product's cost (`n·F²` multiply-adds at the f32 instead of the f64 GEMM
/// rate) but adds ~2.3 memory-bound passes over each unit's `n × k` selected data. Measured on
/// a 2-core AVX-512 machine at n = 1000, F = 15000, k = 500: the Gram matrix took ~2.1–2.5 s
/// less and each unit 0.6–1.7 ms (one core) more, an even trade near 3 700 units, i.e.
/// `units·k ≈ F²/120`; this asks for `units·k ≤ F²/128` (both costs grow with `n`). The units
/// are the whole fit's, so that every shard of a sharded fit decides alike.
pub fn low_precision_gram_pays(units: usize, k: usize, features: usize) -> bool {
    (units as u128) * (k as u128) * 128 <= (features as u128) * (features as u128)
}

/// The solutions of a batch of per-unit systems.
#[derive(Debug, Clone)]
pub struct Solved {
    /// `units × m` row-major: unit `u`'s solution in the order of its indices.
    pub theta: Vec<f64>,
    /// Per unit: `None` when solved, `Some(pivot)` when its Cholesky met a non-positive (or
    /// numerically zero) pivot.
    pub failed: Vec<Option<usize>>,
    /// How many units were solved by mixed-precision refinement (an f32 factor refined to f64
    /// accuracy); the others by the factorisation in the solve precision.
    pub refined: usize,
}

/// A memory-planning question: the shape of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Uploading `rows × cols` features (with bias / correlation statistics as laid out).
    Features {
        /// Rows (samples).
        rows: usize,
        /// Columns without the bias.
        cols: usize,
        /// How it is laid out.
        layout: FeatureLayout,
    },
    /// The lower Gram matrix of a `rows × dim` features matrix (`dim` with the bias).
    Gram {
        /// Rows reduced over.
        rows: usize,
        /// Size of the result.
        dim: usize,
        /// Whether the selection path asks for it (a backend may then store only the lower
        /// triangle; the dense path factors it whole).
        selection: bool,
    },
    /// One chunk of the selection path, per unit: targets, correlations, cross products,
    /// gathered `m × m` systems and solutions, for `units` units of `rows` samples against
    /// `features` features (without bias).
    SelectedUnits {
        /// Units in all.
        units: usize,
        /// Samples.
        rows: usize,
        /// Features without the bias.
        features: usize,
        /// System size `k + 1`.
        m: usize,
    },
    /// Cross products `Aᵀ B` for `q` columns of `B` (`rows × q`) against `p` columns of `A`.
    Cross {
        /// Columns of B in all.
        q: usize,
        /// Rows reduced over.
        rows: usize,
        /// Columns of A.
        p: usize,
    },
    /// Sparse predictions for `units` units of `k` features on `rows` samples (the samples
    /// themselves are planned as [`Op::Features`]).
    SparsePredict {
        /// Units in all.
        units: usize,
        /// Samples.
        rows: usize,
        /// Selected features per unit.
        k: usize,
    },
    /// The shrinkage scorer: `levels` levels of an `n × n` covariance with `m` held-out points.
    ShrinkageNll {
        /// Levels in all.
        levels: usize,
        /// Variables.
        n: usize,
        /// Held-out points.
        m: usize,
    },
}

/// The primitives of both models on one compute device.
pub trait Backend: Sync {
    /// A features matrix resident on the backend.
    type Features;
    /// A chunk of targets resident on the backend.
    type Targets;
    /// The lower triangle of a Gram matrix resident on the backend.
    type Gram;

    /// A short human-readable name ("cpu (2 threads)", or the adapter).
    fn describe(&self) -> String;
    /// The memory and binding limits chunks are planned against.
    fn limits(&self) -> Limits;
    /// The memory an operation needs: fixed bytes and bytes per item (unit, level, column).
    fn plan(&self, op: Op, dtype: Dtype) -> Stage;
    /// Whether the backend's memory is the host's (the CPU): host-side arrays then count against
    /// the same budget.
    fn shares_host_memory(&self) -> bool {
        false
    }
    /// Fails with [`crate::Error::DeviceUnavailable`] when `dtype` cannot run here.
    fn check_dtype(&self, dtype: Dtype) -> Result<()>;

    /// Uploads a features matrix (`r × c`), its values rounded to `dtype` (callers need not
    /// round an f32 fit's values first).
    fn upload_features(
        &self,
        a: ArrayView2<f64>,
        layout: FeatureLayout,
        dtype: Dtype,
    ) -> Result<Self::Features>;
    /// Uploads a chunk of targets (`r × q`).
    fn upload_targets(&self, y: ArrayView2<f64>, dtype: Dtype) -> Result<Self::Targets>;

    /// The lower triangle of `AᵀA` (`A` with its bias column when it has one).
    fn gram(&self, a: &Self::Features) -> Result<Self::Gram>;
    /// Moves a Gram matrix to the host.
    fn gram_to_host(&self, g: Self::Gram) -> Result<linalg::Gram>;
    /// `Aᵀ B` (`c × q`, row-major on the host), `A` with its bias column when it has one.
    fn cross(&self, a: &Self::Features, b: &Self::Targets) -> Result<Array2<f64>>;
    /// `|r|` between every target column and every feature column (`q × c`), Pearson over the
    /// rows. Features whose population variance is below [`LOW_VARIANCE`] get 0; a target with
    /// zero variance gets [`UNDEFINED_CORR`] everywhere else. Needs `layout.correlations`.
    fn abs_correlations(&self, x: &Self::Features, y: &Self::Targets) -> Result<Array2<f64>>;
    /// Hands back an array this backend returned (a chunk's `|r|`) once the caller is done
    /// with it, for the next chunk's buffers; the default drops it.
    fn recycle(&self, a: Array2<f64>) {
        drop(a);
    }
    /// For each target column `u`: gathers `G[idx_u, idx_u] + αI` and `(X₁ᵀy_u)[idx_u]` (`idx`
    /// is `q × m`, row `u` the indices of unit `u`, the bias index last), factors the system by
    /// Cholesky and solves it.
    fn solve_selected(
        &self,
        g: &Self::Gram,
        x: &Self::Features,
        y: &Self::Targets,
        idx: ArrayView2<u32>,
        alpha: f64,
    ) -> Result<Solved>;

    /// Predictions of a sparse model: `out[r, u] = b[u] + Σ_m x[r, idx[u, m]] · w[u, m]` for
    /// resident `x` (`n' × F`, uploaded without bias), `idx` and `w` (`U × k`), `b` (`U`);
    /// `n' × U`. Only the selected products are computed.
    fn sparse_predict(
        &self,
        x: &Self::Features,
        idx: ArrayView2<u32>,
        w: ArrayView2<f64>,
        b: ArrayView1<f64>,
        dtype: Dtype,
    ) -> Result<Array2<f64>>;

    /// Held-out Gaussian NLL of every shrinkage level (GSN spec §5): for level λ the matrix is
    /// `cov` with its off-diagonal scaled by λ; NaN where its Cholesky meets a non-positive pivot
    /// (LAPACK `potrf` semantics). `pts` is `M × N` (held-out points as rows, centred); with
    /// `M = 0` every level is NaN. `dtype` is the precision asked for (a GPU scores in f32 when
    /// f32 is asked for).
    fn shrinkage_nll(
        &self,
        cov: ArrayView2<f64>,
        pts: ArrayView2<f64>,
        levels: &[f64],
        dtype: Dtype,
    ) -> Result<Vec<f64>>;
}
