//! Host name patterns: an exact name or `*.suffix`, normalised once.
//!
//! Names are compared in their ASCII (punycode) form, lowercase, without a
//! trailing dot. `*.example.com` matches names strictly below
//! `example.com` (`a.example.com`, `a.b.example.com`), never `example.com`
//! itself, `badexample.com` or `example.com.evil.net`.

use std::fmt;

/// A host name pattern from the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// Exactly this name.
    Exact(String),
    /// Any name strictly below this suffix (written `*.suffix`).
    Suffix(String),
}

/// Why a pattern or name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// Empty name.
    #[error("empty host name")]
    Empty,
    /// An IP address where a name was expected.
    #[error("{0:?} is an IP address; routes name hosts (IP literals are always refused)")]
    IpLiteral(String),
    /// A `*` anywhere but a leading `*.`.
    #[error("{0:?}: a wildcard is only allowed as a leading \"*.\"")]
    BadWildcard(String),
    /// IDNA conversion failed.
    #[error("{0:?} is not a valid internationalised domain name")]
    Idna(String),
    /// A label breaks the DNS rules.
    #[error("{name:?}: label {label:?} {why}")]
    BadLabel {
        /// The name.
        name: String,
        /// The label.
        label: String,
        /// What is wrong.
        why: &'static str,
    },
    /// Longer than 253 characters.
    #[error("{0:?} is longer than 253 characters")]
    TooLong(String),
}

/// Normalise a host name: IDNA to ASCII, lowercase, no trailing dot, and
/// every label checked (1–63 of `a-z 0-9 - _`, no leading or trailing `-`).
pub fn normalize_name(name: &str) -> Result<String, NameError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    let ascii = if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(trimmed).map_err(|_| NameError::Idna(name.to_string()))?
    };
    if ascii.len() > 253 {
        return Err(NameError::TooLong(name.to_string()));
    }
    for label in ascii.split('.') {
        let why = if label.is_empty() {
            Some("is empty")
        } else if label.len() > 63 {
            Some("is longer than 63 characters")
        } else if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            Some("has characters other than letters, digits, '-' and '_'")
        } else if label.starts_with('-') || label.ends_with('-') {
            Some("starts or ends with '-'")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(NameError::BadLabel {
                name: name.to_string(),
                label: label.to_string(),
                why,
            });
        }
    }
    Ok(ascii)
}

/// True if `host` is an IPv4 or IPv6 literal (with or without brackets).
pub fn is_ip_literal(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.parse::<std::net::IpAddr>().is_ok()
}

impl HostPattern {
    /// Parse and normalise `host` or `*.suffix`.
    pub fn parse(s: &str) -> Result<HostPattern, NameError> {
        if is_ip_literal(s) {
            return Err(NameError::IpLiteral(s.to_string()));
        }
        let pattern = match s.strip_prefix("*.") {
            Some(rest) if !rest.contains('*') => HostPattern::Suffix(normalize_name(rest)?),
            None if !s.contains('*') => HostPattern::Exact(normalize_name(s)?),
            _ => return Err(NameError::BadWildcard(s.to_string())),
        };
        // Normalising can turn a non-literal into one: "1.2.3.4." loses its
        // dot, IDNA maps fullwidth "１.２.３.４" to ASCII digits.
        if is_ip_literal(pattern.base()) {
            return Err(NameError::IpLiteral(s.to_string()));
        }
        Ok(pattern)
    }

