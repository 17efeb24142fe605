//! The allowlist: which host, port, method and path a request may use.
//!
//! Pure functions over the manifest's routes, so the decisions are
//! table-tested without any network.

use crate::manifest::{is_ip_literal, normalize_name, Route};

/// Why a request was refused by the allowlist. The `rule` names appear in
/// 403 bodies and audit lines.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The host matches no route.
    #[error("host {0:?} is not in the egress allowlist")]
    Host(String),
    /// An IP address instead of a name.
    #[error("{0:?} is an IP address; only named hosts are allowed")]
    IpLiteral(String),
    /// Not a valid host name.
    #[error("{0:?} is not a valid host name")]
    BadName(String),
    /// The route does not allow this port.
    #[error("port {port} is not allowed for {host}")]
    Port {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
    /// The route does not allow this method.
    #[error("method {method} is not allowed for {host}")]
    Method {
        /// Host.
        host: String,
        /// Method.
        method: String,
    },
    /// The route does not allow this path.
    #[error("path {path:?} is not allowed for {host}")]
    Path {
        /// Host.
        host: String,
        /// Path.
        path: String,
    },
    /// CONNECT authority, TLS SNI and Host header disagree.
    #[error("{0}")]
    Mismatch(String),
    /// Something the proxy does not carry.
    #[error("{0}")]
    Unsupported(String),
    /// The route injects a credential and the request is plain HTTP: the
    /// credential would cross the network in clear.
    #[error(
        "the route for {0} injects a credential, which is sent only over https; \
         this request is plain http"
    )]
    InjectNeedsTls(String),
}

impl Denied {
    /// Short rule name for audit lines and 403 bodies.
    pub fn rule(&self) -> &'static str {
        match self {
            Denied::Host(_) => "host-not-allowed",
            Denied::IpLiteral(_) => "ip-literal",
            Denied::BadName(_) => "bad-host-name",
            Denied::Port { .. } => "port-not-allowed",
            Denied::Method { .. } => "method-not-allowed",
            Denied::Path { .. } => "path-not-allowed",
            Denied::Mismatch(_) => "host-mismatch",
            Denied::Unsupported(_) => "unsupported",
            Denied::InjectNeedsTls(_) => "inject-needs-tls",
        }
    }
}

/// Split `host[:port]` (IPv6 in brackets) into a host and an optional port.
pub fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let port = rest[end + 1..].strip_prefix(':');
            return (&authority[..end + 2], port);
        }
        return (authority, None);
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (authority, None),
    }
}

/// Check a host name and return it normalised.
pub fn check_name(host: &str) -> Result<String, Denied> {
    if is_ip_literal(host) {
        return Err(Denied::IpLiteral(host.to_string()));
    }
    normalize_name(host).map_err(|_| Denied::BadName(host.to_string()))
}

/// The first route for `host` (normalised) that allows `port`.
pub fn route_for<'a>(routes: &'a [Route], host: &str, port: u16) -> Result<&'a Route, Denied> {
    let mut matched = routes.iter().filter(|r| r.host.matches(host)).peekable();
    if matched.peek().is_none() {
        return Err(Denied::Host(host.to_string()));
    }
    matched
        .find(|r| r.ports.contains(&port))
        .ok_or_else(|| Denied::Port {
            host: host.to_string(),
            port,
        })
}

/// Check `method` and `path` (no query) against a route.
pub fn check_request(route: &Route, host: &str, method: &str, path: &str) -> Result<(), Denied> {
    if let Some(methods) = &route.methods {
        if !methods.iter().any(|m| m == method) {
            return Err(Denied::Method {
                host: host.to_string(),
                method: method.to_string(),
            });
        }
    }
    if !route.paths.is_empty() {
        let deny = || Denied::Path {
            host: host.to_string(),
            path: path.to_string(),
        };
        if has_dot_segment(path) {
            return Err(deny());
        }
        if !route.paths.iter().any(|p| path.starts_with(p.as_str())) {
            return Err(deny());
        }
    }
    Ok(())
}

