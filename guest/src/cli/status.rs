//! `bottle-guest status`: print the running init's state.

use std::path::PathBuf;

use clap::Args;

use crate::status::{self, client};

/// Options of `bottle-guest status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Status socket path.
    #[arg(long, env = status::SOCKET_ENV, default_value = status::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// Print the status; an error when the init is not running.
pub fn run(args: StatusArgs) -> Result<i32, client::StatusError> {
    if args.json {
        let raw = client::fetch_raw(&args.socket)?;
        print!("{raw}");
    } else {
        print!("{}", client::render(&client::fetch(&args.socket)?));
    }
    Ok(0)
}
