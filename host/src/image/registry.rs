//! `docker://REGISTRY/NAME[:TAG|@DIGEST]`: the manifest is fetched (and
//! checked against its digest), a cached digest is used as is; otherwise
//! the config and layers are downloaded into `<state>/images/tmp/<random>/`
//! as an OCI layout's `blobs/sha256/`, then unpacked exactly as a local
//! layout is (every blob hashed again while it is read).
//!
//! HTTPS with rustls (ring); plain HTTP only for a registry on loopback
//! (`localhost`, `127.0.0.0/8`, `[::1]`). Credentials: the environment's
//! `BOTTLE_REGISTRY_USER` / `BOTTLE_REGISTRY_PASSWORD` for the registry
//! `BOTTLE_REGISTRY_HOST` names (an error without it), else
//! `auths.<registry>.auth` in `$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`, else anonymous. Before credentials go out,
//! the registry's `WWW-Authenticate` challenge is read: a token realm over
//! plain HTTP is refused unless it is the registry's own loopback host.
//!
//! The pull runs on a thread of its own with its own runtime, so `prepare`
//! may be called from async code too; progress comes back over a channel.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::blob::{Digest, MAX_JSON};
use super::cache::Images;
use super::layout::{self, Resolved, Store};
use super::source::RegistryRef;
use super::spec;
use super::unpack::remove_tree;
use super::{ImageError, ImageSource, PreparedImage, Progress};

const ACCEPT: [&str; 4] = [
    spec::OCI_MANIFEST,
    spec::DOCKER_MANIFEST,
    spec::OCI_INDEX,
    spec::DOCKER_LIST,
];

enum Event {
    Begin(String, u64),
    Advance(u64),
    Finish,
}

enum Fetched {
    Cached(PreparedImage),
    Downloaded(Resolved),
}

/// How long a registry may take to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a registry may stay silent in the middle of an answer,
/// unless `BOTTLE_REGISTRY_TIMEOUT_SECS` (1–3600) says otherwise.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The read timeout: the environment's, else [`READ_TIMEOUT`].
fn read_timeout() -> Duration {
    std::env::var("BOTTLE_REGISTRY_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| (1..=3600).contains(s))
        .map_or(READ_TIMEOUT, Duration::from_secs)
}

/// Pull `r` (the source `src`) into the cache.
pub fn pull(
    src: &ImageSource,
    r: &RegistryRef,
    images: &Images,
    progress: &dyn Progress,
) -> Result<PreparedImage, ImageError> {
    pull_with(src, r, images, progress, read_timeout())
}

/// [`pull`] with a read timeout of `read`.
pub(crate) fn pull_with(
    src: &ImageSource,
    r: &RegistryRef,
    images: &Images,
    progress: &dyn Progress,
    read: Duration,
) -> Result<PreparedImage, ImageError> {
    pull_env(src, r, images, progress, read, &|n| std::env::var(n).ok())
}

/// The environment's variable `name`, or a test's.
pub(crate) type Env<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// [`pull_with`] reading credentials' settings from `env`.
pub(crate) fn pull_env(
    src: &ImageSource,
    r: &RegistryRef,
    images: &Images,
    progress: &dyn Progress,
    read: Duration,
    env: Env<'_>,
) -> Result<PreparedImage, ImageError> {
    let dl = images.new_tmp()?;
    let result = (|| {
        let (tx, rx) = mpsc::channel();
        let fetched = std::thread::scope(|s| {
            let h = s.spawn(|| fetch_blocking(r, &dl, images, tx, read, env));
            for ev in rx {
                match ev {
                    Event::Begin(step, total) => progress.begin(&step, Some(total)),
                    Event::Advance(n) => progress.advance(n),
                    Event::Finish => progress.finish(),
                }
            }
            h.join().unwrap_or_else(|_| {
                Err(ImageError::Format(
                    "the registry pull thread panicked".into(),
                ))
            })
        })?;
        match fetched {
            Fetched::Cached(p) => Ok(p),
            Fetched::Downloaded(res) => images.get_or_unpack(src, res, progress),
        }
    })();
    if let Err(e) = remove_tree(&dl) {
        tracing::warn!("removing {}: {e}", dl.display());
    }
    result
}

fn fetch_blocking(
    r: &RegistryRef,
    dl: &Path,
    images: &Images,
    tx: mpsc::Sender<Event>,
    read: Duration,
    env: Env<'_>,
) -> Result<Fetched, ImageError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImageError::io("tokio runtime", e))?;
    rt.block_on(fetch(r, dl, images, &tx, read, env))
}

