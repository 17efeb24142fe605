//! A CONNECT tunnel's checked destination, and working out where a request
//! inside it (or a plain proxy request) really goes: the TLS SNI, the
//! request authority and `Host` must all name the CONNECT host.

use hudsucker::hyper::header::HOST;
use hudsucker::hyper::Request;
use hudsucker::Body;

use super::policy::{self, Denied};

/// The authority hudsucker is given for every tunnel instead of the real
/// one. hudsucker opens a raw TCP tunnel to the CONNECT authority when the
/// client speaks neither TLS nor HTTP; pointing it here makes that tunnel
/// fail instead of bypassing policy. Real destinations are rebuilt from
/// [`Tunnel`].
pub const SENTINEL_AUTHORITY: &str = "0.0.0.0:0";

/// A CONNECT tunnel's checked destination.
#[derive(Clone, Debug)]
pub(super) struct Tunnel {
    pub(super) host: String,
    pub(super) port: u16,
    /// The TLS SNI, normalised; `None` until the client hello is seen.
    pub(super) sni: Option<Result<String, String>>,
    /// A TLS client hello was seen: every request in the tunnel is https,
    /// whatever scheme it names (an HTTP/2 `:scheme` is the client's).
    pub(super) tls: bool,
}

/// Work out the destination of a non-CONNECT request:
/// (scheme, host, port).
pub(super) fn destination(
    tunnel: Option<&Tunnel>,
    req: &Request<Body>,
) -> Result<(&'static str, String, u16), Denied> {
    let uri = req.uri();
    let host_header = match req.headers().get(HOST) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| Denied::Mismatch("Host header is not text".into()))?,
        ),
        None => None,
    };
    // `host` is normalised; a name spelled exactly so (the usual case)
    // needs no second normalisation.
    let same = |authority: &str, host: &str, port: u16, default: u16| -> bool {
        let (h, p) = policy::split_host_port(authority);
        let p = match p {
            Some(p) => p.parse().ok(),
            None => Some(default),
        };
        p == Some(port) && (h == host || policy::check_name(h).ok().as_deref() == Some(host))
    };
    if let Some(t) = tunnel {
        let scheme = if t.tls { "https" } else { "http" };
        if scheme == "https" {
            match &t.sni {
                Some(Ok(sni)) if *sni == t.host => {}
                Some(Ok(sni)) => {
                    return Err(Denied::Mismatch(format!(
                        "TLS SNI {sni:?} differs from CONNECT host {:?}",
                        t.host
                    )))
                }
                Some(Err(bad)) => return Err(Denied::Mismatch(format!("bad TLS SNI {bad:?}"))),
                None => {
                    return Err(Denied::Mismatch(
                        "TLS without SNI; name the host in the client hello".into(),
                    ))
                }
            }
        }
        let default = if scheme == "http" { 80 } else { 443 };
        let default = if t.port == default { default } else { t.port };
        if let Some(a) = uri.authority().map(|a| a.as_str()) {
            if a != SENTINEL_AUTHORITY && !same(a, &t.host, t.port, default) {
                return Err(Denied::Mismatch(format!(
                    "request authority {a:?} differs from CONNECT host {:?}",
                    t.host
                )));
            }
        }
        match &host_header {
            Some(h) if !same(h, &t.host, t.port, default) => {
                return Err(Denied::Mismatch(format!(
                    "Host {h:?} differs from CONNECT host {:?}",
                    t.host
                )))
            }
            None if uri.authority().map(|a| a.as_str()) == Some(SENTINEL_AUTHORITY) => {
                return Err(Denied::Mismatch("request without a Host header".into()))
            }
            _ => {}
        }
        return Ok((scheme, t.host.clone(), t.port));
    }
    // A plain proxy request: absolute http:// URI.
    if uri.scheme_str() != Some("http") {
        return Err(Denied::Unsupported(
            "only absolute http:// URIs and CONNECT are proxied".into(),
        ));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| Denied::Unsupported("request without a host".into()))?;
    let host = policy::check_name(authority.host())?;
    let port = authority.port_u16().unwrap_or(80);
    if let Some(h) = host_header {
        if !same(h, &host, port, 80) {
            return Err(Denied::Mismatch(format!(
                "Host {h:?} differs from the request URI's host {host:?}"
            )));
        }
    }
    Ok(("http", host, port))
}
