//! The GSN result file: the reference's dict keys as `.npz` members, with the reference's
//! dtype policy (in an f32 run `mnN mnS ncsnr cN cS` are float32, the rest float64).

use super::GsnResult;
use crate::device::memory;
use crate::error::{Error, Result};
use crate::io::npz::write_npz;
use crate::io::{NpzMember, NpzReader};
use crate::Dtype;
use ndarray::{Array1, Array2, ArrayD, Ix1, Ix2};
use std::path::Path;

fn dims<D: ndarray::Dimension>(
    a: ArrayD<f64>,
    name: &str,
    path: &Path,
) -> Result<ndarray::Array<f64, D>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<D>().map_err(|_| {
        crate::io::io_err(
            path,
            format!("member {name} has an unexpected shape {shape:?}"),
        )
    })
}

impl GsnResult {
    /// Writes the result as `.npz` (atomically): `mnN mnS ncsnr shrinklevelN shrinklevelD
    /// numiters` and whichever of `cN cS cNb cSb eigvecs_signal eigvals_signal
    /// eigvecs_difference eigvals_difference` the run returned. `dtype` is the run's precision.
    pub fn save(&self, path: &Path, dtype: Dtype) -> Result<()> {
        let small = |x: ArrayD<f64>| match dtype {
            Dtype::F64 => NpzMember::F64(x),
            Dtype::F32 => NpzMember::F32(x.mapv(|v| v as f32)),
        };
        let big = |x: ArrayD<f64>| NpzMember::F64(x);
        let mut m = vec![
            ("mnN", small(self.mn_n.clone().into_dyn())),
            ("mnS", small(self.mn_s.clone().into_dyn())),
            ("ncsnr", small(self.ncsnr.clone().into_dyn())),
            ("shrinklevelN", NpzMember::scalar(self.shrinklevel_n)),
            ("shrinklevelD", NpzMember::scalar(self.shrinklevel_d)),
            ("numiters", NpzMember::int(self.numiters as i64)),
        ];
        let optional = [
            ("cN", self.c_n.clone().map(|x| small(x.into_dyn()))),
            ("cS", self.c_s.clone().map(|x| small(x.into_dyn()))),
            ("cNb", self.c_nb.clone().map(|x| big(x.into_dyn()))),
            ("cSb", self.c_sb.clone().map(|x| big(x.into_dyn()))),
            (
                "eigvecs_signal",
                self.eigvecs_signal.clone().map(|x| big(x.into_dyn())),
            ),
            (
                "eigvals_signal",
                self.eigvals_signal.clone().map(|x| big(x.into_dyn())),
            ),
            (
                "eigvecs_difference",
                self.eigvecs_difference.clone().map(|x| big(x.into_dyn())),
            ),
            (
                "eigvals_difference",
                self.eigvals_difference.clone().map(|x| big(x.into_dyn())),
            ),
        ];
        m.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        write_npz(path, &m)
    }

    /// Reads a result written by [`GsnResult::save`] (values as f64; the diagnostics, warnings,
    /// device and timings are not part of the file and come back empty).
    pub fn load(path: &Path) -> Result<Self> {
        let budget = memory::default_cpu_budget();
        let mut z = NpzReader::open(path)?;
        let mut get = |name: &str| -> Result<Option<ArrayD<f64>>> {
            if z.contains(name) {
                z.f64(name, budget).map(Some)
            } else {
                Ok(None)
            }
        };
        let need = |v: Option<ArrayD<f64>>, name: &str| {
            v.ok_or_else(|| {
                crate::io::io_err(path, format!("has no member '{name}': not a GSN result"))
            })
        };
        let scalar = |v: ArrayD<f64>, name: &str| -> Result<f64> {
            v.iter().next().copied().ok_or_else(|| {
                Error::InvalidInput(format!(
                    "member {name} of {} is empty",
                    crate::io::shown(path)
                ))
            })
        };
        let m2 = |v: Option<ArrayD<f64>>, name: &str| -> Result<Option<Array2<f64>>> {
            v.map(|a| dims::<Ix2>(a, name, path)).transpose()
        };
        let m1 = |v: Option<ArrayD<f64>>, name: &str| -> Result<Option<Array1<f64>>> {
            v.map(|a| dims::<Ix1>(a, name, path)).transpose()
        };
        Ok(GsnResult {
            mn_n: dims::<Ix2>(need(get("mnN")?, "mnN")?, "mnN", path)?,
            mn_s: dims::<Ix2>(need(get("mnS")?, "mnS")?, "mnS", path)?,
            ncsnr: dims::<Ix1>(need(get("ncsnr")?, "ncsnr")?, "ncsnr", path)?,
            shrinklevel_n: scalar(need(get("shrinklevelN")?, "shrinklevelN")?, "shrinklevelN")?,
            shrinklevel_d: scalar(need(get("shrinklevelD")?, "shrinklevelD")?, "shrinklevelD")?,
            numiters: scalar(need(get("numiters")?, "numiters")?, "numiters")? as usize,
            c_n: m2(get("cN")?, "cN")?,
            c_s: m2(get("cS")?, "cS")?,
            c_nb: m2(get("cNb")?, "cNb")?,
            c_sb: m2(get("cSb")?, "cSb")?,
            eigvecs_signal: m2(get("eigvecs_signal")?, "eigvecs_signal")?,
            eigvals_signal: m1(get("eigvals_signal")?, "eigvals_signal")?,
            eigvecs_difference: m2(get("eigvecs_difference")?, "eigvecs_difference")?,
            eigvals_difference: m1(get("eigvals_difference")?, "eigvals_difference")?,
            ..GsnResult::default()
        })
    }
}
