//! A loop that fails to accept for want of descriptors tries again by
//! itself, rather than waiting for another connection's readiness. Alone in
//! its own test binary: it exhausts the process's descriptors.
#![cfg(test)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use petrel_runtime_common::cli::{SinkArgs, SinkHandler};

/// The process's descriptor limit for this test: low, so that exhausting
/// it is cheap and certain whatever the machine's own limit.
const DESCRIPTORS: u64 = 256;

/// Lowers the soft limit on open descriptors to `DESCRIPTORS`.
fn lower_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer to a
    // local; setrlimit reads one. Neither keeps the pointer.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0, "getrlimit");
    limit.rlim_cur = DESCRIPTORS.min(limit.rlim_max);
    // SAFETY: as above.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(set, 0, "setrlimit");
}

#[test]
fn the_backlog_is_accepted_once_descriptors_are_free_again() {
    lower_descriptor_limit();
    let config = SinkArgs::parse(
        ["--listen", "127.0.0.1:0", "--tls-engine", "none"]
            .into_iter()
            .map(str::to_owned),
    )
    .unwrap()
    .serve_config()
    .unwrap();
    let server = petrel_mio::serve(config, Arc::new(SinkHandler::default())).unwrap();
    let addr = server.local_addrs()[0];
    let mut hogs = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        hogs.push(file);
    }
    assert!(
        !hogs.is_empty(),
        "the descriptors were exhausted before the test began"
    );
    // Room for the client's socket only: the server's accept fails.
    hogs.pop();
    let client = TcpStream::connect(addr).unwrap();
    // Not timed: a loop that has not tried to accept yet simply succeeds
    // later, and the test proves less, not something false.
    thread::sleep(Duration::from_millis(200));
    // No other connection comes to make the listener ready again.
    hogs.truncate(hogs.len().saturating_sub(16));
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut greeting = String::new();
    let read = BufReader::new(&client).read_line(&mut greeting);
    drop(hogs);
    assert!(read.is_ok(), "no greeting: {read:?}");
    assert!(greeting.starts_with("220 "), "{greeting:?}");
    drop(client);
    server.shutdown(Duration::from_secs(5));
}
