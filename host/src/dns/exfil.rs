//! Exfiltration limits: what makes a name inside an allowed zone look like
//! a covert channel rather than a host.
//!
//! Every check is a pure function of the name (and, for the unique-name
//! budget, of the time passed in by the caller, so tests inject a clock).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::manifest::ExfilLimits;

use super::policy::Rule;

/// Check the shape of `name` (normalised) against `limits`. `raw` is the
/// name as the client sent it (case preserved, for base64 detection);
/// `labels_below` is how many of its labels lie below the allowed suffix.
pub fn check_shape(
    name: &str,
    raw: &str,
    labels_below: usize,
    limits: &ExfilLimits,
) -> Result<(), Rule> {
    if name.len() > limits.max_name_len {
        return Err(Rule::NameLength);
    }
    if name.split('.').any(|l| l.len() > limits.max_label_len) {
        return Err(Rule::LabelLength);
    }
    if labels_below > limits.max_labels_below_suffix {
        return Err(Rule::LabelCount);
    }
    let raw = raw.strip_suffix('.').unwrap_or(raw);
    // Only the labels the client chose (below the allowed suffix) carry
    // data; the suffix's own labels are the manifest author's choice.
    for label in raw.split('.').take(labels_below) {
        if looks_encoded(label, limits.encoded_label_min_len) {
            return Err(Rule::EncodedLabel);
        }
        if label.len() >= limits.entropy_min_len && normalized_entropy(label) > limits.max_entropy {
            return Err(Rule::Entropy);
        }
    }
    Ok(())
}

/// Does `label` look like hex, base32 or base64 rather than words? Only
/// labels of at least `min_len` characters (without `-` and `_`) are judged.
pub fn looks_encoded(label: &str, min_len: usize) -> bool {
    let stripped: Vec<u8> = label.bytes().filter(|b| *b != b'-' && *b != b'_').collect();
    if stripped.len() < min_len || stripped.is_empty() {
        return false;
    }
    let lower: Vec<u8> = stripped.iter().map(u8::to_ascii_lowercase).collect();
    let digits = lower.iter().filter(|b| b.is_ascii_digit()).count();
    // Hex: only 0-9a-f, with at least one digit.
    if digits > 0 && lower.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    // Base64: upper and lower case mixed (real names are typed in one case).
    let upper = stripped.iter().any(u8::is_ascii_uppercase);
    let lowercase = stripped.iter().any(u8::is_ascii_lowercase);
    if upper && lowercase {
        return true;
    }
    // Base32 and other random text: few vowels, long consonant runs, or
    // many digits.
    let vowels = lower.iter().filter(|b| is_vowel(**b)).count();
    if vowels * 4 < lower.len() {
        return true;
    }
    if digits * 10 >= lower.len() * 3 {
        return true;
    }
    label
        .split(['-', '_'])
        .any(|seg| longest_consonant_run(seg.as_bytes()) >= 5)
}

fn is_vowel(b: u8) -> bool {
    matches!(
        b.to_ascii_lowercase(),
        b'a' | b'e' | b'i' | b'o' | b'u' | b'y'
    )
}

fn longest_consonant_run(seg: &[u8]) -> usize {
    let mut best = 0;
    let mut run = 0;
    for &b in seg {
        if is_vowel(b) {
            run = 0;
        } else {
            run += 1;
            best = best.max(run);
        }
    }
    best
}

/// Shannon entropy of `label`'s characters (case-insensitive) divided by
/// the most a string of its length could have, `log2(len)`: 0 to 1.
pub fn normalized_entropy(label: &str) -> f64 {
    let n = label.len();
    if n < 2 {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for b in label.bytes() {
        counts[usize::from(b.to_ascii_lowercase())] += 1;
    }
    let len = n as f64;
    let h: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / len;
            -p * p.log2()
        })
        .sum();
    h / len.log2()
}

/// The registered domain of `name` from the Public Suffix List
/// (`www.example.co.uk` → `example.co.uk`); the name itself when it has none.
pub fn registered_domain(name: &str) -> &str {
    psl::domain_str(name).unwrap_or(name)
}

/// The domain whose budget `name` counts against: its registered domain,
/// or the allowed suffix `base` when that is shorter (under
/// `*.cloudfront.net` every `dXXX.cloudfront.net` is its own registered
/// domain, but they all share one budget).
pub fn budget_domain<'a>(name: &'a str, base: &'a str) -> &'a str {
    let reg = registered_domain(name);
    if base.len() < reg.len() && name.ends_with(base) {
        base
    } else {
        reg
    }
}

/// Past this many budget domains, idle ones are swept on the next new one.
const MAX_BUDGET_DOMAINS: usize = 10_000;

/// Unique names asked per budget domain within a sliding window.
#[derive(Debug, Default)]
pub struct NameBudget {
    domains: HashMap<String, HashMap<String, Instant>>,
}

impl NameBudget {
    /// Record `name` (normalised) under the budget `domain` at `now`. A
    /// name already seen within the window is always allowed; a new one is
    /// refused once `domain` has `limit` unique names in the window.
    pub fn admit(
        &mut self,
        domain: &str,
        name: &str,
        now: Instant,
        window: Duration,
        limit: u32,
    ) -> bool {
        if self.domains.len() >= MAX_BUDGET_DOMAINS && !self.domains.contains_key(domain) {
            self.domains.retain(|_, names| {
                names.retain(|_, t| now.saturating_duration_since(*t) < window);
                !names.is_empty()
            });
        }
        let seen = match self.domains.get_mut(domain) {
            Some(s) => s,
            None => self.domains.entry(domain.to_string()).or_default(),
        };
        if let Some(t) = seen.get_mut(name) {
            if now.saturating_duration_since(*t) < window {
                *t = now;
                return true;
            }
        }
        seen.retain(|_, t| now.saturating_duration_since(*t) < window);
        if seen.len() >= limit as usize {
            return false;
        }
        seen.insert(name.to_string(), now);
        true
    }
}
