//! A bare DNS-channel client, as the guest stub speaks it: dial a
//! `bottle-host dns` address, say hello, and ask queries one at a time.
//! For tests that need the host alone (audit log, signals).

use std::time::Duration;

use bottle_shared::io::{dial_hello, read_message, write_message};
use bottle_shared::message::{DnsRequest, DnsResponse, DnsTransport};
use bottle_shared::transport::{connect, BoxStream};
use bottle_shared::{Address, Channel, Role};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

/// One connection to the host's DNS channel.
pub struct DnsChannel {
    stream: BoxStream,
    next: u32,
}

impl std::fmt::Debug for DnsChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsChannel")
            .field("next", &self.next)
            .finish()
    }
}

impl DnsChannel {
    /// Dial `addr` (e.g. `unix:///DIR/host.sock_6002`) and say hello; a
    /// `TimedOut` error if that takes longer than 10 s.
    pub async fn dial(addr: &str) -> std::io::Result<DnsChannel> {
        let addr: Address = addr
            .parse()
            .map_err(|e| std::io::Error::other(format!("{addr}: {e}")))?;
        let hello = async {
            let mut stream = connect(&addr).await?;
            dial_hello(&mut stream, Role::Guest, Channel::Dns, "bottle-e2e")
                .await
                .map_err(std::io::Error::other)?;
            Ok(DnsChannel { stream, next: 1 })
        };
        tokio::time::timeout(Duration::from_secs(10), hello)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no hello"))?
    }

    /// Ask `name` A; the answer's response code (`NoError`, `ServFail`…)
    /// and its A addresses, or an error if the channel broke or `limit`
    /// passed.
    pub async fn ask(&mut self, name: &str, limit: Duration) -> std::io::Result<Message> {
        let id = self.next;
        self.next += 1;
        let req = DnsRequest::Query {
            id,
            transport: DnsTransport::Udp,
            wire: query(u16::try_from(id % 65_536).unwrap_or(0), name),
        };
        let max = Channel::Dns.max_frame();
        let io = async {
            write_message(&mut self.stream, &req, max)
                .await
                .map_err(std::io::Error::other)?;
            match read_message::<_, DnsResponse>(&mut self.stream, max).await {
                Ok(Some(DnsResponse::Answer { id: got, wire })) if got == id => {
                    Message::from_vec(&wire).map_err(std::io::Error::other)
                }
                Ok(Some(other)) => Err(std::io::Error::other(format!("unexpected {other:?}"))),
                Ok(None) => Err(std::io::ErrorKind::UnexpectedEof.into()),
                Err(e) => Err(std::io::Error::other(e)),
            }
        };
        tokio::time::timeout(limit, io)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }
}

/// A query for `name` A with `id`, RD set.
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::new();
    let name = Name::from_ascii(name).unwrap_or_else(|_| Name::root());
    m.set_id(id)
        .set_recursion_desired(true)
        .add_query(Query::query(name, RecordType::A));
    m.to_vec().unwrap_or_default()
}
