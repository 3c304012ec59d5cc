//! The server session's input: one connection (EHLO, MAIL, RCPT, the body
//! by DATA or BDAT, QUIT) fed in 64 KiB reads, every decision accepted at
//! once (`petrel_benches::server`). Throughput is body octets, so the
//! 10 MB cases read as the session's DATA rate (the aim, issue 10: at
//! least 1 GB/s on one core) and the 1 KB ones as whole connections.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use petrel_benches::body;
use petrel_benches::server::{self, BodyCommand, Connection};

fn bodies(c: &mut Criterion) {
    let config = server::config();
    for (size, label) in [(body::SMALL, "1KB"), (body::LARGE, "10MB")] {
        let text = body::text(size);
        let mut group = c.benchmark_group(format!("server_session/{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        if size == body::LARGE {
            // Each iteration takes milliseconds: criterion's least.
            group.sample_size(10);
        }
        for command in [BodyCommand::Data, BodyCommand::Bdat] {
            let connection = Connection::new(command, &text, 1);
            let id = BenchmarkId::from_parameter(format!("{command:?}").to_lowercase());
            group.bench_with_input(id, &connection, |b, connection| {
                b.iter(|| {
                    let outcome = server::run(&config, connection);
                    assert!(outcome.is_complete(connection), "{outcome:?}");
                })
            });
        }
        group.finish();
    }
}

fn recipients(c: &mut Criterion) {
    let config = server::config();
    let mut group = c.benchmark_group("server_session/100_recipients");
    // Recipients per second: MAIL, 100 RCPTs and DATA in one pipelined
    // group, a 1 KB body.
    group.throughput(Throughput::Elements(100));
    let connection = Connection::new(BodyCommand::Data, &body::text(body::SMALL), 100);
    group.bench_function("data", |b| {
        b.iter(|| {
            let outcome = server::run(&config, &connection);
            assert!(outcome.is_complete(&connection), "{outcome:?}");
        })
    });
    group.finish();
}

criterion_group!(benches, bodies, recipients);
criterion_main!(benches);
