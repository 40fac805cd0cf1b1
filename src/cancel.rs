//! Cooperative cancellation: a flag a caller sets (from another thread, a signal handler or a
//! binding's wait loop) and the fits poll between chunks, stages and iterations.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A shared cancellation flag. Clones share the flag; [`Cancel::cancel`] makes every later
/// [`Cancel::check`] fail with [`Error::Interrupted`].
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the flag: the run stops at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// True once [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// `Err(Interrupted)` once cancelled, naming where the run stopped.
    pub fn check(&self, at: &str) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Interrupted(format!("stopped {at}")))
        } else {
            Ok(())
        }
    }
}

/// Checks an optional flag (no flag: never cancelled).
pub(crate) fn check(c: Option<&Cancel>, at: &str) -> Result<()> {
    c.map_or(Ok(()), |c| c.check(at))
}
