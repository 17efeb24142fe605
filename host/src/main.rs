//! `bottle-host` entry point: parse the command line and call the library.

use clap::Parser;

/// mimalloc rather than glibc's allocator: the proxy allocates and frees
/// many small buffers per request (docs/performance.md, egress proxy).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = bottle_host::cli::Cli::parse();
    let default = match cli.command {
        bottle_host::cli::Command::Launch { .. } => bottle_host::logging::LAUNCH_FILTER,
        _ => bottle_host::logging::DEFAULT_FILTER,
    };
    bottle_host::logging::init(cli.log_format, default);
    bottle_host::accept::raise_descriptor_limit();
    // A background launch's log gets what is still in its pipe, even
    // after a panic (`caplog::run_main`).
    let code = bottle_host::launch::caplog::run_main(|| match bottle_host::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("bottle-host: {e:#}");
            }
            2
        }
    });
    std::process::exit(code);
}
