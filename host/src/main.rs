//! `bottle-host` entry point: parse the command line and call the library.

use clap::Parser;

fn main() {
    let cli = bottle_host::cli::Cli::parse();
    bottle_host::logging::init(cli.log_format);
    match bottle_host::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("bottle-host: {e:#}");
            }
            std::process::exit(2);
        }
    }
}
