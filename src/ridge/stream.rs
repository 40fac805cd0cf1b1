//! Network-scale FastL2LiR: the selection path over a [`Targets`] source read chunk by chunk
//! (out of core), sparse models (each unit's k selected features and weights instead of a
//! mostly-zero dense W), and fits spread over machines as shards of the flat units whose parts
//! are merged into one model, bit for bit the one-process fit.
//!
//! Part files (`DIR/part-IIIII-of-NNNNN.npz`) hold: `range` (i8 `[start, end)` of flat units),
//! `unit_shape` (i8), `n_features` (i8), `dtype`, `form` (`dense`|`sparse`), `fingerprint`
//! (text), `b` (`U_part`), and `W` (`F × U_part`, dense) or `idx` (`U_part × k`, u4) and
//! `weight` (`U_part × k`, sparse).

use super::params::FitParams;
use super::paths::SelectedFit;
use super::targets::Targets;
use super::RidgeModel;
use crate::backend::{Backend, FeatureLayout, Op};
use crate::device::planner;
use crate::device::{memory, Device};
use crate::dispatch;
use crate::error::{Error, Result};
use crate::io::{self, npz::write_npz, NpzMember, NpzReader};
use crate::Dtype;
use ndarray::{s, Array1, Array2, ArrayD, ArrayView2, Axis, Ix1};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The I-th of N balanced contiguous ranges of flat units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Zero-based index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// The whole fit as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// The flat units of this shard among `units`: `[units·I/N, units·(I+1)/N)`.
    pub fn range(&self, units: usize) -> Range<usize> {
        let at = |i: usize| (units as u128 * i as u128 / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }

    /// The shard of a SLURM array task: `SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN` of
    /// `SLURM_ARRAY_TASK_COUNT`.
    pub fn from_slurm() -> Result<Shard> {
        let var = |k: &str| -> Result<usize> {
            std::env::var(k)
                .map_err(|_| {
                    Error::InvalidInput(format!(
                        "--shard slurm: {k} is not set (run it as a task of an array job: sbatch --array=0-N-1)"
                    ))
                })?
                .trim()
                .parse()
                .map_err(|_| Error::InvalidInput(format!("--shard slurm: {k} is not a number")))
        };
        let id = var("SLURM_ARRAY_TASK_ID")?;
        let min = std::env::var("SLURM_ARRAY_TASK_MIN")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let count = var("SLURM_ARRAY_TASK_COUNT")?;
        Shard::new(
            id.checked_sub(min).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
                ))
            })?,
            count,
        )
    }

    /// Shard `index` of `count`, checked.
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 || index >= count {
            return Err(Error::InvalidInput(format!(
                "shard {index}/{count}: expected I/N with 0 ≤ I < N"
            )));
        }
        Ok(Shard { index, count })
    }

    /// The part file of this shard in `dir`.
    pub fn part_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("part-{:05}-of-{:05}.npz", self.index, self.count))
    }
}

impl FromStr for Shard {
    type Err = Error;
    /// `I/N` or `slurm`.
    fn from_str(s: &str) -> Result<Shard> {
        if s.trim() == "slurm" {
            return Shard::from_slurm();
        }
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| Error::InvalidInput(format!("shard '{s}': expected I/N or slurm")))?;
        let num = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| Error::InvalidInput(format!("shard '{s}': expected I/N or slurm")))
        };
        Shard::new(num(i)?, num(n)?)
    }
}

/// A sparse FastL2LiR model: per flat unit its `k` selected features and their weights.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseModel {
    /// `U × k` feature indices (rank order).
    pub idx: Array2<u32>,
    /// `U × k` weights.
    pub weight: Array2<f64>,
    /// `U` biases.
    pub b: Array1<f64>,
    /// Shape of the unit axes.
    pub unit_shape: Vec<usize>,
    /// Number of input features.
    pub n_features: usize,
    /// Precision; predictions are returned in it.
    pub dtype: Dtype,
}

