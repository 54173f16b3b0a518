//! Progress bars on stderr, shown only when stderr is a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether stderr is a terminal a person watches.
pub(crate) fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A bar of `len` steps on stderr, hidden when `show` is false or stderr is not a terminal.
pub(crate) fn bar(len: u64, show: bool, prefix: &str) -> ProgressBar {
    let target = if show && stderr_is_terminal() {
        ProgressDrawTarget::stderr_with_hz(10)
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    // The template is a constant; should it ever be rejected, the default style still works.
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>18} [{bar:30}] {pos:>6}/{len:<6} {elapsed:>4} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}
