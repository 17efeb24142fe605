//! A PEP 503 simple index serving one small pure-Python wheel built here
//! (`bottlehello`: one module, `METADATA`, `WHEEL`, `RECORD` with sha256
//! digests), for `pip install --index-url https://pypi.bottle.test:PORT/simple/`.

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use super::{not_found, reply, Req};

/// The project on the index.
pub const NAME: &str = "bottlehello";
/// Its only version.
pub const VERSION: &str = "1.0.0";
/// What `bottlehello.GREETING` holds.
pub const GREETING: &str = "hello from the stand-in index";

/// A built wheel.
#[derive(Clone, Debug)]
pub struct Wheel {
    /// `NAME-VERSION-py3-none-any.whl`.
    pub filename: String,
    /// The zip.
    pub bytes: Bytes,
    /// Its sha256, hex.
    pub sha256: String,
}

fn sha256(data: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, data)
}

/// Build the `bottlehello` wheel.
pub fn wheel() -> Wheel {
    let dist = format!("{NAME}-{VERSION}.dist-info");
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            format!("{NAME}/__init__.py"),
            format!("GREETING = {GREETING:?}\n").into_bytes(),
        ),
        (
            format!("{dist}/METADATA"),
            format!(
                "Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n\
                 Summary: A stand-in package for bot-bottle's tests\n"
            )
            .into_bytes(),
        ),
        (
            format!("{dist}/WHEEL"),
            b"Wheel-Version: 1.0\nGenerator: bottle-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_vec(),
        ),
    ];
    let mut record = String::new();
    for (name, data) in &files {
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha256(data).as_ref());
        record.push_str(&format!("{name},sha256={digest},{}\n", data.len()));
    }
    record.push_str(&format!("{dist}/RECORD,,\n"));
    files.push((format!("{dist}/RECORD"), record.into_bytes()));
    let bytes = super::archive::zip(&files);
    Wheel {
        filename: format!("{NAME}-{VERSION}-py3-none-any.whl"),
        sha256: hex(sha256(&bytes).as_ref()),
        bytes: Bytes::from(bytes),
    }
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Answer one request.
pub fn serve(w: &Wheel, req: &Req) -> Response<Full<Bytes>> {
    if req.method != "GET" && req.method != "HEAD" {
        return reply(405, "text/plain", "read-only index\n");
    }
    let html = |body: String| {
        reply(
            200,
            "text/html",
            format!("<!DOCTYPE html>\n<html><body>\n{body}</body></html>\n"),
        )
    };
    let path = req.path.as_str();
    if path == "/simple/" || path == "/simple" {
        return html(format!("<a href=\"/simple/{NAME}/\">{NAME}</a>\n"));
    }
    if path == format!("/simple/{NAME}/") || path == format!("/simple/{NAME}") {
        return html(format!(
            "<a href=\"/files/{f}#sha256={h}\">{f}</a>\n",
            f = w.filename,
            h = w.sha256
        ));
    }
    if path == format!("/files/{}", w.filename) {
        return reply(200, "application/octet-stream", w.bytes.clone());
    }
    not_found()
}