impl SparseModel {
    /// The sparse form of a dense model (without `spatial_norm`): each unit's nonzero weights in
    /// ascending feature order, `k` the largest count; units with fewer are padded with
    /// feature 0 and weight 0 (the same predictions).
    pub fn from_dense(m: &RidgeModel) -> Result<SparseModel> {
        if m.spatial_norm.is_some() {
            return Err(Error::InvalidInput(
                "a model with spatial_norm normalises its inputs per unit: it has no sparse form"
                    .into(),
            ));
        }
        let w = m.w_flat();
        let (f, units) = w.dim();
        let cols: Vec<Vec<(u32, f64)>> = (0..units)
            .map(|u| {
                (0..f)
                    .filter(|&j| w[(j, u)] != 0.0)
                    .map(|j| (j as u32, w[(j, u)]))
                    .collect()
            })
            .collect();
        let k = cols.iter().map(Vec::len).max().unwrap_or(0);
        let mut idx = Array2::<u32>::zeros((units, k));
        let mut weight = Array2::<f64>::zeros((units, k));
        for (u, c) in cols.iter().enumerate() {
            for (m, &(j, v)) in c.iter().enumerate() {
                idx[(u, m)] = j;
                weight[(u, m)] = v;
            }
        }
        Ok(SparseModel {
            idx,
            weight,
            b: m.b_flat(),
            unit_shape: m.unit_shape().to_vec(),
            n_features: f,
            dtype: m.dtype,
        })
    }

    /// The dense model with the same predictions.
    pub fn to_dense(&self) -> Result<RidgeModel> {
        let units = self.idx.nrows();
        let mut w = Array2::<f64>::zeros((self.n_features, units));
        for u in 0..units {
            for (m, &j) in self.idx.row(u).iter().enumerate() {
                w[(j as usize, u)] = self.weight[(u, m)];
            }
        }
        RidgeModel::from_flat(
            w.view(),
            self.b.view(),
            None,
            &self.unit_shape,
            self.dtype,
            None,
        )
    }

    /// `X W + b` from the selected products only (`n'·U·k` instead of `n'·F·U`), as
    /// `(n', s1..sk)` in the model's dtype, on `device` (a WGSL gather-dot kernel on a GPU),
    /// chunked over units to the memory budget.
    pub fn predict(&self, x: ArrayView2<f64>, device: &Device) -> Result<ArrayD<f64>> {
        let (rows, f) = x.dim();
        if f != self.n_features {
            return Err(Error::InvalidInput(format!(
                "X has {f} features but the model was fitted on {}",
                self.n_features
            )));
        }
        if rows == 0 {
            return Err(Error::InvalidInput("X has no samples".into()));
        }
        super::check_values(x, "X", false, self.dtype)?;
        // no rounded copy: the backends round an f32 model's X as they upload it
        let job = SparsePredict { x, model: self };
        let flops = 2.0 * (rows * self.idx.len()) as f64;
        let out = dispatch::run(device, self.dtype, flops, None, "predict", &job)?.output;
        let out = out.mapv(|v| self.dtype.round(v));
        Ok(super::shape::unflatten_units(out.view(), &self.unit_shape))
    }

    /// Writes the model as `.npz`: `form` = `sparse`, `idx` (`U × k`, u4), `weight` (`U × k`, in
    /// the model's dtype), `b` (`1 × s1..sk` like a dense model), `unit_shape`, `n_features`,
    /// `dtype`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let b = super::shape::unflatten_units(self.b.view().insert_axis(Axis(0)), &self.unit_shape);
        write_npz(
            path,
            &[
                ("form", NpzMember::Text("sparse".into())),
                ("idx", NpzMember::U32(self.idx.clone().into_dyn())),
                ("weight", real(self.weight.clone().into_dyn(), self.dtype)),
                ("b", real(b, self.dtype)),
                ("unit_shape", ints(&self.unit_shape)),
                ("n_features", NpzMember::int(self.n_features as i64)),
                ("dtype", NpzMember::Text(self.dtype.to_string())),
            ],
        )
    }
}

/// Sparse predictions on a backend, chunked over units.
struct SparsePredict<'a> {
    x: ArrayView2<'a, f64>,
    model: &'a SparseModel,
}

