//! The `roachlab` binary: parse arguments, set up tracing, run, map errors to exit codes.

use clap::Parser;

fn main() {
    let cli = roachlab::cli::Cli::parse();
    // SIGPIPE stays ignored (Rust's default) in every process: a write to a daemon's socket
    // that closed mid-request (an `up` whose daemon gave up and exited) is an error the client
    // reports, never a silent death. Only a closed stdout or stderr (`roachlab events | head`)
    // ends the CLI by SIGPIPE, as other Unix tools end: see `end_quietly_on_a_closed_pipe`.
    if !matches!(cli.command, roachlab::cli::Command::Daemon) {
        end_quietly_on_a_closed_pipe();
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

/// `println!` panics when stdout is a closed pipe (SIGPIPE being ignored, the write fails with
/// EPIPE instead of killing the process). This hook turns exactly that panic — std's
/// "failed printing to stdout/stderr: Broken pipe" — into the default action of SIGPIPE, so
/// `roachlab events | head` ends as `cat | head` does (killed by SIGPIPE, no message); every
/// other panic goes to the default hook. Sockets are unaffected: a write to a closed socket
/// is still an `EPIPE` error.
fn end_quietly_on_a_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message =
            payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied()).unwrap_or("");
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            use nix::sys::signal::{raise, signal, SigHandler, Signal};
            // SAFETY: restoring a signal's default disposition; the process ends at once.
            let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
            let _ = raise(Signal::SIGPIPE);
            std::process::exit(141);
        }
        default(info)
    }));
}
