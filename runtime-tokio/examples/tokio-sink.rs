//! A server that accepts every message and discards it (or keeps it in a
//! maildir): `tokio-sink --listen 127.0.0.1:2525`; see `--help`.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use petrel_runtime_common::cli::{self, SinkHandler};
use petrel_runtime_common::listen::ServeConfig;
use tokio::signal::unix::{signal, SignalKind};

fn main() {
    let (args, serve, handler) = cli::sink_args_or_exit("tokio-sink");
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.get());
    }
    match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(run(serve, handler)),
        Err(error) => {
            eprintln!("tokio-sink: cannot start the runtime: {error}");
            std::process::exit(1);
        }
    }
}

async fn run(serve: ServeConfig, handler: Arc<SinkHandler>) {
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
