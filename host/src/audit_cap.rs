//! How large one audit log may grow (the proxy's and the DNS filter's,
//! each on its own): `BOTTLE_AUDIT_MAX_BYTES`, default [`DEFAULT`].
//!
//! The agent decides how many requests and queries it makes, so without a
//! cap it could fill the owner's disk one audit line at a time. At the cap
//! a log fails closed, as on a full disk: the proxy answers 503
//! `audit-log-unwritable` and the DNS filter SERVFAIL, so nothing leaves
//! unaudited, and no line is dropped or rotated away (an agent must not be
//! able to push the record of what it did out of the log).

/// Default cap: 1 GiB, about four million proxy lines.
pub const DEFAULT: u64 = 1 << 30;

/// The variable that sets the cap.
pub const ENV: &str = "BOTTLE_AUDIT_MAX_BYTES";

/// The cap from the environment, else [`DEFAULT`]; a value that is not a
/// positive whole number is an error that says so.
pub fn from_env() -> Result<u64, String> {
    from_value(std::env::var(ENV).ok().as_deref())
}

/// [`from_env`] for a given value of the variable.
pub fn from_value(v: Option<&str>) -> Result<u64, String> {
    match v {
        None => Ok(DEFAULT),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{ENV}={v:?}: give a positive whole number of bytes")),
    }
}

/// The error a log at its cap gives: what happened and what to do.
pub fn full(cap: u64) -> std::io::Error {
    std::io::Error::other(format!(
        "the log reached its cap of {cap} bytes ({ENV}); nothing more is \
         let out unaudited: stop the bottle, and launch it again with a \
         higher {ENV} if it needs more"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(from_value(None), Ok(DEFAULT));
        assert_eq!(from_value(Some(" 4096 ")), Ok(4096));
        for bad in ["0", "-1", "1k", "", "18446744073709551616"] {
            let e = from_value(Some(bad)).unwrap_err();
            assert!(e.contains(ENV), "{e}");
        }
        assert!(full(10).to_string().contains("cap of 10 bytes"));
    }
}
