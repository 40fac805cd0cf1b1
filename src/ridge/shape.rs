//! Fortran-order flattening of N-d unit axes (spec §3.2): flat unit
//! `j = i1 + s1·i2 + s1·s2·i3 + …` (first unit axis fastest).

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, IxDyn};

/// `(n, s1..sk)` → `(n, U)` in Fortran order over the unit axes.
pub fn flatten_units(y: ArrayViewD<f64>) -> Array2<f64> {
    let n = y.shape()[0];
    let k = y.ndim() - 1;
    let units: usize = y.shape()[1..].iter().product();
    let mut perm: Vec<usize> = vec![0];
    perm.extend((1..=k).rev());
    let p = y.permuted_axes(IxDyn(&perm));
    let std = p.as_standard_layout();
    std.into_owned()
        .into_shape_with_order((n, units))
        .expect("element count is preserved")
}

/// `(r, U)` → `(r, s1..sk)`, the inverse of [`flatten_units`] on the unit axis.
pub fn unflatten_units<T: Clone>(a: ArrayView2<T>, unit_shape: &[usize]) -> ArrayD<T> {
    let r = a.nrows();
    let mut rev: Vec<usize> = vec![r];
    rev.extend(unit_shape.iter().rev());
    let c = a.as_standard_layout().into_owned();
    let d = c
        .into_shape_with_order(IxDyn(&rev))
        .expect("element count is preserved");
    let k = unit_shape.len();
    let mut perm: Vec<usize> = vec![0];
    perm.extend((1..=k).rev());
    d.permuted_axes(IxDyn(&perm))
        .as_standard_layout()
        .into_owned()
}

/// `(r, s1..sk)` → `(r, U)` for any element type.
pub fn flatten_any<T: Clone>(a: ArrayViewD<T>) -> Array2<T> {
    let r = a.shape()[0];
    let k = a.ndim() - 1;
    let units: usize = a.shape()[1..].iter().product();
    let mut perm: Vec<usize> = vec![0];
    perm.extend((1..=k).rev());
    a.permuted_axes(IxDyn(&perm))
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((r, units))
        .expect("element count is preserved")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array;

    #[test]
    fn flat_index_is_fortran_order() {
        let y = Array::from_shape_fn(IxDyn(&[2, 3, 4]), |ix| {
            (ix[0] * 100 + ix[1] + 3 * ix[2]) as f64
        });
        let f = flatten_units(y.view());
        for j in 0..12 {
            assert_eq!(f[(1, j)], 100.0 + j as f64);
        }
        let back = unflatten_units(f.view(), &[3, 4]);
        assert_eq!(back, y);
    }
}
