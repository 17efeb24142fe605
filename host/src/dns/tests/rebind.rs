//! The rebinding floor: which answer addresses are dropped.

use std::net::IpAddr;

use crate::dns::rebind::is_forbidden;

#[test]
fn forbidden_answer_table() {
    let cases: &[(&str, bool)] = &[
        ("127.0.0.1", true),
        ("127.8.9.10", true),
        ("10.1.2.3", true),
        ("172.16.0.1", true),
        ("172.31.255.255", true),
        ("172.32.0.1", false),
        ("192.168.1.1", true),
        ("169.254.169.254", true),
        ("100.64.0.1", true),
        ("100.127.255.255", true),
        ("100.128.0.1", false),
        ("0.0.0.0", true),
        ("0.1.2.3", true),
        ("224.0.0.1", true),
        ("255.255.255.255", true),
        ("240.0.0.1", true),
        ("192.0.2.1", true),
        ("198.51.100.7", true),
        ("203.0.113.9", true),
        ("198.18.0.1", true),
        ("198.19.255.1", true),
        ("192.0.0.8", true),
        ("140.82.112.5", false),
        ("104.16.0.1", false),
        ("8.8.8.8", false),
        ("::1", true),
        ("::", true),
        // NAT64 and SIIT forms of private IPv4, and local-use NAT64.
        ("64:ff9b::a00:5", true),
        ("64:ff9b::8c52:7005", false),
        ("64:ff9b:1::a00:5", true),
        ("64:ff9b:1::a9fe:a9fe", true),
        ("64:ff9b:1::7f00:1", true),
        ("64:ff9b:1::8c52:7005", true),
        ("::ffff:0:a9fe:a9fe", true),
        ("::ffff:0:8c52:7005", false),
        ("fe80::1", true),
        ("fc00::1", true),
        ("fd12:3456::1", true),
        ("ff02::1", true),
        ("2001:db8::1", true),
        ("3fff::1", true),
        ("2001:2::1", true),
        ("::ffff:127.0.0.1", true),
        ("::ffff:169.254.169.254", true),
        ("::ffff:10.0.0.1", true),
        ("::ffff:140.82.112.5", false),
        ("::127.0.0.1", true),
        ("64:ff9b::a00:1", true),
        ("64:ff9b::8c52:7005", false),
        ("2606:4700::1111", false),
        ("2a00:1450:4001::200e", false),
    ];
    for (ip, want) in cases {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(is_forbidden(ip), *want, "{ip}");
    }
}
