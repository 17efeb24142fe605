//! What the guest is told: the [`GuestConfig`] pushed on the control
//! channel, and the `bottle.*` kernel command line.

use bottle_shared::message::{AgentSpec, GuestConfig, ResolverSettings, SharedDir};

use crate::manifest::Manifest;

/// The guest's hostname.
pub const HOSTNAME: &str = "bottle";

/// The config for `m`'s `agent` (the manifest over the image config,
/// `root::agent_spec`), trusting `ca_pem`, with the workspaces to mount.
pub fn guest_config(
    m: &Manifest,
    ca_pem: &str,
    agent: AgentSpec,
    mounts: Vec<SharedDir>,
) -> GuestConfig {
    GuestConfig {
        hostname: HOSTNAME.into(),
        agent,
        ca_pem: ca_pem.to_string(),
        proxy_port: m.egress.proxy_port,
        no_proxy: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        dns: ResolverSettings::default(),
        session: None,
        mounts,
    }
}

/// The `bottle.*` kernel parameters: the host is vsock CID 2, and the
/// modules the image carries are loaded in order.
pub fn kernel_params(modules: &[String], log: Option<&str>, extra: &[String]) -> String {
    let mut out = vec!["bottle.host=vsock://2".to_string()];
    out.extend(extra.iter().cloned());
    if !modules.is_empty() {
        out.push(format!("bottle.modules={}", modules.join(",")));
    }
    if let Some(l) = log {
        out.push(format!("bottle.log={l}"));
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn config_carries_the_agent_and_the_ca() {
        let m = crate::manifest::parse(
            "[agent]\ncommand = [\"/bin/sh\", \"-c\", \"exit 3\"]\nenv = { A = \"1\" }\n\
             [egress]\nproxy_port = 3130\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let agent = super::super::root::agent_spec(&m, &Default::default()).unwrap();
        let c = guest_config(&m, "PEM", agent, vec![]);
        assert_eq!(c.agent.command, vec!["/bin/sh", "-c", "exit 3"]);
        assert_eq!(c.agent.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(c.ca_pem, "PEM");
        assert_eq!(c.proxy_port, 3130);
        assert_eq!(c.hostname, HOSTNAME);
    }

    #[test]
    fn kernel_params_name_host_and_modules() {
        assert_eq!(kernel_params(&[], None, &[]), "bottle.host=vsock://2");
        assert_eq!(
            kernel_params(&["virtio".into(), "vsock".into()], Some("debug"), &[]),
            "bottle.host=vsock://2 bottle.modules=virtio,vsock bottle.log=debug"
        );
    }
}