impl dispatch::Job for SparsePredict<'_> {
    type Output = Array2<f64>;
    fn run<B: Backend>(&self, be: &B) -> Result<Array2<f64>> {
        let m = self.model;
        be.check_dtype(m.dtype)?;
        let (rows, f) = self.x.dim();
        let (units, k) = m.idx.dim();
        let layout = FeatureLayout {
            bias: false,
            correlations: false,
            low_precision_gram: false,
        };
        let mut stage = be.plan(Op::SparsePredict { units, rows, k }, m.dtype);
        let xs = be.plan(
            Op::Features {
                rows,
                cols: f,
                layout,
            },
            m.dtype,
        );
        stage.fixed += xs.fixed;
        stage.fixed_binding = stage.fixed_binding.max(xs.fixed_binding);
        // X and the model as given, the output: counted in the budget of a backend that shares
        // the host's memory, else checked against the host's available memory
        let host = 8 * (rows * f + units * (2 * k + 1) + rows * units) as u64;
        let mut stage = super::paths::with_host(be, stage, host, "sparse predict")?;
        stage.name = "sparse predict";
        let chunk = planner::items_per_chunk(&stage, &be.limits())? as usize;
        let x = be.upload_features(self.x, layout, m.dtype)?;
        let mut out = Array2::<f64>::zeros((rows, units));
        for r in planner::ranges(units, chunk) {
            let part = be.sparse_predict(
                &x,
                m.idx.slice(s![r.clone(), ..]),
                m.weight.slice(s![r.clone(), ..]),
                m.b.slice(s![r.clone()]),
                m.dtype,
            )?;
            out.slice_mut(s![.., r]).assign(&part);
        }
        Ok(out)
    }
}

fn real(a: ArrayD<f64>, dtype: Dtype) -> NpzMember {
    match dtype {
        Dtype::F64 => NpzMember::F64(a),
        Dtype::F32 => NpzMember::F32(a.mapv(|v| v as f32)),
    }
}

fn ints(v: &[usize]) -> NpzMember {
    NpzMember::I64(Array1::from_iter(v.iter().map(|&x| x as i64)).into_dyn())
}

/// A FastL2LiR model in either form, as files hold it.
#[derive(Debug, Clone)]
pub enum Model {
    /// Dense W.
    Dense(RidgeModel),
    /// Selected features and weights per unit.
    Sparse(SparseModel),
}

impl Model {
    /// Reads a model file (either form) or merges a shard directory.
    pub fn load(path: &Path) -> Result<Model> {
        if path.is_dir() {
            return Ok(merge(path, false)?.model);
        }
        let mut z = NpzReader::open(path)?;
        if z.contains("form") && z.text("form")? == "sparse" {
            return Ok(Model::Sparse(load_sparse(&mut z)?));
        }
        drop(z);
        Ok(Model::Dense(RidgeModel::load(path)?))
    }

    /// Predicts `(n', s1..sk)` (sparse models compute only the selected products).
    pub fn predict(&self, x: ArrayView2<f64>, device: &Device) -> Result<ArrayD<f64>> {
        match self {
            Model::Dense(m) => m.predict(x, device),
            Model::Sparse(m) => m.predict(x, device),
        }
    }

    /// The model's precision.
    pub fn dtype(&self) -> Dtype {
        match self {
            Model::Dense(m) => m.dtype,
            Model::Sparse(m) => m.dtype,
        }
    }

    /// Writes the model (its own form) as `.npz`.
    pub fn save(&self, path: &Path, alpha: f64, n_feat: usize) -> Result<()> {
        match self {
            Model::Dense(m) => m.save(path, alpha, n_feat),
            Model::Sparse(m) => m.save(path),
        }
    }
}

fn member<D: ndarray::Dimension>(
    z: &mut NpzReader,
    name: &str,
    budget: u64,
) -> Result<ndarray::Array<f64, D>> {
    let a = z.f64(name, budget)?;
    let shape = a.shape().to_vec();
    a.into_dimensionality::<D>().map_err(|_| {
        io::io_err(
            z.path(),
            format!("member {name} has an unexpected shape {shape:?}"),
        )
    })
}

