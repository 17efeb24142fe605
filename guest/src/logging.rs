//! Logging: `tracing` to standard error (the console when PID 1), filtered
//! by `RUST_LOG` (default `info`), as text or JSON lines. Colour only on a
//! terminal, never as PID 1, never with `NO_COLOR`.

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

/// Whether log lines carry colour codes: only when standard error is a
/// terminal, and never when `NO_COLOR` is set to anything but the empty
/// string (<https://no-color.org>). Never as PID 1 either: a VM's serial
/// console is a terminal that is usually a log file or a pipe on the
/// host's side.
pub fn colour(pid1: bool, stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    !pid1 && stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Install the global subscriber.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = colour(
        std::process::id() == 1,
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
    fn colour_only_on_a_terminal_without_no_color_and_not_as_pid1() {
        let table: [(bool, bool, Option<&str>, bool); 7] = [
            (false, true, None, true),
            (false, true, Some(""), true),
            (false, true, Some("1"), false),
            (false, false, None, false),
            (false, false, Some("1"), false),
            (true, true, None, false),
            (true, false, None, false),
        ];
        for (pid1, terminal, no_color, want) in table {
            assert_eq!(
                colour(pid1, terminal, no_color.map(OsStr::new)),
                want,
                "pid1={pid1} terminal={terminal} NO_COLOR={no_color:?}"
            );
        }
    }
}
