//! A server that accepts every message and discards it (or keeps it in a
//! maildir): `smol-sink --listen 127.0.0.1:2525`; see `--help`.

use std::io::Write;
use std::time::Duration;

use petrel_runtime_common::cli;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() {
    let (_args, serve, handler) = cli::sink_args_or_exit("smol-sink");
    // Registered before serving, so that a signal right after `listening
    // on` is never the default (fatal) one.
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("smol-sink: cannot install signal handlers: {error}");
            std::process::exit(1);
        }
    };
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = stop.try_send(());
        }
    });
    smol::block_on(async {
        let server = match petrel_smol::serve(serve, handler.clone()).await {
            Ok(server) => server,
            Err(error) => {
                eprintln!("smol-sink: {error}");
                std::process::exit(1);
            }
        };
        for addr in server.local_addrs() {
            println!("listening on {addr}");
        }
        let _ = std::io::stdout().flush();
        let _ = stopped.recv().await;
        server.shutdown(Duration::from_secs(2)).await;
    });
    println!("{}", handler.summary());
}
