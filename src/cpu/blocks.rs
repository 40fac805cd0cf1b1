//! Units' selected blocks of the Gram matrix, gathered a batch of units at a time.
//!
//! A unit's system needs `XcᵀXc` on its `k` selected features: the `k(k+1)/2` entries of the
//! lower triangle at those rows and columns, spread over the whole Gram matrix (F = 15000: 0.45
//! GB in f32). Gathered one unit after another, each of a unit's columns reads a sparse subset of
//! a Gram column, about one cache line an entry, from memory: ~15 MB of traffic a unit at fc8
//! (F = 15000, k = 500), and the gathers took about half of the solve stage.
//!
//! Gathered a batch at a time, feature by feature, each Gram column is read from memory once a
//! batch and then copied, from cache, into the block of every unit of the batch that selected
//! the feature; each unit's block is written column by column, front to back. Measured at fc8
//! size (f32, 2 threads, 1000 units, the fit's own selections): 0.23–0.24 s unit by unit
//! against 0.05–0.06 s in batches of 256 or 1000 units and 0.07–0.08 s in batches of 128.
//!
//! A block is **packed**: column `c` (from its diagonal down, `k − c` entries) follows column
//! `c − 1`, `k(k+1)/2` entries in all, in the Gram matrix's precision.

use crate::linalg::{Gram, Real};
use rayon::prelude::*;

/// Most bytes of blocks gathered at once (less where the memory budget is small): batches of
/// 256 units at fc8 in f32.
pub const BATCH_BYTES: u64 = 128 << 20;

/// Entries in a packed `k × k` lower triangle.
pub fn packed_len(k: usize) -> usize {
    k * (k + 1) / 2
}

/// Where column `c` of a packed `k × k` lower triangle starts: `Σ_{i<c} (k − i)`.
#[inline]
pub fn packed_start(k: usize, c: usize) -> usize {
    c * k - c * c.saturating_sub(1) / 2
}

/// Column `c` of a packed `k × k` lower triangle, from its diagonal down.
#[inline]
pub fn packed_col<T>(block: &[T], k: usize, c: usize) -> &[T] {
    let s = packed_start(k, c);
    &block[s..s + k - c]
}

/// Bytes a batch needs per unit: its block (`elem` bytes an entry) and its
/// share of the feature-ordered index (8 bytes a selected feature).
pub fn unit_bytes(k: usize, elem: u64) -> u64 {
    packed_len(k) as u64 * elem + 8 * k as u64
}

/// Units per batch for `units` units of `k` features, blocks of `elem` bytes an entry: as many
/// as [`BATCH_BYTES`] (or an eighth of `budget`, if less) holds, at least one per thread, at most
/// `units`.
pub fn batch_units(units: usize, k: usize, elem: u64, budget: u64, threads: usize) -> usize {
    let cap = BATCH_BYTES.min(budget / 8);
    let fit = (cap / unit_bytes(k, elem).max(1)) as usize;
    fit.max(threads).max(1).min(units.max(1))
}

/// A raw pointer to the batch's blocks, shared by the threads that write disjoint parts of it.
#[derive(Clone, Copy)]
struct Blocks<T>(*mut T);
// SAFETY: the pointer is only used to write regions that no two threads share (see
// `gather_blocks`), while the buffer it points into is borrowed mutably by the gather.
unsafe impl<T: Send> Send for Blocks<T> {}
unsafe impl<T: Send> Sync for Blocks<T> {}

impl<T> Blocks<T> {
    /// The pointer `offset` elements in (a method, so that closures capture the whole
    /// `Blocks`, which is `Sync`, not its pointer field).
    ///
    /// # Safety
    /// `offset` must lie within the buffer the pointer points into.
    unsafe fn at(self, offset: usize) -> *mut T {
        // SAFETY: the caller keeps `offset` within the buffer.
        unsafe { self.0.add(offset) }
    }
}

