//! The chunk loop's large host buffers, kept from one chunk for the next.
//!
//! Each chunk of the selection path allocates `YcᵀXc` and `|r|` (`q × F` each: 29 MB apiece at
//! conv4's 245-unit chunks of 15000 features, 7.7 MB at fc8's 64; the progress rule cuts a fit
//! into at least 16 chunks) and frees them at its end. Fresh pages are zeroed by the
//! kernel on first touch, and on the virtual machines measured here memory the host has taken
//! back costs ~1–2.5 s per GB to fault in: a conv4 fit spent ~1 s of CPU time re-faulting its
//! chunk buffers. A [`Recycler`] belongs to one backend (one fit) and keeps a few such buffers
//! between chunks; it never adds to the planned peak, because a request that no kept buffer fits
//! (holds it, with at most an eighth to spare) releases every kept buffer before it allocates.

use std::sync::{Mutex, MutexGuard};

/// Buffers smaller than this are not worth keeping (the allocator reuses them anyway).
const MIN_BYTES: usize = 1 << 20;
/// At most this many buffers of one element type are kept.
const KEEP: usize = 4;

/// A few large zero-able buffers handed back by one chunk for the next (see the module docs).
#[derive(Default)]
pub struct Recycler {
    f64s: Mutex<Vec<Vec<f64>>>,
    f32s: Mutex<Vec<Vec<f32>>>,
}

/// An element type a [`Recycler`] keeps buffers of.
pub trait Recyclable: Copy + Default + Send + Sync {
    /// The recycler's shelf of this type.
    fn shelf(r: &Recycler) -> &Mutex<Vec<Vec<Self>>>;
}

impl Recyclable for f64 {
    fn shelf(r: &Recycler) -> &Mutex<Vec<Vec<f64>>> {
        &r.f64s
    }
}

impl Recyclable for f32 {
    fn shelf(r: &Recycler) -> &Mutex<Vec<Vec<f32>>> {
        &r.f32s
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panic elsewhere cannot leave a Vec of buffers inconsistent
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for Recycler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recycler({} bytes kept)", self.kept_bytes())
    }
}

impl Recycler {
    /// `len` zeros: a kept buffer that holds `len` and at most an eighth more (the chunk
    /// loop's chunks differ by one unit at most: `planner::balanced_ranges`), zeroed again in
    /// parallel, or else a new one, after every kept buffer of the type has been released.
    pub fn zeros<T: Recyclable>(&self, len: usize) -> Vec<T> {
        if len * std::mem::size_of::<T>() >= MIN_BYTES {
            let mut shelf = lock(T::shelf(self));
            let fits = |v: &Vec<T>| v.capacity() >= len && v.capacity() - len <= v.capacity() / 8;
            if let Some(i) = shelf.iter().position(fits) {
                let mut v = shelf.swap_remove(i);
                drop(shelf);
                // within the capacity: neither resize nor truncate reallocates
                v.resize(len, T::default());
                v.truncate(len);
                use rayon::prelude::*;
                v.par_chunks_mut(1 << 16).for_each(|c| c.fill(T::default()));
                return v;
            }
            shelf.clear();
        }
        vec![T::default(); len]
    }

    /// Keeps `v` for a later [`Recycler::zeros`] of its length (small buffers, and any beyond
    /// the first few, are dropped).
    pub fn keep<T: Recyclable>(&self, v: Vec<T>) {
        if v.len() * std::mem::size_of::<T>() >= MIN_BYTES {
            let mut shelf = lock(T::shelf(self));
            if shelf.len() < KEEP {
                shelf.push(v);
            }
        }
    }

    /// Bytes kept now.
    pub fn kept_bytes(&self) -> usize {
        let b64: usize = lock(&self.f64s).iter().map(|v| v.capacity() * 8).sum();
        let b32: usize = lock(&self.f32s).iter().map(|v| v.capacity() * 4).sum();
        b64 + b32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_buffer_comes_back_zeroed_and_a_mismatch_releases_the_shelf() {
        let r = Recycler::default();
        let len = 4 * MIN_BYTES / 8;
        let mut v = r.zeros::<f64>(len);
        v.iter_mut().for_each(|x| *x = 7.0);
        let ptr = v.as_ptr();
        r.keep(v);
        assert_eq!(r.kept_bytes(), 4 * MIN_BYTES);
        let again = r.zeros::<f64>(len);
        assert_eq!(again.as_ptr(), ptr, "the kept buffer is reused");
        assert!(again.iter().all(|&x| x == 0.0));
        assert_eq!(r.kept_bytes(), 0);
        r.keep(again);
        // a chunk one unit shorter takes it too, and the next full one again
        let shorter = r.zeros::<f64>(len - 100);
        assert_eq!((shorter.as_ptr(), shorter.len()), (ptr, len - 100));
        r.keep(shorter);
        let again = r.zeros::<f64>(len);
        assert_eq!((again.as_ptr(), again.len()), (ptr, len));
        assert!(again.iter().all(|&x| x == 0.0));
        r.keep(again);
        let half = r.zeros::<f64>(len / 2);
        assert!(half.as_ptr() != ptr, "not one far too large");
        assert_eq!(r.kept_bytes(), 0, "which is released");
        r.keep(r.zeros::<f64>(len));
        let other = r.zeros::<f64>(len + 1);
        assert_eq!(other.len(), len + 1);
        assert_eq!(
            r.kept_bytes(),
            0,
            "a request no kept buffer fits releases them first"
        );
        r.keep(vec![1.0f32; 16]);
        assert_eq!(r.kept_bytes(), 0, "small buffers are not kept");
    }
}
