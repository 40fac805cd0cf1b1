//! Deterministic top-k feature selection by |r|.
//!
//! * Main path (spec §5): descending |r|; among equal |r| the **higher** feature index wins
//!   (upstream PR #15's stable-sort rule); NaN ranks after every finite value.
//! * Per-unit path (spec §6): descending |r|; among equal |r| the **lower** index wins (what a
//!   stable `argsort(-a)` gives); NaN ranks last.

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;
use std::cmp::Ordering;

/// How ties in |r| are broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieBreak {
    /// The higher feature index ranks first (main path).
    HigherIndex,
    /// The lower feature index ranks first (per-unit path).
    LowerIndex,
}

fn rank_cmp(a: &[f64], i: u32, j: u32, tie: TieBreak) -> Ordering {
    let (x, y) = (a[i as usize], a[j as usize]);
    let by_index = match tie {
        TieBreak::HigherIndex => j.cmp(&i),
        TieBreak::LowerIndex => i.cmp(&j),
    };
    match (x.is_nan(), y.is_nan()) {
        (false, true) => Ordering::Less,
        (true, false) => Ordering::Greater,
        (true, true) => by_index,
        (false, false) => y.partial_cmp(&x).unwrap_or(Ordering::Equal).then(by_index),
    }
}

/// The `k` best features of one unit, best first.
pub fn top_k(abs_r: &[f64], k: usize, tie: TieBreak) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..abs_r.len() as u32).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, |&i, &j| rank_cmp(abs_r, i, j, tie));
        idx.truncate(k);
    }
    idx.sort_unstable_by(|&i, &j| rank_cmp(abs_r, i, j, tie));
    idx
}

/// Top-k for every row of a `U × F` |r| matrix: a `U × k` index matrix.
pub fn top_k_rows(abs_r: ArrayView2<f64>, k: usize, tie: TieBreak) -> Array2<u32> {
    let rows: Vec<Vec<u32>> = abs_r
        .axis_iter(Axis(0))
        .into_par_iter()
        .map(|row| {
            let owned;
            let s = match row.as_slice() {
                Some(s) => s,
                None => {
                    owned = row.to_vec();
                    &owned
                }
            };
            top_k(s, k, tie)
        })
        .collect();
    let mut out = Array2::<u32>::zeros((rows.len(), k));
    for (u, r) in rows.into_iter().enumerate() {
        for (m, v) in r.into_iter().enumerate() {
            out[(u, m)] = v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_largest_first() {
        assert_eq!(
            top_k(&[0.1, 0.9, 0.5, 0.7], 2, TieBreak::HigherIndex),
            vec![1, 3]
        );
    }

    #[test]
    fn ties_follow_the_rule() {
        let a = [0.5, 0.9, 0.5, 0.1];
        assert_eq!(top_k(&a, 2, TieBreak::HigherIndex), vec![1, 2]);
        assert_eq!(top_k(&a, 2, TieBreak::LowerIndex), vec![1, 0]);
    }

    #[test]
    fn nan_ranks_last() {
        let a = [f64::NAN, 0.2, f64::NAN, 0.1];
        assert_eq!(top_k(&a, 2, TieBreak::HigherIndex), vec![1, 3]);
        assert_eq!(top_k(&a, 3, TieBreak::HigherIndex), vec![1, 3, 2]);
        assert_eq!(top_k(&a, 3, TieBreak::LowerIndex), vec![1, 3, 0]);
    }

    #[test]
    fn k_at_least_len_sorts_everything() {
        assert_eq!(
            top_k(&[0.3, 0.1, 0.2], 5, TieBreak::HigherIndex),
            vec![0, 2, 1]
        );
    }
}
