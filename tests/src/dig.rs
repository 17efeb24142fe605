//! Running `dig` inside a namespace and reading what it got.

use std::time::Duration;

use crate::netns::Netns;

/// What `dig` reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dig {
    /// `status:` of the header (`NOERROR`, `NXDOMAIN`, `REFUSED`,
    /// `SERVFAIL`), or `TIMEOUT` if dig got no answer.
    pub status: String,
    /// The answer section's record data, one per record.
    pub answers: Vec<String>,
    /// True if dig said it retried over TCP after a truncated answer.
    pub retried_tcp: bool,
    /// Wall time.
    pub elapsed: Duration,
}

/// Ask the stub at 127.0.0.1:53 for `name`/`rtype` once (`+tries=1`,
/// 2 s timeout), over TCP if `tcp`; `extra` are more dig options.
pub async fn dig(ns: &Netns, name: &str, rtype: &str, tcp: bool, extra: &[&str]) -> Dig {
    let mut argv = vec![
        "dig",
        "@127.0.0.1",
        "-p",
        "53",
        "+time=2",
        "+tries=1",
        "+nocookie",
        name,
        rtype,
    ];
    if tcp {
        argv.push("+tcp");
    }
    argv.extend_from_slice(extra);
    let ran = ns.run(&argv, Duration::from_secs(10)).await;
    let mut d = parse(&ran.stdout());
    d.elapsed = ran.elapsed;
    d
}

/// Parse dig's default output.
pub fn parse(out: &str) -> Dig {
    let status = out
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .map_or_else(|| "TIMEOUT".to_string(), str::to_string);
    let mut answers = Vec::new();
    let mut in_answer = false;
    for line in out.lines() {
        if line.starts_with(";; ANSWER SECTION:") {
            in_answer = true;
        } else if in_answer && (line.trim().is_empty() || line.starts_with(";;")) {
            in_answer = false;
        } else if in_answer {
            // name TTL class type rdata...
            let rdata: Vec<&str> = line.split_whitespace().skip(4).collect();
            answers.push(rdata.join(" "));
        }
    }
    Dig {
        status,
        answers,
        retried_tcp: out.contains("retrying in TCP mode"),
        elapsed: Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers_status_and_tcp_retry() {
        let out = ";; Truncated, retrying in TCP mode.\n\
            ;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n\
            ;; ANSWER SECTION:\n\
            allowed.test.\t\t300\tIN\tA\t203.0.113.7\n\
            allowed.test.\t\t300\tIN\tTXT\t\"v=upstream x\"\n\
            \n;; Query time: 1 msec\n";
        let d = parse(out);
        assert_eq!(d.status, "NOERROR");
        assert_eq!(d.answers, vec!["203.0.113.7", "\"v=upstream x\""]);
        assert!(d.retried_tcp);
        let none = parse(";; communications error to 127.0.0.1#53: timed out\n");
        assert_eq!(none.status, "TIMEOUT");
        assert!(none.answers.is_empty());
    }
}
