//! The few heavy operations the models need, as one trait. [`crate::cpu::CpuOps`] and
//! [`crate::gpu::GpuOps`] implement it; the models never know which one runs.
//!
//! Conventions: matrices are row-major `ndarray` arrays in f64 on the host. `x` is `n × F`
//! (samples × features) and `y` is `n × U` (samples × units). The bias column of
//! `X₁ = [X | 1]` is index `F`. `dtype` is the storage/arithmetic precision the backend should use
//! where it has a choice (the CPU always computes in f64).

use crate::error::Result;
use crate::Dtype;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// Value used in correlation output for an undefined |r| (zero-variance unit): it ranks last.
pub const UNDEFINED_CORR: f64 = f64::NAN;

/// Ridge-regression kernels.
pub trait RidgeOps {
    /// `|r|` between every unit and feature, `U × F`, Pearson on all rows. Features whose
    /// population variance is below `1e-8` get 0; a unit with zero variance gets NaN
    /// ([`UNDEFINED_CORR`]) everywhere else.
    fn abs_correlations(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        dtype: Dtype,
    ) -> Result<Array2<f64>>;

    /// Per-unit ridge on selected features with the shared Gram matrix
    /// `G = X₁ᵀX₁ + αI` (bias diagonal included). `sel` is `U × k` (feature indices in rank order);
    /// the system of unit `u` is `G[idx,idx] θ = (YᵀX₁)[u, idx]` with `idx = sel[u] ++ [F]`.
    /// Returns `W` (`F × U`, zeros outside the selection) and `b` (`U`). `unit_offset` is the
    /// index of the first unit (for error messages); `progress` is called with the number of
    /// units finished so far.
    #[allow(clippy::too_many_arguments)]
    fn solve_selected(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        sel: ArrayView2<u32>,
        alpha: f64,
        dtype: Dtype,
        unit_offset: usize,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<(Array2<f64>, Array1<f64>)>;

    /// Ridge on all features with the bias regularised like every weight: primal form
    /// `(X₁ᵀX₁ + αI)⁻¹X₁ᵀY` when `n > F + 1`, else dual `X₁ᵀ(X₁X₁ᵀ + αI)⁻¹Y`. Returns `W`, `b`.
    fn solve_dense(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        alpha: f64,
        dtype: Dtype,
    ) -> Result<(Array2<f64>, Array1<f64>)>;

    /// `X W + 1 bᵀ` (`n' × U`).
    fn predict(
        &self,
        x: ArrayView2<f64>,
        w: ArrayView2<f64>,
        b: ArrayView1<f64>,
        dtype: Dtype,
    ) -> Result<Array2<f64>>;
}

/// GSN kernels.
pub trait GsnOps {
    /// Held-out Gaussian NLL of every shrinkage level (spec §5): for level λ the matrix is
    /// `Sh_λ(cov)` (off-diagonals × λ); NaN where its Cholesky meets a non-positive pivot.
    /// `pts` is `M × N` (held-out points as rows, already centred). With `M = 0` every level is NaN.
    fn shrinkage_nll(
        &self,
        cov: ArrayView2<f64>,
        pts: ArrayView2<f64>,
        levels: &[f64],
    ) -> Result<Vec<f64>>;
}
