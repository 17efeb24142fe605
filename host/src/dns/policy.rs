//! The allowlist policy: which names and record types get an answer.
//!
//! Order of checks: the name must normalise and match the allowlist
//! (else `not-allowlisted`, answered NXDOMAIN), the type must be allowed
//! (else `record-type`, REFUSED), then the exfiltration limits of
//! [`super::exfil`] (NXDOMAIN), a host secret or credential in the name
//! (NXDOMAIN, when `launch` gives the DLP), the unique-name budget last.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::manifest::{normalize_name, DnsConfig, ExfilLimits, HostPattern, Manifest};

use super::exfil::{self, NameBudget};

/// The rule that decided a query's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// Name not in the allowlist, or not a valid host name.
    NotAllowlisted,
    /// Record type not in `[dns] record_types`.
    RecordType,
    /// A label longer than `max_label_len`.
    LabelLength,
    /// Name longer than `max_name_len`.
    NameLength,
    /// Too many labels below the allowed suffix.
    LabelCount,
    /// A label that looks hex/base32/base64.
    EncodedLabel,
    /// A label of too high entropy.
    Entropy,
    /// Too many unique names under one registered domain in the window.
    UniqueNameBudget,
    /// The name holds a host secret or a credential (the proxy's DLP, over
    /// the name and over its labels joined without dots).
    Secret,
    /// A/AAAA answers in private ranges were dropped.
    PrivateAnswer,
    /// The query could not be parsed or had not exactly one question.
    Malformed,
    /// Opcode other than QUERY.
    Opcode,
    /// Upstream failed or timed out.
    Upstream,
    /// The audit log cannot be written: fail closed (SERVFAIL).
    AuditLog,
}

impl Rule {
    /// The rule's name in logs and the audit trail.
    pub const fn name(self) -> &'static str {
        match self {
            Rule::NotAllowlisted => "not-allowlisted",
            Rule::RecordType => "record-type",
            Rule::LabelLength => "label-length",
            Rule::NameLength => "name-length",
            Rule::LabelCount => "label-count",
            Rule::EncodedLabel => "encoded-label",
            Rule::Entropy => "entropy",
            Rule::UniqueNameBudget => "unique-name-budget",
            Rule::Secret => "secret-in-name",
            Rule::PrivateAnswer => "private-answer",
            Rule::Malformed => "malformed",
            Rule::Opcode => "opcode",
            Rule::Upstream => "upstream",
            Rule::AuditLog => "audit-log",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The policy's answer for one (name, type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Resolve upstream. `name` is the normalised name.
    Allow {
        /// Normalised name.
        name: String,
    },
    /// Answer locally, with this rule.
    Deny(Rule),
}

/// Whether a (normalised) name holds something that must not leave: the
/// proxy's DLP, given by `launch` (the DNS module does not know secrets).
#[derive(Clone)]
pub struct NameScan(pub Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl fmt::Debug for NameScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NameScan")
    }
}

/// The DNS policy of one bottle. Shared by all connections.
#[derive(Debug)]
pub struct Policy {
    allow: Vec<HostPattern>,
    record_types: Vec<RecordType>,
    limits: ExfilLimits,
    budget: Mutex<NameBudget>,
    names: Option<NameScan>,
}

impl Policy {
    /// The policy of `manifest`.
    pub fn from_manifest(manifest: &Manifest) -> Policy {
        Policy::new(manifest.dns_allowlist(), &manifest.dns)
    }

    /// A policy allowing `allow` under the settings of `dns`.
    pub fn new(allow: Vec<HostPattern>, dns: &DnsConfig) -> Policy {
        Policy {
            allow,
            record_types: dns.record_types.clone(),
            limits: dns.limits.clone(),
            budget: Mutex::new(NameBudget::default()),
            names: None,
        }
    }

    /// Also refuse names `scan` finds something in ([`Rule::Secret`]).
    pub fn with_name_scan(mut self, scan: NameScan) -> Policy {
        self.names = Some(scan);
        self
    }

    /// Decide `qname` (as sent, any case, trailing dot or not) and `rtype`
    /// at `now`. Allowed names count against the unique-name budget.
    pub fn check(&self, qname: &str, rtype: RecordType, now: Instant) -> Verdict {
        match self.check_with_base(qname, rtype) {
            Ok((name, base)) => {
                let domain = exfil::budget_domain(&name, base);
                let window = Duration::from_secs(self.limits.window_secs);
                let admitted = self
                    .budget
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .admit(
                        domain,
                        &name,
                        now,
                        window,
                        self.limits.unique_names_per_window,
                    );
                if admitted {
                    Verdict::Allow { name }
                } else {
                    Verdict::Deny(Rule::UniqueNameBudget)
                }
            }
            Err(rule) => Verdict::Deny(rule),
        }
    }

    /// Every check but the budget: the normalised name, or the rule that
    /// refuses it. Has no side effects (used by `bottle-host dns query`).
    pub fn check_static(&self, qname: &str, rtype: RecordType) -> Result<String, Rule> {
        self.check_with_base(qname, rtype).map(|(name, _)| name)
    }

    /// [`Self::check_static`], also returning the matched pattern's base.
    fn check_with_base(&self, qname: &str, rtype: RecordType) -> Result<(String, &str), Rule> {
        let name = normalize_name(qname).map_err(|_| Rule::NotAllowlisted)?;
        // The most specific pattern decides how many labels are "below".
        let (labels_below, base) = self
            .allow
            .iter()
            .filter(|p| p.matches(&name))
            .map(|p| (p.labels_below(&name), p.base()))
            .min()
            .ok_or(Rule::NotAllowlisted)?;
        if !self.record_types.contains(&rtype) {
            return Err(Rule::RecordType);
        }
        exfil::check_shape(&name, qname, labels_below, &self.limits)?;
        if self.names.as_ref().is_some_and(|scan| (scan.0)(&name)) {
            return Err(Rule::Secret);
        }
        Ok((name, base))
    }
}
