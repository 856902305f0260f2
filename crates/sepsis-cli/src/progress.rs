//! Progress bars on stderr with `indicatif`. They draw only on a terminal, so
//! piped output and `--json` runs stay clean.

use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sepsis_ews::progress::{Progress, SharedProgress};

struct Bars {
    current: Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn begin(&self, step: &str, total: Option<u64>) {
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template("{prefix:>10} [{bar:30}] {percent:>3}% {elapsed}")
                        .expect("the template is valid")
                        .progress_chars("=> "),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{prefix:>10} {spinner} {human_pos} {elapsed}")
                    .expect("the template is valid"),
            ),
        };
        bar.set_prefix(step.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        if let Some(previous) = self.current.lock().expect("lock").replace(bar) {
            previous.finish_and_clear();
        }
    }

    fn advance(&self, amount: u64) {
        if let Some(bar) = self.current.lock().expect("lock").as_ref() {
            bar.inc(amount);
        }
    }

    fn end(&self) {
        if let Some(bar) = self.current.lock().expect("lock").take() {
            bar.finish_and_clear();
        }
    }
}

/// Bars on an interactive stderr, nothing when `quiet` or not a terminal.
pub fn for_terminal(quiet: bool) -> SharedProgress {
    if quiet {
        return sepsis_ews::progress::silent();
    }
    Arc::new(Bars {
        current: Mutex::new(None),
    })
}
