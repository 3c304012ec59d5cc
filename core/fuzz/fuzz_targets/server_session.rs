//! A whole server session fed arbitrary input in arbitrary pieces, with
//! decisions accepted or refused by the input itself. Checks the session
//! never panics and that its buffers stay bounded.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use petrel_core::server::{Event, ServerConfig, ServerSession};
use petrel_core::wire::reply::Reply;

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let mut config = ServerConfig::new("fuzz.test");
    config.limits.max_message_size = 4096;
    let mut session = ServerSession::new(Arc::new(config), now);
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&control, tail)) = rest.split_first() {
        let len = usize::from(control % 64).min(tail.len());
        let (piece, tail) = tail.split_at(len);
        rest = tail;
        if session.wants_input() {
            session.handle_input(now, piece);
        }
        loop {
            out.clear();
            let sent = session.poll_transmit(&mut out);
            let mut polled = false;
            while let Some(event) = session.poll_event() {
                polled = true;
                if matches!(event, Event::Mail { .. } | Event::Rcpt { .. } | Event::MessageEnd { .. }) {
                    let _ = if control & 0x80 == 0 {
                        session.accept(now)
                    } else {
                        session.respond(now, Reply::new(550, None, "no"))
                    };
                }
            }
            if sent == 0 && !polled {
                break;
            }
        }
        if control & 0x40 != 0 {
            now += Duration::from_secs(400);
            session.handle_timeout(now);
        }
    }
    session.handle_eof(now);
    while session.poll_event().is_some() {}
});