/// Gathers the packed blocks of a batch of units from `g`: `sorted` holds the units' rows of
/// `m` indices each, whose first `k` are the selected features in ascending order (the rest,
/// the bias, is not read); unit `u`'s block goes to `out[u·len .. (u+1)·len]` with
/// `len = packed_len(k)`.
///
/// # Panics
/// When `sorted` is not whole rows of `m ≥ k` indices, `out` is too short, or a row's first `k`
/// indices are not ascending features of `g`.
pub fn gather_blocks<T: Real>(g: &Gram<T>, sorted: &[u32], m: usize, k: usize, out: &mut [T]) {
    assert!(
        m >= k && m > 0 && sorted.len().is_multiple_of(m),
        "whole rows of m indices"
    );
    let units = sorted.len() / m;
    let len = packed_len(k);
    assert!(out.len() >= units * len, "room for every block");
    let f = g.dim();
    let row = |u: usize| &sorted[u * m..u * m + k];
    for u in 0..units {
        let r = row(u);
        assert!(
            r.iter().all(|&j| (j as usize) < f) && r.windows(2).all(|w| w[0] <= w[1]),
            "gather_blocks: unit {u}'s features must be ascending and below {f}"
        );
    }
    // the (unit, position) pairs of each feature, features in order
    let mut start = vec![0usize; f + 1];
    for u in 0..units {
        for &j in row(u) {
            start[j as usize + 1] += 1;
        }
    }
    for j in 0..f {
        start[j + 1] += start[j];
    }
    let mut next = start.clone();
    let mut pairs = vec![(0u32, 0u32); units * k];
    for u in 0..units {
        for (c, &j) in row(u).iter().enumerate() {
            pairs[next[j as usize]] = (u as u32, c as u32);
            next[j as usize] += 1;
        }
    }
    drop(next);
    // contiguous ranges of features, about equal numbers of entries to copy each
    let work = |j: usize| -> usize {
        pairs[start[j]..start[j + 1]]
            .iter()
            .map(|&(_, c)| k - c as usize)
            .sum()
    };
    let total: usize = (0..f).map(work).sum();
    let pieces = 4 * rayon::current_num_threads();
    let mut cuts = vec![0usize];
    let mut acc = 0usize;
    for j in 0..f {
        acc += work(j);
        if acc * pieces >= total * cuts.len() && cuts.len() < pieces {
            cuts.push(j + 1);
        }
    }
    cuts.push(f);
    cuts.dedup();
    let dst = Blocks(out.as_mut_ptr());
    cuts.par_windows(2).for_each(|w| {
        for j in w[0]..w[1] {
            let gcol = g.lower_col(j);
            for &(u, c) in &pairs[start[j]..start[j + 1]] {
                let (u, c) = (u as usize, c as usize);
                let rows = &row(u)[c..];
                // SAFETY: this writes column `c` of unit `u`'s block, `k − c` entries inside
                // `out` (asserted above). The pair (u, c) occurs once in `pairs` (each unit's
                // position c holds one feature), under the feature of that position, and the
                // features are split between the pieces: no other piece, and no other pair of
                // this one, writes these entries. `out` is borrowed mutably for the whole
                // parallel loop, so nothing else reads or writes it meanwhile.
                let col = unsafe {
                    std::slice::from_raw_parts_mut(dst.at(u * len + packed_start(k, c)), k - c)
                };
                for (d, &i) in col.iter_mut().zip(rows) {
                    *d = gcol[i as usize - j];
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_columns_tile_the_triangle() {
        for k in [1usize, 2, 5, 17] {
            let mut next = 0;
            for c in 0..k {
                assert_eq!(packed_start(k, c), next);
                next += k - c;
            }
            assert_eq!(next, packed_len(k));
        }
    }

    #[test]
    fn batches_gather_what_the_gram_matrix_holds() {
        let f = 40;
        let mut g = Gram::<f32>::packed_zeros(f);
        for j in 0..f {
            for i in j..f {
                g.set_lower(i, j, (i * 100 + j) as f32);
            }
        }
        let (k, m) = (6, 7);
        let rows: Vec<Vec<u32>> = vec![
            vec![0, 3, 4, 9, 20, 39, 40],
            vec![1, 2, 3, 4, 5, 6, 40],
            vec![3, 9, 10, 11, 30, 38, 40],
        ];
        let sorted: Vec<u32> = rows.concat();
        let len = packed_len(k);
        let mut out = vec![-1.0f32; 3 * len];
        gather_blocks(&g, &sorted, m, k, &mut out);
        for (u, r) in rows.iter().enumerate() {
            let block = &out[u * len..(u + 1) * len];
            for c in 0..k {
                let col = packed_col(block, k, c);
                for (t, &v) in col.iter().enumerate() {
                    let (i, j) = (r[c + t] as usize, r[c] as usize);
                    assert_eq!(v, g.lower(i, j), "unit {u}, ({}, {c})", c + t);
                }
            }
        }
    }

    #[test]
    fn batches_hold_at_least_a_unit_a_thread_and_at_most_the_units() {
        assert_eq!(batch_units(1000, 500, 4, u64::MAX, 2), 265);
        assert_eq!(batch_units(10, 500, 4, u64::MAX, 2), 10);
        assert_eq!(batch_units(1000, 500, 4, 1 << 20, 2), 2);
        assert_eq!(batch_units(1, 500, 4, 1 << 20, 2), 1);
    }
}
