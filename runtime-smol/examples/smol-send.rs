//! Delivers generated messages over concurrent, reused connections:
//! `smol-send --to 127.0.0.1:2525 --count N --concurrency M --size BYTES`.

use std::sync::Arc;

use petrel_runtime_common::cli::{self, SendTally};
use petrel_smol::DeliverOptions;
use smol::Executor;

fn main() {
    let (args, config) = cli::send_args_or_exit("smol-send");
    let (addr, plan) = match args.addr().and_then(|addr| Ok((addr, args.plan()?))) {
        Ok(planned) => planned,
        Err(error) => {
            eprintln!("smol-send: {error}");
            std::process::exit(2);
        }
    };
    let tally = Arc::new(SendTally::default());
    // One executor thread per core, as the sink has: TLS is CPU-bound.
    let executor = Executor::new();
    let tasks: Vec<_> = plan
        .into_iter()
        .map(|messages| {
            let (config, tally, name) =
                (config.clone(), tally.clone(), args.server_name().to_owned());
            executor.spawn(async move {
                let options = DeliverOptions::default();
                let report = petrel_smol::deliver(addr, &name, config, messages, &options).await;
                for finished in &report.finished {
                    tally.add(finished);
                }
            })
        })
        .collect();
    let (done, finished) = smol::channel::bounded::<()>(1);
    let helpers = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    std::thread::scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(|| smol::block_on(executor.run(finished.recv())));
        }
        smol::block_on(executor.run(async {
            for task in tasks {
                task.await;
            }
        }));
        done.close();
    });
    println!("{}", tally.summary());
}
