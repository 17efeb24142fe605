//! [`KrunError`]: everything the libkrun backend can refuse or fail at.

use std::path::PathBuf;

/// Errors of the libkrun backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KrunError {
    /// No candidate library could be opened.
    #[error(
        "libkrun not found (looked for {looked_for}): {reason}; install libkrun and libkrunfw \
         (see docs/vmm-libkrun.md), set BOTTLE_LIBKRUN to the library's path, or use [vm] backend = \"qemu\""
    )]
    NotFound {
        /// The names or paths tried, comma-separated.
        looked_for: String,
        /// The loader's message for the last candidate.
        reason: String,
    },
    /// The library lacks a function this backend cannot do without.
    #[error(
        "{library} lacks {symbol}; this libkrun is too old for bot-bottle \
         (it needs krun_disable_implicit_vsock and krun_add_vsock to keep TSI networking off): \
         upgrade libkrun or use [vm] backend = \"qemu\""
    )]
    MissingSymbol {
        /// The library that was opened.
        library: String,
        /// The missing function.
        symbol: &'static str,
    },
    /// The plan needs an optional function this library does not export.
    #[error("{library} lacks {symbol}, which this launch needs: {why}")]
    Unsupported {
        /// The library that was opened.
        library: String,
        /// The missing function.
        symbol: &'static str,
        /// What needed it.
        why: &'static str,
    },
    /// A string bound for C contains a NUL byte.
    #[error("{what} contains a NUL byte")]
    Nul {
        /// Which field.
        what: String,
    },
    /// A string that libkrun puts on the kernel command line has whitespace
    /// or a quote, which that line cannot carry.
    #[error("{what} contains whitespace or a quote, which libkrun's kernel command line cannot carry: {value:?}")]
    Unquotable {
        /// Which field.
        what: String,
        /// The offending value.
        value: String,
    },
    /// A value out of range or missing.
    #[error("invalid VM spec: {0}")]
    Invalid(String),
    /// A Unix socket path longer than `sun_path` allows.
    #[error("vsock socket path {path} is {len} bytes; Unix socket paths must be under {max}")]
    PathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A libkrun function returned a negative errno.
    #[error("{call} failed: {}", std::io::Error::from_raw_os_error(*.errno))]
    Call {
        /// The function.
        call: &'static str,
        /// The errno (positive).
        errno: i32,
    },
    /// The plan is malformed (does not start with `krun_create_ctx`).
    #[error("malformed plan: {0}")]
    Plan(&'static str),
}
