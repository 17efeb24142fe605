//! Upstream resolution behind a trait, so policy and handler tests need no
//! network. [`HickoryUpstream`] is the real one (hickory-resolver: UDP with
//! TCP fallback on truncation).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::xfer::Protocol;
use hickory_proto::ProtoErrorKind;
use hickory_resolver::config::{
    NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, Resolver};

/// What an upstream said about one (name, type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamAnswer {
    /// NOERROR (with or without records) or NXDOMAIN.
    pub rcode: ResponseCode,
    /// The answer section (CNAME chain included).
    pub records: Vec<Record>,
    /// For a negative answer, its TTL from the SOA (0 when unknown).
    pub negative_ttl: u32,
}

/// Upstream lookup failed; the client gets SERVFAIL.
#[derive(Debug, thiserror::Error)]
#[error("upstream: {0}")]
pub struct UpstreamError(pub String);

/// A boxed future, so [`Upstream`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that resolves a name.
pub trait Upstream: Send + Sync + 'static {
    /// Resolve `name` (fully qualified) for `rtype`.
    fn resolve(
        &self,
        name: Name,
        rtype: RecordType,
    ) -> BoxFuture<'_, Result<UpstreamAnswer, UpstreamError>>;
}

/// The real upstream: hickory-resolver.
pub struct HickoryUpstream {
    resolver: Resolver<TokioConnectionProvider>,
}

impl std::fmt::Debug for HickoryUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HickoryUpstream")
    }
}

impl HickoryUpstream {
    /// Resolve through `servers` (UDP, then TCP on truncation), or through
    /// the host's `/etc/resolv.conf` when `servers` is empty.
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Result<Self, UpstreamError> {
        let (config, mut opts) = if servers.is_empty() {
            hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| UpstreamError(format!("/etc/resolv.conf: {e}")))?
        } else {
            let mut group = NameServerConfigGroup::new();
            for sa in servers {
                group.push(NameServerConfig::new(*sa, Protocol::Udp));
                group.push(NameServerConfig::new(*sa, Protocol::Tcp));
            }
            (
                ResolverConfig::from_parts(None, vec![], group),
                ResolverOpts::default(),
            )
        };
        opts.timeout = timeout;
        opts.attempts = 1;
        // Our own cache sits in front; hickory's would only double it.
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.preserve_intermediates = true;
        opts.edns0 = true;
        let resolver = Resolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(opts)
            .build();
        Ok(HickoryUpstream { resolver })
    }
}

impl Upstream for HickoryUpstream {
    fn resolve(
        &self,
        name: Name,
        rtype: RecordType,
    ) -> BoxFuture<'_, Result<UpstreamAnswer, UpstreamError>> {
        Box::pin(async move {
            match self.resolver.lookup(name, rtype).await {
                Ok(lookup) => Ok(UpstreamAnswer {
                    rcode: ResponseCode::NoError,
                    records: lookup.records().to_vec(),
                    negative_ttl: 0,
                }),
                Err(e) => negative(&e).ok_or_else(|| UpstreamError(e.to_string())),
            }
        })
    }
}

/// A "no records" error as a negative answer; `None` for real failures.
fn negative(e: &ResolveError) -> Option<UpstreamAnswer> {
    let ProtoErrorKind::NoRecordsFound {
        response_code,
        negative_ttl,
        soa,
        ..
    } = e.proto()?.kind()
    else {
        return None;
    };
    if !matches!(
        *response_code,
        ResponseCode::NXDomain | ResponseCode::NoError
    ) {
        return None;
    }
    let ttl = negative_ttl
        .or_else(|| soa.as_ref().map(|s| s.ttl().min(s.data().minimum())))
        .unwrap_or(0);
    Some(UpstreamAnswer {
        rcode: *response_code,
        records: Vec::new(),
        negative_ttl: ttl,
    })
}
