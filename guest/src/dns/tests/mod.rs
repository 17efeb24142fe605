//! The stub against a fake host on a temporary `unix://` socket, with real
//! UDP and TCP clients on 127.0.0.1.
//!
//! The fake host answers `qN.test. A` with `203.0.113.N`, so every answer
//! proves it reached the client that asked; it delays answers so they come
//! back out of order, and can be killed and restarted.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use bottle_shared::Address;
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

use super::{ClientTimings, ListenLimits, Stub};

mod fake_host;
mod finish;
use fake_host::{fake_host, Mode};

// ------------------------------------------------------------ clients

fn query(id: u16, name: &str, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

async fn udp_ask(stub: SocketAddr, packet: &[u8], wait: Duration) -> Option<Message> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(packet, stub).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(wait, sock.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    Some(Message::from_vec(&buf[..n]).unwrap())
}

async fn tcp_write(s: &mut TcpStream, packet: &[u8]) {
    let len = u16::try_from(packet.len()).unwrap().to_be_bytes();
    s.write_all(&[&len[..], packet].concat()).await.unwrap();
}

async fn tcp_read(s: &mut TcpStream) -> Message {
    let len = s.read_u16().await.unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn ip_of(m: &Message) -> Option<Ipv4Addr> {
    m.answers().iter().find_map(|r| match r.data() {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}

struct Env {
    _dir: tempfile::TempDir,
    addr: Address,
    host: JoinHandle<()>,
    stub: Stub,
}

async fn env(mode: Mode, timings: ClientTimings) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let addr = Address::Unix(dir.path().join("host.sock_6002"));
    let host = fake_host(&addr, mode).await;
    let stub = Stub::start(
        addr.clone(),
        "127.0.0.1:0".parse().unwrap(),
        timings,
        ListenLimits::default(),
    )
    .await
    .unwrap();
    assert!(stub.client.wait_connected(Duration::from_secs(2)).await);
    Env {
        _dir: dir,
        addr,
        host,
        stub,
    }
}

fn quick() -> ClientTimings {
    ClientTimings {
        query_timeout: Duration::from_secs(2),
        ..ClientTimings::default()
    }
}

// ------------------------------------------------------------ tests

#[tokio::test]
async fn udp_answers_come_back_out_of_order_to_the_right_client() {
    let e = env(Mode::Normal, quick()).await;
    let stub = e.stub.local_addr;
    let mut set = JoinSet::new();
    for n in 0..50u8 {
        set.spawn(async move {
            let m = udp_ask(
                stub,
                &query(1000 + u16::from(n), &format!("q{n}.test."), None),
                Duration::from_secs(2),
            )
            .await
            .expect("answer");
            (n, m)
        });
    }
    let mut order = Vec::new();
    while let Some(res) = set.join_next().await {
        let (n, m) = res.unwrap();
        assert_eq!(m.id(), 1000 + u16::from(n), "client id restored");
        assert_eq!(ip_of(&m), Some(Ipv4Addr::new(203, 0, 113, n)), "q{n}");
        order.push(n);
    }
    assert_ne!(order, (0..50).collect::<Vec<_>>(), "answers were reordered");
    let snap = e.stub.stats.snapshot();
    assert_eq!(snap.queries_udp, 50);
    assert_eq!(snap.answered, 50);
    assert_eq!(snap.in_flight, 0);
    assert!(snap.latency_max_us >= snap.latency_avg_us && snap.latency_avg_us > 0);
}

#[tokio::test]
async fn tcp_pipelines_several_queries_on_one_connection() {
    let e = env(Mode::Normal, quick()).await;
    let mut s = TcpStream::connect(e.stub.local_addr).await.unwrap();
    for n in 0..20u8 {
        tcp_write(&mut s, &query(u16::from(n), &format!("q{n}.test."), None)).await;
    }
    let mut seen = Vec::new();
    for _ in 0..20 {
        let m = tcp_read(&mut s).await;
        let n = u8::try_from(m.id()).unwrap();
        assert_eq!(ip_of(&m), Some(Ipv4Addr::new(203, 0, 113, n)));
        seen.push(n);
    }
    assert_eq!(seen.first(), Some(&19), "last asked is answered first");
    seen.sort_unstable();
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
    assert_eq!(e.stub.stats.snapshot().queries_tcp, 20);
}

#[tokio::test]
async fn oversize_udp_answers_are_truncated_and_tcp_gets_them_whole() {
    let e = env(Mode::Normal, quick()).await;
    let stub = e.stub.local_addr;
    // (EDNS size, expect TC)
    for (edns, want_tc) in [(None, true), (Some(512), true), (Some(4096), false)] {
        let m = udp_ask(stub, &query(7, "big.test.", edns), Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(m.truncated(), want_tc, "edns {edns:?}");
        assert_eq!(m.id(), 7);
        assert_eq!(m.answers().len(), if want_tc { 0 } else { 60 });
    }
    let mut s = TcpStream::connect(stub).await.unwrap();
    tcp_write(&mut s, &query(8, "big.test.", None)).await;
    let m = tcp_read(&mut s).await;
    assert!(!m.truncated());
    assert_eq!(m.answers().len(), 60);
    assert_eq!(e.stub.stats.snapshot().truncated, 2);
}

#[tokio::test]
async fn runts_and_responses_are_dropped_and_rcodes_counted() {
    let e = env(Mode::Normal, quick()).await;
    let stub = e.stub.local_addr;
    let mut response = query(3, "q1.test.", None);
    response[2] |= 0x80;
    for bad in [&[1u8, 2, 3, 4, 5][..], &response[..]] {
        assert!(udp_ask(stub, bad, Duration::from_millis(300))
            .await
            .is_none());
    }
    let nx = udp_ask(stub, &query(4, "nx.test.", None), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(nx.response_code(), ResponseCode::NXDomain);
    let refused = udp_ask(stub, &query(5, "other.test.", None), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(refused.response_code(), ResponseCode::Refused);
    let snap = e.stub.stats.snapshot();
    assert_eq!((snap.dropped, snap.nxdomain, snap.refused), (2, 1, 1));
}

#[tokio::test]
async fn query_timeout_answers_servfail() {
    let timings = ClientTimings {
        query_timeout: Duration::from_millis(300),
        ..ClientTimings::default()
    };
    let e = env(Mode::Normal, timings).await;
    let start = Instant::now();
    let m = udp_ask(
        e.stub.local_addr,
        &query(9, "hang.test.", None),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert_eq!(m.queries()[0].name().to_string(), "hang.test.");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(1),
        "{took:?}"
    );
    assert_eq!(e.stub.stats.snapshot().in_flight, 0);
}

#[tokio::test]
async fn host_killed_mid_flight_servfails_fast_then_recovers() {
    let e = env(Mode::Normal, ClientTimings::default()).await;
    let stub = e.stub.local_addr;
    // Queries the host never answers, in flight over UDP and TCP.
    let mut waiting = JoinSet::new();
    for i in 0..10u16 {
        waiting.spawn(async move {
            udp_ask(stub, &query(i, "hang.test.", None), Duration::from_secs(5)).await
        });
    }
    let mut tcp = TcpStream::connect(stub).await.unwrap();
    tcp_write(&mut tcp, &query(77, "hang.test.", None)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(e.stub.stats.snapshot().in_flight, 11);

    let killed = Instant::now();
    e.host.abort();
    while let Some(res) = waiting.join_next().await {
        let m = res.unwrap().expect("an answer, not silence");
        assert_eq!(m.response_code(), ResponseCode::ServFail);
    }
    let m = tcp_read(&mut tcp).await;
    assert_eq!((m.id(), m.response_code()), (77, ResponseCode::ServFail));
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "{:?}",
        killed.elapsed()
    );

    // While the host is away, new queries fail fast too.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..3u16 {
        let t = Instant::now();
        let m = udp_ask(stub, &query(i, "q1.test.", None), Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(m.response_code(), ResponseCode::ServFail);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }

    // The host comes back on the same address; the stub redials.
    let _host = fake_host(&e.addr, Mode::Normal).await;
    assert!(e.stub.client.wait_connected(Duration::from_secs(3)).await);
    let m = udp_ask(stub, &query(5, "q5.test.", None), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(ip_of(&m), Some(Ipv4Addr::new(203, 0, 113, 5)));
    let snap = e.stub.stats.snapshot();
    assert_eq!(snap.host_reconnects, 1);
    assert!(snap.servfail >= 14, "{snap:?}");
    assert_eq!(snap.in_flight, 0);
}

#[tokio::test]
async fn corrupt_frame_from_host_closes_and_reconnects() {
    let e = env(Mode::CorruptFirst, ClientTimings::default()).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut answered = None;
    while Instant::now() < deadline {
        let m = udp_ask(
            e.stub.local_addr,
            &query(1, "q3.test.", None),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        if m.response_code() == ResponseCode::NoError {
            answered = ip_of(&m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answered, Some(Ipv4Addr::new(203, 0, 113, 3)));
    assert_eq!(e.stub.stats.snapshot().host_reconnects, 1);
}

#[tokio::test]
async fn no_host_at_all_answers_servfail_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let addr = Address::Unix(dir.path().join("nobody.sock_6002"));
    let stub = Stub::start(
        addr,
        "127.0.0.1:0".parse().unwrap(),
        ClientTimings::default(),
        ListenLimits::default(),
    )
    .await
    .unwrap();
    let t = Instant::now();
    let m = udp_ask(
        stub.local_addr,
        &query(1, "q1.test.", None),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
}
