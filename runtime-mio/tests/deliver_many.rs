//! What only petrel-mio has: `deliver_many`, several outbound connections
//! on one event loop. Everything the runtimes share is in the shared suite
//! (tests/suite.rs).
#![cfg(test)]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use petrel_core::client::Delivery;
use petrel_mio::{deliver_many, Batch, DeliverOptions};
use petrel_runtime_common::cli::{SendArgs, SinkArgs, SinkHandler};

fn args(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

/// Several connections on one loop, one of which cannot connect, and a
/// source address: every batch gets its own complete report.
#[test]
fn many_connections_on_one_loop() {
    let handler = Arc::new(SinkHandler::default());
    let config = SinkArgs::parse(args("--listen 127.0.0.1:0 --tls-engine none"))
        .unwrap()
        .serve_config()
        .unwrap();
    let server = petrel_mio::serve(config, handler.clone()).unwrap();
    let addr = server.local_addrs()[0];
    let refused = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let send = SendArgs::parse(args("--to 127.0.0.1:25 --tls no")).unwrap();
    let batches = [addr, refused, addr, addr]
        .into_iter()
        .map(|to| Batch {
            addr: to,
            server_name: "localhost".into(),
            config: Arc::new(send.client_config().unwrap()),
            messages: (0..4).map(|n| send.message(n).unwrap()).collect(),
        })
        .collect();
    let options = DeliverOptions {
        source: Some("127.0.0.1".parse().unwrap()),
        ..DeliverOptions::default()
    };
    let reports = deliver_many(batches, &options);
    assert_eq!(reports.len(), 4);
    for (n, report) in reports.iter().enumerate() {
        assert_eq!(report.finished.len(), 4, "{report:?}");
        let expected = if n == 1 {
            Delivery::Transient
        } else {
            Delivery::Delivered
        };
        for outcome in report.finished.iter().flat_map(|f| &f.outcomes) {
            assert_eq!(outcome.delivery, expected, "batch {n}: {:?}", outcome.reply);
        }
    }
    server.shutdown(Duration::from_secs(5));
    assert_eq!(
        handler.summary(),
        "accepted=12 rejected=0 connections=3 recipients=12"
    );
}
