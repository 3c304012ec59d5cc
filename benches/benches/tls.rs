//! The TLS engines in memory (`petrel_benches::tls`): handshakes per
//! second and bulk client-to-server bytes per second, rustls against
//! OpenSSL, TLS 1.2 and 1.3, each case a client and Petrel's server engine
//! pumped against each other.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use petrel_benches::tls::{Endpoints, Identity};
use petrel_core::tls::{TlsEngine, TlsVersion};

const ENGINES: [TlsEngine; 2] = [TlsEngine::Rustls, TlsEngine::Openssl];
const VERSIONS: [TlsVersion; 2] = [TlsVersion::Tls12, TlsVersion::Tls13];

/// What one bulk iteration sends: 1 MiB, as 16 writes of 64 KiB.
const BULK: usize = 1 << 20;

fn handshakes(c: &mut Criterion) {
    let identity = Identity::new();
    for version in VERSIONS {
        let mut group = c.benchmark_group(format!("tls/handshake/{version}"));
        group.throughput(Throughput::Elements(1));
        for engine in ENGINES {
            let endpoints = Endpoints::new(engine, version, &identity);
            group.bench_function(BenchmarkId::from_parameter(engine), |b| {
                // `connect` checks the negotiated version itself.
                b.iter(|| endpoints.connect())
            });
        }
        group.finish();
    }
}

fn bulk(c: &mut Criterion) {
    let identity = Identity::new();
    let data: Vec<u8> = (0..BULK).map(|i| (i % 251) as u8).collect();
    for version in VERSIONS {
        let mut group = c.benchmark_group(format!("tls/bulk/{version}"));
        group.throughput(Throughput::Bytes(BULK as u64));
        for engine in ENGINES {
            let mut connection = Endpoints::new(engine, version, &identity).connect();
            let mut received = Vec::with_capacity(BULK);
            // Once, outside the timing: the octets come through intact.
            connection.transfer(&data, &mut received);
            assert!(received == data, "{engine} {version} changed the data");
            group.bench_function(BenchmarkId::from_parameter(engine), |b| {
                b.iter(|| {
                    received.clear();
                    let n = connection.transfer(&data, &mut received);
                    assert_eq!(n, BULK);
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, handshakes, bulk);
criterion_main!(benches);
