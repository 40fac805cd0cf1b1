//! A fitted FastL2LiR model: `W` `(F, s1..sk)`, `b` `(1, s1..sk)`, optionally the selection mask
//! `S` and the fit options prediction needs; [`RidgeModel::save`] and [`RidgeModel::load`] own
//! its `.npz` format (README, "model.npz").

use super::params::SpatialNorm;
use super::paths::Predict;
use super::per_unit::normalized_columns;
use super::shape::{flatten_any, unflatten_units, unflatten_units_owned};
use crate::device::{memory, Device};
use crate::dispatch;
use crate::error::{Error, Result};
use crate::io::{self, NpzMember, NpzReader};
use crate::Dtype;
use ndarray::{Array1, Array2, ArrayD, ArrayView1, ArrayView2, CowArray, Ix2};
use rayon::prelude::*;
use std::path::Path;

/// A FastL2LiR model.
#[derive(Debug, Clone)]
pub struct RidgeModel {
    /// Weights, `(F, s1..sk)`.
    pub w: ArrayD<f64>,
    /// Biases, `(1, s1..sk)`.
    pub b: ArrayD<f64>,
    /// Selection mask `(F, s1..sk)`, present after a per-unit-path fit.
    pub s: Option<ArrayD<bool>>,
    /// Precision of the fit; predictions are returned in it.
    pub dtype: Dtype,
    /// Normalisation applied to selected features at fit time (prediction repeats it).
    pub spatial_norm: Option<SpatialNorm>,
}

impl RidgeModel {
    /// Builds a model from flat `W` (`F × U`), `b` (`U`) and optional `S`, reshaping the unit
    /// axis to `unit_shape` (Fortran order).
    pub fn from_flat(
        w: ArrayView2<f64>,
        b: ArrayView1<f64>,
        s: Option<ArrayView2<bool>>,
        unit_shape: &[usize],
        dtype: Dtype,
        spatial_norm: Option<SpatialNorm>,
    ) -> Result<Self> {
        let b2 = b.insert_axis(ndarray::Axis(0));
        Self::validated(RidgeModel {
            w: unflatten_units(w, unit_shape),
            b: unflatten_units(b2, unit_shape),
            s: s.map(|s| unflatten_units(s, unit_shape)),
            dtype,
            spatial_norm,
        })
    }

    /// [`RidgeModel::from_flat`] taking ownership of `W`, `b` and `S`: with one unit axis they
    /// become the model without a copy (`W` is the largest array of a dense fit).
    pub fn from_flat_owned(
        w: Array2<f64>,
        b: Array1<f64>,
        s: Option<Array2<bool>>,
        unit_shape: &[usize],
        dtype: Dtype,
        spatial_norm: Option<SpatialNorm>,
    ) -> Result<Self> {
        let b2 = b.insert_axis(ndarray::Axis(0));
        Self::validated(RidgeModel {
            w: unflatten_units_owned(w, unit_shape),
            b: unflatten_units_owned(b2, unit_shape),
            s: s.map(|s| unflatten_units_owned(s, unit_shape)),
            dtype,
            spatial_norm,
        })
    }

    /// `model` once [`RidgeModel::validate`] accepts it.
    fn validated(model: Self) -> Result<Self> {
        model.validate()?;
        Ok(model)
    }

