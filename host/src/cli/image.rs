//! `bottle-host image ls|rm|prune|pull`: the image cache under the state
//! directory (`crate::image`).

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use crate::image::bars::{human_size, Bars};
use crate::image::{self, ImageSource};

/// `bottle-host image …`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List the cached images.
    Ls {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Unpack an image into the cache (oci:, oci-archive:, docker-archive:,
    /// docker://).
    Pull {
        /// The image, as `[vm] image` takes it; relative paths from here.
        source: String,
    },
    /// Remove cached images by digest or unique prefix.
    Rm {
        /// Digests (`sha256:` optional) or prefixes of them.
        #[arg(required = true)]
        digests: Vec<String>,
    },
    /// Remove every cached image (refused while bottles run).
    Prune,
}

/// Run an `image` subcommand.
pub fn run(state: Option<&Path>, cmd: ImageCommand) -> Result<i32> {
    let state = super::state_dir(state)?;
    let mut out = std::io::stdout().lock();
    match cmd {
        ImageCommand::Ls { json } => {
            let images = image::list(&state);
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&images)?)?;
                return Ok(0);
            }
            writeln!(
                out,
                "{:<12}  {:>10}  {:<16}  SOURCE",
                "DIGEST", "SIZE", "CREATED"
            )?;
            for i in images {
                let hex = i.digest.strip_prefix("sha256:").unwrap_or(&i.digest);
                writeln!(
                    out,
                    "{:<12}  {:>10}  {:<16}  {}",
                    hex.get(..12).unwrap_or(hex),
                    human_size(i.size_bytes),
                    date(i.created),
                    i.source
                )?;
            }
        }
        ImageCommand::Pull { source } => {
            let cwd = std::env::current_dir().context("current directory")?;
            let src = ImageSource::parse(&source, &cwd)?;
            let p = image::prepare(&src, &state, &Bars::new())?;
            writeln!(out, "{}  {}", p.digest, p.root.display())?;
        }
        ImageCommand::Rm { digests } => {
            let mut failed = 0;
            for d in &digests {
                match image::remove(&state, d) {
                    Ok(removed) => writeln!(out, "removed {removed}")?,
                    Err(e) => {
                        tracing::error!("{e}");
                        failed += 1;
                    }
                }
            }
            return Ok(i32::from(failed > 0));
        }
        ImageCommand::Prune => {
            let running = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?
                .block_on(crate::launch::lifecycle::list(&state));
            if !running.is_empty() {
                bail!(
                    "{} bottle(s) running ({}); their roots may be cached images: stop them first, \
                     or remove single images with `image rm`",
                    running.len(),
                    running.join(", ")
                );
            }
            for d in image::prune(&state, &[])? {
                writeln!(out, "removed {d}")?;
            }
        }
    }
    Ok(0)
}

fn date(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .map(|t| {
            format!(
                "{}-{:02}-{:02} {:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_else(|| "?".into())
}
