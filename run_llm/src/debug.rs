//! `--debug`: diagnostics on stderr, one `[debug]` line each, off unless the flag is given.

use std::sync::atomic::{AtomicBool, Ordering};

static ON: AtomicBool = AtomicBool::new(false);

pub fn enable() {
    ON.store(true, Ordering::Relaxed);
}

pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// `eprintln!` behind `--debug`, prefixed with `[debug]`.
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::debug::on() {
            eprintln!("[debug] {}", format_args!($($arg)*));
        }
    };
}
pub(crate) use debug;
