//! Test helpers: manifests, a fake upstream, and query builders.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::dns::upstream::BoxFuture;
use crate::dns::{Audit, Handler, Upstream, UpstreamAnswer, UpstreamError};
use crate::manifest::{self, Manifest};

/// A manifest allowing `api.github.com`, `*.cloudfront.net`,
/// `*.example.com`, `*.bücher.de` and two extra names, with `extra` TOML
/// appended to `[dns]`.
pub fn manifest(extra_dns: &str) -> Manifest {
    manifest_with_names("", extra_dns)
}

/// [`manifest`] with more `extra_names` (a TOML list's inner part).
pub fn manifest_with_names(more_names: &str, extra_dns: &str) -> Manifest {
    let src = format!(
        r#"
[agent]
command = ["true"]
[[egress.routes]]
host = "api.github.com"
[[egress.routes]]
host = "*.cloudfront.net"
[[egress.routes]]
host = "*.example.com"
[[egress.routes]]
host = "*.bücher.de"
[dns]
extra_names = ["registry.npmjs.org", "files.pythonhosted.org", {more_names}]
{extra_dns}
"#
    );
    manifest::parse(&src, Path::new("test.toml")).unwrap()
}

/// An upstream answering from a fixed table and counting calls.
#[derive(Default)]
pub struct FakeUpstream {
    pub answers: Mutex<HashMap<(String, RecordType), Result<UpstreamAnswer, String>>>,
    pub calls: AtomicUsize,
    pub delay: std::time::Duration,
}

impl FakeUpstream {
    pub fn with(entries: Vec<(&str, RecordType, Result<UpstreamAnswer, String>)>) -> Arc<Self> {
        let f = FakeUpstream::default();
        {
            let mut map = f.answers.lock().unwrap();
            for (n, t, a) in entries {
                map.insert((n.to_string(), t), a);
            }
        }
        Arc::new(f)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Upstream for FakeUpstream {
    fn resolve(
        &self,
        name: Name,
        rtype: RecordType,
    ) -> BoxFuture<'_, Result<UpstreamAnswer, UpstreamError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let key = (name.to_ascii().trim_end_matches('.').to_string(), rtype);
        let ans = self.answers.lock().unwrap().get(&key).cloned();
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            match ans {
                Some(Ok(a)) => Ok(a),
                Some(Err(e)) => Err(UpstreamError(e)),
                None => Ok(UpstreamAnswer {
                    rcode: ResponseCode::NXDomain,
                    records: vec![],
                    negative_ttl: 30,
                }),
            }
        })
    }
}

/// A positive answer with `ips` at `ttl`.
pub fn addrs(name: &str, ttl: u32, ips: &[&str]) -> Result<UpstreamAnswer, String> {
    let n = Name::from_ascii(format!("{name}.")).unwrap();
    let records = ips
        .iter()
        .map(|ip| {
            let data = match ip.parse::<IpAddr>().unwrap() {
                IpAddr::V4(v4) => RData::A(v4.into()),
                IpAddr::V6(v6) => RData::AAAA(v6.into()),
            };
            Record::from_rdata(n.clone(), ttl, data)
        })
        .collect();
    Ok(UpstreamAnswer {
        rcode: ResponseCode::NoError,
        records,
        negative_ttl: 0,
    })
}

pub fn handler(m: &Manifest, up: Arc<FakeUpstream>) -> Handler {
    Handler::new(m, up, Audit::tracing_only())
}

/// A query for `name`/`rtype` with `id`, RD set, optionally with EDNS.
pub fn query(id: u16, name: &str, rtype: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if edns {
        m.set_edns(Edns::new());
    }
    m.to_vec().unwrap()
}

pub fn parse(wire: &[u8]) -> Message {
    Message::from_vec(wire).unwrap()
}

/// A/AAAA addresses in an answer.
pub fn answer_ips(m: &Message) -> Vec<IpAddr> {
    m.answers()
        .iter()
        .filter_map(|r| r.data().ip_addr())
        .collect()
}

/// A current-thread runtime for tests that drive the handler by hand.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
