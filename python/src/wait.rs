//! Runs a long computation on a worker thread while the calling (Python) thread waits with the
//! GIL released, wakes every 50 ms to poll Ctrl-C (`PyErr_CheckSignals` acts only on the main
//! thread, so the poll must happen here, not in the worker) and to report progress.

use neurofit::Cancel;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Units done / units in all, written by the worker, read by the waiting thread.
#[derive(Default, Clone)]
pub struct Counter {
    done: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
}

impl Counter {
    /// A progress callback for the library that stores into this counter.
    pub fn callback(&self) -> neurofit::ridge::Progress {
        let c = self.clone();
        Arc::new(move |done, total| {
            c.total.store(total, Ordering::Relaxed);
            c.done.store(done, Ordering::Relaxed);
        })
    }
    fn get(&self) -> (usize, usize) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

/// Runs `work` with the GIL released. On Ctrl-C (or any exception a signal handler raises) it
/// sets `cancel`, waits for the worker to stop at its next check and re-raises. `progress(done,
/// total)` is called on this thread whenever `counter` moves (and once at the end).
pub fn run<T: Send>(
    py: Python<'_>,
    cancel: &Cancel,
    counter: Option<&Counter>,
    progress: Option<&Bound<'_, PyAny>>,
    work: impl FnOnce() -> neurofit::Result<T> + Send,
) -> PyResult<T> {
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<()>();
        let handle = s.spawn(move || {
            let r = work();
            let _ = tx.send(());
            r
        });
        let mut last = (usize::MAX, usize::MAX);
        let mut report = || -> PyResult<()> {
            if let (Some(c), Some(cb)) = (counter, progress) {
                let now = c.get();
                if now != last && now.1 > 0 {
                    last = now;
                    cb.call1((now.0, now.1))?;
                }
            }
            Ok(())
        };
        let mut rx = rx;
        loop {
            // the receiver moves into the GIL-free closure and back (it is Send, not Sync)
            let (r, back) = py.detach(move || (rx.recv_timeout(Duration::from_millis(50)), rx));
            rx = back;
            if !matches!(r, Err(mpsc::RecvTimeoutError::Timeout)) {
                break;
            }
            let polled = py.check_signals().and_then(|_| report());
            if let Err(e) = polled {
                cancel.cancel();
                // the worker stops at its next check; its own result is dropped
                let _ = py.detach(|| handle.join());
                return Err(e);
            }
        }
        let out = py
            .detach(|| handle.join())
            .map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("neurofit worker panicked"))?;
        report()?;
        out.map_err(crate::errors::to_py)
    })
}
