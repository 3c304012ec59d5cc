//! Command and reply parsing: Petrel's parsers against smtp-proto's on the
//! same octets (`petrel_benches::wire`), in bytes per second so the ratio
//! reads directly. The aim (issue 10) is Petrel at twice smtp-proto's rate.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use petrel_benches::wire;

fn commands(c: &mut Criterion) {
    let limit = wire::command_line_limit();
    let mut group = c.benchmark_group("parse/commands");
    group.throughput(Throughput::Bytes(wire::COMMANDS.len() as u64));
    group.bench_function("petrel", |b| {
        b.iter(|| {
            let parsed = wire::petrel_commands(black_box(wire::COMMANDS), limit);
            assert_eq!(parsed, Ok(wire::COMMAND_COUNT));
        })
    });
    group.bench_function("smtp-proto", |b| {
        b.iter(|| {
            let parsed = wire::smtp_proto_commands(black_box(wire::COMMANDS));
            assert_eq!(parsed, Ok(wire::COMMAND_COUNT));
        })
    });
    group.finish();
}

fn replies(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse/replies");
    group.throughput(Throughput::Bytes(wire::REPLIES.len() as u64));
    group.bench_function("petrel", |b| {
        b.iter(|| {
            let parsed = wire::petrel_replies(black_box(wire::REPLIES));
            assert_eq!(parsed, Ok(wire::REPLY_SUMMARY));
        })
    });
    group.bench_function("smtp-proto", |b| {
        b.iter(|| {
            let parsed = wire::smtp_proto_replies(black_box(wire::REPLIES));
            assert_eq!(parsed, Ok(wire::REPLY_SUMMARY));
        })
    });
    group.finish();
}

criterion_group!(benches, commands, replies);
criterion_main!(benches);
