//! Built-in credential rules: one ASCII-mode `RegexSet` over bytes.
//!
//! Written for this project after the shapes documented by the issuers and
//! catalogued by gitleaks; every quantifier is bounded so a match is never
//! longer than [`MAX_MATCH`] and the streaming overlap can catch it.

use regex::bytes::RegexSet;

/// Longest text a rule needs to see to match, bytes.
pub const MAX_MATCH: usize = 900;

/// (rule name, pattern). Earlier rules win when several match.
pub const RULES: &[(&str, &str)] = &[
    (
        "aws-access-key-id",
        r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b",
    ),
    ("github-token", r"\bgh[opsur]_[A-Za-z0-9]{36}"),
    ("github-fine-grained-pat", r"\bgithub_pat_[A-Za-z0-9_]{40}"),
    (
        "anthropic-api-key",
        r"\bsk-ant-[a-z0-9]{2,10}-[A-Za-z0-9_-]{20}",
    ),
    (
        "openai-api-key",
        r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20}T3BlbkFJ|\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40}",
    ),
    (
        "slack-token",
        r"\bxox[abposr]-[0-9]{6,20}-[0-9A-Za-z-]{6,100}",
    ),
    ("stripe-key", r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{20}"),
    ("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}"),
    (
        "private-key",
        r"-----BEGIN[A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----",
    ),
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{10,200}\.eyJ[A-Za-z0-9_-]{10,600}\.[A-Za-z0-9_-]{10}",
    ),
];

/// Every rule's match starts with one of these literals (after an
/// optional `\b`): the prefilter only runs the `RegexSet` near them.
pub const PREFIXES: &[&str] = &[
    "AKIA",
    "ASIA",
    "ABIA",
    "ACCA",
    "gho_",
    "ghp_",
    "ghs_",
    "ghu_",
    "ghr_",
    "github_pat_",
    "sk-",
    "sk_",
    "rk_",
    "xox",
    "AIza",
    "-----BEGIN",
    "eyJ",
];

/// Compile the rules (ASCII mode, no Unicode classes).
pub fn compile() -> RegexSet {
    let ascii: Vec<String> = RULES.iter().map(|(_, p)| format!("(?-u:{p})")).collect();
    // The patterns are constants covered by the tests below.
    #[allow(clippy::expect_used)]
    RegexSet::new(ascii).expect("built-in DLP rules compile")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_fires_on_its_sample_and_not_on_near_misses() {
        let set = compile();
        // Synthetic samples in each issuer's shape (not real credentials).
        let table: &[(&str, Option<&str>)] = &[
            ("id=AKIAIOSFODNN7EXAMPLE&x", Some("aws-access-key-id")),
            ("AKIAIOSFODNN7EXAMPL", None),
            ("token ghp_0123456789abcdefghijABCDEFGHIJ012345", Some("github-token")),
            ("ghp_short", None),
            (
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCD",
                Some("github-fine-grained-pat"),
            ),
            ("x-api-key: sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123", Some("anthropic-api-key")),
            ("sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH", Some("openai-api-key")),
            ("sk-abcdefghij0123456789T3BlbkFJabcdef", Some("openai-api-key")),
            ("task-list", None),
            ("xoxb-123456789012-abcdefABCDEF", Some("slack-token")),
            ("sk_live_abcdefghijklmnopqrstuvwx", Some("stripe-key")),
            ("key=AIzaSyA-abcdefghijklmnopqrstuvwxyz01234", Some("google-api-key")),
            ("-----BEGIN RSA PRIVATE KEY-----", Some("private-key")),
            ("-----BEGIN OPENSSH PRIVATE KEY-----", Some("private-key")),
            ("-----BEGIN CERTIFICATE-----", None),
            (
                "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                Some("jwt"),
            ),
            ("eyJustkidding", None),
            ("plain text with nothing secret", None),
        ];
        for (text, want) in table {
            let got = set
                .matches(text.as_bytes())
                .iter()
                .next()
                .map(|i| RULES[i].0);
            assert_eq!(got, *want, "{text}");
        }
    }
}
