//! `fake-dns-host`: a stand-in for `bottle-host dns` that answers every
//! query on the DNS channel from the test zone (see
//! `bottle_e2e::upstream`), with no policy and no network. Used by
//! `bench/dns.sh` to measure the guest half of the path alone.
//!
//! Usage: `fake-dns-host unix:///path/host.sock_6002`

use bottle_e2e::upstream::zone_answer;
use bottle_shared::frame::encode_message;
use bottle_shared::io::{accept_hello, read_message};
use bottle_shared::message::{DnsRequest, DnsResponse, Role};
use bottle_shared::transport::{BoxStream, Listener};
use bottle_shared::{Address, Channel};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};

fn main() {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: fake-dns-host unix:///path/host.sock_6002");
        std::process::exit(2);
    };
    let addr: Address = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fake-dns-host: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = match Listener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("fake-dns-host: bind {addr}: {e}");
                std::process::exit(1);
            }
        };
        eprintln!("fake-dns-host: serving on {addr}");
        while let Ok(s) = listener.accept().await {
            tokio::spawn(serve(s));
        }
    });
}

async fn serve(mut s: BoxStream) {
    if accept_hello(&mut s, Role::Host, Channel::Dns, "fake-dns-host")
        .await
        .is_err()
    {
        return;
    }
    let max = Channel::Dns.max_frame();
    let (r, w) = tokio::io::split(s);
    let (mut r, mut w) = (BufReader::new(r), BufWriter::new(w));
    while let Ok(Some(DnsRequest::Query { id, wire, .. })) =
        read_message::<_, DnsRequest>(&mut r, max).await
    {
        let Some(wire) = zone_answer(&wire) else {
            continue;
        };
        let Ok(frame) = encode_message(&DnsResponse::Answer { id, wire }, max) else {
            continue;
        };
        if w.write_all(&frame).await.is_err() {
            return;
        }
        // Flush once nothing more is already buffered to read.
        if r.buffer().is_empty() && w.flush().await.is_err() {
            return;
        }
    }
}
