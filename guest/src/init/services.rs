//! The services init starts once the config is known: the DNS stub and the
//! egress forwarder. They are built elsewhere (`dns/`, `egress.rs`); init
//! only sees this trait, so tests run with [`NoServices`].

use bottle_shared::message::GuestConfig;
use bottle_shared::Address;

use crate::status::StatsFn;

/// What the started services hand back to init.
#[derive(Default)]
pub struct ServiceHandles {
    /// DNS stub counters for `status`; `None` when the stub is not running.
    pub dns: Option<StatsFn>,
    /// Egress forwarder counters; `None` when it is not running.
    pub egress: Option<StatsFn>,
    /// Extra environment for the agent, applied after the CA and proxy
    /// variables and before the agent spec's own.
    pub env: Vec<(String, String)>,
}

/// A service could not be started.
#[derive(Debug, thiserror::Error)]
#[error("{service}: {message}")]
pub struct ServiceError {
    /// Which service.
    pub service: String,
    /// What went wrong.
    pub message: String,
}

/// Starts the guest's services. Called once, inside the init's tokio
/// runtime (so it may `tokio::spawn`), after the config arrived and the CA
/// was installed, before the agent starts. `host` is the base address; each
/// service derives its channel with `Address::for_port`.
pub trait Services: Send + Sync {
    /// Start everything; an error is fatal for the boot.
    fn start(&self, cfg: &GuestConfig, host: &Address) -> Result<ServiceHandles, ServiceError>;
}

/// No services at all (tests, and until the real ones are plugged in).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoServices;

impl Services for NoServices {
    fn start(&self, _cfg: &GuestConfig, _host: &Address) -> Result<ServiceHandles, ServiceError> {
        Ok(ServiceHandles::default())
    }
}

/// Proxy variables for the agent when the egress forwarder listens on
/// `127.0.0.1:port` (`port` 0: none).
pub fn proxy_env(cfg: &GuestConfig) -> Vec<(String, String)> {
    if cfg.proxy_port == 0 {
        return Vec::new();
    }
    let url = format!("http://127.0.0.1:{}", cfg.proxy_port);
    // Loopback always; then the host's list, each name once.
    let mut no_proxy: Vec<&str> = vec!["localhost", "127.0.0.1", "::1"];
    for name in &cfg.no_proxy {
        if !no_proxy.contains(&name.as_str()) {
            no_proxy.push(name);
        }
    }
    let no_proxy = no_proxy.join(",");
    [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
    ]
    .iter()
    .map(|k| (k.to_string(), url.clone()))
    .chain(
        ["NO_PROXY", "no_proxy"]
            .iter()
            .map(|k| (k.to_string(), no_proxy.clone())),
    )
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_env_only_with_a_port() {
        let mut cfg = GuestConfig::default();
        assert!(proxy_env(&cfg).is_empty());
        cfg.proxy_port = 3128;
        // The host sends loopback too (as `launch` does): not repeated.
        cfg.no_proxy = vec![
            "localhost".into(),
            "127.0.0.1".into(),
            "::1".into(),
            "internal.example".into(),
        ];
        let env = proxy_env(&cfg);
        let get = |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.clone());
        assert_eq!(get("HTTPS_PROXY").as_deref(), Some("http://127.0.0.1:3128"));
        assert_eq!(
            get("no_proxy").as_deref(),
            Some("localhost,127.0.0.1,::1,internal.example")
        );
    }
}
