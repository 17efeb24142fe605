//! Denial lines: first occurrence logged, repeats counted per window.

use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType as T;

use crate::dns::denylog::{DenialLog, MAX_KEYS, WINDOW};
use crate::dns::policy::Rule;

#[test]
fn first_denial_is_logged_repeats_are_counted_until_the_window_ends() {
    let t0 = Instant::now();
    let log = DenialLog::new(t0);
    let nx = "nxdomain";
    // (name, type, rule, seconds after t0, logged?)
    let table = [
        ("evil.net.", Some(T::A), Rule::NotAllowlisted, 0, true),
        ("evil.net.", Some(T::A), Rule::NotAllowlisted, 1, false),
        ("evil.net.", Some(T::AAAA), Rule::NotAllowlisted, 1, true),
        ("evil.net.", Some(T::A), Rule::Entropy, 2, true),
        ("other.net.", Some(T::A), Rule::NotAllowlisted, 2, true),
        ("evil.net.", Some(T::A), Rule::NotAllowlisted, 9, false),
        // A new window: logged again.
        ("evil.net.", Some(T::A), Rule::NotAllowlisted, 10, true),
        ("evil.net.", Some(T::A), Rule::NotAllowlisted, 11, false),
        ("", None, Rule::Malformed, 11, true),
        ("", None, Rule::Malformed, 11, false),
    ];
    for (name, rtype, rule, secs, want) in table {
        let now = t0 + Duration::from_secs(secs);
        assert_eq!(
            log.note(name, rtype, nx, rule, now),
            want,
            "{name} {rtype:?} {rule} at +{secs}s"
        );
    }
    assert_eq!(WINDOW, Duration::from_secs(10));
}

#[test]
fn flush_starts_a_new_window() {
    let t0 = Instant::now();
    let log = DenialLog::new(t0);
    assert!(log.note("a.net.", Some(T::A), "nxdomain", Rule::NotAllowlisted, t0));
    assert!(!log.note("a.net.", Some(T::A), "nxdomain", Rule::NotAllowlisted, t0));
    log.flush(t0);
    assert!(log.note("a.net.", Some(T::A), "nxdomain", Rule::NotAllowlisted, t0));
    // tick before the window ends changes nothing.
    log.tick(t0 + Duration::from_secs(1));
    assert!(!log.note("a.net.", Some(T::A), "nxdomain", Rule::NotAllowlisted, t0));
}

#[test]
fn past_the_key_limit_every_denial_is_logged() {
    let t0 = Instant::now();
    let log = DenialLog::new(t0);
    for i in 0..MAX_KEYS {
        assert!(log.note(
            &format!("n{i}.net."),
            Some(T::A),
            "nxdomain",
            Rule::NotAllowlisted,
            t0
        ));
    }
    for _ in 0..3 {
        assert!(log.note(
            "late.net.",
            Some(T::A),
            "nxdomain",
            Rule::NotAllowlisted,
            t0
        ));
    }
}
