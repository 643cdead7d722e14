//! Progress display: bars (bytes, bytes/s, ETA) when standard error is a
//! terminal, nothing extra otherwise (the plain per-file lines stay), and
//! nothing at all with `--quiet`. [`Bars`] shows the engine's
//! [`mpk_pack::Progress`] stages.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;

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

/// One bar per engine stage (see [`bytes_bar`] for when one is shown).
#[derive(Debug, Default)]
pub struct Bars {
    quiet: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    /// Bars unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            bar: Mutex::new(None),
        }
    }
}

impl mpk_pack::Progress for Bars {
    fn begin(&self, label: &str, total: u64) {
        if let Ok(mut b) = self.bar.lock() {
            *b = bytes_bar(total, label, self.quiet);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Ok(b) = self.bar.lock() {
            inc(&b, bytes);
        }
    }

    fn end(&self) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(b) = b.take() {
                b.finish_and_clear();
            }
        }
    }
}
