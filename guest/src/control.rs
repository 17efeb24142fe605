//! The control-channel client: dial the host with bounded retries, say
//! hello, send [`BootInfo`], receive the [`GuestConfig`]; then a writer
//! task sends [`GuestMessage`]s and a reader task turns
//! [`HostMessage::Shutdown`] into a [`HostRequest`].

use std::time::Duration;

use bottle_shared::channel::{Channel, CONTROL_PORT};
use bottle_shared::io::{dial_hello, read_message, write_message, HandshakeError};
use bottle_shared::message::{BootInfo, GuestConfig, GuestMessage, HostMessage};
use bottle_shared::transport::{connect, BoxStream};
use bottle_shared::{Address, FrameError, Hello, Role};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::status::Board;
use crate::supervise::run::HostRequest;

/// How long the guest keeps trying to reach the host before giving up.
pub const CONNECT_BUDGET: Duration = Duration::from_secs(5);
/// First retry delay; doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
const MAX_RETRY_DELAY: Duration = Duration::from_millis(1000);

/// The control channel could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The address has no control-port form.
    #[error("bad host address: {0}")]
    Address(bottle_shared::AddressError),
    /// Nobody answered within the budget.
    #[error("host unreachable at {addr} after {attempts} attempts: {last}")]
    Unreachable {
        /// The control address.
        addr: String,
        /// Connection attempts made.
        attempts: u32,
        /// The last error.
        last: std::io::Error,
    },
    /// The host refused our hello or spoke another protocol.
    #[error("host refused the control hello: {0}")]
    Refused(HandshakeError),
    /// The host closed or misbehaved before sending the config.
    #[error("no config from the host: {0}")]
    NoConfig(String),
}

/// An established control channel, with the host's config.
pub struct Control {
    /// The host's hello.
    pub peer: Hello,
    /// The config it pushed.
    pub config: GuestConfig,
    /// The control address actually used.
    pub addr: Address,
    stream: BoxStream,
}

/// The control address for a base address (`Address::for_port(6001)`).
pub fn control_address(base: &Address) -> Result<Address, ControlError> {
    base.for_port(CONTROL_PORT).map_err(ControlError::Address)
}

/// Dial with retries for up to `budget`, exchange hellos and get the config.
pub async fn establish(
    base: &Address,
    boot: BootInfo,
    budget: Duration,
) -> Result<Control, ControlError> {
    let addr = control_address(base)?;
    let deadline = tokio::time::Instant::now() + budget;
    let mut delay = FIRST_RETRY_DELAY;
    let mut attempts = 0;
    let mut stream = loop {
        attempts += 1;
        match connect(&addr).await {
            Ok(s) => break s,
            Err(e) => {
                if tokio::time::Instant::now() + delay > deadline {
                    return Err(ControlError::Unreachable {
                        addr: addr.to_string(),
                        attempts,
                        last: e,
                    });
                }
                tracing::warn!(%addr, attempt = attempts, error = %e, "host not reachable yet, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    };
    let max = Channel::Control.max_frame();
    let peer = dial_hello(
        &mut stream,
        Role::Guest,
        Channel::Control,
        &crate::software(),
    )
    .await
    .map_err(|e| match e {
        HandshakeError::Hello(_) => ControlError::Refused(e),
        other => ControlError::NoConfig(other.to_string()),
    })?;
    let no_config = |e: &dyn std::fmt::Display| ControlError::NoConfig(e.to_string());
    write_message(&mut stream, &GuestMessage::Boot(boot), max)
        .await
        .map_err(|e| no_config(&e))?;
    let msg: Option<HostMessage> = tokio::time::timeout(budget, read_message(&mut stream, max))
        .await
        .map_err(|_| no_config(&"timed out"))?
        .map_err(|e| no_config(&e))?;
    match msg {
        Some(HostMessage::Config(config)) => Ok(Control {
            peer,
            config: *config,
            addr,
            stream,
        }),
        Some(other) => Err(no_config(&format!("expected a config, got {other:?}"))),
        None => Err(no_config(&"the host closed the connection")),
    }
}

/// The running control channel.
pub struct ControlTasks {
    /// Send messages to the host.
    pub tx: mpsc::UnboundedSender<GuestMessage>,
    writer: JoinHandle<()>,
}

impl ControlTasks {
    /// Send the last messages and wait (bounded) until they are written.
    pub async fn close(self, timeout: Duration) {
        drop(self.tx);
        let _ = tokio::time::timeout(timeout, self.writer).await;
    }
}

impl Control {
    /// Start the writer and reader tasks. Shutdown requests go to `requests`;
    /// the connection state is kept on `board`.
    pub fn spawn(self, requests: mpsc::UnboundedSender<HostRequest>, board: Board) -> ControlTasks {
        let (mut rd, mut wr) = tokio::io::split(self.stream);
        let (tx, mut rx) = mpsc::unbounded_channel::<GuestMessage>();
        let max = Channel::Control.max_frame();
        let wboard = board.clone();
        let writer = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if let Err(e) = write_message(&mut wr, &msg, max).await {
                    tracing::warn!(error = %e, "control channel write failed; host updates stop");
                    wboard.set_host_state("disconnected");
                    // Keep draining so senders never block or fail loudly.
                    while rx.recv().await.is_some() {}
                    return;
                }
            }
        });
        let status_tx = tx.clone();
        tokio::spawn(async move {
            loop {
                match read_message::<_, HostMessage>(&mut rd, max).await {
                    Ok(Some(HostMessage::Status)) => {
                        let json = serde_json::to_string(&board.snapshot()).unwrap_or_default();
                        let _ = status_tx.send(GuestMessage::Status { json });
                    }
                    Ok(Some(HostMessage::Shutdown { grace_ms })) => {
                        tracing::info!(grace_ms, "host asked for shutdown");
                        let _ =
                            requests.send(HostRequest::Shutdown(Duration::from_millis(grace_ms)));
                    }
                    Ok(Some(HostMessage::Exec(spec))) => {
                        tracing::info!(command = ?spec.command, "host asked for an exec");
                        let _ = requests.send(HostRequest::Exec(spec));
                    }
                    Ok(Some(other)) => tracing::warn!(?other, "unexpected control message ignored"),
                    // A newer host may send a variant we do not know: skip
                    // that one frame (the framing itself is intact).
                    Err(FrameError::Codec(e)) => {
                        tracing::warn!(error = %e, "undecodable control message ignored");
                    }
                    Ok(None) => {
                        tracing::warn!("host closed the control channel");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "control channel read failed");
                        break;
                    }
                }
            }
            board.set_host_state("disconnected");
        });
        ControlTasks { tx, writer }
    }
}

