//! One inbound connection, whatever the runtime: the session, the
//! application's handler, and decisions that come back from anywhere.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use petrel_core::drive;
use petrel_core::server::{Event, ServerConfig, ServerSession};
use petrel_core::wire::reply::{EnhancedCode, Reply};

/// Who a connection is with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Unique per runtime instance.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// Our address.
    pub local: SocketAddr,
}

/// The application: what it does with each event of each connection.
///
/// Called on the runtime's threads; keep it quick. A decision can be taken
/// later and from any thread: keep the [`Decision`] and answer it when
/// ready (the MTA answers the end of a message after its spool fsync).
pub trait Handler: Send + Sync + 'static {
    /// One event. `decision` is `Some` for `Mail`, `Rcpt` and `MessageEnd`.
    fn on_event(&self, conn: &ConnectionInfo, event: &Event, decision: Option<Decision>);

    /// An [`Event::Body`]: a piece of a message's body. The connection
    /// reads nothing more from its peer while `hold` is kept, so an
    /// application that passes the body on to something that can fall
    /// behind (the MTA's spool writer) keeps it until that has taken the
    /// piece, and what waits in memory stays bounded. By default the
    /// piece goes to [`on_event`](Self::on_event) and the hold is let go.
    fn on_body(&self, conn: &ConnectionInfo, event: &Event, hold: Hold) {
        drop(hold);
        self.on_event(conn, event, None);
    }
}

/// How an application answers a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The usual positive reply.
    Accept,
    /// This reply (2xx accepts with its text, 4xx/5xx refuse).
    Respond(Reply),
}

struct Slot {
    answer: Mutex<Option<Answer>>,
    /// The [`Hold`]s alive: while there are any, no input is read.
    holds: AtomicUsize,
    /// The handler is running on the connection's own thread: an answer
    /// given now is picked up without a wake-up.
    in_handler: AtomicBool,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").finish_non_exhaustive()
    }
}

/// A decision the session waits for. Answer it exactly once; dropping it
/// unanswered answers `451 4.3.0`, so a forgotten decision can never hang
/// a connection.
#[derive(Debug)]
pub struct Decision {
    slot: Option<Arc<Slot>>,
}

impl Decision {
    /// Accepts with the usual reply.
    pub fn accept(mut self) {
        self.answer(Answer::Accept);
    }

    /// Answers with `reply`.
    pub fn respond(mut self, reply: Reply) {
        self.answer(Answer::Respond(reply));
    }

    fn answer(&mut self, answer: Answer) {
        let Some(slot) = self.slot.take() else { return };
        *slot.answer.lock().unwrap_or_else(PoisonError::into_inner) = Some(answer);
        if !slot.in_handler.load(Ordering::SeqCst) {
            (slot.wake)();
        }
    }
}

/// Keeps the connection from reading its peer while it lives; see
/// [`Handler::on_body`]. Dropped from another thread, it wakes the
/// connection.
#[derive(Debug)]
pub struct Hold {
    slot: Arc<Slot>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        // The last one gone: reading resumes. Within the handler, on the
        // connection's own thread, the runtime looks again anyway.
        if self.slot.holds.fetch_sub(1, Ordering::SeqCst) == 1
            && !self.slot.in_handler.load(Ordering::SeqCst)
        {
            (self.slot.wake)();
        }
    }
}

impl Drop for Decision {
    fn drop(&mut self) {
        let reply = Reply::new(
            451,
            Some(EnhancedCode::new(4, 3, 0)),
            "Error: internal decision lost",
        );
        self.answer(Answer::Respond(reply));
    }
}

/// One server connection: the runtime feeds it bytes, time and wake-ups,
/// and writes out what [`output`](Self::output) holds.
pub struct ServerConn {
    session: ServerSession,
    handler: Arc<dyn Handler>,
    info: ConnectionInfo,
    slot: Arc<Slot>,
    out: Vec<u8>,
}