/// Dot segments and encoded separators would let a path pass a prefix
/// check and then resolve elsewhere upstream.
fn has_dot_segment(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    // `%25` too: an upstream that decodes twice sees `%2e%2e` as `..`.
    if ["%2e", "%2f", "%5c", "%25", "\\"]
        .iter()
        .any(|s| lower.contains(s))
    {
        return true;
    }
    // A segment's path parameters (`..;x`) do not hide it: Tomcat and
    // Spring read `/v1/..;/admin` as `/admin`.
    lower.split('/').any(|seg| {
        let name = seg.split(';').next().unwrap_or(seg);
        name == "." || name == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::HostPattern;

    fn route(host: &str, ports: &[u16], methods: Option<&[&str]>, paths: &[&str]) -> Route {
        Route {
            host: HostPattern::parse(host).unwrap(),
            ports: ports.to_vec(),
            methods: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            paths: paths.iter().map(|s| s.to_string()).collect(),
            inject: None,
        }
    }

    #[test]
    fn routes_table() {
        let routes = vec![
            route("api.example.com", &[443], Some(&["GET", "POST"]), &["/v1/"]),
            route("*.pkg.test", &[443, 80], Some(&["GET"]), &[]),
        ];
        // (host, port, method, path, expected rule or None)
        let table: &[(&str, u16, &str, &str, Option<&str>)] = &[
            ("api.example.com", 443, "GET", "/v1/x", None),
            ("api.example.com", 443, "POST", "/v1/", None),
            (
                "api.example.com",
                443,
                "PUT",
                "/v1/x",
                Some("method-not-allowed"),
            ),
            (
                "api.example.com",
                443,
                "GET",
                "/v2/x",
                Some("path-not-allowed"),
            ),
            (
                "api.example.com",
                443,
                "GET",
                "/v1/../admin",
                Some("path-not-allowed"),
            ),
            (
                "api.example.com",
                443,
                "GET",
                "/v1/%2e%2e/admin",
                Some("path-not-allowed"),
            ),
            (
                "api.example.com",
                443,
                "GET",
                "/v1/..;/admin",
                Some("path-not-allowed"),
            ),
            (
                "api.example.com",
                443,
                "GET",
                "/v1/.;x/../admin",
                Some("path-not-allowed"),
            ),
            (
                "api.example.com",
                443,
                "GET",
                "/v1/%252e%252e/admin",
                Some("path-not-allowed"),
            ),
            ("api.example.com", 443, "GET", "/v1/a;b/c", None),
            (
                "api.example.com",
                80,
                "GET",
                "/v1/x",
                Some("port-not-allowed"),
            ),
            (
                "evil.example.com",
                443,
                "GET",
                "/v1/x",
                Some("host-not-allowed"),
            ),
            ("a.pkg.test", 80, "GET", "/anything", None),
            ("a.b.pkg.test", 443, "GET", "/", None),
            ("pkg.test", 443, "GET", "/", Some("host-not-allowed")),
            ("a.pkg.test", 443, "POST", "/", Some("method-not-allowed")),
        ];
        for (host, port, method, path, want) in table {
            let got = route_for(&routes, host, *port)
                .and_then(|r| check_request(r, host, method, path))
                .err()
                .map(|d| d.rule());
            assert_eq!(got, *want, "{host}:{port} {method} {path}");
        }
    }

    #[test]
    fn names_and_authorities() {
        let table: &[(&str, (&str, Option<&str>))] = &[
            ("a.com:443", ("a.com", Some("443"))),
            ("a.com", ("a.com", None)),
            ("[::1]:443", ("[::1]", Some("443"))),
            ("[::1]", ("[::1]", None)),
            ("::1", ("::1", None)),
        ];
        for (input, want) in table {
            assert_eq!(split_host_port(input), *want, "{input}");
        }
        assert_eq!(check_name("A.Example.COM.").unwrap(), "a.example.com");
        assert_eq!(check_name("127.0.0.1").unwrap_err().rule(), "ip-literal");
        assert_eq!(check_name("[::1]").unwrap_err().rule(), "ip-literal");
        assert_eq!(check_name("a b").unwrap_err().rule(), "bad-host-name");
    }
}
