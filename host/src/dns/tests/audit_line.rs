//! The audit line, formatted by hand, against the same line built with
//! `format!` (the obvious way), across second boundaries.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use hickory_proto::rr::RecordType;

use crate::dns::audit::{rfc3339, write_line, AuditRecord, Stamp};

fn reference(time: SystemTime, rec: &AuditRecord<'_>) -> String {
    let answers: Vec<String> = rec.answers.iter().map(|ip| format!("\"{ip}\"")).collect();
    format!(
        "{{\"time\":\"{}\",\"name\":\"{}\",\"type\":\"{}\",\"verdict\":\"{}\",\"rule\":{},\
         \"answers\":[{}],\"cached\":{},\"latency_us\":{}}}\n",
        rfc3339(time),
        rec.name,
        rec.rtype.map(|t| t.to_string()).unwrap_or_default(),
        rec.verdict,
        rec.rule.map_or("null".to_string(), |r| format!("\"{r}\"")),
        answers.join(","),
        rec.cached,
        rec.latency_us
    )
}

#[test]
fn hand_formatted_lines_match_the_reference() {
    let ips: Vec<IpAddr> = ["203.0.113.7", "0.0.0.0", "255.255.255.255", "2001:db8::1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let recs = [
        AuditRecord {
            name: "allowed.test.",
            rtype: Some(RecordType::A),
            verdict: "answer",
            rule: None,
            answers: &ips,
            cached: true,
            latency_us: 0,
        },
        AuditRecord {
            name: "denied.example.",
            rtype: Some(RecordType::Unknown(65_000)),
            verdict: "nxdomain",
            rule: Some("not-allowlisted"),
            answers: &[],
            cached: false,
            latency_us: u64::MAX,
        },
        AuditRecord {
            name: "",
            rtype: None,
            verdict: "formerr",
            rule: Some("malformed"),
            answers: &ips[..1],
            cached: false,
            latency_us: 1_000_007,
        },
    ];
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let mut stamp = Stamp::default();
    // Within a second, across seconds, back in time, micros at both ends.
    for offset_us in [
        0u64,
        1,
        999_999,
        1_000_000,
        1_000_001,
        5,
        86_400_000_000,
        999,
    ] {
        let t = base + Duration::from_micros(offset_us);
        for rec in &recs {
            let mut got = String::new();
            write_line(&mut got, &mut stamp, t, rec);
            assert_eq!(got, reference(t, rec), "at +{offset_us} us");
        }
    }
}