fn load_sparse(z: &mut NpzReader) -> Result<SparseModel> {
    let budget = memory::default_cpu_budget();
    let dtype: Dtype = z.text("dtype")?.parse()?;
    let idx_f: Array2<f64> = member(z, "idx", budget)?;
    let weight: Array2<f64> = member(z, "weight", budget)?;
    let b: ArrayD<f64> = z.f64("b", budget)?;
    let unit_shape: Vec<usize> = member::<Ix1>(z, "unit_shape", budget)?
        .iter()
        .map(|&v| v as usize)
        .collect();
    let n_features = z
        .f64("n_features", budget)?
        .iter()
        .next()
        .copied()
        .unwrap_or(0.0) as usize;
    let units: usize = unit_shape.iter().product();
    if idx_f.dim() != weight.dim() || idx_f.nrows() != units || b.len() != units {
        return Err(io::io_err(
            z.path(),
            format!(
                "inconsistent sparse model: idx {:?}, weight {:?}, b {:?}, unit_shape {unit_shape:?}",
                idx_f.shape(),
                weight.shape(),
                b.shape()
            ),
        ));
    }
    if idx_f
        .iter()
        .any(|&j| !(0.0..n_features as f64).contains(&j) || j.fract() != 0.0)
    {
        return Err(io::io_err(
            z.path(),
            format!("idx holds a feature index outside 0..{n_features}"),
        ));
    }
    if weight.iter().chain(b.iter()).any(|v| !v.is_finite()) {
        return Err(Error::NonFinite(
            "sparse model weights or b contain NaN/Inf".into(),
        ));
    }
    // b is stored (1, s1..sk) like a dense model's: flatten it in Fortran order
    let b = if b.ndim() >= 2 {
        super::shape::flatten_any(b.view()).row(0).to_owned()
    } else {
        Array1::from_iter(b.iter().copied())
    };
    Ok(SparseModel {
        idx: idx_f.mapv(|v| v as u32),
        weight,
        b,
        unit_shape,
        n_features,
        dtype,
    })
}

/// One shard's share of a fit.
#[derive(Debug, Clone)]
pub struct Part {
    /// Its flat units.
    pub range: Range<usize>,
    /// The whole fit's unit shape.
    pub unit_shape: Vec<usize>,
    /// Input features.
    pub n_features: usize,
    /// Precision.
    pub dtype: Dtype,
    /// What the inputs and options were (parts of one fit share it).
    pub fingerprint: String,
    /// `U_part` biases.
    pub b: Array1<f64>,
    /// `F × U_part` dense W, or `U_part × k` indices and weights.
    pub weights: PartWeights,
    /// Backend that fitted it.
    pub device: String,
    /// The fit's α and n_feat (kept for the record, as in a model file).
    pub alpha: f64,
    /// Features per unit.
    pub n_feat: usize,
}

/// The weights of a part.
#[derive(Debug, Clone)]
pub enum PartWeights {
    /// `F × U_part`.
    Dense(Array2<f64>),
    /// `U_part × k` indices and weights.
    Sparse(Array2<u32>, Array2<f64>),
}

/// A fingerprint of a fit's inputs and options: CRC-32 of X's values (rounded to the fit's
/// precision, so that an f32 fit of f64 inputs and of the same values stored as f32 agree), Y's
/// shape and the values of its first and last (up to) 64 units, and the options that change
/// results. X is hashed row by row, without a copy.
pub fn fingerprint(
    x: ArrayView2<f64>,
    y: &dyn Targets,
    p: &FitParams,
    sparse: bool,
) -> Result<String> {
    let mut h = crc32fast::Hasher::new();
    let mut bytes = Vec::new();
    let mut put = |v: &mut dyn Iterator<Item = f64>| {
        bytes.clear();
        bytes.extend(v.flat_map(f64::to_le_bytes));
        h.update(&bytes);
    };
    for row in x.rows() {
        put(&mut row.iter().map(|&v| p.dtype.round(v)));
    }
    let units = y.units();
    for r in [0..units.min(64), units.saturating_sub(64)..units] {
        put(&mut y.read(r)?.iter().copied());
    }
    Ok(format!(
        "crc {:08x}; X {:?}; Y {:?} x {}; alpha {:e}; n_feat {}; dtype {}; form {}",
        h.finalize(),
        x.shape(),
        y.unit_shape(),
        y.rows(),
        p.alpha,
        p.n_feat,
        p.dtype,
        if sparse { "sparse" } else { "dense" }
    ))
}

/// Checks a streamed fit's inputs and options; returns k. X is not copied: the backends round
/// an f32 fit's X as they upload it.
fn prepare(x: ArrayView2<f64>, y: &dyn Targets, params: &FitParams) -> Result<usize> {
    params.validate()?;
    let (n, f) = x.dim();
    if y.rows() != n {
        return Err(Error::InvalidInput(format!(
            "X has {n} samples (rows) but Y has {}",
            y.rows()
        )));
    }
    if params.per_unit_path() {
        return Err(Error::InvalidInput(
            "save_select_feat, spatial_norm and select_sample need the whole Y in memory: fit without --shard/--sparse".into(),
        ));
    }
    let k = params.n_feat;
    if k == 0 || k >= f {
        return Err(Error::InvalidInput(format!(
            "out-of-core, sparse and sharded fits take the selection path: 0 < n_feat < F ({f}), got {k}"
        )));
    }
    if n < 2 {
        return Err(Error::InvalidInput(format!(
            "feature selection needs at least 2 samples for correlations, got {n}"
        )));
    }
    super::check_values(x, "X", false, params.dtype)?;
    Ok(k)
}

