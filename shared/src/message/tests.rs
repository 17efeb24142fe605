//! Round-trip property tests of every message, and hello checks.

use super::*;
use crate::frame::{encode_message, FrameDecoder, MAX_FRAME_LEN};
use proptest::prelude::*;

fn round_trip<T>(msg: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let wire = encode_message(msg, MAX_FRAME_LEN).unwrap();
    let mut d = FrameDecoder::new(MAX_FRAME_LEN);
    d.push(&wire);
    let back: T = d.next_message().unwrap().unwrap();
    assert_eq!(&back, msg);
    d.finish().unwrap();
}

fn channel() -> impl Strategy<Value = Channel> {
    prop_oneof![
        Just(Channel::Control),
        Just(Channel::Dns),
        Just(Channel::Egress)
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Guest), Just(Role::Host)]
}

fn hello() -> impl Strategy<Value = Hello> {
    (any::<u16>(), any::<u16>(), role(), channel(), ".{0,40}").prop_map(
        |(major, minor, role, channel, software)| Hello {
            major,
            minor,
            role,
            channel,
            software,
        },
    )
}

fn restart() -> impl Strategy<Value = RestartPolicy> {
    (
        prop_oneof![
            Just(RestartMode::No),
            Just(RestartMode::OnFailure),
            Just(RestartMode::Always)
        ],
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(mode, max_restarts, a, b)| RestartPolicy {
            mode,
            max_restarts,
            backoff_initial_ms: a,
            backoff_max_ms: b,
        })
}

fn config() -> impl Strategy<Value = GuestConfig> {
    (
        ".{0,20}",
        proptest::collection::vec(".{0,20}", 0..5),
        ".{0,10}",
        proptest::collection::vec((".{0,10}", ".{0,20}"), 0..5),
        restart(),
        ".{0,200}",
        any::<u16>(),
        proptest::collection::vec(".{0,20}", 0..3),
        (any::<u16>(), any::<u8>(), any::<u8>(), any::<u64>()),
    )
        .prop_map(
            |(
                hostname,
                command,
                user,
                env,
                restart,
                ca_pem,
                proxy_port,
                no_proxy,
                (p, t, a, g),
            )| {
                GuestConfig {
                    hostname,
                    agent: AgentSpec {
                        command,
                        user: user.clone(),
                        workdir: user,
                        env,
                        restart,
                        grace_ms: g,
                    },
                    ca_pem,
                    proxy_port,
                    no_proxy,
                    dns: ResolverSettings {
                        port: p,
                        timeout_s: t,
                        attempts: a,
                    },
                    session: None,
                    mounts: vec![SharedDir {
                        tag: "ws0".into(),
                        path: "/work".into(),
                        readonly: proxy_port % 2 == 0,
                    }],
                }
            },
        )
}

fn process_event() -> impl Strategy<Value = ProcessEvent> {
    prop_oneof![
        (any::<u32>(), any::<u32>())
            .prop_map(|(pid, attempt)| ProcessEvent::Started { pid, attempt }),
        (
            any::<u32>(),
            any::<i32>(),
            proptest::option::of(any::<i32>())
        )
            .prop_map(|(pid, code, signal)| ProcessEvent::Exited { pid, code, signal }),
        (any::<u32>(), any::<u64>())
            .prop_map(|(attempt, delay_ms)| ProcessEvent::Restarting { attempt, delay_ms }),
        ".{0,50}".prop_map(|message| ProcessEvent::StartFailed { message }),
    ]
}

proptest! {
    #[test]
    fn hello_round_trips(h in hello()) {
        round_trip(&h);
        round_trip(&HelloReply::Accepted(h));
    }

    #[test]
    fn hello_reply_refused_round_trips(reason in ".{0,100}") {
        round_trip(&HelloReply::Refused { reason });
    }

    #[test]
    fn guest_messages_round_trip(
        ev in process_event(),
        code in any::<i32>(),
        text in ".{0,60}",
        init_ms in any::<u64>(),
    ) {
        round_trip(&GuestMessage::Process(ev));
        round_trip(&GuestMessage::Exit { code });
        round_trip(&GuestMessage::Fatal { message: text.clone(), code });
        round_trip(&GuestMessage::Boot(BootInfo { software: text.clone(), init_ms, kernel: text }));
    }

    #[test]
    fn host_messages_round_trip(cfg in config(), grace_ms in any::<u64>()) {
        round_trip(&HostMessage::Config(Box::new(cfg)));
        round_trip(&HostMessage::Shutdown { grace_ms });
    }

    #[test]
    fn dns_messages_round_trip(
        id in any::<u32>(),
        wire in proptest::collection::vec(any::<u8>(), 0..1500),
        tcp in any::<bool>(),
    ) {
        let transport = if tcp { DnsTransport::Tcp } else { DnsTransport::Udp };
        round_trip(&DnsRequest::Query { id, transport, wire: wire.clone() });
        round_trip(&DnsResponse::Answer { id, wire });
    }

    #[test]
    fn decoding_garbage_as_any_message_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<Hello>(&bytes);
        let _ = decode::<HelloReply>(&bytes);
        let _ = decode::<GuestMessage>(&bytes);
        let _ = decode::<HostMessage>(&bytes);
        let _ = decode::<DnsRequest>(&bytes);
        let _ = decode::<DnsResponse>(&bytes);
    }
}

