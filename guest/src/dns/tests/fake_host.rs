//! A fake host for the stub's tests: serves the DNS channel on a `unix://`
//! address and answers `qN.test. A` with `203.0.113.N`, later questions
//! sooner (so answers come back out of order); `hang.test.` never,
//! `nx.test.` NXDOMAIN, `big.test.` 60 addresses, anything else REFUSED.
//! Aborting its task kills it and every connection it holds.

use std::time::Duration;

use bottle_shared::io::{accept_hello, read_message, write_message};
use bottle_shared::message::{DnsRequest, DnsResponse, Role};
use bottle_shared::transport::Listener;
use bottle_shared::{Address, Channel};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{rdata::A, RData, Record};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// How the fake host behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Answer normally.
    Normal,
    /// Send a corrupt frame right after the hello on the first connection.
    CorruptFirst,
}

/// The answer the fake host gives to one query.
fn host_answer(query: &[u8]) -> Option<(Vec<u8>, Duration)> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries().first()?.clone();
    let name = question.name().to_string();
    let mut m = Message::new();
    m.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(q.recursion_desired())
        .set_recursion_available(true)
        .add_query(question.clone());
    let first = name.split('.').next().unwrap_or_default();
    let mut delay = Duration::ZERO;
    if name == "hang.test." {
        return None;
    } else if name == "nx.test." {
        m.set_response_code(ResponseCode::NXDomain);
    } else if name == "big.test." {
        for i in 0..60u8 {
            m.add_answer(Record::from_rdata(
                question.name().clone(),
                60,
                RData::A(A::new(203, 0, 113, i)),
            ));
        }
    } else if let Some(n) = first.strip_prefix('q').and_then(|n| n.parse::<u8>().ok()) {
        // Later questions are answered sooner: answers come back reversed.
        delay = Duration::from_millis(5 * u64::from(60u8.saturating_sub(n % 60)));
        m.add_answer(Record::from_rdata(
            question.name().clone(),
            60,
            RData::A(A::new(203, 0, 113, n)),
        ));
    } else {
        m.set_response_code(ResponseCode::Refused);
    }
    Some((m.to_vec().ok()?, delay))
}

async fn host_conn(mut s: bottle_shared::transport::BoxStream, corrupt: bool) {
    if accept_hello(&mut s, Role::Host, Channel::Dns, "fake-host")
        .await
        .is_err()
    {
        return;
    }
    if corrupt {
        // A frame announcing 1 GiB: over any limit.
        let _ = s.write_all(&[0x40, 0, 0, 0]).await;
        let _ = s.flush().await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        return;
    }
    let (mut r, mut w) = tokio::io::split(s);
    let (tx, mut rx) = mpsc::unbounded_channel::<DnsResponse>();
    let writer = async move {
        while let Some(msg) = rx.recv().await {
            if write_message(&mut w, &msg, Channel::Dns.max_frame())
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let reader = async move {
        let mut answers = JoinSet::new();
        while let Ok(Some(req)) =
            read_message::<_, DnsRequest>(&mut r, Channel::Dns.max_frame()).await
        {
            let DnsRequest::Query { id, wire, .. } = req else {
                continue;
            };
            let Some((answer, delay)) = host_answer(&wire) else {
                continue;
            };
            let tx = tx.clone();
            answers.spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.send(DnsResponse::Answer { id, wire: answer });
            });
        }
        // Keep the half-open connection's pending answers going until done.
        while answers.join_next().await.is_some() {}
    };
    tokio::join!(writer, reader);
}

/// Start a fake host on `addr`; aborting the task kills it and every
/// connection it holds.
pub(super) async fn fake_host(addr: &Address, mode: Mode) -> JoinHandle<()> {
    let listener = Listener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        let mut first = true;
        loop {
            let Ok(s) = listener.accept().await else {
                return;
            };
            let corrupt = first && mode == Mode::CorruptFirst;
            first = false;
            conns.spawn(host_conn(s, corrupt));
        }
    })
}