/// Fits the flat units of `shard` of `y` (read chunk by chunk) against `x`, on the selection path
/// (`0 < n_feat < F`, no per-unit options). Memory: X, G and one chunk of units, plus the part's
/// own output (its dense W columns, or `k` indices and weights per unit).
pub fn fit_part(
    x: ArrayView2<f64>,
    y: &dyn Targets,
    params: &FitParams,
    shard: Shard,
    sparse: bool,
) -> Result<Part> {
    let k = prepare(x, y, params)?;
    let f = x.ncols();
    let fingerprint = fingerprint(x, y, params, sparse)?;
    let range = shard.range(y.units());
    let report = |d: usize| {
        if let Some(p) = &params.progress {
            p(d, range.len())
        }
    };
    let job = SelectedFit {
        x,
        y,
        units: range.clone(),
        k,
        alpha: params.alpha,
        dtype: params.dtype,
        chunk_cap: params.chunk_size,
        dense_w: !sparse,
        keep_values: sparse,
        keep_corr: false,
        progress: &report,
        cancel: params.cancel.as_ref(),
        on_chunk: None,
    };
    let ran = dispatch::run(
        &params.device,
        params.dtype,
        job.flops(),
        params.max_memory,
        "fit",
        &job,
    )?;
    let o = ran.output;
    let round = |a: Array2<f64>| a.mapv(|v| params.dtype.round(v));
    let weights = match (o.w, o.values) {
        (Some(w), _) => PartWeights::Dense(round(w)),
        (None, Some(v)) => PartWeights::Sparse(o.selected, round(v)),
        (None, None) => unreachable!("the job keeps one form"),
    };
    Ok(Part {
        range,
        unit_shape: y.unit_shape().to_vec(),
        n_features: f,
        dtype: params.dtype,
        fingerprint,
        b: o.b.mapv(|v| params.dtype.round(v)),
        weights,
        device: ran.device,
        alpha: params.alpha,
        n_feat: k,
    })
}

