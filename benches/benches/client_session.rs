//! The client session: one delivery (EHLO, MAIL, RCPT, the body by DATA or
//! BDAT, QUIT), the server's replies canned and the body streamed in
//! 64 KiB reads (`petrel_benches::client`). Throughput is body octets, as
//! in `server_session`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use petrel_benches::body;
use petrel_benches::client::{self, Script};

fn bodies(c: &mut Criterion) {
    let config = client::config();
    for (size, label) in [(body::SMALL, "1KB"), (body::LARGE, "10MB")] {
        let text = body::text(size);
        let mut group = c.benchmark_group(format!("client_session/{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        if size == body::LARGE {
            group.sample_size(10);
        }
        for (chunking, name) in [(false, "data"), (true, "bdat")] {
            let script = Script::new(text.clone(), 1, chunking);
            group.bench_with_input(BenchmarkId::from_parameter(name), &script, |b, script| {
                b.iter(|| {
                    let outcome = client::run(&config, script);
                    assert!(outcome.is_complete(script), "{outcome:?}");
                })
            });
        }
        group.finish();
    }
}

fn recipients(c: &mut Criterion) {
    let config = client::config();
    let mut group = c.benchmark_group("client_session/100_recipients");
    group.throughput(Throughput::Elements(100));
    let script = Script::new(body::text(body::SMALL), 100, false);
    group.bench_function("data", |b| {
        b.iter(|| {
            let outcome = client::run(&config, &script);
            assert!(outcome.is_complete(&script), "{outcome:?}");
        })
    });
    group.finish();
}

criterion_group!(benches, bodies, recipients);
criterion_main!(benches);
