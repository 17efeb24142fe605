//! Logging setup: `tracing` to standard error, filtered by `RUST_LOG`
//! (default `info`), as text or one JSON object per line. Colour only on a
//! terminal and without `NO_COLOR`: logs sent to a file or a pipe stay
//! plain text.

use std::ffi::OsStr;
use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The default filter: `info`, without the proxy library's chatter.
pub const DEFAULT_FILTER: &str = "info,tokio_graceful=warn,hudsucker=warn";
/// The default under `launch`, whose terminal belongs to the agent's
/// console: warnings only (every decision is in the audit logs anyway).
pub const LAUNCH_FILTER: &str = "warn";

/// Whether log lines carry colour codes: only when standard error is a
/// terminal, and never when `NO_COLOR` is set to anything but the empty
/// string (<https://no-color.org>).
pub fn colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Install the global subscriber with `default` unless `RUST_LOG` is set.
/// Safe to call once per process.
pub fn init(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let table: [(bool, Option<&str>, bool); 6] = [
            (true, None, true),
            (true, Some(""), true),
            (true, Some("1"), false),
            (true, Some("0"), false),
            (false, None, false),
            (false, Some("1"), false),
        ];
        for (terminal, no_color, want) in table {
            assert_eq!(
                colour(terminal, no_color.map(OsStr::new)),
                want,
                "terminal={terminal} NO_COLOR={no_color:?}"
            );
        }
    }
}
