//! Delivers generated messages over concurrent, reused connections:
//! `tokio-send --to 127.0.0.1:2525 --count N --concurrency M --size BYTES`.

use std::sync::Arc;

use petrel_runtime_common::cli::{self, SendTally};
use petrel_tokio::DeliverOptions;

#[tokio::main]
async fn main() {
    let (args, config) = cli::send_args_or_exit("tokio-send");
    let (addr, plan) = match args.addr().and_then(|addr| Ok((addr, args.plan()?))) {
        Ok(planned) => planned,
        Err(error) => {
            eprintln!("tokio-send: {error}");
            std::process::exit(2);
        }
    };
    let tally = Arc::new(SendTally::default());
    let mut tasks = tokio::task::JoinSet::new();
    for messages in plan {
        let (config, tally, name) = (config.clone(), tally.clone(), args.server_name().to_owned());
        tasks.spawn(async move {
            let options = DeliverOptions::default();
            let report = petrel_tokio::deliver(addr, &name, config, messages, &options).await;
            for finished in &report.finished {
                tally.add(finished);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    println!("{}", tally.summary());
}