impl std::fmt::Debug for ServerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConn")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl ServerConn {
    /// A new connection; `wake` must make the runtime call
    /// [`handle_wake`](Self::handle_wake) soon, from the connection's own
    /// thread or task.
    pub fn new(
        config: Arc<ServerConfig>,
        info: ConnectionInfo,
        handler: Arc<dyn Handler>,
        now: Instant,
        wake: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        let mut conn = Self {
            session: ServerSession::new(config, now),
            handler,
            info,
            slot: Arc::new(Slot {
                answer: Mutex::new(None),
                holds: AtomicUsize::new(0),
                in_handler: AtomicBool::new(false),
                wake,
            }),
            out: Vec::new(),
        };
        conn.drain(now);
        conn
    }

    /// Bytes read from the socket.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.session.handle_input(now, data);
        self.drain(now);
    }

    /// The peer closed its side.
    pub fn handle_eof(&mut self, now: Instant) {
        self.session.handle_eof(now);
        self.drain(now);
    }

    /// The instant from `poll_timeout` has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
        self.drain(now);
    }

    /// The server stops waiting for this connection: the session says
    /// `421` and ends, and the handler hears of it.
    pub fn handle_shutdown(&mut self, now: Instant) {
        self.session.shutdown(now);
        self.drain(now);
    }

    /// A decision may have been answered from elsewhere.
    pub fn handle_wake(&mut self, now: Instant) {
        self.drain(now);
    }

    /// Bytes to write; the runtime removes what it wrote.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Whether to read from the socket now: when the session wants input,
    /// every reply so far has been written and the handler holds no piece
    /// of the body ([`Hold`]). A server connection never reads while
    /// output is pending, so a peer that does not read its replies stops
    /// being read (and what is held for it stays bounded by what one read
    /// can produce), as Postfix's smtpd does.
    pub fn wants_input(&self) -> bool {
        self.session.wants_input()
            && self.out.is_empty()
            && self.slot.holds.load(Ordering::SeqCst) == 0
    }

    /// When to call `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    /// The session is over; close the socket once `output` is written.
    pub fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// Who this connection is with.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The driver loop of the sans-IO contract, in core's one order
    /// (`petrel_core::drive`): transmit, events to the handler, answers
    /// that came from other threads, until nothing moves.
    fn drain(&mut self, now: Instant) {
        let (handler, info, slot) = (&self.handler, &self.info, &self.slot);
        let on_event = |session: &mut ServerSession, _: &mut Vec<u8>, event: Event| {
            let decision = matches!(
                event,
                Event::Mail { .. } | Event::Rcpt { .. } | Event::MessageEnd { .. }
            )
            .then(|| Decision {
                slot: Some(slot.clone()),
            });
            slot.in_handler.store(true, Ordering::SeqCst);
            match event {
                Event::Body(_) => {
                    slot.holds.fetch_add(1, Ordering::SeqCst);
                    let hold = Hold { slot: slot.clone() };
                    handler.on_body(info, &event, hold);
                }
                _ => handler.on_event(info, &event, decision),
            }
            slot.in_handler.store(false, Ordering::SeqCst);
            apply_answer(slot, session, now);
        };
        let feed = |session: &mut ServerSession, _: &mut Vec<u8>| apply_answer(slot, session, now);
        let _ = drive::drain(&mut self.session, &mut self.out, usize::MAX, on_event, feed);
    }
}

