//! A server session with STARTTLS and a real TLS engine (rustls or
//! OpenSSL, the fixed certificate in fixtures/), driven by the fuzz input:
//! a plaintext prelude, then the ciphertext side — a real TLS client
//! (rustls or OpenSSL, TLS 1.3 or 1.2 only, able to renegotiate) carrying
//! the input's commands, raw octets injected on the wire before, during
//! and after the handshake, close_notify, timeouts, EOF.
//!
//! Asserts what `petrel_core_fuzz::server` describes (bounded output and
//! heap, no stall, consistent events, at most one handshake, renegotiation
//! attempts within the cap) and that after the handshake nothing is read
//! as a command that the TLS client did not send over TLS (CVE-2011-0411).
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_core::server::{InjectionPolicy, ServerConfig};
use petrel_core_fuzz::ops::Ops;
use petrel_core_fuzz::server::{small_limits, Harness};
use petrel_core_fuzz::tls::server_tls;

fuzz_target!(|data: &[u8]| {
    let mut ops = Ops::new(data, 1024);
    let flags = ops.byte();
    let mut config = ServerConfig::new("fuzz.test");
    config.limits = small_limits();
    config.tls = Some(server_tls(
        Harness::engine(flags),
        flags & 2 != 0,
        u32::from(flags >> 2) & 3,
    ));
    config.require_tls = flags & 16 != 0;
    config.injection_policy = if flags & 32 != 0 {
        InjectionPolicy::Ignore
    } else {
        InjectionPolicy::Reject
    };
    let mut harness = Harness::new(config, false);
    harness.run(&mut ops, true);
    harness.finish();
});
