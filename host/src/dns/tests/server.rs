//! The port-6002 server over a `unix://` socket, resolving through the
//! real hickory upstream against a DNS server written here (UDP and TCP on
//! 127.0.0.1), with many queries in flight on one connection.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bottle_shared::io::{dial_hello, read_message, write_message};
use bottle_shared::message::{DnsRequest, DnsResponse, DnsTransport};
use bottle_shared::transport::{connect, Listener};
use bottle_shared::{Address, Channel, Role};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, Record, RecordType as T};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::support::{answer_ips, manifest, parse, query};
use crate::dns::{Audit, Handler, HickoryUpstream};

/// Queries seen by the test upstream, per transport.
#[derive(Default)]
struct Counts {
    udp: AtomicUsize,
    tcp: AtomicUsize,
}

/// `n<i>.example.com` → 140.82.<i/256>.<i%256> (A) and 2606:4700::<i> (AAAA);
/// `big.example.com` → 40 A records, truncated over UDP;
/// `private.example.com` → 10.0.0.1 and 140.82.200.1;
/// `cname.example.com` → CNAME target.example.com, A 140.82.9.9;
/// anything else → NXDOMAIN.
fn answer(q: &[u8], udp: bool) -> Option<Vec<u8>> {
    let req = Message::from_vec(q).ok()?;
    let question = req.queries().first()?.clone();
    let name = question.name().to_ascii().to_ascii_lowercase();
    let owner = question.name().clone();
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(true)
        .add_query(question.clone());
    let a =
        |ip: [u8; 4]| Record::from_rdata(owner.clone(), 300, RData::A(Ipv4Addr::from(ip).into()));
    let mut records = Vec::new();
    if let Some(i) = name
        .strip_prefix('n')
        .and_then(|r| r.strip_suffix(".example.com."))
        .and_then(|i| i.parse::<u16>().ok())
    {
        let [hi, lo] = i.to_be_bytes();
        match question.query_type() {
            T::A => records.push(a([140, 82, hi, lo])),
            T::AAAA => records.push(Record::from_rdata(
                owner.clone(),
                300,
                RData::AAAA(
                    format!("2606:4700::{i:x}")
                        .parse::<std::net::Ipv6Addr>()
                        .unwrap()
                        .into(),
                ),
            )),
            _ => {}
        }
    } else if name == "big.example.com." {
        if udp {
            resp.set_truncated(true);
        } else {
            records.extend((0..40).map(|i| a([140, 82, 100, i])));
        }
    } else if name == "private.example.com." {
        records.push(a([10, 0, 0, 1]));
        records.push(a([140, 82, 200, 1]));
    } else if name == "cname.example.com." {
        let target = Name::from_ascii("target.example.com.").unwrap();
        records.push(Record::from_rdata(
            owner.clone(),
            300,
            RData::CNAME(CNAME(target.clone())),
        ));
        records.push(Record::from_rdata(
            target,
            300,
            RData::A(Ipv4Addr::new(140, 82, 9, 9).into()),
        ));
    } else {
        resp.set_response_code(ResponseCode::NXDomain);
    }
    resp.add_answers(records);
    resp.to_vec().ok()
}

