//! The chunk planner: pure functions that turn problem shapes, element sizes, a memory budget and
//! the adapter's binding limit into chunk sizes. Every chunked path gives the same result as the
//! unchunked one; tests force tiny budgets to prove it.

use super::memory::format_size;
use crate::error::{Error, Result};

/// Memory facts a plan is made against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes the backend may hold at once.
    pub budget: u64,
    /// Largest single buffer binding (`max_storage_buffer_binding_size`); `u64::MAX` on the CPU.
    pub max_binding: u64,
    /// Largest number of items one dispatch dimension may cover (65 535 workgroups on wgpu).
    pub max_items: u64,
}

impl Limits {
    /// CPU limits: only the budget matters.
    pub fn cpu(budget: u64) -> Self {
        Limits {
            budget,
            max_binding: u64::MAX,
            max_items: u64::MAX,
        }
    }
}

/// One chunked stage: `fixed` bytes held for the whole stage, `per_item` bytes for every item of a
/// chunk (summed over all its buffers), `per_item_binding` the largest per-item share of any one
/// buffer (that buffer must stay within `max_binding`), `fixed_binding` the largest fixed buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// Stage name for error messages.
    pub name: &'static str,
    /// Number of items (units, levels) to process.
    pub items: u64,
    /// Bytes held regardless of the chunk size.
    pub fixed: u64,
    /// The largest buffer among the fixed ones (must fit one binding).
    pub fixed_binding: u64,
    /// Bytes per item, all buffers together.
    pub per_item: u64,
    /// Bytes per item of the largest per-item buffer.
    pub per_item_binding: u64,
}

impl Stage {
    /// A stage of `bytes` held at once, not chunked.
    pub fn fixed(name: &'static str, bytes: u64) -> Self {
        Stage {
            name,
            items: 1,
            fixed: bytes,
            fixed_binding: 0,
            per_item: 0,
            per_item_binding: 0,
        }
    }
}

/// The largest chunk (items per chunk, ≥ 1) that keeps the stage inside the limits, or an error
/// naming the limit that cannot be met even with one item per chunk.
pub fn items_per_chunk(stage: &Stage, lim: &Limits) -> Result<u64> {
    if stage.items == 0 {
        return Ok(1);
    }
    if stage.fixed_binding > lim.max_binding {
        return Err(Error::OutOfMemory(format!(
            "{}: a buffer of {} bytes exceeds the adapter's max_storage_buffer_binding_size of {} bytes",
            stage.name, stage.fixed_binding, lim.max_binding
        )));
    }
    if stage.fixed + stage.per_item > lim.budget {
        return Err(Error::OutOfMemory(format!(
            "{}: needs at least {} ({} fixed + {} per item) but the memory budget is {}; raise max_memory or shrink the problem",
            stage.name,
            format_size(stage.fixed + stage.per_item),
            format_size(stage.fixed),
            format_size(stage.per_item),
            format_size(lim.budget)
        )));
    }
    if stage.per_item_binding > lim.max_binding {
        return Err(Error::OutOfMemory(format!(
            "{}: one item needs a buffer of {} bytes, above the adapter's max_storage_buffer_binding_size of {} bytes",
            stage.name, stage.per_item_binding, lim.max_binding
        )));
    }
    let by_budget = (lim.budget - stage.fixed) / stage.per_item.max(1);
    let by_binding = lim.max_binding / stage.per_item_binding.max(1);
    Ok(by_budget
        .min(by_binding)
        .min(lim.max_items)
        .min(stage.items)
        .max(1))
}

/// Splits `0..total` into consecutive ranges of at most `chunk` items.
pub fn ranges(total: usize, chunk: usize) -> Vec<std::ops::Range<usize>> {
    let chunk = chunk.max(1);
    (0..total.div_ceil(chunk))
        .map(|i| i * chunk..((i + 1) * chunk).min(total))
        .collect()
}

/// `0..total` cut into as few ranges of at most `chunk` as [`ranges`] makes, of sizes that differ
/// by one at most (the larger first): the chunk loop's kept buffers then serve every chunk,
/// where a short last chunk allocated (and faulted in) its own.
pub fn balanced_ranges(total: usize, chunk: usize) -> Vec<std::ops::Range<usize>> {
    let pieces = total.div_ceil(chunk.max(1));
    let mut out = Vec::with_capacity(pieces);
    let mut start = 0;
    for i in 0..pieces {
        let len = total / pieces + usize::from(i < total % pieces);
        out.push(start..start + len);
        start += len;
    }
    out
}