    /// Checks that W, b and S agree in shape and are finite.
    pub fn validate(&self) -> Result<()> {
        if self.w.ndim() < 2 || self.w.shape()[0] == 0 {
            return Err(Error::InvalidInput(format!(
                "model W must be (features, units…) with at least one feature, got {:?}",
                self.w.shape()
            )));
        }
        let units = &self.w.shape()[1..];
        if self.b.ndim() != self.w.ndim() || self.b.shape()[0] != 1 || &self.b.shape()[1..] != units
        {
            return Err(Error::InvalidInput(format!(
                "model b must have shape (1, {units:?}) to match W {:?}, got {:?}",
                self.w.shape(),
                self.b.shape()
            )));
        }
        if let Some(s) = &self.s {
            if s.shape() != self.w.shape() {
                return Err(Error::InvalidInput(format!(
                    "model S has shape {:?} but W has {:?}",
                    s.shape(),
                    self.w.shape()
                )));
            }
        }
        if self.spatial_norm.is_some() && self.s.is_none() {
            return Err(Error::InvalidInput(
                "a model with spatial_norm needs its selection mask S".into(),
            ));
        }
        // in memory order: a Fortran-order W (as streamed fits write it) is not walked by strides
        let finite = |a: &ArrayD<f64>| match a.as_slice_memory_order() {
            Some(s) => s.par_iter().all(|v| v.is_finite()),
            None => a.iter().all(|v| v.is_finite()),
        };
        if !finite(&self.w) || !finite(&self.b) {
            return Err(Error::NonFinite("model W or b contains NaN/Inf".into()));
        }
        Ok(())
    }

    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.w.shape()[0]
    }

    /// Shape of the unit axes.
    pub fn unit_shape(&self) -> &[usize] {
        &self.w.shape()[1..]
    }

    /// `W` flattened to `F × U` (Fortran order over units).
    pub fn w_flat(&self) -> Array2<f64> {
        flatten_any(self.w.view())
    }

    /// `b` flattened to `U`.
    pub fn b_flat(&self) -> Array1<f64> {
        flatten_any(self.b.view()).row(0).to_owned()
    }

    /// Predicts `(n', s1..sk)` from `x` (`n' × F`), in the model's dtype (values rounded to it).
    /// With `spatial_norm`, each unit's selected features (S, ascending index) are normalised per
    /// sample first (spec §8); otherwise `X W + b`.
    pub fn predict(&self, x: ArrayView2<f64>, device: &Device) -> Result<ArrayD<f64>> {
        self.validate()?;
        let (rows, f) = x.dim();
        if f != self.n_features() {
            return Err(Error::InvalidInput(format!(
                "X has {f} features but the model was fitted on {}",
                self.n_features()
            )));
        }
        if rows == 0 {
            return Err(Error::InvalidInput("X has no samples".into()));
        }
        // an f32 model sees X rounded to f32: the backends round it as they upload it; the
        // spatial_norm path, which reads X on the host, gets a rounded copy
        let xr: CowArray<f64, Ix2> = match (self.dtype, self.spatial_norm) {
            (Dtype::F32, Some(_)) => x.mapv(|v| self.dtype.round(v)).into(),
            _ => x.into(),
        };
        super::check_values(x, "X", false, self.dtype)?;
        // one unit axis: W is already F × U (any layout); N-d units are flattened (a copy)
        let w: CowArray<f64, Ix2> = match self.w.view().into_dimensionality::<Ix2>() {
            Ok(v) => v.into(),
            Err(_) => self.w_flat().into(),
        };
        let b = self.b_flat();
        let units = w.ncols();
        let out = if let Some(norm) = self.spatial_norm {
            let s = flatten_any(self.s.as_ref().expect("validated").view());
            let mut out = Array2::<f64>::zeros((rows, units));
            for u in 0..units {
                let cols: Vec<usize> = (0..f).filter(|&j| s[(j, u)]).collect();
                let z = normalized_columns(xr.view(), &cols, Some(norm), u)?;
                let wu = Array1::from_iter(cols.iter().map(|&j| w[(j, u)]));
                let col = z.dot(&wu) + b[u];
                out.column_mut(u).assign(&col);
            }
            out
        } else {
            let job = Predict {
                x: xr.view(),
                w: w.view(),
                b: b.view(),
                dtype: self.dtype,
            };
            dispatch::run(device, self.dtype, job.flops(), None, "predict", &job)?.output
        };
        let mut out = out;
        if self.dtype == Dtype::F32 {
            out.mapv_inplace(|v| self.dtype.round(v));
        }
        Ok(unflatten_units(out.view(), self.unit_shape()))
    }

    /// Writes the model as `.npz` (atomically): `W` `(F, s1..sk)` and `b` `(1, s1..sk)` in the
    /// model's dtype, `S` (bool) when present, and `dtype`, `spatial_norm` (text), `alpha`,
    /// `n_feat` (scalars; the fit options, kept for the record).
    pub fn save(&self, path: &Path, alpha: f64, n_feat: usize) -> Result<()> {
        let arr = |a: &ArrayD<f64>| match self.dtype {
            Dtype::F64 => NpzMember::F64(a.clone()),
            Dtype::F32 => NpzMember::F32(a.mapv(|v| v as f32)),
        };
        let mut members = vec![
            ("W", arr(&self.w)),
            ("b", arr(&self.b)),
            ("dtype", NpzMember::Text(self.dtype.to_string())),
            ("alpha", NpzMember::scalar(alpha)),
            ("n_feat", NpzMember::int(n_feat as i64)),
        ];
        if let Some(s) = &self.s {
            members.push(("S", NpzMember::Bool(s.clone())));
        }
        if let Some(n) = self.spatial_norm {
            members.push(("spatial_norm", NpzMember::Text(n.to_string())));
        }
        io::npz::write_npz(path, &members)
    }

    /// Reads a model written by [`RidgeModel::save`] (or re-saved by numpy: deflated members
    /// and members neurofit does not use are fine), refusing members whose f64 copies exceed
    /// the default memory budget.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_within(path, memory::default_cpu_budget())
    }

    /// [`RidgeModel::load`] within `budget` bytes.
    pub fn load_within(path: &Path, budget: u64) -> Result<Self> {
        let mut z = NpzReader::open(path)?;
        for need in ["W", "b"] {
            if !z.contains(need) {
                return Err(io::io_err(
                    path,
                    format!("has no member '{need}': not a neurofit model"),
                ));
            }
        }
        let dtype: Dtype = if z.contains("dtype") {
            z.text("dtype")?.parse()?
        } else {
            Dtype::F64
        };
        let spatial_norm = if z.contains("spatial_norm") {
            Some(z.text("spatial_norm")?.parse()?)
        } else {
            None
        };
        let w = z.f64("W", budget)?;
        let b = z.f64("b", budget.saturating_sub(8 * w.len() as u64))?;
        let s = if z.contains("S") {
            Some(z.bool("S", budget)?)
        } else {
            None
        };
        let model = RidgeModel {
            w,
            b,
            s,
            dtype,
            spatial_norm,
        };
        model.validate()?;
        Ok(model)
    }
}