/// Fits the units of `shard` on the selection path with a dense W that is never held whole: each
/// chunk's W columns are written as they finish into member `W` (Fortran order, so that flat units
/// are contiguous) of the `.npz` at `path`, atomically. With `as_part` the file is a shard part
/// (see the module docs), else a model file as [`RidgeModel::save`] writes it (`W` shaped
/// `(F, s1..sk)`, `b` `(1, s1..sk)`). Returns the backend that ran it.
pub fn fit_dense_to_file(
    x: ArrayView2<f64>,
    y: &dyn Targets,
    params: &FitParams,
    shard: Shard,
    path: &Path,
    as_part: bool,
) -> Result<String> {
    let k = prepare(x, y, params)?;
    let fp = fingerprint(x, y, params, false)?;
    let f = x.ncols();
    let unit_shape = y.unit_shape().to_vec();
    let range = shard.range(y.units());
    let dtype = params.dtype;
    let (descr, es) = match dtype {
        Dtype::F64 => ("<f8", 8usize),
        Dtype::F32 => ("<f4", 4usize),
    };
    let report = |d: usize| {
        if let Some(p) = &params.progress {
            p(d, range.len())
        }
    };
    let mut device = String::new();
    io::write_atomic(path, |w| {
        let mut z = io::npz::NpzWriter::new(w, path);
        let meta = [
            ("dtype", NpzMember::Text(dtype.to_string())),
            ("alpha", NpzMember::scalar(params.alpha)),
            ("n_feat", NpzMember::int(k as i64)),
        ];
        z.add(&meta)?;
        let w_shape: Vec<usize> = if as_part {
            z.add(&[
                ("form", NpzMember::Text("dense".into())),
                ("range", ints(&[range.start, range.end])),
                ("unit_shape", ints(&unit_shape)),
                ("n_features", NpzMember::int(f as i64)),
                ("fingerprint", NpzMember::Text(fp.clone())),
            ])?;
            vec![f, range.len()]
        } else {
            std::iter::once(f)
                .chain(unit_shape.iter().copied())
                .collect()
        };
        let out = std::sync::Mutex::new(z.stream("W", descr, es, &w_shape, true)?);
        let on_chunk = |r: Range<usize>, sel: ArrayView2<u32>, theta: &[f64]| -> Result<()> {
            let m = sel.ncols() + 1;
            let mut buf = vec![0u8; r.len() * f * es];
            for i in 0..r.len() {
                for (c, &j) in sel.row(i).iter().enumerate() {
                    let v = dtype.round(theta[i * m + c]);
                    let at = (i * f + j as usize) * es;
                    match dtype {
                        Dtype::F64 => buf[at..at + 8].copy_from_slice(&v.to_le_bytes()),
                        Dtype::F32 => buf[at..at + 4].copy_from_slice(&(v as f32).to_le_bytes()),
                    }
                }
            }
            let mut z = out.lock().unwrap_or_else(|p| p.into_inner());
            std::io::Write::write_all(&mut *z, &buf).map_err(|e| io::io_err(path, e))
        };
        let job = SelectedFit {
            x,
            y,
            units: range.clone(),
            k,
            alpha: params.alpha,
            dtype,
            chunk_cap: params.chunk_size,
            dense_w: false,
            keep_values: false,
            keep_corr: false,
            progress: &report,
            cancel: params.cancel.as_ref(),
            on_chunk: Some(&on_chunk),
        };
        let ran = dispatch::run(
            &params.device,
            dtype,
            job.flops(),
            params.max_memory,
            "fit",
            &job,
        )?;
        device = ran.device;
        let b = ran.output.b.mapv(|v| dtype.round(v));
        let b = if as_part {
            b.into_dyn()
        } else {
            super::shape::unflatten_units(b.view().insert_axis(Axis(0)), &unit_shape)
        };
        z.add(&[("b", real(b, dtype))])?;
        z.finish()
    })?;
    Ok(device)
}

impl Part {
    /// The model of a one-part (whole) fit.
    pub fn into_model(self) -> Result<Model> {
        let units: usize = self.unit_shape.iter().product();
        if self.range != (0..units) {
            return Err(Error::InvalidInput(format!(
                "a part of units {:?} of {units} is not a whole model: merge the shard directory",
                self.range
            )));
        }
        Ok(match self.weights {
            PartWeights::Dense(w) => Model::Dense(RidgeModel::from_flat(
                w.view(),
                self.b.view(),
                None,
                &self.unit_shape,
                self.dtype,
                None,
            )?),
            PartWeights::Sparse(idx, weight) => Model::Sparse(SparseModel {
                idx,
                weight,
                b: self.b,
                unit_shape: self.unit_shape,
                n_features: self.n_features,
                dtype: self.dtype,
            }),
        })
    }

