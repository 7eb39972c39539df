//! Progress on stderr for long work; invisible when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressStyle};

/// A byte-count progress bar (model loading).
pub fn bytes(msg: &'static str) -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})").expect("valid template").progress_chars("=> "));
    pb.set_message(msg);
    pb
}

/// A step-count progress bar.
pub fn steps(msg: &'static str, len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})").expect("valid template").progress_chars("=> "));
    pb.set_message(msg);
    pb
}
