//! A server that accepts every message and discards it (or keeps it in a
//! maildir): `tokio-sink --listen 127.0.0.1:2525`; see `--help`.

use std::io::Write;
use std::time::Duration;

use petrel_runtime_common::cli;
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() {
    let (_args, serve, handler) = cli::sink_args_or_exit("tokio-sink");
    // Before anything is announced, so that an early signal is handled too.
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("tokio-sink: cannot install signal handlers");
        std::process::exit(1);
    };
    let server = match petrel_tokio::serve(serve, handler.clone()).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("tokio-sink: {error}");
            std::process::exit(1);
        }
    };
    for addr in server.local_addrs() {
        println!("listening on {addr}");
    }
    let _ = std::io::stdout().flush();
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    server.shutdown(Duration::from_secs(2)).await;
    println!("{}", handler.summary());
}
