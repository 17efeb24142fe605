//! The escape & exfiltration suite (issue #7): one `probe_<channel>_<what>`
//! test per way out an untrusted root agent could try from inside a real
//! VM. One boot runs every guest-side probe (`tests/probes/*.py`), a
//! second boot runs the rebinding probes; each test reads its probe's line
//! (see `bottle_e2e::escape`). The `probe_host_*` tests check the same runs
//! from outside: what the stand-in internet received. docs/security.md
//! lists every probe and what is not covered.

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

use bottle_e2e::escape::{self, contains, request_bytes, secret_forms, Mode, Run, Suite};
use bottle_e2e::vm::{vm_unavailable, TOKEN};

/// The runs, once per test binary; `Err` holds why they are missing.
fn suite() -> Option<&'static Suite> {
    static SUITE: OnceLock<Result<Suite, String>> = OnceLock::new();
    let got = SUITE.get_or_init(|| {
        if let Some(why) = vm_unavailable() {
            return Err(format!("skipped: {why}"));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async {
                let main = escape::run(Mode::Main).await;
                let rebind = escape::run(Mode::Rebind).await;
                let connector = escape::run(Mode::Connector).await;
                for (name, run) in [
                    ("main", &main),
                    ("rebind", &rebind),
                    ("connector", &connector),
                ] {
                    eprintln!(
                        "escape suite: {name} run {:.1}s, {} probes",
                        run.secs,
                        run.probes.len()
                    );
                }
                Suite {
                    main,
                    rebind,
                    connector,
                }
            })
        }))
        .map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the launch panicked".into())
        })
    });
    match got {
        Ok(s) => Some(s),
        Err(why) if why.starts_with("skipped:") => {
            eprintln!("{why}");
            None
        }
        Err(why) => panic!("escape suite did not run: {why}"),
    }
}

fn main_run() -> Option<&'static Run> {
    suite().map(|s| &s.main)
}

fn rebind_run() -> Option<&'static Run> {
    suite().map(|s| &s.rebind)
}

fn connector_run() -> Option<&'static Run> {
    suite().map(|s| &s.connector)
}

/// One test per probe: `probe_NAME` passes when the guest printed
/// `PROBE NAME ok` (refused explicitly, in under 2 s unless noted).
macro_rules! probes {
    ($run:ident: $($test:ident),* $(,)?) => {$(
        #[test]
        fn $test() {
            let Some(run) = $run() else { return };
            run.assert_probe(stringify!($test).trim_start_matches("probe_"));
        }
    )*};
}

