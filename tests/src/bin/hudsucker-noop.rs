//! `hudsucker-noop`: hudsucker's own no-op MITM proxy, the peer
//! `bench/proxy.sh` measures `bottle-host proxy` against. The same
//! hudsucker (`third_party/hudsucker`, with our patches), the same rustls
//! crypto provider (ring, passed explicitly), an upstream connector with
//! TCP_NODELAY like ours, every CONNECT and TLS stream intercepted (the
//! default handler), and nothing else: no policy, no DLP, no redaction,
//! no audit. Its CA (ECDSA P-256, rcgen's default, as ours) is made at
//! start and written to `--ca-out`; leaf configs come from hudsucker's
//! own `RcgenAuthority` cache.
//!
//! Usage: hudsucker-noop --listen 127.0.0.1:PORT --upstream-ca FILE
//!        --ca-out FILE
//!
//! Prints `hudsucker-noop: serving on ADDR` when ready; stops on SIGTERM
//! or SIGINT.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use hudsucker::certificate_authority::RcgenAuthority;
use hudsucker::hyper_util::client::legacy::connect::HttpConnector;
use hudsucker::rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use hudsucker::rustls;
use hudsucker::Proxy;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

struct Opts {
    listen: String,
    upstream_ca: String,
    ca_out: String,
}

fn parse() -> Result<Opts> {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut upstream_ca, mut ca_out) = (None, None, None);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| anyhow!("{a} needs a value"));
        match a.as_str() {
            "--listen" => listen = Some(val()?),
            "--upstream-ca" => upstream_ca = Some(val()?),
            "--ca-out" => ca_out = Some(val()?),
            _ => bail!("unexpected argument {a:?}"),
        }
    }
    let usage = "usage: hudsucker-noop --listen IP:PORT --upstream-ca FILE --ca-out FILE";
    Ok(Opts {
        listen: listen.context(usage)?,
        upstream_ca: upstream_ca.context(usage)?,
        ca_out: ca_out.context(usage)?,
    })
}

/// A fresh CA for the proxy's leaves; its certificate goes to `out`.
fn authority(out: &str, provider: rustls::crypto::CryptoProvider) -> Result<RcgenAuthority> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "hudsucker-noop bench CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    std::fs::write(out, cert.pem()).with_context(|| out.to_string())?;
    // hudsucker's own cache size in its examples.
    Ok(RcgenAuthority::new(
        Issuer::new(params, key),
        1_000,
        provider,
    ))
}

/// The upstream connector: ring, the upstream CA, ALPN h2 and http/1.1,
/// TCP_NODELAY (as `host/src/proxy/connector.rs` does).
fn connector(
    upstream_ca: &str,
) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, anyhow::Error> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(upstream_ca).with_context(|| upstream_ca.to_string())?;
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = parse()?;
    let ca = authority(&o.ca_out, rustls::crypto::ring::default_provider())?;
    let listener = TcpListener::bind(&o.listen).await?;
    // As ours: accepted sockets inherit TCP_NODELAY from the listener
    // (hudsucker does not set it), so Nagle does not delay handshakes.
    socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
    let addr = listener.local_addr()?;
    let mut term = signal(SignalKind::terminate())?;
    let proxy = Proxy::builder()
        .with_listener(listener)
        .with_ca(ca)
        .with_http_connector(connector(&o.upstream_ca)?)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .build()?;
    eprintln!("hudsucker-noop: serving on {addr}");
    proxy.start().await?;
    Ok(())
}
