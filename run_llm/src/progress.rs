//! [`runtime::progress::Progress`] drawn with indicatif on a terminal; silent when stdout is not one
//! (pipes, files, `--json`), so captured output holds only results.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use runtime::progress::Progress;
use std::io::IsTerminal;
use std::sync::Mutex;

/// Bars on stderr, one per stage.
pub struct Bars {
    current: Mutex<Option<ProgressBar>>,
    enabled: bool,
}

impl Bars {
    /// Bars when stdout and stderr are terminals and `quiet` is false.
    pub fn new(quiet: bool) -> Bars {
        let enabled = !quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        Bars {
            current: Mutex::new(None),
            enabled,
        }
    }

    fn style(total: u64) -> ProgressStyle {
        let template = if total > 0 {
            "{spinner} {msg:<24} [{bar:30}] {pos}/{len} {elapsed}"
        } else {
            "{spinner} {msg:<24} {elapsed}"
        };
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }
}

impl Progress for Bars {
    fn stage(&self, name: &str, total: u64) {
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(Self::style(total));
        bar.set_message(name.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        if let Ok(mut cur) = self.current.lock()
            && let Some(old) = cur.replace(bar)
        {
            old.finish_and_clear();
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(cur) = self.current.lock()
            && let Some(bar) = cur.as_ref()
        {
            bar.inc(n);
        }
    }

    fn finish(&self) {
        if let Ok(mut cur) = self.current.lock()
            && let Some(bar) = cur.take()
        {
            bar.finish_and_clear();
        }
    }
}