/// Gives the session the answer in `slot`, if one has arrived.
fn apply_answer(slot: &Slot, session: &mut ServerSession, now: Instant) -> bool {
    let answer = slot
        .answer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let Some(answer) = answer else { return false };
    // A decision for a session that closed meanwhile is moot: the reply
    // was never sent, and the handler saw the abort event.
    let _ = match answer {
        Answer::Accept => session.accept(now),
        Answer::Respond(reply) => session.respond(now, reply),
    };
    true
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;

    use super::*;

    /// Accepts at once, except MessageEnd, which it hands to another thread.
    struct Later(mpsc::Sender<Decision>);

    impl Handler for Later {
        fn on_event(&self, _: &ConnectionInfo, event: &Event, decision: Option<Decision>) {
            match (event, decision) {
                (Event::MessageEnd { .. }, Some(d)) => self.0.send(d).unwrap(),
                (_, Some(d)) => d.accept(),
                _ => {}
            }
        }
    }

    /// A connection to `handler`, and how many times it has been woken.
    fn connection(handler: Arc<dyn Handler>) -> (ServerConn, Arc<AtomicUsize>) {
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = wakes.clone();
        let info = ConnectionInfo {
            id: 1,
            peer: "127.0.0.1:1".parse().unwrap(),
            local: "127.0.0.1:2".parse().unwrap(),
        };
        let conn = ServerConn::new(
            Arc::new(ServerConfig::new("mx")),
            info,
            handler,
            Instant::now(),
            Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
        (conn, wakes)
    }

    /// A transaction up to part of its body.
    const INTO_THE_BODY: &[u8] =
        b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nsome body\r\n";

    #[test]
    fn decisions_from_other_threads_wake_the_connection() {
        let (tx, rx) = mpsc::channel();
        let (mut conn, wakes) = connection(Arc::new(Later(tx)));
        let now = Instant::now();
        conn.handle_input(
            now,
            b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n",
        );
        assert_eq!(
            wakes.load(Ordering::SeqCst),
            0,
            "inline answers need no wake-up"
        );
        let decision = rx.recv().unwrap();
        std::thread::spawn(move || decision.accept())
            .join()
            .unwrap();
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        conn.handle_wake(now);
        let out = String::from_utf8_lossy(conn.output()).into_owned();
        assert!(out.ends_with("250 2.0.0 Ok: queued\r\n"), "{out}");
    }

    #[test]
    fn a_kept_hold_stops_reading_until_it_is_let_go() {
        /// Accepts every decision, keeps every hold.
        struct Keep(Mutex<Vec<Hold>>);
        impl Handler for Keep {
            fn on_event(&self, _: &ConnectionInfo, _: &Event, decision: Option<Decision>) {
                if let Some(d) = decision {
                    d.accept();
                }
            }
            fn on_body(&self, _: &ConnectionInfo, _: &Event, hold: Hold) {
                self.0.lock().unwrap().push(hold);
            }
        }
        let keep = Arc::new(Keep(Mutex::new(Vec::new())));
        let (mut conn, wakes) = connection(keep.clone());
        let now = Instant::now();
        conn.handle_input(now, INTO_THE_BODY);
        conn.output().clear();
        let mut holds = std::mem::take(&mut *keep.0.lock().unwrap());
        assert!(!conn.wants_input(), "a kept hold stops reading");
        // Let go from another thread, as the spool writer does: the last
        // one wakes the connection, and reading resumes.
        let last = holds.pop().unwrap();
        std::thread::spawn(move || drop(holds)).join().unwrap();
        assert_eq!(wakes.load(Ordering::SeqCst), 0, "one hold is still kept");
        assert!(!conn.wants_input());
        std::thread::spawn(move || drop(last)).join().unwrap();
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        conn.handle_wake(now);
        assert!(conn.wants_input());
    }

    #[test]
    fn by_default_the_body_does_not_stop_reading() {
        let (tx, _rx) = mpsc::channel();
        let (mut conn, wakes) = connection(Arc::new(Later(tx)));
        conn.handle_input(Instant::now(), INTO_THE_BODY);
        conn.output().clear();
        assert!(conn.wants_input());
        assert_eq!(
            wakes.load(Ordering::SeqCst),
            0,
            "a hold let go within the handler wakes nothing"
        );
    }

    #[test]
    fn a_dropped_decision_answers_451() {
        struct Forget;
        impl Handler for Forget {
            fn on_event(&self, _: &ConnectionInfo, _: &Event, _: Option<Decision>) {}
        }
        let (mut conn, _) = connection(Arc::new(Forget));
        conn.handle_input(Instant::now(), b"EHLO c\r\nMAIL FROM:<a@b.c>\r\n");
        let out = String::from_utf8_lossy(conn.output()).into_owned();
        assert!(
            out.ends_with("451 4.3.0 Error: internal decision lost\r\n"),
            "{out}"
        );
    }
}