#[cfg(test)]
mod tests {
    use bottle_shared::io::accept_hello;
    use bottle_shared::transport::Listener;

    use super::*;

    #[test]
    fn control_address_is_derived_from_the_base() {
        let table = [
            ("vsock://2", Some("vsock://2:6001")),
            ("unix:///d/host.sock", Some("unix:///d/host.sock_6001")),
            ("hvsock:///run/v.sock:0", Some("hvsock:///run/v.sock:6001")),
            ("tcp://127.0.0.1:1", None),
        ];
        for (base, want) in table {
            let got = control_address(&Address::parse(base).unwrap())
                .ok()
                .map(|a| a.to_string());
            assert_eq!(got.as_deref(), want, "{base}");
        }
    }

    async fn host(dir: &std::path::Path) -> (Address, Listener) {
        let base = Address::parse(&format!("unix://{}/h.sock", dir.display())).unwrap();
        let l = Listener::bind(&base.for_port(CONTROL_PORT).unwrap())
            .await
            .unwrap();
        (base, l)
    }

    #[tokio::test]
    async fn boot_then_config_then_messages_flow() {
        let dir = tempfile::tempdir().unwrap();
        let (base, listener) = host(dir.path()).await;
        let h = tokio::spawn(async move {
            let mut s = listener.accept().await.unwrap();
            accept_hello(&mut s, Role::Host, Channel::Control, "h")
                .await
                .unwrap();
            let max = Channel::Control.max_frame();
            let boot: GuestMessage = read_message(&mut s, max).await.unwrap().unwrap();
            let cfg = GuestConfig {
                hostname: "x".into(),
                ..Default::default()
            };
            write_message(&mut s, &HostMessage::Config(Box::new(cfg)), max)
                .await
                .unwrap();
            // An unknown variant (tag 99) is skipped, not fatal.
            tokio::io::AsyncWriteExt::write_all(&mut s, &[0, 0, 0, 1, 99])
                .await
                .unwrap();
            write_message(&mut s, &HostMessage::Shutdown { grace_ms: 7 }, max)
                .await
                .unwrap();
            let exit: GuestMessage = read_message(&mut s, max).await.unwrap().unwrap();
            (boot, exit)
        });
        let boot = BootInfo {
            software: "g".into(),
            ..Default::default()
        };
        let ctl = establish(&base, boot.clone(), Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(
            (ctl.peer.software.as_str(), ctl.config.hostname.as_str()),
            ("h", "x")
        );
        let (req_tx, mut req_rx) = mpsc::unbounded_channel();
        let tasks = ctl.spawn(req_tx, Board::new(std::time::Instant::now()));
        assert_eq!(
            req_rx.recv().await,
            Some(HostRequest::Shutdown(Duration::from_millis(7)))
        );
        tasks.tx.send(GuestMessage::Exit { code: 3 }).unwrap();
        tasks.close(Duration::from_secs(2)).await;
        assert_eq!(
            h.await.unwrap(),
            (GuestMessage::Boot(boot), GuestMessage::Exit { code: 3 })
        );
    }

    #[tokio::test]
    async fn failures_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let base = Address::parse(&format!("unix://{}/none.sock", dir.path().display())).unwrap();
        let t = std::time::Instant::now();
        let err = establish(&base, BootInfo::default(), Duration::from_millis(300))
            .await
            .err();
        assert!(
            matches!(err, Some(ControlError::Unreachable { attempts, .. }) if attempts >= 3),
            "{err:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(1));

        // A host that accepts the hello and hangs up before the config.
        let (base, listener) = host(dir.path()).await;
        tokio::spawn(async move {
            let mut s = listener.accept().await.unwrap();
            accept_hello(&mut s, Role::Host, Channel::Control, "h")
                .await
                .unwrap();
        });
        let err = establish(&base, BootInfo::default(), Duration::from_secs(2))
            .await
            .err();
        assert!(matches!(err, Some(ControlError::NoConfig(_))), "{err:?}");
    }
}
