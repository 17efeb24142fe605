//! Logging setup: `tracing` to standard error, filtered by `RUST_LOG`
//! (default `info`), as text or one JSON object per line.

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

/// Install the global subscriber with `default` unless `RUST_LOG` is set.
/// Safe to call once per process.
pub fn init(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
