//! The one order in which every driver takes a session's outputs.
//!
//! After any input (`handle_input`, `handle_timeout`, `handle_eof`, an
//! application call), a driver takes what the session has for it:
//!
//! 1. bytes to send ([`Session::poll_transmit`]), while its own output has
//!    room;
//! 2. events ([`Session::poll_event`]), one at a time: handling one may feed
//!    the session again (a decision, a body chunk);
//! 3. its own work that feeds the session (answers from other threads, body
//!    chunks), if any;
//!
//! again from 1 until a pass moves nothing, and only then
//! 4. the next deadline ([`Session::poll_timeout`]).
//!
//! Transmit comes first so that a reply is on its way before the
//! application hears of the command it answers; the deadline comes last
//! because every step before may move it. [`drain`] is that loop, and the
//! runtimes, the simulation harness and the tests all use it.

use std::time::Instant;

/// The outputs of a sans-IO session.
pub trait Session {
    /// What the session tells its application.
    type Event;

    /// Appends bytes to send to `buf`; returns how many.
    fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize;

    /// The next event, if any.
    #[must_use]
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// When `handle_timeout` must be called next, if ever.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;
}

/// Takes everything `session` has, in the order of the [module
/// docs](self): bytes into `out` while it holds fewer than `max_out`
/// octets, each event to `on_event`, then `feed` for the driver's own work
/// (true if it fed the session anything), until nothing moves. Returns the
/// next deadline. Both callbacks get `out` too: a driver may have to
/// discard what is unsent when the session closes, or write as it feeds.
#[must_use = "the next deadline"]
pub fn drain<S: Session>(
    session: &mut S,
    out: &mut Vec<u8>,
    max_out: usize,
    mut on_event: impl FnMut(&mut S, &mut Vec<u8>, S::Event),
    mut feed: impl FnMut(&mut S, &mut Vec<u8>) -> bool,
) -> Option<Instant> {
    loop {
        let mut moved = out.len() < max_out && session.poll_transmit(out) > 0;
        while let Some(event) = session.poll_event() {
            moved = true;
            on_event(session, out, event);
        }
        moved |= feed(session, out);
        if !moved {
            return session.poll_timeout();
        }
    }
}

macro_rules! session_outputs {
    ($session:ty, $event:ty) => {
        impl Session for $session {
            type Event = $event;

            fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
                <$session>::poll_transmit(self, buf)
            }

            fn poll_event(&mut self) -> Option<$event> {
                <$session>::poll_event(self)
            }

            fn poll_timeout(&self) -> Option<Instant> {
                <$session>::poll_timeout(self)
            }
        }
    };
}

session_outputs!(crate::server::ServerSession, crate::server::Event);
session_outputs!(crate::client::ClientSession, crate::client::Event);
