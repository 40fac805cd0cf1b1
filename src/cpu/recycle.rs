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
//! (The kinds of buffer on one shelf differ in size by far more than an eighth — `q × F` against
//! `q × n` — so a request takes a buffer of its own kind, from a chunk at most one unit larger:
//! `planner::balanced_ranges`.)
//!
//! It also keeps one **scratch** buffer per element type whose contents are never read before
//! they are written (the per-unit solves' batch of gathered blocks, `cpu::blocks`): handed out
//! when long enough, not zeroed, planned by its user as one batch.

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
    scratch64: Mutex<Vec<f64>>,
    scratch32: Mutex<Vec<f32>>,
}

/// An element type a [`Recycler`] keeps buffers of.
pub trait Recyclable: Copy + Default + Send + Sync {
    /// The recycler's shelf of this type.
    fn shelf(r: &Recycler) -> &Mutex<Vec<Vec<Self>>>;
    /// The recycler's scratch buffer of this type.
    fn scratch(r: &Recycler) -> &Mutex<Vec<Self>>;
}

impl Recyclable for f64 {
    fn shelf(r: &Recycler) -> &Mutex<Vec<Vec<f64>>> {
        &r.f64s
    }
    fn scratch(r: &Recycler) -> &Mutex<Vec<f64>> {
        &r.scratch64
    }
}

impl Recyclable for f32 {
    fn shelf(r: &Recycler) -> &Mutex<Vec<Vec<f32>>> {
        &r.f32s
    }
    fn scratch(r: &Recycler) -> &Mutex<Vec<f32>> {
        &r.scratch32
    }
}

impl Drop for Recycler {
    fn drop(&mut self) {
        // the scratch buffers' pages go back to the kernel from every thread
        crate::linalg::release_pages(&mut lock(&self.scratch64)[..]);
        crate::linalg::release_pages(&mut lock(&self.scratch32)[..]);
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
                // within the capacity: no reallocation
                v.resize(len, T::default());
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

    /// A scratch buffer of at least `len` elements, contents unspecified: the kept one when it
    /// is long enough, else a new one (the kept one released first), faulted in by every thread
    /// on 4 KiB pages ([`crate::linalg::populate_small_pages`]: a fresh 128 MB batch buffer took
    /// 0.09–0.2 s faulted in by the gather's scattered writes, ~0.02 s populated).
    pub fn take_scratch<T: Recyclable>(&self, len: usize) -> Vec<T> {
        let mut slot = lock(T::scratch(self));
        if slot.len() >= len {
            return std::mem::take(&mut *slot);
        }
        *slot = Vec::new();
        drop(slot);
        let mut v = vec![T::default(); len];
        crate::linalg::populate_small_pages(&mut v);
        v
    }

    /// Keeps `v` for the next [`Recycler::take_scratch`].
    pub fn keep_scratch<T: Recyclable>(&self, v: Vec<T>) {
        *lock(T::scratch(self)) = v;
    }

    /// Bytes kept now.
    pub fn kept_bytes(&self) -> usize {
        let b64: usize = lock(&self.f64s).iter().map(|v| v.capacity() * 8).sum();
        let b32: usize = lock(&self.f32s).iter().map(|v| v.capacity() * 4).sum();
        b64 + b32 + lock(&self.scratch64).capacity() * 8 + lock(&self.scratch32).capacity() * 4
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

    #[test]
    fn a_kept_scratch_buffer_serves_every_request_it_is_long_enough_for() {
        let r = Recycler::default();
        let v = r.take_scratch::<f32>(100);
        let ptr = v.as_ptr();
        r.keep_scratch(v);
        let again = r.take_scratch::<f32>(60);
        assert_eq!((again.as_ptr(), again.len()), (ptr, 100));
        r.keep_scratch(again);
        assert_eq!(r.kept_bytes(), 400);
        assert_eq!(
            r.take_scratch::<f32>(101).len(),
            101,
            "a longer one replaces it"
        );
        assert_eq!(r.kept_bytes(), 0, "and the short one is released first");
    }
}
