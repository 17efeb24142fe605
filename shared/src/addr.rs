//! Transport addresses, written as URIs.
//!
//! | URI | meaning |
//! |---|---|
//! | `vsock://CID:PORT` | AF_VSOCK, as used inside the guest (host CID 2) |
//! | `vsock://CID` | a vsock peer without a port: a *base* address |
//! | `unix:///path` | a plain Unix socket (tests, local development) |
//! | `hvsock:///path:PORT` | hybrid vsock: connect to the Unix socket `path`, send `CONNECT PORT\n`, expect `OK …\n` (Firecracker, cloud-hypervisor, libkrun, vhost-device-vsock) |
//! | `tcp://IP:PORT` | TCP, for the standalone proxy's listener |
//!
//! A *base* address names where a peer is and [`Address::for_port`] derives
//! the address of one channel from it: `vsock://2` becomes `vsock://2:6002`,
//! `unix:///run/bottle/host.sock` becomes `unix:///run/bottle/host.sock_6002`
//! (the convention vhost-device-vsock uses for guest-initiated connections),
//! `hvsock:///path:0` becomes `hvsock:///path:6002`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A transport address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// AF_VSOCK; `port` is `None` in a base address.
    Vsock {
        /// Context id (2 is the host, seen from a guest).
        cid: u32,
        /// Port, or `None` for a base address.
        port: Option<u32>,
    },
    /// A Unix stream socket path.
    Unix(PathBuf),
    /// A hybrid-vsock Unix socket and the guest port to `CONNECT` to.
    Hybrid {
        /// The multiplexer's Unix socket.
        path: PathBuf,
        /// The vsock port asked for in the handshake.
        port: u32,
    },
    /// A TCP socket address.
    Tcp(SocketAddr),
}

/// An address string could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    /// No `scheme://`.
    #[error("address {0:?} has no scheme: use vsock://CID:PORT, unix:///path, hvsock:///path:PORT or tcp://IP:PORT")]
    NoScheme(String),
    /// A scheme we do not know.
    #[error("unknown address scheme {0:?}: use vsock, unix, hvsock or tcp")]
    UnknownScheme(String),
    /// A number that does not parse.
    #[error("bad {what} {value:?} in address {addr:?}")]
    BadNumber {
        /// `CID` or `port`.
        what: &'static str,
        /// The text.
        value: String,
        /// The whole address.
        addr: String,
    },
    /// A Unix path that is not absolute.
    #[error("unix socket path in {0:?} must be absolute (unix:///path)")]
    RelativePath(String),
    /// A path too long for `sockaddr_un`.
    #[error("unix socket path in {0:?} is longer than 107 bytes")]
    PathTooLong(String),
    /// A malformed TCP address.
    #[error("bad tcp address {0:?}: use tcp://IP:PORT")]
    BadTcp(String),
    /// `for_port` on an address that cannot carry channels.
    #[error("address {0} has no per-port form")]
    NoPortForm(String),
}

/// Longest path a `sockaddr_un` holds, without the terminating NUL.
const MAX_UNIX_PATH: usize = 107;

impl Address {
    /// Parse a URI; see the module docs for the forms.
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| AddressError::NoScheme(s.to_string()))?;
        match scheme {
            "vsock" => {
                let (cid, port) = match rest.split_once(':') {
                    Some((cid, port)) => (cid, Some(parse_num("port", port, s)?)),
                    None => (rest, None),
                };
                Ok(Address::Vsock {
                    cid: parse_num("CID", cid, s)?,
                    port,
                })
            }
            "unix" => Ok(Address::Unix(unix_path(rest, s)?)),
            "hvsock" => {
                let (path, port) =
                    rest.rsplit_once(':')
                        .ok_or_else(|| AddressError::BadNumber {
                            what: "port",
                            value: String::new(),
                            addr: s.to_string(),
                        })?;
                Ok(Address::Hybrid {
                    path: unix_path(path, s)?,
                    port: parse_num("port", port, s)?,
                })
            }
            "tcp" => rest
                .parse()
                .map(Address::Tcp)
                .map_err(|_| AddressError::BadTcp(s.to_string())),
            other => Err(AddressError::UnknownScheme(other.to_string())),
        }
    }

    /// The address of the channel on `port`, derived from a base address.
    pub fn for_port(&self, port: u32) -> Result<Address, AddressError> {
        match self {
            Address::Vsock { cid, .. } => Ok(Address::Vsock {
                cid: *cid,
                port: Some(port),
            }),
            Address::Unix(path) => {
                let mut p = path.clone().into_os_string();
                p.push(format!("_{port}"));
                let path = PathBuf::from(p);
                check_len(&path, &self.to_string())?;
                Ok(Address::Unix(path))
            }
            Address::Hybrid { path, .. } => Ok(Address::Hybrid {
                path: path.clone(),
                port,
            }),
            Address::Tcp(_) => Err(AddressError::NoPortForm(self.to_string())),
        }
    }

    /// True for an AF_VSOCK address with the host's CID (2). Tools and tests
    /// running outside a VM must never dial it (see `docs/transport.md`).
    pub fn is_vsock_host(&self) -> bool {
        matches!(self, Address::Vsock { cid, .. } if *cid == crate::channel::HOST_CID)
    }
}