/// Start the test upstream on 127.0.0.1 (same port for UDP and TCP).
async fn start_upstream() -> (SocketAddr, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let Ok(tcp) = TcpListener::bind(addr).await else {
            continue;
        };
        let c = Arc::clone(&counts);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                c.udp.fetch_add(1, Ordering::SeqCst);
                if let Some(out) = answer(&buf[..n], true) {
                    let _ = udp.send_to(&out, from).await;
                }
            }
        });
        let c = Arc::clone(&counts);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = tcp.accept().await {
                let c = Arc::clone(&c);
                tokio::spawn(async move {
                    loop {
                        let Ok(len) = s.read_u16().await else { return };
                        let mut q = vec![0u8; usize::from(len)];
                        if s.read_exact(&mut q).await.is_err() {
                            return;
                        }
                        c.tcp.fetch_add(1, Ordering::SeqCst);
                        let Some(out) = answer(&q, false) else { return };
                        let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&out);
                        if s.write_all(&framed).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        return (addr, counts);
    }
    panic!("no free port for UDP and TCP");
}

/// Start our server on a Unix socket in `dir`, resolving via `upstream`.
async fn start_server(dir: &std::path::Path, upstream: SocketAddr) -> Address {
    let m = manifest("[dns.limits]\nunique_names_per_window = 1000\n");
    let up = HickoryUpstream::new(&[upstream], Duration::from_secs(2)).unwrap();
    let handler = Arc::new(Handler::new(&m, Arc::new(up), Audit::tracing_only()));
    let addr = Address::parse(&format!("unix://{}/host.sock_6002", dir.display())).unwrap();
    let listener = Listener::bind(&addr).await.unwrap();
    tokio::spawn(crate::dns::server::serve(listener, handler));
    addr
}

async fn dial(addr: &Address) -> bottle_shared::transport::BoxStream {
    let mut s = connect(addr).await.unwrap();
    dial_hello(&mut s, Role::Guest, Channel::Dns, "test-guest")
        .await
        .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_queries_in_flight_are_answered_to_the_right_ids() {
    let (up, counts) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = start_server(dir.path(), up).await;
    let s = dial(&addr).await;
    let (mut r, mut w) = tokio::io::split(s);
    let max = Channel::Dns.max_frame();
    // 60 names x (A, AAAA), each asked twice (second time likely cached),
    // ids scrambled, all written before any answer is read.
    let mut sent: HashMap<u32, (u16, T)> = HashMap::new();
    let mut reqs = Vec::new();
    for round in 0..2u32 {
        for i in 0..60u16 {
            for t in [T::A, T::AAAA] {
                let id = (u32::from(i) * 7919 + round * 104_729 + u32::from(t == T::AAAA)) ^ 0xa5a5;
                let wire = query(i, &format!("N{i}.Example.com."), t, true);
                sent.insert(id, (i, t));
                reqs.push(DnsRequest::Query {
                    id,
                    transport: DnsTransport::Udp,
                    wire,
                });
            }
        }
    }
    let total = reqs.len();
    assert_eq!(sent.len(), total, "ids are unique");
    let writer = tokio::spawn(async move {
        for req in reqs {
            write_message(&mut w, &req, max).await.unwrap();
        }
        w
    });
    let mut got = HashMap::new();
    while got.len() < total {
        let resp: DnsResponse =
            tokio::time::timeout(Duration::from_secs(20), read_message(&mut r, max))
                .await
                .expect("answers in time")
                .unwrap()
                .expect("connection open");
        let DnsResponse::Answer { id, wire } = resp else {
            panic!("unexpected response");
        };
        assert!(got.insert(id, wire).is_none(), "id {id} answered twice");
    }
    let _w = writer.await.unwrap();
    for (id, wire) in &got {
        let (i, t) = sent[id];
        let m = parse(wire);
        assert_eq!(m.id(), i, "DNS id under request id {id}");
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert_eq!(
            m.queries()[0].name().to_ascii(),
            format!("N{i}.Example.com.")
        );
        assert_eq!(m.queries()[0].query_type(), t);
        assert!(m.extensions().is_some(), "OPT echoed");
        let [hi, lo] = i.to_be_bytes();
        let want: IpAddr = match t {
            T::A => Ipv4Addr::new(140, 82, hi, lo).into(),
            _ => format!("2606:4700::{i:x}").parse().unwrap(),
        };
        assert_eq!(answer_ips(&m), vec![want], "answer for n{i} {t}");
    }
    let upstream_queries = counts.udp.load(Ordering::SeqCst);
    assert!(
        (120..total).contains(&upstream_queries),
        "upstream saw {upstream_queries}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_udp_falls_back_to_tcp_and_filters_apply() {
    let (up, counts) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = start_server(dir.path(), up).await;
    let mut s = dial(&addr).await;
    let max = Channel::Dns.max_frame();
    let cases: &[(&str, ResponseCode, usize)] = &[
        ("big.example.com.", ResponseCode::NoError, 40),
        ("private.example.com.", ResponseCode::NoError, 1),
        ("cname.example.com.", ResponseCode::NoError, 1),
        ("missing.example.com.", ResponseCode::NXDomain, 0),
        ("evil.net.", ResponseCode::NXDomain, 0),
    ];
    for (n, (name, rcode, ips)) in cases.iter().enumerate() {
        let id = n as u32;
        let req = DnsRequest::Query {
            id,
            transport: DnsTransport::Tcp,
            wire: query(9, name, T::A, false),
        };
        write_message(&mut s, &req, max).await.unwrap();
        let resp: DnsResponse = read_message(&mut s, max).await.unwrap().unwrap();
        let DnsResponse::Answer { id: got, wire } = resp else {
            panic!()
        };
        assert_eq!(got, id);
        let m = parse(&wire);
        assert_eq!(m.response_code(), *rcode, "{name}");
        assert_eq!(answer_ips(&m).len(), *ips, "{name}: {:?}", answer_ips(&m));
    }
    assert!(counts.tcp.load(Ordering::SeqCst) >= 1, "TCP fallback used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_frame_closes_only_its_connection() {
    let (up, _) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = start_server(dir.path(), up).await;
    let max = Channel::Dns.max_frame();
    let mut good = dial(&addr).await;
    let bad_frames: [Vec<u8>; 2] = [
        // Garbage payload in a well-formed frame.
        vec![0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff],
        // A frame header far over the channel's maximum.
        vec![0x7f, 0xff, 0xff, 0xff],
    ];
    for frame in bad_frames {
        let mut bad = dial(&addr).await;
        bad.write_all(&frame).await.unwrap();
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), bad.read_to_end(&mut rest))
            .await
            .expect("bad connection closed")
            .unwrap_or(0);
        assert_eq!(n, 0, "nothing answered on a bad connection");
        // The good connection is still served.
        let req = DnsRequest::Query {
            id: 7,
            transport: DnsTransport::Udp,
            wire: query(1, "n5.example.com.", T::A, false),
        };
        write_message(&mut good, &req, max).await.unwrap();
        let resp: DnsResponse = read_message(&mut good, max).await.unwrap().unwrap();
        let DnsResponse::Answer { id, wire } = resp else {
            panic!()
        };
        assert_eq!(id, 7);
        assert_eq!(
            answer_ips(&parse(&wire)),
            vec![IpAddr::from([140, 82, 0, 5])]
        );
    }
    // And new connections too.
    let mut again = dial(&addr).await;
    let req = DnsRequest::Query {
        id: 8,
        transport: DnsTransport::Udp,
        wire: query(2, "evil.net.", T::A, false),
    };
    write_message(&mut again, &req, max).await.unwrap();
    let resp: DnsResponse = read_message(&mut again, max).await.unwrap().unwrap();
    assert!(matches!(resp, DnsResponse::Answer { id: 8, .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_until_one_ends() {
    let (up, _) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = start_server(dir.path(), up).await;
    let mut held = Vec::new();
    for _ in 0..crate::dns::server::MAX_CONNECTIONS {
        held.push(dial(&addr).await);
    }
    // Over the cap: closed before the hello is answered.
    for _ in 0..3 {
        let mut s = connect(&addr).await.unwrap();
        let hello = dial_hello(&mut s, Role::Guest, Channel::Dns, "test-guest");
        let r = tokio::time::timeout(Duration::from_secs(5), hello)
            .await
            .expect("closed in time");
        assert!(r.is_err(), "a connection over the cap was served");
    }
    // The held ones are still served.
    let max = Channel::Dns.max_frame();
    let req = DnsRequest::Query {
        id: 9,
        transport: DnsTransport::Udp,
        wire: query(3, "n6.example.com.", T::A, false),
    };
    write_message(&mut held[0], &req, max).await.unwrap();
    let resp: DnsResponse = read_message(&mut held[0], max).await.unwrap().unwrap();
    assert!(matches!(resp, DnsResponse::Answer { id: 9, .. }));
    // One ends: a new connection is taken once the server has seen it.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = connect(&addr).await.unwrap();
        let hello = dial_hello(&mut s, Role::Guest, Channel::Dns, "test-guest");
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), hello).await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no slot came free after a connection ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
