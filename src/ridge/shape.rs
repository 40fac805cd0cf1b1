//! Fortran-order flattening of N-d unit axes (spec §3.2): flat unit
//! `j = i1 + s1·i2 + s1·s2·i3 + …` (first unit axis fastest).

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, ArrayViewMut, Axis, IxDyn, Order};
use rayon::prelude::*;

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

/// `(r, U)` → `(r, s1..sk)`, the inverse of [`flatten_units`] on the unit axis: one copy,
/// rows in parallel (each row's `U` values are the unit array in Fortran order).
pub fn unflatten_units<T: Clone + Send + Sync>(
    a: ArrayView2<T>,
    unit_shape: &[usize],
) -> ArrayD<T> {
    let (r, units) = a.dim();
    let mut shape = vec![r];
    shape.extend(unit_shape);
    let a = a.as_standard_layout();
    if unit_shape.len() <= 1 || r * units == 0 {
        return a
            .into_owned()
            .into_shape_with_order(IxDyn(&shape))
            .expect("element count is preserved");
    }
    let mut out = vec![a[(0, 0)].clone(); r * units];
    out.par_chunks_mut(units)
        .zip(a.axis_iter(Axis(0)).into_par_iter())
        .for_each(|(dst, src)| {
            let src = src
                .into_shape_with_order((unit_shape.to_vec(), Order::ColumnMajor))
                .expect("a standard-layout row is contiguous");
            ArrayViewMut::from_shape(IxDyn(unit_shape), dst)
                .expect("element count is preserved")
                .assign(&src);
        });
    ArrayD::from_shape_vec(IxDyn(&shape), out).expect("element count is preserved")
}

/// [`unflatten_units`] taking ownership: with at most one unit axis the data is reshaped in
/// place, without a copy.
pub fn unflatten_units_owned<T: Clone + Send + Sync>(
    a: Array2<T>,
    unit_shape: &[usize],
) -> ArrayD<T> {
    if unit_shape.len() <= 1 && a.is_standard_layout() {
        let mut shape = vec![a.nrows()];
        shape.extend(unit_shape);
        return a
            .into_shape_with_order(IxDyn(&shape))
            .expect("element count is preserved");
    }
    unflatten_units(a.view(), unit_shape)
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
    use ndarray::{Array, ShapeBuilder};

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
        assert_eq!(unflatten_units_owned(f.clone(), &[3, 4]), y);
        // one unit axis: reshaped without a copy; a Fortran-order input is copied
        let y1 = Array::from_shape_fn(IxDyn(&[2, 5]), |ix| (ix[0] * 10 + ix[1]) as f64);
        let f1 = flatten_units(y1.view());
        let ptr = f1.as_ptr();
        let back1 = unflatten_units_owned(f1, &[5]);
        assert_eq!(back1, y1);
        assert_eq!(back1.as_ptr(), ptr);
        let mut fortran = Array2::<f64>::zeros((2, 5).f());
        fortran.assign(&flatten_units(y1.view()));
        assert!(!fortran.is_standard_layout());
        assert_eq!(unflatten_units_owned(fortran, &[5]), y1);
        // a three-axis unit array and a Fortran-order view of the flat matrix
        let y3 = Array::from_shape_fn(IxDyn(&[3, 2, 3, 4]), |ix| {
            (ix[0] * 1000 + ix[1] * 100 + ix[2] * 10 + ix[3]) as f64
        });
        let f3 = flatten_units(y3.view());
        assert_eq!(unflatten_units(f3.view(), &[2, 3, 4]), y3);
        let f3f = f3.t().as_standard_layout().into_owned();
        assert_eq!(unflatten_units(f3f.t(), &[2, 3, 4]), y3);
    }
}