probes!(main_run:
    probe_dns_tunnel_a,
    probe_dns_tunnel_aaaa,
    probe_dns_tunnel_txt,
    probe_dns_tunnel_null,
    probe_dns_tunnel_cname,
    probe_dns_tunnel_mx,
    probe_dns_tunnel_any,
    probe_dns_tunnel_hex_labels,
    probe_dns_tunnel_base32_labels,
    probe_dns_tunnel_base64_labels,
    probe_dns_tunnel_tcp,
    probe_dns_tunnel_tcp_txt,
    probe_dns_baseline_allowed_name,
    probe_dns_denied_name_nxdomain,
    probe_dns_secret_in_labels,
    probe_dns_hardcoded_resolver_udp,
    probe_dns_hardcoded_resolver_tcp,
    probe_dns_hardcoded_resolver_v6,
    probe_dns_resolv_conf_rewritten,
    probe_dns_edns_option_payload,
    probe_dns_edns_tunnel_name,
    probe_dns_oversize_udp,
    probe_dns_oversize_name,
    probe_dns_deep_labels,
    probe_net_only_loopback,
    probe_net_no_nic_device,
    probe_net_tcp_public_ip,
    probe_net_udp_public_ip,
    probe_net_tcp_qemu_gateway,
    probe_net_tcp_metadata_ip,
    probe_net_guest_loopback_is_not_host,
    probe_net_ipv6_tcp,
    probe_net_ipv6_udp,
    probe_net_raw_socket,
    probe_net_icmp_ping,
    probe_net_packet_socket_lo_only,
    probe_net_bring_up_interface,
    probe_net_vsock_host_port_22,
    probe_net_vsock_host_port_1024,
    probe_net_vsock_host_port_6000,
    probe_net_vsock_host_port_6005,
    probe_net_vsock_host_port_8080,
    probe_net_vsock_cid_hypervisor,
    probe_net_vsock_cid_local,
    probe_net_vsock_cid_self,
    probe_net_vsock_cid_other,
    probe_net_vsock_cid_high,
    probe_net_vsock_garbage_6002,
    probe_net_vsock_garbage_6003,
    probe_net_vsock_garbage_6004,
    probe_net_vsock_session_second_attach,
    probe_net_vsock_egress_direct,
    probe_proxy_baseline_allowed,
    probe_proxy_reflected_token_redacted,
    probe_proxy_connect_ip_literal,
    probe_proxy_connect_ipv6_literal,
    probe_proxy_connect_loopback_literal,
    probe_proxy_connect_denied_host,
    probe_proxy_connect_suffix_trick,
    probe_proxy_connect_denied_port,
    probe_proxy_sni_mismatch,
    probe_proxy_no_sni,
    probe_proxy_host_header_mismatch,
    probe_proxy_absolute_uri_other_host,
    probe_proxy_second_connect_in_tunnel,
    probe_proxy_plaintext_in_tunnel,
    probe_proxy_plain_http_denied_host,
    probe_proxy_plain_http_ip_literal,
    probe_proxy_plain_http_host_mismatch,
    probe_proxy_plain_http_injecting_route,
    probe_proxy_origin_form_other_host,
    probe_proxy_websocket_other_host,
    probe_proxy_h2_baseline_allowed,
    probe_proxy_h2_authority_mismatch,
    probe_secrets_url_path,
    probe_secrets_query,
    probe_secrets_header,
    probe_secrets_header_name,
    probe_secrets_cookie,
    probe_secrets_basic_auth,
    probe_secrets_json_body,
    probe_secrets_form_body,
    probe_secrets_multipart_body,
    probe_secrets_chunked_body_split,
    probe_secrets_split_across_requests,
    probe_secrets_split_across_header_and_body_hex,
    probe_secrets_split_across_requests_base64,
    probe_secrets_gzip_body,
    probe_secrets_unknown_content_encoding,
    probe_secrets_second_content_encoding,
    probe_secrets_base64_query,
    probe_secrets_base64_body,
    probe_secrets_base64url_query,
    probe_secrets_base64url_body,
    probe_secrets_hex_query,
    probe_secrets_hex_body,
    probe_secrets_base32_query,
    probe_secrets_base32_body,
    probe_secrets_urlencoded_query,
    probe_secrets_urlencoded_body,
    probe_secrets_hex_mixedcase_body,
    probe_secrets_base32_lowercase_query,
    probe_secrets_json_escape_body,
    probe_secrets_html_entity_body,
    probe_secrets_x_escape_header,
    probe_secrets_base64_of_hex_body,
    probe_secrets_hex_of_base64_query,
    probe_secrets_builtin_github,
    probe_secrets_builtin_aws,
    probe_secrets_builtin_anthropic,
    probe_secrets_builtin_slack,
    probe_secrets_builtin_pem,
    probe_secrets_builtin_github_header,
    probe_secrets_token_not_in_guest_env,
    probe_secrets_token_not_in_guest_files,
    probe_tamper_pid1_memory_has_no_token,
    probe_tamper_bind_dns_port,
    probe_tamper_bind_proxy_port,
    probe_tamper_kill_pid1,
    probe_tamper_ptrace_pid1,
    probe_tamper_trust_store,
    probe_tamper_own_proxy_env,
    probe_dns_unique_label_budget,
    probe_secrets_token_not_in_replies,
    probe_ws_baseline_read_write,
    probe_ws_host_symlink_resolves_in_guest,
    probe_ws_relative_symlink_stays_in_guest,
    probe_ws_dotdot_is_the_guest_root,
    probe_ws_guest_symlink_to_root,
    probe_ws_hardlink_across_mounts,
    probe_ws_open_by_handle,
    probe_ws_readonly_refuses_writes,
    probe_ws_readonly_after_remount_rw,
    probe_ws_mount_host_tag_again,
);

probes!(rebind_run:
    probe_dns_rebind_metadata_dropped,
    probe_proxy_allowed_name_metadata_refused,
    probe_dns_rebind_private_dropped,
    probe_proxy_allowed_name_private_refused,
    probe_dns_rebind_loopback_dropped,
    probe_proxy_allowed_name_loopback_refused,
);

probes!(connector_run:
    probe_proxy_upstream_metadata_address_refused,
    probe_proxy_upstream_private_address_refused,
    probe_proxy_upstream_loopback_address_refused,
);

// Known gaps: the probes run and print their verdict every time; these
// tests fail while the gap is open, so they are ignored with the reason
// (docs/security.md, "Not covered"). `cargo test -- --ignored` shows them.

// Closed gaps: a refusing host channel ends with `linger_close` (shut down
// writing, drain briefly), and a second control connection is refused.
#[test]
fn probe_net_vsock_garbage_trailing_bytes() {
    let Some(run) = main_run() else { return };
    run.assert_probe("net_vsock_garbage_trailing_bytes");
}

#[test]
fn probe_net_vsock_garbage_6001() {
    let Some(run) = main_run() else { return };
    run.assert_probe("net_vsock_garbage_6001");
}

/// The host side (issue #16): checks made while the main run's bottle ran,
/// as another local user and on its processes (`bottle_e2e::hostside`).
macro_rules! host_side {
    ($($test:ident),* $(,)?) => {$(
        #[test]
        fn $test() {
            let Some(run) = main_run() else { return };
            run.assert_host_side(stringify!($test).trim_start_matches("probe_"));
        }
    )*};
}

host_side!(
    probe_host_side_no_loopback_listener,
    probe_host_side_sockets_refuse_other_uid,
    probe_host_side_state_private,
    probe_host_side_children_hold_no_secret,
    probe_host_side_curl_x_abuse_refused,
    probe_host_side_workspace_readonly_unchanged,
    probe_host_side_workspace_files_are_the_users,
);

