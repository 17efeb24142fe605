//! The proxy's name resolution under `launch`: through the bottle's own DNS
//! filter ([`Handler`]), so the proxy dials only addresses that filter
//! answered for the name, after the same allowlist, exfiltration and
//! rebinding checks the guest's own queries get (and the same audit).

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::dns::Handler;
use crate::proxy::Lookup;

/// A [`Lookup`] answering from `handler`.
pub fn through_filter(handler: Arc<Handler>) -> Lookup {
    Arc::new(move |host: String| {
        let handler = Arc::clone(&handler);
        Box::pin(async move { resolve(&handler, &host).await })
    })
}

fn query(host: &str, rtype: RecordType, id: u16) -> std::io::Result<Vec<u8>> {
    let name = Name::from_ascii(host).map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{host:?}: {e}"))
    })?;
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name, rtype));
    m.to_vec().map_err(std::io::Error::other)
}

/// A and AAAA for `host` from the filter; an error names the filter's
/// verdict when it gave no address, and is `PermissionDenied` when the
/// rebinding floor dropped every address (the proxy then answers 403).
pub async fn resolve(handler: &Handler, host: &str) -> std::io::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    let mut codes = Vec::new();
    for (i, rtype) in [RecordType::A, RecordType::AAAA].into_iter().enumerate() {
        let answer = handler.handle(&query(host, rtype, i as u16 + 1)?).await;
        let msg = Message::from_vec(&answer).map_err(std::io::Error::other)?;
        codes.push(msg.response_code());
        for r in msg.answers() {
            match r.data() {
                RData::A(a) => out.push(IpAddr::V4(a.0)),
                RData::AAAA(a) => out.push(IpAddr::V6(a.0)),
                _ => {}
            }
        }
    }
    if out.is_empty() {
        if handler.private_dropped(host) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the bottle's DNS filter dropped its loopback/private/link-local \
                 answers (rule private-answer)",
            ));
        }
        let why = match codes.first() {
            Some(ResponseCode::NXDomain) => "NXDOMAIN from the bottle's DNS filter".to_string(),
            Some(c) if *c != ResponseCode::NoError => format!("{c} from the bottle's DNS filter"),
            _ => "no address from the bottle's DNS filter".to_string(),
        };
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, why));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tests::support::{addrs, manifest, FakeUpstream};
    use crate::dns::Audit;

    /// The DNS tests' manifest (allows `*.example.com`) and fake upstream
    /// with one A and one AAAA answer for `api.example.com`.
    fn handler() -> Handler {
        let up = FakeUpstream::with(vec![
            (
                "api.example.com",
                RecordType::A,
                addrs("api.example.com", 60, &["93.184.216.34"]),
            ),
            (
                "api.example.com",
                RecordType::AAAA,
                addrs("api.example.com", 60, &["2606:2800:220:1::1"]),
            ),
        ]);
        Handler::new(&manifest(""), up, Audit::tracing_only())
    }

    #[tokio::test]
    async fn allowed_names_resolve_through_the_filter() {
        let h = handler();
        let ips = resolve(&h, "api.example.com").await.unwrap();
        assert_eq!(
            ips,
            vec![
                "93.184.216.34".parse::<IpAddr>().unwrap(),
                "2606:2800:220:1::1".parse().unwrap()
            ]
        );
        // ... and the filter learned them, so the address filter agrees.
        assert!(h
            .learned()
            .is_learned("api.example.com", "93.184.216.34".parse().unwrap()));
    }

    #[tokio::test]
    async fn names_rebound_to_private_addresses_are_refused() {
        let up = FakeUpstream::with(vec![
            (
                "meta.example.com",
                RecordType::A,
                addrs("meta.example.com", 60, &["169.254.169.254"]),
            ),
            (
                "local.example.com",
                RecordType::A,
                addrs("local.example.com", 60, &["127.0.0.1"]),
            ),
        ]);
        let h = Handler::new(&manifest(""), up, Audit::tracing_only());
        for name in ["meta.example.com", "local.example.com"] {
            let e = resolve(&h, name).await.unwrap_err();
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied,
                "{name}: {e}"
            );
            assert!(e.to_string().contains("private-answer"), "{e}");
        }
        // A name with no address at all is not a refusal.
        let e = resolve(&h, "none.example.com").await.unwrap_err();
        assert_ne!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    }

    #[tokio::test]
    async fn denied_names_get_the_filters_verdict() {
        let h = handler();
        let e = resolve(&h, "evil.example.net").await.unwrap_err();
        assert!(e.to_string().contains("NXDOMAIN"), "{e}");
        let e = resolve(&h, "not a name!").await.unwrap_err();
        assert!(!e.to_string().is_empty());
    }
}