    /// Writes the part (atomically: an interrupted shard never leaves a part that looks
    /// complete).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut m = vec![
            ("range", ints(&[self.range.start, self.range.end])),
            ("unit_shape", ints(&self.unit_shape)),
            ("n_features", NpzMember::int(self.n_features as i64)),
            ("dtype", NpzMember::Text(self.dtype.to_string())),
            ("fingerprint", NpzMember::Text(self.fingerprint.clone())),
            ("b", real(self.b.clone().into_dyn(), self.dtype)),
            ("alpha", NpzMember::scalar(self.alpha)),
            ("n_feat", NpzMember::int(self.n_feat as i64)),
        ];
        match &self.weights {
            PartWeights::Dense(w) => {
                m.push(("form", NpzMember::Text("dense".into())));
                m.push(("W", real(w.clone().into_dyn(), self.dtype)));
            }
            PartWeights::Sparse(i, w) => {
                m.push(("form", NpzMember::Text("sparse".into())));
                m.push(("idx", NpzMember::U32(i.clone().into_dyn())));
                m.push(("weight", real(w.clone().into_dyn(), self.dtype)));
            }
        }
        write_npz(path, &m)
    }

    /// Reads a part's fingerprint and range only (to check a re-run or a merge cheaply).
    pub fn peek(path: &Path) -> Result<(String, Range<usize>)> {
        Part::peek_in(&mut NpzReader::open(path)?)
    }

    fn peek_in(z: &mut NpzReader) -> Result<(String, Range<usize>)> {
        let path = z.path().to_path_buf();
        let path = path.as_path();
        let fp = z.text("fingerprint")?;
        let r = z.f64("range", 1 << 10)?;
        let r: Vec<usize> = r.iter().map(|&v| v as usize).collect();
        if r.len() != 2 || r[0] > r[1] {
            return Err(io::io_err(path, "member range is not [start, end)"));
        }
        Ok((fp, r[0]..r[1]))
    }

    /// Reads a part.
    pub fn load(path: &Path) -> Result<Part> {
        let budget = memory::default_cpu_budget();
        let mut z = NpzReader::open(path)?;
        let (fingerprint, range) = Part::peek_in(&mut z)?;
        let dtype: Dtype = z.text("dtype")?.parse()?;
        let unit_shape: Vec<usize> = member::<Ix1>(&mut z, "unit_shape", budget)?
            .iter()
            .map(|&v| v as usize)
            .collect();
        let n_features = z
            .f64("n_features", 1 << 10)?
            .iter()
            .next()
            .copied()
            .unwrap_or(0.0) as usize;
        let b: Array1<f64> = member(&mut z, "b", budget)?;
        let weights = match z.text("form")?.as_str() {
            "dense" => PartWeights::Dense(member(&mut z, "W", budget)?),
            "sparse" => {
                let i: Array2<f64> = member(&mut z, "idx", budget)?;
                PartWeights::Sparse(i.mapv(|v| v as u32), member(&mut z, "weight", budget)?)
            }
            other => return Err(io::io_err(path, format!("unknown part form '{other}'"))),
        };
        let alpha = z
            .f64("alpha", 1 << 10)?
            .iter()
            .next()
            .copied()
            .unwrap_or(f64::NAN);
        let n_feat = z
            .f64("n_feat", 1 << 10)?
            .iter()
            .next()
            .copied()
            .unwrap_or(0.0) as usize;
        Ok(Part {
            range,
            unit_shape,
            n_features,
            dtype,
            fingerprint,
            b,
            weights,
            device: String::new(),
            alpha,
            n_feat,
        })
    }
}

/// The part files of `dir` with their shard numbers, sorted.
fn list_parts(dir: &Path) -> Result<Vec<(Shard, PathBuf)>> {
    let rd = std::fs::read_dir(dir).map_err(|e| io::io_err(dir, e))?;
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(|e| io::io_err(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix("part-")
            .and_then(|r| r.strip_suffix(".npz"))
        else {
            continue;
        };
        let parsed = rest
            .split_once("-of-")
            .and_then(|(i, n)| Shard::new(i.parse().ok()?, n.parse().ok()?).ok());
        match parsed {
            Some(s) => v.push((s, e.path())),
            None => {
                return Err(io::io_err(
                    &e.path(),
                    "is not a part file name (part-IIIII-of-NNNNN.npz)",
                ))
            }
        }
    }
    v.sort_by_key(|(s, _)| s.index);
    Ok(v)
}

/// A merged shard directory: the model and the fit's α and n_feat.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The model.
    pub model: Model,
    /// The fit's α.
    pub alpha: f64,
    /// The fit's n_feat.
    pub n_feat: usize,
}