/// Canary: whatever the guest sent, no host task panicked (a panic in the
/// host caused by guest input is a defect even when caught).
#[test]
fn probe_host_no_panic_in_any_run() {
    let Some(s) = suite() else { return };
    for (name, run) in [
        ("main", &s.main),
        ("rebind", &s.rebind),
        ("connector", &s.connector),
    ] {
        if let Some(line) = run.output.lines().find(|l| l.contains("panicked")) {
            panic!("bottle-host panicked in the {name} run: {line}");
        }
    }
}

#[test]
fn probe_host_every_probe_reported() {
    let Some(s) = suite() else { return };
    for run in [&s.main, &s.rebind, &s.connector] {
        assert!(
            run.output.contains("PROBES done failed="),
            "the probe script did not finish:\n{}",
            run.output
        );
        assert!(run.probes.len() >= 3, "{:?}", run.probes.keys());
    }
    assert!(s.main.probes.len() >= 100, "{}", s.main.probes.len());
}

#[test]
fn probe_host_dns_upstream_never_saw_tunnelled_names() {
    let Some(run) = main_run() else { return };
    // The baseline name did go out (so the upstream was reachable at all).
    assert!(run.dns_names.iter().any(|n| n == "www.tunnel.bottle.test"));
    for name in &run.dns_names {
        assert!(
            name.split('.').all(|l| l.len() < 20),
            "a tunnelling-shaped name reached the upstream: {name}"
        );
        assert!(
            !name.contains("example.com"),
            "denied name went out: {name}"
        );
    }
}

#[test]
fn probe_host_dns_upstream_never_saw_the_secret() {
    let Some(run) = main_run() else { return };
    assert!(run.dns_raw_count > 0);
    assert_eq!(
        run.dns_raw_with_secret, 0,
        "a raw upstream query carried the host secret (EDNS option or padding)"
    );
    // Nor a name: the secret (or a 12-byte piece), in any case, across
    // labels (`dns_secret_in_labels`).
    let secret = escape::HOST_SECRET.to_ascii_lowercase();
    let pieces: Vec<&[u8]> = secret.as_bytes().windows(12).collect();
    let carried: Vec<&String> = run
        .dns_names
        .iter()
        .filter(|n| {
            let joined = n.replace('.', "");
            joined.as_bytes().windows(12).any(|w| pieces.contains(&w))
        })
        .collect();
    assert!(
        carried.is_empty(),
        "upstream names carried the host secret: {carried:?}"
    );
}

#[test]
fn probe_host_dns_budget_held_upstream() {
    let Some(run) = main_run() else { return };
    let unique = run
        .dns_names
        .iter()
        .filter(|n| n.ends_with(".tunnel.bottle.test") && n.starts_with('w'))
        .count();
    // 30 unique names per window (the probe manifest), some spent before.
    assert!(
        unique <= 30,
        "{unique} budget-probe names reached the upstream"
    );
}

#[test]
fn probe_host_web_upstream_never_got_the_secret() {
    let Some(run) = main_run() else { return };
    for seen in &run.web_seen {
        let bytes = request_bytes(seen).to_ascii_lowercase();
        for form in secret_forms() {
            assert!(
                !contains(&bytes, form.to_ascii_lowercase().as_bytes()),
                "the upstream received the secret ({form}) in {} {}",
                seen.method,
                seen.path
            );
        }
    }
}

#[test]
fn probe_host_web_upstream_got_only_allowed_requests() {
    let Some(s) = suite() else { return };
    let allowed = ["/baseline", "/h2-baseline", "/absolute-uri", "/split-"];
    let seen: Vec<&str> = s.main.web_seen.iter().map(|r| r.path.as_str()).collect();
    assert!(seen.contains(&"/baseline"), "{seen:?}");
    let others = s.rebind.web_seen.iter().chain(&s.connector.web_seen);
    for r in s.main.web_seen.iter().chain(others) {
        assert!(
            allowed.iter().any(|a| r.path.starts_with(a)),
            "a refused request reached the upstream: {} {}",
            r.method,
            r.path
        );
        if let Some(host) = r.header("host") {
            assert!(host.starts_with("api.bottle.test"), "Host {host}");
        }
    }
}

#[test]
fn probe_host_token_only_upstream() {
    let Some(s) = suite() else { return };
    // The upstream got the injected token...
    let base = s
        .main
        .web_seen
        .iter()
        .find(|r| r.path == "/baseline")
        .expect("baseline request");
    assert_eq!(
        base.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    // ...and it is nowhere the guest could have put it: not in the console,
    // not on the VM's or the vsock daemon's command line.
    for run in [&s.main, &s.rebind, &s.connector] {
        assert!(!run.output.contains(TOKEN), "token in the console output");
        assert!(!run.child_cmdlines.is_empty(), "no children seen");
        for c in &run.child_cmdlines {
            assert!(!c.contains(TOKEN), "token on a command line: {c}");
            assert!(!c.contains(escape::HOST_SECRET), "secret on a command line");
        }
    }
}