/// Whether `registry` (`host[:port]`) is on loopback.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        registry.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn fetch(
    r: &RegistryRef,
    dl: &Path,
    images: &Images,
    tx: &mpsc::Sender<Event>,
    read: Duration,
    env: Env<'_>,
) -> Result<Fetched, ImageError> {
    let shown = r.to_string();
    let reg_err = |e: oci_client::errors::OciDistributionError| ImageError::Registry {
        reference: shown.clone(),
        reason: e.to_string(),
    };
    // reqwest is built without a default provider: use ring, as the rest
    // of bottle-host does (an already installed one is fine).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if is_loopback(&r.registry) {
        ClientProtocol::HttpsExcept(vec![r.registry.clone()])
    } else {
        ClientProtocol::Https
    };
    let client = Client::try_from(ClientConfig {
        protocol,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(read),
        ..Default::default()
    })
    .map_err(reg_err)?;
    let auth = credentials(&r.registry, env).map_err(|reason| ImageError::Registry {
        reference: shown.clone(),
        reason,
    })?;
    if matches!(auth, RegistryAuth::Basic(..)) {
        check_realm(&r.registry, read)
            .await
            .map_err(|reason| ImageError::Registry {
                reference: shown.clone(),
                reason,
            })?;
    }
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let reference = match &r.digest {
        Some(d) => Reference::with_digest(r.registry.clone(), r.repository.clone(), d.clone()),
        None => Reference::with_tag(r.registry.clone(), r.repository.clone(), tag),
    };
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(read)
        .build()
        .map_err(|e| ImageError::Registry {
            reference: shown.clone(),
            reason: e.to_string(),
        })?;
    let manifest_err = |reason: String| ImageError::Registry {
        reference: shown.clone(),
        reason,
    };
    let deadline = CONNECT_TIMEOUT + read;
    let mut bytes = get_manifest(&client, &http, &reference, &auth, deadline)
        .await
        .map_err(manifest_err)?;
    let mut digest = Digest::of(&bytes);
    if let Some(want) = &r.digest {
        if &digest.to_string() != want {
            return Err(ImageError::Verify {
                blob: want.clone(),
                reason: format!("the registry's manifest is {digest}"),
            });
        }
    }
    let mut depth = 0;
    let manifest: spec::Manifest = loop {
        if bytes.len() as u64 > MAX_JSON {
            return Err(ImageError::Format(format!("manifest {digest}: too large")));
        }
        match layout::media_type_of("", &bytes)?.as_str() {
            spec::OCI_INDEX | spec::DOCKER_LIST if depth < 2 => {
                let idx: spec::Index = spec::parse_json(&format!("index {digest}"), &bytes)?;
                let refs: Vec<&spec::Descriptor> = idx.manifests.iter().collect();
                let child = Digest::parse(&layout::pick_platform(&refs)?.digest)?;
                let by_digest = reference.clone_with_digest(child.to_string());
                bytes = get_manifest(&client, &http, &by_digest, &auth, deadline)
                    .await
                    .map_err(manifest_err)?;
                if Digest::of(&bytes) != child {
                    return Err(ImageError::Verify {
                        blob: child.to_string(),
                        reason: format!("the registry sent {}", Digest::of(&bytes)),
                    });
                }
                digest = child;
                depth += 1;
            }
            spec::OCI_MANIFEST | spec::DOCKER_MANIFEST => {
                break spec::parse_json(&format!("manifest {digest}"), &bytes)?;
            }
            other => {
                return Err(ImageError::MediaType {
                    media_type: other.to_string(),
                    what: format!("manifest {digest}"),
                })
            }
        }
    };
    if let Some(p) = images.load(&digest) {
        tracing::debug!("image {digest} is cached");
        return Ok(Fetched::Cached(p));
    }
    let resolved = layout::from_manifest(Store::Dir(dl.to_path_buf()), digest, &manifest)?;
    let blobs = dl.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs)
        .map_err(|e| ImageError::io(format!("creating {}", blobs.display()), e))?;
    let wanted = std::iter::once(("config", &resolved.config))
        .chain(resolved.layers.iter().map(|l| ("layer", &l.blob)));
    for (what, b) in wanted {
        let (Some(d), Some(size)) = (&b.expect.digest, b.expect.size) else {
            continue;
        };
        let _ = tx.send(Event::Begin(
            format!("download {what} {}", &d.hex()[..12]),
            size,
        ));
        let mut stream = client
            .pull_blob_stream(&reference, d.to_string().as_str())
            .await
            .map_err(reg_err)?;
        let path = blobs.join(d.hex());
        let mut f = std::fs::File::create(&path)
            .map_err(|e| ImageError::io(format!("creating {}", path.display()), e))?;
        let mut got = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ImageError::io(format!("downloading {d}"), e))?;
            got += chunk.len() as u64;
            if got > size {
                return Err(ImageError::Verify {
                    blob: d.to_string(),
                    reason: format!("more than the expected {size} bytes"),
                });
            }
            f.write_all(&chunk)
                .map_err(|e| ImageError::io(format!("writing {}", path.display()), e))?;
            let _ = tx.send(Event::Advance(chunk.len() as u64));
        }
        let _ = tx.send(Event::Finish);
    }
    Ok(Fetched::Downloaded(resolved))
}

