//! Progress for pulls and unpacking: one bar per layer (indicatif) on a
//! terminal, one line per layer otherwise. Used by `image pull` and by
//! `launch` when it pulls on first use.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::Progress;

/// `1.5 MiB`.
pub fn human_size(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// One bar per layer on a terminal; one line per layer otherwise.
pub struct Bars {
    tty: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    /// Bars on standard error.
    pub fn new() -> Bars {
        Bars {
            tty: std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

impl Progress for Bars {
    fn begin(&self, step: &str, total: Option<u64>) {
        if !self.tty {
            let size = total
                .map(|t| format!(" ({})", human_size(t)))
                .unwrap_or_default();
            let _ = writeln!(std::io::stderr(), "{step}{size}");
            return;
        }
        let pb = ProgressBar::new(total.unwrap_or(0));
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:32} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(step.to_string());
        pb.enable_steady_tick(Duration::from_millis(200));
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(pb);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Ok(b) = self.bar.lock() {
            if let Some(pb) = b.as_ref() {
                pb.inc(bytes);
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(pb) = b.take() {
                pb.finish();
            }
        }
    }
}
