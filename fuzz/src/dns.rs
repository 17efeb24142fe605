//! The `dns_host_query` checks: the host's [`Handler`] with a fake
//! upstream whose behaviour the fuzz input picks.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use bottle_host::dns::upstream::BoxFuture;
use bottle_host::dns::{Audit, Handler, Upstream, UpstreamAnswer, UpstreamError};
use bottle_host::manifest::{self, Manifest};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The bottle's manifest: a few exact names, wildcards and an IDN.
const MANIFEST: &str = r#"
[agent]
command = ["true"]
[[egress.routes]]
host = "api.github.com"
[[egress.routes]]
host = "*.example.com"
[[egress.routes]]
host = "*.bücher.de"
[dns]
extra_names = ["a.test", "*.wild.test"]
cache_min_ttl = 0
"#;

fn bottle() -> &'static Manifest {
    static M: OnceLock<Manifest> = OnceLock::new();
    M.get_or_init(|| {
        manifest::parse(MANIFEST, Path::new("fuzz.toml")).expect("the fuzz manifest is valid")
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime")
    })
}

/// An upstream that never touches the network. `mode % 8` picks what it
/// says; `mode / 8` is the TTL.
#[derive(Debug)]
pub struct FuzzUpstream {
    /// The input's byte 0.
    pub mode: u8,
}

impl Upstream for FuzzUpstream {
    fn resolve(
        &self,
        name: Name,
        rtype: RecordType,
    ) -> BoxFuture<'_, Result<UpstreamAnswer, UpstreamError>> {
        let ttl = u32::from(self.mode / 8);
        let rec = |n: &Name, data: RData| Record::from_rdata(n.clone(), ttl, data);
        let public = RData::A(A(Ipv4Addr::new(93, 184, 216, 34)));
        let answer = |records| {
            Ok(UpstreamAnswer {
                rcode: ResponseCode::NoError,
                records,
                negative_ttl: 0,
            })
        };
        let result = match self.mode % 8 {
            0 => answer(vec![rec(&name, public)]),
            // A private address among public ones: filtered.
            1 => answer(vec![
                rec(&name, RData::A(A(Ipv4Addr::new(10, 0, 0, 1)))),
                rec(&name, public),
            ]),
            // A CNAME chain.
            2 => {
                let target = Name::from_ascii("target.example.net.").expect("a valid name");
                answer(vec![
                    rec(&name, RData::CNAME(CNAME(target.clone()))),
                    rec(&target, public),
                ])
            }
            3 => answer(vec![
                rec(&name, RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))),
                rec(
                    &name,
                    RData::AAAA(AAAA(Ipv6Addr::new(0x2606, 0x2800, 0, 0, 0, 0, 0, 1))),
                ),
            ]),
            4 => Ok(UpstreamAnswer {
                rcode: ResponseCode::NXDomain,
                records: Vec::new(),
                negative_ttl: ttl,
            }),
            5 => answer(Vec::new()),
            6 => Err(UpstreamError("fuzz: upstream down".into())),
            // A record of another name and type than asked.
            _ => {
                let other = Name::from_ascii("other.example.org.").expect("a valid name");
                let _ = rtype;
                answer(vec![rec(&other, public)])
            }
        };
        Box::pin(async move { result })
    }
}

/// Ask a fresh handler `query` twice (the second time a cache hit when it
/// was allowed and answered) and check both answers.
pub fn check_host_query(mode: u8, query: &[u8]) {
    let h = Handler::new(
        bottle(),
        Arc::new(FuzzUpstream { mode }),
        Audit::tracing_only(),
    );
    runtime().block_on(async {
        for round in 0..2 {
            let answer = h.handle(query).await;
            check_answer(query, &answer, round);
        }
    });
}

fn check_answer(query: &[u8], answer: &[u8], round: u32) {
    if let Err(e) = Message::from_vec(answer) {
        panic!("round {round}: the answer does not parse: {e}\nanswer {answer:02x?}");
    }
    assert!(answer.len() >= 12, "round {round}: short answer");
    assert_eq!(answer[2] & 0x80, 0x80, "round {round}: QR not set");
    if query.len() >= 12 {
        assert_eq!(answer[..2], query[..2], "round {round}: id not echoed");
    }
}