/// Rows of a row-major `rows × cols` matrix of `elem` bytes that fit one binding (≥ 1), or an
/// error when a single row is already too large.
pub fn rows_per_binding(rows: u64, cols: u64, elem: u64, max_binding: u64) -> Result<u64> {
    let row_bytes = cols * elem;
    if row_bytes > max_binding {
        return Err(Error::OutOfMemory(format!(
            "one row of {cols} elements ({row_bytes} bytes) exceeds the binding limit of {max_binding} bytes"
        )));
    }
    Ok((max_binding / row_bytes).min(rows).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(items: u64, fixed: u64, per_item: u64) -> Stage {
        Stage {
            name: "t",
            items,
            fixed,
            fixed_binding: fixed,
            per_item,
            per_item_binding: per_item,
        }
    }

    #[test]
    fn everything_fits_gives_one_chunk() {
        let l = Limits::cpu(1 << 30);
        assert_eq!(items_per_chunk(&stage(100, 1000, 10), &l).unwrap(), 100);
    }

    #[test]
    fn budget_limits_chunk() {
        let l = Limits::cpu(1000 + 35);
        assert_eq!(items_per_chunk(&stage(100, 1000, 10), &l).unwrap(), 3);
    }

    #[test]
    fn binding_limits_chunk() {
        let l = Limits {
            budget: 1 << 30,
            max_binding: 25,
            max_items: 1 << 16,
        };
        assert_eq!(items_per_chunk(&stage(100, 10, 10), &l).unwrap(), 2);
    }

    #[test]
    fn dispatch_limit_caps_chunk() {
        let l = Limits {
            budget: u64::MAX / 2,
            max_binding: u64::MAX / 2,
            max_items: 7,
        };
        assert_eq!(items_per_chunk(&stage(100, 0, 1), &l).unwrap(), 7);
    }

    #[test]
    fn impossible_budget_is_an_error() {
        let l = Limits::cpu(1005);
        let e = items_per_chunk(&stage(10, 1000, 10), &l).unwrap_err();
        assert!(e.to_string().contains("memory budget"), "{e}");
    }

    #[test]
    fn oversized_fixed_buffer_names_binding_limit() {
        let l = Limits {
            budget: 1 << 30,
            max_binding: 100,
            max_items: 1 << 16,
        };
        let e = items_per_chunk(&stage(10, 1000, 1), &l).unwrap_err();
        assert!(e.to_string().contains("max_storage_buffer_binding_size"));
    }

    #[test]
    fn ranges_cover_everything_once() {
        let r = ranges(10, 3);
        assert_eq!(r, vec![0..3, 3..6, 6..9, 9..10]);
        assert_eq!(ranges(0, 3).len(), 0);
        assert_eq!(ranges(5, 100), vec![0..5]);
    }

    #[test]
    fn balanced_ranges_are_as_many_and_even() {
        assert_eq!(balanced_ranges(10, 3), vec![0..3, 3..6, 6..8, 8..10]);
        assert_eq!(
            balanced_ranges(1000, 256),
            vec![0..250, 250..500, 500..750, 750..1000]
        );
        assert_eq!(balanced_ranges(0, 3).len(), 0);
        assert_eq!(balanced_ranges(5, 100), vec![0..5]);
        for (total, chunk) in [(3920, 256), (7, 7), (100, 1), (101, 10)] {
            let r = balanced_ranges(total, chunk);
            assert_eq!(r.len(), ranges(total, chunk).len());
            assert_eq!((r[0].start, r[r.len() - 1].end), (0, total));
            assert!(r.windows(2).all(|w| w[0].end == w[1].start));
            assert!(r
                .iter()
                .all(|x| x.len() <= chunk && x.len() + 1 >= r[0].len()));
        }
    }

    #[test]
    fn rows_per_binding_splits() {
        assert_eq!(rows_per_binding(100, 10, 8, 800).unwrap(), 10);
        assert_eq!(rows_per_binding(5, 10, 8, 8000).unwrap(), 5);
        assert!(rows_per_binding(5, 10, 8, 79).is_err());
    }
}
