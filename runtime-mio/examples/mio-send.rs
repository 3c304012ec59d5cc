//! Delivers `--count` generated messages over `--concurrency` connections
//! and prints `delivered=D transient=T permanent=P tls=X plaintext=Y`.
//! The connections are shared out among one event loop per core. Flags:
//! see `SendArgs::USAGE` in petrel-runtime-common's `cli`; the same for
//! every runtime's send.
//!
//! ```sh
//! cargo run --release -p petrel-mio --example mio-send -- --to 127.0.0.1:2525 --count 1000 --concurrency 10
//! ```

use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::thread;

use petrel_mio::{Batch, DeliverOptions};
use petrel_runtime_common::cli::{self, SendTally};

fn main() -> ExitCode {
    let (args, config) = cli::send_args_or_exit("mio-send");
    let (addr, plan) = match args.addr().and_then(|addr| Ok((addr, args.plan()?))) {
        Ok(planned) => planned,
        Err(error) => {
            eprintln!("mio-send: {error}");
            return ExitCode::from(2);
        }
    };
    let loops = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let mut shares: Vec<Vec<Batch>> = (0..loops).map(|_| Vec::new()).collect();
    for (n, messages) in plan.into_iter().enumerate() {
        let batch = Batch {
            addr,
            server_name: args.server_name().to_owned(),
            config: config.clone(),
            messages,
        };
        if let Some(share) = shares.get_mut(n % loops) {
            share.push(batch);
        }
    }
    let (tally, options) = (SendTally::default(), DeliverOptions::default());
    let started: std::io::Result<()> = thread::scope(|scope| {
        for share in shares.into_iter().filter(|share| !share.is_empty()) {
            let (tally, options) = (&tally, &options);
            thread::Builder::new().spawn_scoped(scope, move || {
                for report in petrel_mio::deliver_many(share, options) {
                    report
                        .finished
                        .iter()
                        .for_each(|finished| tally.add(finished));
                }
            })?;
        }
        Ok(())
    });
    if let Err(error) = started {
        eprintln!("mio-send: cannot start an event loop thread: {error}");
        return ExitCode::FAILURE;
    }
    println!("{}", tally.summary());
    ExitCode::SUCCESS
}
