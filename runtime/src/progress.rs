//! Progress reporting for long steps (weight loading, engine build, kernel compilation). The runtime only
//! calls this trait; the command line draws bars with indicatif when stdout is a terminal.

pub trait Progress: Sync {
    /// A new stage begins; `total` is its number of units (0 when unknown).
    fn stage(&self, name: &str, total: u64);
    /// `n` more units of the current stage are done.
    fn advance(&self, n: u64);
    /// The current stage is finished.
    fn finish(&self);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _name: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}
