//! The upstream connector: our own name resolution with an address check,
//! TCP_NODELAY, and rustls (ring) with the system roots plus an optional
//! extra CA, offering HTTP/2 and HTTP/1.1 by ALPN.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;

/// Is `ip` usable for this host name? `None` means no DNS filter is
/// active; with one, only addresses the DNS filter handed out for that
/// name are used (see `LearnedAddrs::is_learned` in `dns/`).
pub type AddrFilter = Arc<dyn Fn(&str, IpAddr) -> bool + Send + Sync>;

/// Resolves an upstream name instead of the system resolver: under
/// `bottle-host launch` this is the bottle's own DNS filter, so the proxy
/// dials only addresses that filter answered for that name (allowlist,
/// exfiltration limits and the rebinding floor included). An error of
/// kind `PermissionDenied` means the name's addresses were refused (403
/// `upstream-address-refused`); any other error is a failed lookup (502).
pub type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>
        + Send
        + Sync,
>;

/// Connector errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Every address the name resolved to was refused.
    #[error("upstream {host} resolves only to refused addresses ({addrs})")]
    Refused {
        /// The name.
        host: String,
        /// What it resolved to, and why each was refused.
        addrs: String,
    },
    /// Name resolution failed.
    #[error("cannot resolve upstream {host}: {source}")]
    Resolve {
        /// The name.
        host: String,
        /// Why.
        source: std::io::Error,
    },
    /// Reading the extra CA file failed.
    #[error("{path}: {why}")]
    Ca {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// rustls refused the configuration.
    #[error("TLS client configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Why an address is never dialled (unless `allow_private`), or `None`.
///
/// The set of refused addresses is exactly the DNS rebinding floor's
/// ([`crate::dns::rebind::is_forbidden`]), so DNS and egress never disagree;
/// this adds a human-readable reason for the common classes.
pub fn private_reason(ip: IpAddr) -> Option<&'static str> {
    named_class(ip).or_else(|| {
        crate::dns::rebind::is_forbidden(ip).then_some("reserved, documentation or benchmarking")
    })
}

fn named_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_private() {
                Some("private")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("carrier-grade NAT")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else if v4.is_broadcast() || v4.is_multicast() || o[0] >= 240 {
                Some("multicast or reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return named_class(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("unique local")
            } else if v6.is_multicast() {
                Some("multicast or reserved")
            } else if s[0] == 0x64 && s[1] == 0xff9b {
                // NAT64 of a private IPv4 address.
                let v4 = std::net::Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                );
                named_class(IpAddr::V4(v4))
            } else {
                None
            }
        }
    }
}

/// Resolves with the system resolver and drops refused addresses.
#[derive(Clone)]
pub struct CheckedResolver {
    allow_private: bool,
    filter: Option<AddrFilter>,
    hosts: Arc<HashMap<String, Vec<IpAddr>>>,
    lookup: Option<Lookup>,
}

impl std::fmt::Debug for CheckedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedResolver")
            .field("allow_private", &self.allow_private)
            .field("filter", &self.filter.is_some())
            .field("hosts", &self.hosts)
            .field("lookup", &self.lookup.is_some())
            .finish()
    }
}

impl CheckedResolver {
    /// A resolver; see [`AddrFilter`].
    pub fn new(allow_private: bool, filter: Option<AddrFilter>) -> CheckedResolver {
        CheckedResolver {
            allow_private,
            filter,
            hosts: Arc::default(),
            lookup: None,
        }
    }

    /// Resolve names with `lookup` instead of the system resolver (the
    /// static table still comes first, and the address check still applies).
    pub fn with_lookup(mut self, lookup: Option<Lookup>) -> CheckedResolver {
        self.lookup = lookup;
        self
    }

    /// Answer these names from the table instead of the system resolver
    /// (pinning, and tests). The address check still applies.
    pub fn with_hosts(mut self, hosts: HashMap<String, Vec<IpAddr>>) -> CheckedResolver {
        self.hosts = Arc::new(hosts);
        self
    }

    /// Keep the addresses this host may be dialled at.
    pub fn check(&self, host: &str, addrs: Vec<IpAddr>) -> Result<Vec<IpAddr>, ConnectError> {
        let mut why = Vec::new();
        let mut ok = Vec::new();
        for ip in addrs {
            if let Some(r) = private_reason(ip).filter(|_| !self.allow_private) {
                why.push(format!("{ip}: {r}"));
            } else if self.filter.as_ref().is_some_and(|f| !f(host, ip)) {
                why.push(format!("{ip}: not answered by the DNS filter"));
            } else {
                ok.push(ip);
            }
        }
        if ok.is_empty() {
            return Err(ConnectError::Refused {
                host: host.to_string(),
                addrs: why.join(", "),
            });
        }
        Ok(ok)
    }
}

impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let ips = match (this.hosts.get(&host), &this.lookup) {
                (Some(ips), _) => ips.clone(),
                (None, Some(lookup)) => lookup(host.clone()).await.map_err(|source| {
                    // The lookup refused the name's addresses (e.g. the DNS
                    // filter's rebinding floor dropped them all): a refusal,
                    // not a failure.
                    if source.kind() == std::io::ErrorKind::PermissionDenied {
                        ConnectError::Refused {
                            host: host.clone(),
                            addrs: source.to_string(),
                        }
                    } else {
                        ConnectError::Resolve {
                            host: host.clone(),
                            source,
                        }
                    }
                })?,
                (None, None) => tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map_err(|source| ConnectError::Resolve {
                        host: host.clone(),
                        source,
                    })?
                    .map(|sa| sa.ip())
                    .collect(),
            };
            let ok = this.check(&host, ips)?;
            Ok(ok
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect::<Vec<_>>()
                .into_iter())
        })
    }
}

/// The connector hudsucker's client uses.
pub type Connector = HttpsConnector<HttpConnector<CheckedResolver>>;

/// Build the connector: system roots, plus `extra_ca` (PEM) if given;
/// ALPN offers h2 and http/1.1, or only http/1.1 when `http2` is false
/// (WebSocket upgrades need HTTP/1.1).
pub fn build(
    resolver: CheckedResolver,
    extra_ca: Option<&Path>,
    http2: bool,
) -> Result<Connector, ConnectError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    tracing::debug!("proxy: {added} system root certificates");
    if let Some(path) = extra_ca {
        let ca_err = |why: String| ConnectError::Ca {
            path: path.display().to_string(),
            why,
        };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let mut n = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| ca_err(e.to_string()))?;
            roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(ca_err("no PEM certificate in the file".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new_with_resolver(resolver);
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(std::time::Duration::from_secs(10)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    Ok(if http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.wrap_connector(http)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_classes() {
        let table: &[(&str, Option<&str>)] = &[
            ("127.0.0.1", Some("loopback")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("100.64.0.1", Some("carrier-grade NAT")),
            ("100.128.0.1", None),
            ("0.0.0.0", Some("unspecified")),
            ("224.0.0.1", Some("multicast or reserved")),
            ("93.184.216.34", None),
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fe80::1", Some("link-local")),
            ("fd00::1", Some("unique local")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("64:ff9b::a00:1", Some("private")),
            ("2606:4700::1111", None),
        ];
        for (ip, want) in table {
            assert_eq!(private_reason(ip.parse().unwrap()), *want, "{ip}");
        }
    }

    #[test]
    fn refused_addresses_are_exactly_the_dns_rebinding_floor() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "203.0.113.7",
            "192.0.0.8",
            "240.0.0.1",
            "255.255.255.255",
            "93.184.216.34",
            "1.1.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "2606:4700::1111",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                private_reason(ip).is_some(),
                crate::dns::rebind::is_forbidden(ip),
                "{ip}"
            );
        }
    }

    #[test]
    fn resolver_check_applies_private_rule_and_filter() {
        let ips = |s: &[&str]| {
            s.iter()
                .map(|i| i.parse().unwrap())
                .collect::<Vec<IpAddr>>()
        };
        let strict = CheckedResolver::new(false, None);
        assert!(strict.check("a.test", ips(&["127.0.0.1"])).is_err());
        assert_eq!(
            strict
                .check("a.test", ips(&["127.0.0.1", "93.184.216.34"]))
                .unwrap(),
            ips(&["93.184.216.34"])
        );
        let open = CheckedResolver::new(true, None);
        assert!(open.check("a.test", ips(&["127.0.0.1"])).is_ok());
        let learned: AddrFilter = Arc::new(|h, ip| h == "a.test" && ip.is_loopback());
        let filtered = CheckedResolver::new(true, Some(learned));
        assert!(filtered.check("a.test", ips(&["127.0.0.1"])).is_ok());
        assert!(filtered.check("b.test", ips(&["127.0.0.1"])).is_err());
        assert!(filtered.check("a.test", ips(&["10.0.0.1"])).is_err());
    }

    #[tokio::test]
    async fn a_lookup_that_refuses_is_a_refusal_not_a_failure() {
        use tower_service::Service;
        let lookup: Lookup = Arc::new(|host: String| {
            Box::pin(async move {
                let kind = if host == "dropped.test" {
                    std::io::ErrorKind::PermissionDenied
                } else {
                    std::io::ErrorKind::NotFound
                };
                Err(std::io::Error::new(kind, "no"))
            })
        });
        let mut r = CheckedResolver::new(false, None).with_lookup(Some(lookup));
        let e = r.call("dropped.test".parse().unwrap()).await.unwrap_err();
        assert!(matches!(e, ConnectError::Refused { .. }), "{e}");
        let e = r.call("missing.test".parse().unwrap()).await.unwrap_err();
        assert!(matches!(e, ConnectError::Resolve { .. }), "{e}");
    }
}
