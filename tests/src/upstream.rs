//! A tiny authoritative DNS server on 127.0.0.1 (UDP and TCP, same port),
//! standing in for the internet. Its zone:
//!
//! | name | answer |
//! |---|---|
//! | `allowed.test` A | 93.184.216.7 |
//! | `allowed.test` TXT | `"v=upstream"` (so a REFUSED proves the host's policy) |
//! | `big.wild.test` A | 60 addresses 93.184.216.0..60 (over 512 bytes) |
//! | `*.wild.test` A | 93.184.216.8 |
//! | `bottle.test`, `*.bottle.test` A | 127.0.0.1 (the demo's and the VM tests' servers) |
//! | `meta.rebind.test` A | 169.254.169.254 (cloud metadata: rebinding probes) |
//! | `lan.rebind.test` A | 10.0.0.5 (a private address: rebinding probes) |
//! | any other type of a name above | NOERROR, no data |
//! | anything else | NXDOMAIN |
//!
//! Answers are public-range addresses (no traffic is ever sent to them;
//! documentation ranges are filtered by the host), since the host drops
//! private answers by default; only the `bottle.test` names answer
//! 127.0.0.1, for manifests that allow private answers.
//! It counts the queries it sees per name, so tests can check that denied
//! names never leave the host, and keeps every raw query, so tests can check
//! that no payload (an EDNS option, padding) was carried through.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// The address `allowed.test` resolves to.
pub const ALLOWED_IP: &str = "93.184.216.7";
/// The address every other name under `wild.test` resolves to.
pub const WILD_IP: &str = "93.184.216.8";

/// A running upstream; stops when dropped.
#[derive(Debug)]
pub struct Upstream {
    /// Its address (UDP and TCP).
    pub addr: SocketAddr,
    seen: Arc<Mutex<HashMap<String, u32>>>,
    raw: Arc<Mutex<Vec<Vec<u8>>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Upstream {
    /// Bind UDP and TCP on one free 127.0.0.1 port and serve.
    pub async fn start() -> Upstream {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().expect("addr")).await {
                break (udp, tcp);
            }
        };
        Self::serve(udp, tcp)
    }

    /// Serve on a given address (UDP and TCP).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Upstream> {
        let udp = UdpSocket::bind(addr).await?;
        let tcp = TcpListener::bind(addr).await?;
        Ok(Self::serve(udp, tcp))
    }

    fn serve(udp: UdpSocket, tcp: TcpListener) -> Upstream {
        let addr = udp.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let tasks = vec![
            tokio::spawn(serve_udp(udp, seen.clone(), raw.clone())),
            tokio::spawn(serve_tcp(tcp, seen.clone(), raw.clone())),
        ];
        Upstream {
            addr,
            seen,
            raw,
            tasks,
        }
    }

    /// How many queries for `name` (no trailing dot, any case) arrived.
    pub fn seen(&self, name: &str) -> u32 {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        self.seen
            .lock()
            .map(|m| m.get(&key).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Every name queried so far (lower case, no trailing dot).
    pub fn names(&self) -> Vec<String> {
        self.seen
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// How many raw queries (as received, any name) contain `needle`.
    pub fn raw_containing(&self, needle: &[u8]) -> usize {
        self.raw
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|q| q.windows(needle.len().max(1)).any(|w| w == needle))
                    .count()
            })
            .unwrap_or(0)
    }

    /// How many raw queries arrived in all.
    pub fn raw_count(&self) -> usize {
        self.raw.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Answer one query directly (no network): for in-process relays.
    pub fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        answer(query, &self.seen)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The zone's answer to `query`, without counting it.
pub fn zone_answer(query: &[u8]) -> Option<Vec<u8>> {
    answer(query, &Mutex::default())
}

fn answer(query: &[u8], seen: &Mutex<HashMap<String, u32>>) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries().first()?.clone();
    let name = question
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if let Ok(mut m) = seen.lock() {
        *m.entry(name.clone()).or_default() += 1;
    }
    let mut m = Message::new();
    m.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_authoritative(true)
        .set_recursion_desired(q.recursion_desired())
        .add_query(question.clone());
    let owner = question.name().clone();
    let rtype = question.query_type();
    let a = |ip: [u8; 4]| {
        Record::from_rdata(
            owner.clone(),
            300,
            RData::A(A::new(ip[0], ip[1], ip[2], ip[3])),
        )
    };
    if name == "allowed.test" {
        match rtype {
            RecordType::A => {
                m.add_answer(a([93, 184, 216, 7]));
            }
            RecordType::TXT => {
                m.add_answer(Record::from_rdata(
                    owner.clone(),
                    300,
                    RData::TXT(TXT::new(vec!["v=upstream".into()])),
                ));
            }
            _ => {}
        }
    } else if name == "big.wild.test" && rtype == RecordType::A {
        for i in 0..60 {
            m.add_answer(a([93, 184, 216, i]));
        }
    } else if name == "bottle.test" || name.ends_with(".bottle.test") {
        if rtype == RecordType::A {
            m.add_answer(a([127, 0, 0, 1]));
        }
    } else if name == "meta.rebind.test" || name == "lan.rebind.test" {
        if rtype == RecordType::A {
            m.add_answer(a(if name.starts_with("meta") {
                [169, 254, 169, 254]
            } else {
                [10, 0, 0, 5]
            }));
        }
    } else if name.ends_with(".wild.test") {
        if rtype == RecordType::A {
            m.add_answer(a([93, 184, 216, 8]));
        }
    } else {
        m.set_response_code(ResponseCode::NXDomain);
    }
    m.to_vec().ok()
}

type Raw = Arc<Mutex<Vec<Vec<u8>>>>;

fn keep(raw: &Raw, query: &[u8]) {
    if let Ok(mut r) = raw.lock() {
        r.push(query.to_vec());
    }
}

async fn serve_udp(sock: UdpSocket, seen: Arc<Mutex<HashMap<String, u32>>>, raw: Raw) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        keep(&raw, &buf[..n]);
        if let Some(mut reply) = answer(&buf[..n], &seen) {
            if reply.len() > 512 {
                // Over the plain UDP limit: question only, TC set.
                match Message::from_vec(&reply).and_then(|m| m.truncate().to_vec()) {
                    Ok(t) => reply = t,
                    Err(_) => continue,
                }
            }
            let _ = sock.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, seen: Arc<Mutex<HashMap<String, u32>>>, raw: Raw) {
    while let Ok((mut s, _)) = listener.accept().await {
        let (seen, raw) = (seen.clone(), raw.clone());
        tokio::spawn(async move {
            loop {
                let Ok(len) = s.read_u16().await else { return };
                let mut msg = vec![0u8; usize::from(len)];
                if s.read_exact(&mut msg).await.is_err() {
                    return;
                }
                keep(&raw, &msg);
                let Some(reply) = answer(&msg, &seen) else {
                    return;
                };
                let Ok(len) = u16::try_from(reply.len()) else {
                    return;
                };
                if s.write_all(&[&len.to_be_bytes()[..], &reply].concat())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}
