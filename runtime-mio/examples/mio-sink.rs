//! A server that accepts every message and discards it (or keeps it in
//! `--maildir`), on mio event loops. Flags: see `SinkArgs::USAGE` in
//! petrel-runtime-common's `cli`; the same for every runtime's sink.
//!
//! ```sh
//! cargo run --release -p petrel-mio --example mio-sink -- --listen 127.0.0.1:2525
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use petrel_runtime_common::cli;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    let (_args, serve, handler) = cli::sink_args_or_exit("mio-sink");
    // Before anything is printed: a signal sent as soon as the address is
    // known must be caught, not kill the process.
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("mio-sink: cannot catch signals: {error}");
            return ExitCode::FAILURE;
        }
    };
    let server = match petrel_mio::serve(serve, handler.clone()) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("mio-sink: {error}");
            return ExitCode::FAILURE;
        }
    };
    for addr in server.local_addrs() {
        println!("listening on {addr}");
    }
    let _ = std::io::stdout().flush();
    let _ = signals.forever().next();
    server.shutdown(Duration::from_secs(2));
    println!("{}", handler.summary());
    ExitCode::SUCCESS
}