/// Whether two registry names are the same registry (Docker Hub's
/// aliases are one).
fn same_registry(a: &str, b: &str) -> bool {
    let hub = |r: &str| matches!(r, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    a.eq_ignore_ascii_case(b) || (hub(a) && hub(b))
}

/// The manifest `reference` names, read by us rather than by oci-client
/// (which reads a body whole before we could check its size): at most
/// [`MAX_JSON`] bytes, all of it within `deadline`. oci-client does the
/// authentication (its token, or the Basic credentials when the registry
/// asks for those); an error answer's body is not read.
async fn get_manifest(
    client: &Client,
    http: &reqwest::Client,
    reference: &Reference,
    auth: &RegistryAuth,
    deadline: Duration,
) -> Result<Vec<u8>, String> {
    let registry = reference.resolve_registry();
    let scheme = if is_loopback(registry) {
        "http"
    } else {
        "https"
    };
    let url = format!(
        "{scheme}://{registry}/v2/{}/manifests/{}",
        reference.repository(),
        reference
            .digest()
            .or_else(|| reference.tag())
            .unwrap_or("latest")
    );
    let work = async {
        let token = client
            .auth(reference, auth, RegistryOperation::Pull)
            .await
            .map_err(|e| e.to_string())?;
        let req = http
            .get(&url)
            .header(reqwest::header::ACCEPT, ACCEPT.join(", "));
        let req = match (token, auth) {
            (Some(t), _) => req.bearer_auth(t),
            (None, RegistryAuth::Basic(u, p)) => req.basic_auth(u, Some(p)),
            (None, _) => req,
        };
        let mut res = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = res.status();
        if !status.is_success() {
            return Err(format!("{url}: the registry answered {status}"));
        }
        let too_large = || format!("{url}: the manifest is over {MAX_JSON} bytes");
        if res.content_length().is_some_and(|n| n > MAX_JSON) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if (body.len() + chunk.len()) as u64 > MAX_JSON {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| format!("{url}: no complete manifest within {deadline:?}"))?
}

/// Credentials for `registry`: the environment's (`var`) when
/// `BOTTLE_REGISTRY_HOST` names it, then Docker's config. User and
/// password set without `BOTTLE_REGISTRY_HOST` are an error: they would
/// otherwise go to whatever registry an image names.
pub(crate) fn credentials(registry: &str, var: Env<'_>) -> Result<RegistryAuth, String> {
    if let (Some(u), Some(p)) = (var("BOTTLE_REGISTRY_USER"), var("BOTTLE_REGISTRY_PASSWORD")) {
        match var("BOTTLE_REGISTRY_HOST") {
            None => {
                return Err(
                    "BOTTLE_REGISTRY_USER and BOTTLE_REGISTRY_PASSWORD are set but \
                            BOTTLE_REGISTRY_HOST is not: set it to the registry (host[:port]) \
                            the credentials are for"
                        .into(),
                )
            }
            Some(h) if same_registry(h.trim(), registry) => return Ok(RegistryAuth::Basic(u, p)),
            Some(_) => {}
        }
    }
    let path = match var("DOCKER_CONFIG") {
        Some(d) => Path::new(&d).join("config.json"),
        None => match var("HOME") {
            Some(h) => Path::new(&h).join(".docker").join("config.json"),
            None => return Ok(RegistryAuth::Anonymous),
        },
    };
    Ok(std::fs::read(&path)
        .ok()
        .and_then(|b| docker_config_auth(&b, registry))
        .map_or(RegistryAuth::Anonymous, |(u, p)| RegistryAuth::Basic(u, p)))
}

/// The realm of a `Bearer` challenge, if `www_authenticate` is one.
pub(crate) fn bearer_realm(www_authenticate: &str) -> Option<String> {
    let h = www_authenticate.trim_start();
    if !h.get(..7)?.eq_ignore_ascii_case("bearer ") {
        return None;
    }
    let lower = h.to_ascii_lowercase();
    let at = lower.find("realm=\"")? + 7;
    let rest = h.get(at..)?;
    Some(rest.get(..rest.find('"')?)?.to_string())
}

/// Whether credentials for `registry` may go to the token `realm`: over
/// HTTPS, or over plain HTTP only to the registry's own host when that is
/// on loopback (the one plain-HTTP registry allowed).
pub(crate) fn realm_allowed(registry: &str, realm: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(realm) else {
        return false;
    };
    let reg_host = registry
        .strip_prefix('[')
        .and_then(|r| r.split(']').next())
        .unwrap_or_else(|| registry.split(':').next().unwrap_or_default());
    match (u.scheme(), u.host_str()) {
        ("https", Some(_)) => true,
        ("http", Some(h)) => {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            is_loopback(registry) && h.eq_ignore_ascii_case(reg_host)
        }
        _ => false,
    }
}

/// Ask the registry for its challenge (`GET /v2/`, nothing sent but the
/// request) and refuse a token realm the credentials must not go to. A
/// hostile registry can still ask for them itself (a `Basic` challenge):
/// this keeps them from a third host over plain HTTP.
async fn check_realm(registry: &str, read: Duration) -> Result<(), String> {
    let scheme = if is_loopback(registry) {
        "http"
    } else {
        "https"
    };
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(read)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let res = http
        .get(format!("{scheme}://{registry}/v2/"))
        .send()
        .await
        .map_err(|e| format!("asking the registry how to authenticate: {e}"))?;
    for h in res.headers().get_all(reqwest::header::WWW_AUTHENTICATE) {
        let Some(realm) = h.to_str().ok().and_then(bearer_realm) else {
            continue;
        };
        if !realm_allowed(registry, &realm) {
            return Err(format!(
                "the registry sends clients to the token service {realm:?}: plain HTTP to \
                 another host; the credentials for {registry} are not sent there"
            ));
        }
    }
    Ok(())
}

/// `auths.<registry>.auth` (base64 `user:password`) of a Docker config.
pub fn docker_config_auth(config: &[u8], registry: &str) -> Option<(String, String)> {
    use base64::Engine;
    let v: serde_json::Value = serde_json::from_slice(config).ok()?;
    let auths = v.get("auths")?.as_object()?;
    let mut keys = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    if registry == "docker.io" {
        keys.extend(
            [
                "https://index.docker.io/v1/",
                "index.docker.io",
                "registry-1.docker.io",
            ]
            .map(String::from),
        );
    }
    let entry = keys.iter().find_map(|k| auths.get(k))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(entry.get("auth")?.as_str()?)
        .ok()?;
    let (u, p) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}