fn parse_num(what: &'static str, value: &str, addr: &str) -> Result<u32, AddressError> {
    value.parse().map_err(|_| AddressError::BadNumber {
        what,
        value: value.to_string(),
        addr: addr.to_string(),
    })
}

fn unix_path(rest: &str, addr: &str) -> Result<PathBuf, AddressError> {
    if !rest.starts_with('/') {
        return Err(AddressError::RelativePath(addr.to_string()));
    }
    let path = PathBuf::from(rest);
    check_len(&path, addr)?;
    Ok(path)
}

fn check_len(path: &Path, addr: &str) -> Result<(), AddressError> {
    if path.as_os_str().len() > MAX_UNIX_PATH {
        Err(AddressError::PathTooLong(addr.to_string()))
    } else {
        Ok(())
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Vsock { cid, port: Some(p) } => write!(f, "vsock://{cid}:{p}"),
            Address::Vsock { cid, port: None } => write!(f, "vsock://{cid}"),
            Address::Unix(p) => write!(f, "unix://{}", p.display()),
            Address::Hybrid { path, port } => write!(f, "hvsock://{}:{port}", path.display()),
            Address::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_prints_it_back() {
        for s in [
            "vsock://2:6002",
            "vsock://3",
            "unix:///run/bottle/host.sock",
            "hvsock:///tmp/v.sock:6002",
            "tcp://127.0.0.1:3128",
            "tcp://[::1]:80",
        ] {
            let a = Address::parse(s).unwrap();
            assert_eq!(a.to_string(), s);
        }
    }

    #[test]
    fn table_of_bad_addresses() {
        let cases: &[(&str, AddressError)] = &[
            ("/tmp/x", AddressError::NoScheme("/tmp/x".into())),
            ("http://x", AddressError::UnknownScheme("http".into())),
            (
                "vsock://two:1",
                AddressError::BadNumber {
                    what: "CID",
                    value: "two".into(),
                    addr: "vsock://two:1".into(),
                },
            ),
            (
                "vsock://2:99999999999",
                AddressError::BadNumber {
                    what: "port",
                    value: "99999999999".into(),
                    addr: "vsock://2:99999999999".into(),
                },
            ),
            (
                "unix://tmp/x",
                AddressError::RelativePath("unix://tmp/x".into()),
            ),
            (
                "hvsock:///tmp/x",
                AddressError::BadNumber {
                    what: "port",
                    value: "".into(),
                    addr: "hvsock:///tmp/x".into(),
                },
            ),
            (
                "tcp://localhost",
                AddressError::BadTcp("tcp://localhost".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&Address::parse(input).unwrap_err(), want, "{input}");
        }
        let long = format!("unix:///{}", "a".repeat(200));
        assert!(matches!(
            Address::parse(&long),
            Err(AddressError::PathTooLong(_))
        ));
    }

    #[test]
    fn base_addresses_derive_channel_addresses() {
        let a = Address::parse("vsock://2").unwrap();
        assert_eq!(a.for_port(6002).unwrap().to_string(), "vsock://2:6002");
        assert!(a.is_vsock_host());
        let u = Address::parse("unix:///tmp/b/host.sock").unwrap();
        assert_eq!(
            u.for_port(6002).unwrap().to_string(),
            "unix:///tmp/b/host.sock_6002"
        );
        assert!(!u.is_vsock_host());
        let h = Address::parse("hvsock:///tmp/v.sock:0").unwrap();
        assert_eq!(
            h.for_port(6001).unwrap().to_string(),
            "hvsock:///tmp/v.sock:6001"
        );
        assert!(Address::parse("tcp://127.0.0.1:1")
            .unwrap()
            .for_port(1)
            .is_err());
    }
}
