//! Progress reporting for long steps, decoupled from any terminal library so
//! the binary can draw bars and tests can stay silent.

use std::sync::Arc;

/// Receives progress of one step at a time.
pub trait Progress: Send + Sync {
    /// Starts a step; `total` is in the step's own unit (bytes, rows, trees).
    fn begin(&self, step: &str, total: Option<u64>);
    fn advance(&self, amount: u64);
    fn end(&self);
}

/// Discards all progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _step: &str, _total: Option<u64>) {}
    fn advance(&self, _amount: u64) {}
    fn end(&self) {}
}

pub type SharedProgress = Arc<dyn Progress>;

pub fn silent() -> SharedProgress {
    Arc::new(NoProgress)
}
