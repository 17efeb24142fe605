//! A minimal npm registry serving one package built here
//! (`bottle-hello`): the package document at `/<name>` (versions, the
//! `latest` tag, each version's `dist` with `tarball`, `shasum` and
//! `integrity`) and the tarball, for `npm install --registry
//! https://npm.bottle.test:PORT/`.

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use super::{not_found, reply, Req};

/// The package's name.
pub const NAME: &str = "bottle-hello";
/// Its only version.
pub const VERSION: &str = "1.0.0";
/// What `require(NAME).greeting` holds.
pub const GREETING: &str = "hello from the stand-in registry";

/// A built package.
#[derive(Clone, Debug)]
pub struct Package {
    /// The `.tgz`.
    pub tarball: Bytes,
    /// sha1 of the tarball, hex (`dist.shasum`).
    pub shasum: String,
    /// `sha512-<base64>` (`dist.integrity`).
    pub integrity: String,
}

/// Build the `bottle-hello` package.
pub fn package() -> std::io::Result<Package> {
    let manifest = serde_json::json!({
        "name": NAME, "version": VERSION, "main": "index.js",
        "description": "A stand-in package for bot-bottle's tests", "license": "MIT",
    });
    let files = vec![
        (
            "package/package.json".to_string(),
            serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?,
        ),
        (
            "package/index.js".to_string(),
            format!("module.exports = {{ greeting: {GREETING:?} }};\n").into_bytes(),
        ),
    ];
    let tgz = super::archive::tar_gz(&files)?;
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &tgz);
    let sha512 = ring::digest::digest(&ring::digest::SHA512, &tgz);
    Ok(Package {
        shasum: super::pypi::hex(sha1.as_ref()),
        integrity: format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(sha512.as_ref())
        ),
        tarball: Bytes::from(tgz),
    })
}

/// Answer one request. Tarball URLs name the host the client asked for.
pub fn serve(p: &Package, req: &Req) -> Response<Full<Bytes>> {
    if req.method != "GET" && req.method != "HEAD" {
        return reply(
            405,
            "application/json",
            "{\"error\":\"read-only registry\"}\n",
        );
    }
    let tarball_path = format!("/{NAME}/-/{NAME}-{VERSION}.tgz");
    if req.path == format!("/{NAME}") {
        let doc = serde_json::json!({
            "_id": NAME,
            "name": NAME,
            "dist-tags": { "latest": VERSION },
            "versions": { VERSION: {
                "name": NAME, "version": VERSION, "main": "index.js",
                "_id": format!("{NAME}@{VERSION}"),
                "dist": {
                    "tarball": format!("https://{}{tarball_path}", req.authority),
                    "shasum": p.shasum,
                    "integrity": p.integrity,
                },
            }},
        });
        return reply(200, "application/json", doc.to_string());
    }
    if req.path == tarball_path {
        return reply(200, "application/octet-stream", p.tarball.clone());
    }
    not_found()
}
