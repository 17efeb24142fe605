//! `bottle-guest` entry point: parse the command line and call the library.

fn main() {
    let cli = bottle_guest::cli::Cli::parse_for_pid();
    bottle_guest::init::early_log_env(&bottle_guest::sys::real::RealSys);
    bottle_guest::logging::init(cli.log_format);
    match bottle_guest::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("bottle-guest: {e:#}");
            std::process::exit(2);
        }
    }
}