/// Assembles the model of a shard directory: every part present, all from the same inputs and
/// options (fingerprint), covering the units exactly once. `dense` converts a sparse fit to a
/// dense W. Errors name the missing or foreign part; nothing is written.
pub fn merge(dir: &Path, dense: bool) -> Result<Merged> {
    let parts = list_parts(dir)?;
    let Some((first, _)) = parts.first() else {
        return Err(io::io_err(
            dir,
            "holds no part files (part-IIIII-of-NNNNN.npz)",
        ));
    };
    let count = first.count;
    if let Some((s, p)) = parts.iter().find(|(s, _)| s.count != count) {
        return Err(io::io_err(
            p,
            format!(
                "is shard {}/{} but other parts are of {count}: a foreign part",
                s.index, s.count
            ),
        ));
    }
    let have: Vec<usize> = parts.iter().map(|(s, _)| s.index).collect();
    let missing: Vec<String> = (0..count)
        .filter(|i| !have.contains(i))
        .map(|i| {
            Shard { index: i, count }
                .part_path(dir)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    if !missing.is_empty() {
        return Err(io::io_err(
            dir,
            format!(
                "is missing {} of {count} parts: {}",
                missing.len(),
                missing.join(", ")
            ),
        ));
    }
    // every part's fingerprint from its header, before any data is read
    let fp0 = Part::peek(&parts[0].1)?.0;
    for (_, path) in &parts[1..] {
        let fp = Part::peek(path)?.0;
        if fp != fp0 {
            return Err(io::io_err(
                path,
                format!(
                    "comes from other inputs or options than part 0 (fingerprint '{fp}' vs '{fp0}'): a foreign part"
                ),
            ));
        }
    }
    let p0 = Part::load(&parts[0].1)?;
    let units: usize = p0.unit_shape.iter().product();
    let (f, dtype, alpha, n_feat) = (p0.n_features, p0.dtype, p0.alpha, p0.n_feat);
    let unit_shape = p0.unit_shape.clone();
    let k = match &p0.weights {
        PartWeights::Sparse(i, _) => Some(i.ncols()),
        PartWeights::Dense(_) => None,
    };
    // the merged model is held whole (as f64), with one part besides it: plan it
    let need = 8 * units as u64
        + match (k, dense) {
            (Some(k), false) => 12 * (units * k) as u64,
            _ => 8 * (f * units) as u64,
        };
    let budget = memory::default_cpu_budget();
    if need > budget {
        return Err(Error::OutOfMemory(format!(
            "merging {} needs {} for the whole model but {} of memory is available; merge sparse parts (ridge fit --sparse) without --dense",
            io::shown(dir),
            memory::format_size(need),
            memory::format_size(budget)
        )));
    }
    let mut b = Array1::<f64>::zeros(units);
    let mut w = k.is_none().then(|| Array2::<f64>::zeros((f, units)));
    let mut sparse = k.map(|k| {
        (
            Array2::<u32>::zeros((units, k)),
            Array2::<f64>::zeros((units, k)),
        )
    });
    // one part in memory at a time
    let mut first = Some(p0);
    for (sh, path) in &parts {
        let part = match first.take() {
            Some(p) => p,
            None => Part::load(path)?,
        };
        if part.range != sh.range(units) || part.unit_shape != unit_shape {
            return Err(io::io_err(
                path,
                format!(
                    "covers units {:?} of {:?}, expected {:?} of {unit_shape:?}",
                    part.range,
                    part.unit_shape,
                    sh.range(units)
                ),
            ));
        }
        let r = part.range.clone();
        b.slice_mut(s![r.clone()]).assign(&part.b);
        match (part.weights, w.as_mut(), sparse.as_mut()) {
            (PartWeights::Dense(pw), Some(w), _) => w.slice_mut(s![.., r]).assign(&pw),
            (PartWeights::Sparse(pi, pv), _, Some((si, sv))) => {
                si.slice_mut(s![r.clone(), ..]).assign(&pi);
                sv.slice_mut(s![r, ..]).assign(&pv);
            }
            _ => return Err(io::io_err(path, "holds another form than part 0")),
        }
    }
    let model = match (w, sparse) {
        (Some(w), _) => Model::Dense(RidgeModel::from_flat(
            w.view(),
            b.view(),
            None,
            &unit_shape,
            dtype,
            None,
        )?),
        (None, Some((idx, weight))) => {
            let m = SparseModel {
                idx,
                weight,
                b,
                unit_shape,
                n_features: f,
                dtype,
            };
            if dense {
                Model::Dense(m.to_dense()?)
            } else {
                Model::Sparse(m)
            }
        }
        (None, None) => unreachable!("one form is allocated"),
    };
    Ok(Merged {
        model,
        alpha,
        n_feat,
    })
}

/// Checks that a complete part for this fit already exists at `path` (a re-run skips it).
pub fn part_is_complete(path: &Path, fingerprint: &str) -> bool {
    matches!(Part::peek(path), Ok((fp, _)) if fp == fingerprint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_unit_once_in_balanced_ranges() {
        for units in [0usize, 1, 7, 100, 1001] {
            for count in [1usize, 2, 3, 8] {
                let mut next = 0;
                for index in 0..count {
                    let r = Shard { index, count }.range(units);
                    assert_eq!(r.start, next);
                    assert!(r.len() <= units / count + 1);
                    next = r.end;
                }
                assert_eq!(next, units);
            }
        }
    }

    #[test]
    fn parses_i_of_n() {
        assert_eq!(
            "2/5".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 5 }
        );
        assert!("5/5".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }
}
