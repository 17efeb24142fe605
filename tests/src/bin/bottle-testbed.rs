//! `bottle-testbed`: the stand-in internet for the demo and the VM tests,
//! on the host's loopback: the test DNS zone (see `upstream.rs`; every
//! `*.bottle.test` name is 127.0.0.1) and an HTTPS echo server with its
//! own CA, written to `--ca-out` for `bottle-host launch --upstream-ca`.
//!
//! Usage: bottle-testbed [--dns 127.0.0.1:5354] [--https 127.0.0.1:8443]
//!                       [--ca-out FILE] [--expect-auth VALUE]
//! (`--expect-auth` defaults to `Bearer $BOTTLE_DEMO_TOKEN` when that is set.)
//! Prints `testbed ready ...` when serving; runs until killed.

use std::net::SocketAddr;

use bottle_e2e::https::Https;
use bottle_e2e::upstream::Upstream;

fn arg(args: &[String], flag: &str, default: &str) -> String {
    args.windows(2)
        .find(|w| w[0] == flag)
        .map(|w| w[1].clone())
        .unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dns: SocketAddr = arg(&args, "--dns", "127.0.0.1:5354")
        .parse()
        .map_err(std::io::Error::other)?;
    let https = arg(&args, "--https", "127.0.0.1:8443");
    let ca_out = arg(&args, "--ca-out", "testbed-ca.pem");
    let up = Upstream::start_on(dns).await?;
    let expect = args
        .windows(2)
        .find(|w| w[0] == "--expect-auth")
        .map(|w| w[1].clone())
        .or_else(|| {
            std::env::var("BOTTLE_DEMO_TOKEN")
                .ok()
                .map(|t| format!("Bearer {t}"))
        });
    let web = Https::start(&https, &["bottle.test", "*.bottle.test"], expect).await?;
    std::fs::write(&ca_out, &web.ca_pem)?;
    println!(
        "testbed ready: dns {} https {} ca {ca_out}",
        up.addr, web.addr
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
