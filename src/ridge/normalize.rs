//! `spatial_norm`: row-wise normalisation of one sample's selected features (spec §7).

use super::params::SpatialNorm;

/// Normalises `x` in place. The result may be non-finite (zero norm or zero spread); callers
/// check and report that.
pub fn normalize_row(x: &mut [f64], method: SpatialNorm) {
    let n = x.len() as f64;
    let mean = || x.iter().sum::<f64>() / n;
    match method {
        SpatialNorm::Norm1 => {
            let s: f64 = x.iter().map(|v| v.abs()).sum();
            x.iter_mut().for_each(|v| *v /= s);
        }
        SpatialNorm::Norm2 => {
            let s = x.iter().map(|v| v * v).sum::<f64>().sqrt();
            x.iter_mut().for_each(|v| *v /= s);
        }
        SpatialNorm::Std1 | SpatialNorm::Std1Mean0 => {
            let m = mean();
            let sd = (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0)).sqrt();
            let add = if method == SpatialNorm::Std1 { m } else { 0.0 };
            x.iter_mut().for_each(|v| *v = (*v - m) / sd + add);
        }
        SpatialNorm::Norm1Mean0 => {
            let m = mean();
            x.iter_mut().for_each(|v| *v -= m);
            let s: f64 = x.iter().map(|v| v.abs()).sum();
            x.iter_mut().for_each(|v| *v /= s);
        }
        SpatialNorm::Norm2Mean0 => {
            let m = mean();
            x.iter_mut().for_each(|v| *v -= m);
            let s = x.iter().map(|v| v * v).sum::<f64>().sqrt();
            x.iter_mut().for_each(|v| *v /= s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_matches_its_formula() {
        let base = [1.0, -2.0, 3.0, 6.0];
        let mut v = base;
        normalize_row(&mut v, SpatialNorm::Norm1);
        assert!((v.iter().map(|a| a.abs()).sum::<f64>() - 1.0).abs() < 1e-15);
        let mut v = base;
        normalize_row(&mut v, SpatialNorm::Norm2);
        assert!((v.iter().map(|a| a * a).sum::<f64>() - 1.0).abs() < 1e-15);
        let mut v = base;
        normalize_row(&mut v, SpatialNorm::Std1);
        assert!((v.iter().sum::<f64>() / 4.0 - 2.0).abs() < 1e-14);
        let mut v = base;
        normalize_row(&mut v, SpatialNorm::Std1Mean0);
        let var = v.iter().map(|a| a * a).sum::<f64>() / 3.0;
        assert!((var - 1.0).abs() < 1e-14);
        let mut v = base;
        normalize_row(&mut v, SpatialNorm::Norm1Mean0);
        assert!(v.iter().sum::<f64>().abs() < 1e-15);
        let mut v = base;
        normalize_row(&mut v, SpatialNorm::Norm2Mean0);
        assert!((v.iter().map(|a| a * a).sum::<f64>() - 1.0).abs() < 1e-15);
    }
}
