//! Fit options, named and defaulted as in PyFastL2LiR.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::Dtype;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Row-wise normalisation of each sample's selected features (spec §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpatialNorm {
    /// `x / Σ|x|`
    Norm1,
    /// `x / ‖x‖₂`
    Norm2,
    /// `(x − m)/sd + m` (the mean is added back, as in the reference)
    Std1,
    /// `(x − m)/sd`
    Std1Mean0,
    /// `c / Σ|c|` with `c = x − m`
    Norm1Mean0,
    /// `c / ‖c‖₂` with `c = x − m`
    Norm2Mean0,
}

impl SpatialNorm {
    /// Every method, in the order the reference documents them.
    pub const ALL: [SpatialNorm; 6] = [
        SpatialNorm::Norm1,
        SpatialNorm::Norm2,
        SpatialNorm::Std1,
        SpatialNorm::Std1Mean0,
        SpatialNorm::Norm1Mean0,
        SpatialNorm::Norm2Mean0,
    ];
    /// The reference's name of the method.
    pub fn name(self) -> &'static str {
        match self {
            SpatialNorm::Norm1 => "norm1",
            SpatialNorm::Norm2 => "norm2",
            SpatialNorm::Std1 => "std1",
            SpatialNorm::Std1Mean0 => "std1mean0",
            SpatialNorm::Norm1Mean0 => "norm1mean0",
            SpatialNorm::Norm2Mean0 => "norm2mean0",
        }
    }
}

impl FromStr for SpatialNorm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SpatialNorm::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::UnknownOption(format!(
                    "spatial_norm '{s}': expected one of norm1, norm2, std1, std1mean0, norm1mean0, norm2mean0"
                ))
            })
    }
}

impl fmt::Display for SpatialNorm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which training rows a unit uses (spec §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectSample {
    /// Drop the rows where the unit's target is NaN.
    RemoveNan,
}

impl FromStr for SelectSample {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "remove_nan" => Ok(SelectSample::RemoveNan),
            _ => Err(Error::UnknownOption(format!(
                "select_sample '{s}': the only method is 'remove_nan'"
            ))),
        }
    }
}

/// A progress callback: `(units done, units in all)`.
pub type Progress = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// Options of [`crate::ridge::fit`]. Defaults follow `FastL2LiR.fit`: `alpha = 1`, `n_feat = 0`
/// (all features, no selection), no chunking, f64, `device = auto`.
#[derive(Clone)]
pub struct FitParams {
    /// Ridge penalty α ≥ 0 (applied to the bias too, as in the reference).
    pub alpha: f64,
    /// Features kept per unit; 0 (or ≥ the number of features) means all, without selection.
    pub n_feat: usize,
    /// Units per chunk as in the reference (0 = none). Results do not depend on it; neurofit
    /// computes the shared Gram matrix once and uses it as an upper bound on its own chunks.
    pub chunk_size: usize,
    /// Precision of the fit and of the returned model.
    pub dtype: Dtype,
    /// Record the selection mask `S` (per-unit path).
    pub save_select_feat: bool,
    /// Row-wise normalisation of the selected features (per-unit path).
    pub spatial_norm: Option<SpatialNorm>,
    /// Row selection per unit (per-unit path).
    pub select_sample: Option<SelectSample>,
    /// Where to run.
    pub device: Device,
    /// Memory budget in bytes (None = platform default).
    pub max_memory: Option<u64>,
    /// Keep |r| (`F × U`, f64) of the selection path in [`crate::ridge::FitOutput::corr_abs`]
    /// (off by default: it costs `8·F·U` bytes and a transposition).
    pub keep_corr: bool,
    /// Called as units finish.
    pub progress: Option<Progress>,
    /// Polled between chunks (and per unit on the per-unit path): once set, the fit stops with
    /// [`crate::Error::Interrupted`].
    pub cancel: Option<crate::Cancel>,
}

impl Default for FitParams {
    fn default() -> Self {
        FitParams {
            alpha: 1.0,
            n_feat: 0,
            chunk_size: 0,
            dtype: Dtype::F64,
            save_select_feat: false,
            spatial_norm: None,
            select_sample: None,
            device: Device::Auto,
            max_memory: None,
            keep_corr: false,
            progress: None,
            cancel: None,
        }
    }
}

impl fmt::Debug for FitParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FitParams")
            .field("alpha", &self.alpha)
            .field("n_feat", &self.n_feat)
            .field("chunk_size", &self.chunk_size)
            .field("dtype", &self.dtype)
            .field("save_select_feat", &self.save_select_feat)
            .field("spatial_norm", &self.spatial_norm)
            .field("select_sample", &self.select_sample)
            .field("device", &self.device)
            .field("max_memory", &self.max_memory)
            .field("keep_corr", &self.keep_corr)
            .finish()
    }
}

impl FitParams {
    /// True when the fit takes the per-unit path (spec §6).
    pub fn per_unit_path(&self) -> bool {
        self.save_select_feat || self.spatial_norm.is_some() || self.select_sample.is_some()
    }

    /// Checks the scalar options.
    pub fn validate(&self) -> Result<()> {
        if !self.alpha.is_finite() || self.alpha < 0.0 {
            return Err(Error::InvalidInput(format!(
                "alpha must be finite and ≥ 0, got {}",
                self.alpha
            )));
        }
        if self.max_memory == Some(0) {
            return Err(Error::InvalidInput("max_memory must be positive".into()));
        }
        Ok(())
    }
}
