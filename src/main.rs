//! The `roachlab` binary: parse arguments, set up tracing, run, map errors to exit codes.

use clap::Parser;

fn main() {
    let cli = roachlab::cli::Cli::parse();
    if !matches!(cli.command, roachlab::cli::Command::Daemon) {
        // `roachlab events | head`: end quietly on a closed pipe, like other Unix tools. (The
        // daemon keeps Rust's default of ignoring SIGPIPE: a client hanging up must not kill it.)
        // SAFETY: restoring a signal's default disposition before any thread starts.
        let _ = unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) };
    }
    // The daemon's stderr is its log file; the CLI only shows warnings unless RUST_LOG says more.
    let default = if matches!(cli.command, roachlab::cli::Command::Daemon) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into()))
        .with_writer(std::io::stderr)
        .init();
    // The daemon and the live view (which blocks on the terminal) use the multi-thread
    // runtime; every other command is a client that mostly waits on the network, where one
    // thread costs less CPU per operation (no cross-thread wake-ups).
    let multi = matches!(cli.command, roachlab::cli::Command::Daemon | roachlab::cli::Command::Watch { .. });
    let built = if multi { tokio::runtime::Runtime::new() } else { tokio::runtime::Builder::new_current_thread().enable_all().build() };
    let runtime = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(roachlab::cli::run(cli)) {
        Ok(code) => code,
        Err(e @ roachlab::Error::StoppedWaiting { .. }) => {
            eprintln!("{e}");
            130
        }
        // Errors quote engines and servers: their control characters are escaped.
        Err(e) => {
            eprintln!("error: {}", roachlab::events::printable(&e.to_string()));
            1
        }
    };
    std::process::exit(code);
}