    /// Does this pattern match `name`, which must already be normalised
    /// (see [`normalize_name`])?
    pub fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(n) => n == name,
            HostPattern::Suffix(s) => {
                name.len() > s.len() + 1
                    && name.ends_with(s.as_str())
                    && name.as_bytes()[name.len() - s.len() - 1] == b'.'
            }
        }
    }

    /// Is this a wildcard over a whole public suffix: a top-level domain
    /// (`*.com`, `*.corp`), a registry's second level (`*.co.uk`), or a
    /// provider's shared domain where anyone gets a name (`*.github.io`,
    /// `*.workers.dev`)? Such a pattern lets the agent reach (and resolve
    /// names under) any site anyone can set up there, its own included:
    /// nearly no allowlist. Decided by the public suffix list (the `psl`
    /// crate, its private section included); a top-level name the list
    /// does not know (`corp`) counts as one.
    pub fn is_broad(&self) -> bool {
        let HostPattern::Suffix(s) = self else {
            return false;
        };
        psl::suffix(s.as_bytes()).is_some_and(|suffix| suffix.as_bytes() == s.as_bytes())
    }

    /// The name or suffix, without `*.`.
    pub fn base(&self) -> &str {
        match self {
            HostPattern::Exact(n) | HostPattern::Suffix(n) => n,
        }
    }

    /// For a name this pattern matches, how many labels lie below the
    /// pattern's base (0 for an exact match).
    pub fn labels_below(&self, name: &str) -> usize {
        match self {
            HostPattern::Exact(_) => 0,
            HostPattern::Suffix(s) => name[..name.len() - s.len() - 1].split('.').count(),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(n) => f.write_str(n),
            HostPattern::Suffix(s) => write!(f, "*.{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn broad_wildcards() {
        use super::HostPattern;
        for broad in [
            "*.com",
            "*.corp",
            "*.co.uk",
            "*.com.au",
            "*.ac.jp",
            "*.github.io",
            "*.herokuapp.com",
            "*.workers.dev",
            "*.blogspot.com",
        ] {
            assert!(HostPattern::parse(broad).unwrap().is_broad(), "{broad}");
        }
        for narrow in [
            "com",
            "github.io",
            "*.example.com",
            "*.pypi.org",
            "*.co.example",
            "*.octocat.github.io",
            "*.github.com",
            "localhost",
        ] {
            assert!(!HostPattern::parse(narrow).unwrap().is_broad(), "{narrow}");
        }
    }

    use super::*;

    #[test]
    fn matching_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "badexample.com", false),
            ("*.example.com", "example.com.evil.net", false),
            ("*.example.com", "a.example.com.evil.net", false),
            ("*.example.com", "xexample.com", false),
            ("api.github.com", "api.github.com", true),
            ("api.github.com", "x.api.github.com", false),
            ("api.github.com", "github.com", false),
            ("API.GitHub.com.", "api.github.com", true),
            ("*.bücher.de", "shop.xn--bcher-kva.de", true),
            ("bücher.de", "xn--bcher-kva.de", true),
        ];
        for (pat, name, want) in cases {
            let p = HostPattern::parse(pat).unwrap();
            let n = normalize_name(name).unwrap();
            assert_eq!(p.matches(&n), *want, "{pat} vs {name}");
        }
    }

    #[test]
    fn normalisation_table() {
        assert_eq!(
            normalize_name("WWW.Example.COM.").unwrap(),
            "www.example.com"
        );
        assert_eq!(normalize_name("Bücher.DE").unwrap(), "xn--bcher-kva.de");
        assert_eq!(normalize_name("").unwrap_err(), NameError::Empty);
        assert_eq!(normalize_name(".").unwrap_err(), NameError::Empty);
        assert!(matches!(
            normalize_name("a..b"),
            Err(NameError::BadLabel { .. })
        ));
        assert!(matches!(
            normalize_name("-a.b"),
            Err(NameError::BadLabel { .. })
        ));
        assert!(matches!(
            normalize_name("a b.c"),
            Err(NameError::BadLabel { .. })
        ));
        assert!(matches!(
            normalize_name(&format!("{}.com", "a".repeat(64))),
            Err(NameError::BadLabel { .. })
        ));
        assert!(matches!(
            normalize_name(&["abcdefghi"; 30].join(".")),
            Err(NameError::TooLong(_))
        ));
    }

    #[test]
    fn bad_patterns() {
        assert!(matches!(
            HostPattern::parse("10.0.0.1"),
            Err(NameError::IpLiteral(_))
        ));
        assert!(matches!(
            HostPattern::parse("[::1]"),
            Err(NameError::IpLiteral(_))
        ));
        assert!(matches!(
            HostPattern::parse("a.*.com"),
            Err(NameError::BadWildcard(_))
        ));
        assert!(matches!(
            HostPattern::parse("*example.com"),
            Err(NameError::BadWildcard(_))
        ));
        assert!(matches!(
            HostPattern::parse("*.*.com"),
            Err(NameError::BadWildcard(_))
        ));
    }

    /// Regression (found writing the `manifest` fuzz target's allowlist check):
    /// names that only become IP literals once normalised were accepted.
    #[test]
    fn ip_literals_after_normalisation_are_refused() {
        for s in [
            "1.2.3.4.",
            "*.10.0.0.1",
            "*.10.0.0.1.",
            "\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}",
            "1\u{3002}2\u{3002}3\u{3002}4",
        ] {
            assert_eq!(
                HostPattern::parse(s),
                Err(NameError::IpLiteral(s.to_string())),
                "{s}"
            );
        }
        assert!(HostPattern::parse("1.2.3.example").is_ok());
    }

    #[test]
    fn labels_below_counts() {
        let p = HostPattern::parse("*.example.com").unwrap();
        assert_eq!(p.labels_below("a.b.c.example.com"), 3);
        assert_eq!(
            HostPattern::parse("x.com").unwrap().labels_below("x.com"),
            0
        );
    }
}
