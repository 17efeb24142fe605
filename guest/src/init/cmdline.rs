//! Settings from the kernel command line (`/proc/cmdline`): every
//! `bottle.*` key, parsed by a pure function.
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `bottle.host=URI` | host base address | `vsock://2` |
//! | `bottle.hostname=NAME` | hostname before the config arrives | `bottle` |
//! | `bottle.log=FILTER` | tracing filter (as `RUST_LOG`) | `info` |
//! | `bottle.modules=a,b` | kernel modules to load, in order | none |
//! | `bottle.moddir=DIR` | where `NAME.ko` files are | `/lib/modules/bottle` |
//! | `bottle.status=PATH` | status socket | `/run/bottle-guest.sock` |
//! | `bottle.root=TAG` | the image root: its virtio-fs tag, or (experimental) `blk:/dev/vda:ext4` for a read-only disk (an overlay over it becomes `/`) | the initramfs stays `/` |

/// Default host base address inside a VM.
pub const DEFAULT_HOST: &str = "vsock://2";
/// Default module directory.
pub const DEFAULT_MODDIR: &str = "/lib/modules/bottle";

/// Parsed `bottle.*` settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootParams {
    /// `bottle.host`.
    pub host: Option<String>,
    /// `bottle.hostname`.
    pub hostname: Option<String>,
    /// `bottle.log`.
    pub log: Option<String>,
    /// `bottle.modules`, split on commas.
    pub modules: Vec<String>,
    /// `bottle.moddir`.
    pub moddir: Option<String>,
    /// `bottle.status`.
    pub status: Option<String>,
    /// `bottle.root`: the image root (a virtio-fs tag or `blk:DEV:FSTYPE`).
    pub root: Option<String>,
    /// `bottle.*` keys this version does not know (logged, not fatal).
    pub unknown: Vec<String>,
}

/// Split a command line into words, honouring double quotes as the kernel
/// does (`key="a b"`).
fn words(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Parse the `bottle.*` keys of a kernel command line. Later keys win;
/// everything else on the line is ignored.
pub fn parse(cmdline: &str) -> BootParams {
    let mut p = BootParams::default();
    for word in words(cmdline) {
        let Some(rest) = word.strip_prefix("bottle.") else {
            continue;
        };
        let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
        let value = value.to_string();
        match key {
            "host" => p.host = Some(value),
            "hostname" => p.hostname = Some(value),
            "log" => p.log = Some(value),
            "modules" => {
                p.modules = value
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "moddir" => p.moddir = Some(value),
            "status" => p.status = Some(value),
            "root" => p.root = Some(value),
            _ => p.unknown.push(key.to_string()),
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn table() {
        let table: Vec<(&str, BootParams)> = vec![
            ("", BootParams::default()),
            (
                "console=ttyS0 quiet root=/dev/vda rw",
                BootParams::default(),
            ),
            (
                "console=ttyS0 bottle.host=unix:///run/h.sock bottle.hostname=box bottle.log=debug\n",
                BootParams {
                    host: s("unix:///run/h.sock"),
                    hostname: s("box"),
                    log: s("debug"),
                    ..Default::default()
                },
            ),
            (
                "bottle.modules=vsock,vmw_vsock_virtio_transport,, bottle.moddir=/m bottle.root=root",
                BootParams {
                    modules: vec!["vsock".into(), "vmw_vsock_virtio_transport".into()],
                    moddir: s("/m"),
                    root: s("root"),
                    ..Default::default()
                },
            ),
            (
                "bottle.host=vsock://2 bottle.host=vsock://3 bottle.frob=1 notbottle.host=x",
                BootParams {
                    host: s("vsock://3"),
                    unknown: vec!["frob".into()],
                    ..Default::default()
                },
            ),
            (
                "bottle.log=\"info,bottle_guest=trace\" bottle.status=\"/run/a b.sock\"",
                BootParams {
                    log: s("info,bottle_guest=trace"),
                    status: s("/run/a b.sock"),
                    ..Default::default()
                },
            ),
            (
                "bottle.hostname= bottle.modules",
                BootParams {
                    hostname: s(""),
                    ..Default::default()
                },
            ),
        ];
        for (line, want) in table {
            assert_eq!(parse(line), want, "cmdline {line:?}");
        }
    }
}
