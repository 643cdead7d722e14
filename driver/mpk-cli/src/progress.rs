//! Progress display: bars (bytes, bytes/s, ETA) when standard error is a
//! terminal, nothing extra otherwise (the plain per-file lines stay), and
//! nothing at all with `--quiet`.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A byte-count bar on standard error, or `None` when it is not a terminal
/// or `quiet`.
pub fn bytes_bar(total: u64, label: &str, quiet: bool) -> Option<ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(label.to_owned());
    Some(pb)
}

/// Adds `n` bytes to `bar`, if there is one.
pub fn inc(bar: &Option<ProgressBar>, n: u64) {
    if let Some(b) = bar {
        b.inc(n);
    }
}