#[test]
fn major_mismatch_names_both_versions() {
    let mut theirs = Hello::new(Role::Guest, Channel::Dns, "test");
    theirs.major = PROTOCOL_MAJOR + 1;
    theirs.minor = 7;
    let err = theirs.check(Role::Host, Channel::Dns).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}.7", PROTOCOL_MAJOR + 1)),
        "{text}"
    );
}

#[test]
fn minor_difference_is_accepted() {
    let mut theirs = Hello::new(Role::Guest, Channel::Control, "test");
    theirs.minor = PROTOCOL_MINOR + 3;
    assert_eq!(theirs.check(Role::Host, Channel::Control), Ok(()));
}

#[test]
fn wrong_channel_and_role_are_refused() {
    let theirs = Hello::new(Role::Guest, Channel::Egress, "test");
    assert!(matches!(
        theirs.check(Role::Host, Channel::Dns),
        Err(HelloError::WrongChannel { .. })
    ));
    let theirs = Hello::new(Role::Host, Channel::Dns, "test");
    assert_eq!(
        theirs.check(Role::Host, Channel::Dns),
        Err(HelloError::WrongRole(Role::Host))
    );
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut payload = encode(&DnsResponse::Answer {
        id: 1,
        wire: vec![1, 2],
    })
    .unwrap();
    payload.push(0);
    assert!(decode::<DnsResponse>(&payload).is_err());
}

/// The DNS messages' `wire` as a byte string encodes exactly as the plain
/// `Vec<u8>` (a sequence) did: old and new peers understand each other.
#[test]
fn dns_wire_bytes_encode_as_a_sequence_did() {
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    enum OldResponse {
        Answer { id: u32, wire: Vec<u8> },
    }
    for len in [0usize, 1, 127, 128, 300, 70_000] {
        let wire: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let new = DnsResponse::Answer {
            id: 0x0102_0304,
            wire: wire.clone(),
        };
        let old = OldResponse::Answer {
            id: 0x0102_0304,
            wire,
        };
        let (a, b) = (encode(&new).unwrap(), encode(&old).unwrap());
        assert_eq!(a, b, "len {len}");
        assert_eq!(decode::<DnsResponse>(&b).unwrap(), new);
        assert_eq!(decode::<OldResponse>(&a).unwrap(), old);
    }
}

#[test]
fn session_messages_round_trip() {
    let outs = [
        SessionOutput::Attach { session: 0 },
        SessionOutput::Stdout(b"out\r\n".to_vec()),
        SessionOutput::Stderr(vec![0xff; 3]),
        SessionOutput::Done,
    ];
    for m in outs {
        assert_eq!(decode::<SessionOutput>(&encode(&m).unwrap()).unwrap(), m);
    }
    let ins = [
        SessionInput::Stdin(b"\x03".to_vec()),
        SessionInput::StdinEof,
        SessionInput::Resize {
            rows: 50,
            cols: 132,
        },
    ];
    for m in ins {
        assert_eq!(decode::<SessionInput>(&encode(&m).unwrap()).unwrap(), m);
    }
    // Byte layout (docs/protocol.md): variant index, then the payload.
    assert_eq!(
        encode(&SessionInput::Resize {
            rows: 300,
            cols: 80
        })
        .unwrap(),
        [2, 0xac, 0x02, 80]
    );
    assert_eq!(
        encode(&SessionOutput::Stdout(b"hi".to_vec())).unwrap(),
        [1, 2, b'h', b'i']
    );
    let spec = GuestConfig {
        session: Some(SessionSpec {
            tty: true,
            stdin: true,
            rows: 24,
            cols: 80,
        }),
        mounts: vec![SharedDir {
            tag: "ws0".into(),
            path: "/work".into(),
            readonly: true,
        }],
        ..Default::default()
    };
    assert_eq!(
        decode::<GuestConfig>(&encode(&spec).unwrap()).unwrap(),
        spec
    );
}
