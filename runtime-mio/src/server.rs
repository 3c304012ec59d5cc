//! Serving: one event loop per core, each with its own poll, listening
//! handles, connections, deadlines and waker.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use petrel_core::server::ServerConfig;
use petrel_runtime_common::accept::AcceptError;
use petrel_runtime_common::close::{CloseStep, LingeringClose};
use petrel_runtime_common::listen::{Admission, ConnectionLimit, Gate, Permit, ServeConfig};
use petrel_runtime_common::server::{ConnectionInfo, Handler, ServerConn};
use slab::Slab;

use petrel_runtime_common::{ACCEPT_BACKOFF, READ_BUFFER};

/// The token of a loop's waker; listeners count down from below it,
/// lingering sockets count up from `LINGERING`, and connections are their
/// slab keys: none of them ever gets near another's range.
const WAKER: Token = Token(usize::MAX);

/// Where the tokens of lingering sockets start, half-way up.
const LINGERING: usize = usize::MAX / 2;

/// Reads from one connection before the others get their turn: a peer
/// sending a large body must not starve the rest of its loop.
const READ_BUDGET: usize = 8;

/// A deadline in a loop's timer heap: when, which slab key, and which
/// connection (generation) had that key then.
type Timer = Reverse<(Instant, usize, u64)>;

fn listener_token(index: usize) -> Token {
    Token(usize::MAX - 1 - index)
}

fn linger_token(key: usize) -> Token {
    Token(LINGERING + key)
}

/// A running server: all listeners bound, one event-loop thread per core.
///
/// Dropping it stops serving at once (as `shutdown` with no grace).
#[derive(Debug)]
pub struct Server {
    addrs: Vec<SocketAddr>,
    loops: Vec<LoopHandle>,
}

#[derive(Debug)]
struct LoopHandle {
    channel: Arc<LoopChannel>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Stops accepting, lets the sessions in progress finish (by QUIT, by
    /// closing, or by their own timeouts) for at most `grace`, then drops
    /// the rest. Returns when every loop thread has ended.
    pub fn shutdown(mut self, grace: Duration) {
        self.stop(Instant::now() + grace);
    }

    fn stop(&mut self, deadline: Instant) {
        for handle in &self.loops {
            let mut stop = handle
                .channel
                .stop
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // A second stop (drop after shutdown) never extends the first.
            *stop = Some(stop.map_or(deadline, |earlier| earlier.min(deadline)));
            drop(stop);
            let _ = handle.channel.waker.wake();
        }
        for handle in &mut self.loops {
            if let Some(thread) = handle.thread.take() {
                // A loop that panicked (in the application's handler) has
                // already dropped its connections: nothing left to do.
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(Instant::now());
    }
}

/// What other threads tell a loop.
#[derive(Debug)]
struct LoopChannel {
    waker: Waker,
    inbox: Mutex<Inbox>,
    /// Set by `Server::shutdown`: stop accepting now, drop what is left
    /// at this instant.
    stop: Mutex<Option<Instant>>,
    /// Connections this loop serves or has been handed (counted by their
    /// [`Load`]): the next accepted connection goes to the least loaded
    /// loop.
    load: Arc<AtomicUsize>,
}

#[derive(Debug, Default)]
struct Inbox {
    /// Connections (slab key, generation) with a decision answered from
    /// elsewhere.
    woken: Vec<(usize, u64)>,
    /// Connections another loop accepted for this one.
    arrivals: Vec<Arrival>,
    /// The loop has ended and takes no more arrivals: one handed over now
    /// would never be served, nor its place given back.
    closed: bool,
}

impl Inbox {
    fn is_empty(&self) -> bool {
        self.woken.is_empty() && self.arrivals.is_empty()
    }
}

/// An accepted connection on its way to the loop that serves it.
#[derive(Debug)]
struct Arrival {
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    /// Our address on it.
    local: SocketAddr,
    /// Its place under the server's limit, and in the serving loop's load:
    /// whatever becomes of the arrival, both are given back exactly once.
    permit: Permit,
    load: Load,
}

/// One connection counted in a loop's load, until it is dropped.
#[derive(Debug)]
struct Load(Arc<AtomicUsize>);

impl Load {
    fn count(load: &Arc<AtomicUsize>) -> Self {
        load.fetch_add(1, Ordering::SeqCst);
        Self(load.clone())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl LoopChannel {
    fn post<R>(&self, put: impl FnOnce(&mut Inbox) -> R) -> R {
        let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        // A non-empty inbox means a wake-up is already on its way, and the
        // loop takes the whole inbox at once: one syscall is enough.
        let first = inbox.is_empty();
        let result = put(&mut inbox);
        let wake = first && !inbox.is_empty();
        drop(inbox);
        if wake {
            let _ = self.waker.wake();
        }
        result
    }

    /// Hands an accepted connection to this loop, or back when the loop
    /// has ended.
    fn hand(&self, arrival: Arrival) -> Result<(), Box<Arrival>> {
        self.post(|inbox| {
            if inbox.closed {
                return Err(Box::new(arrival));
            }
            inbox.arrivals.push(arrival);
            Ok(())
        })
    }
}

/// What all loops of a server share.
struct Shared {
    handler: Arc<dyn Handler>,
    ids: AtomicU64,
    /// Every loop's channel, by loop index.
    loops: Vec<Arc<LoopChannel>>,
}

/// Binds every listener and starts one event-loop thread per core (or as
/// many as [`ServeConfig::threads`] says), each accepting on every listener
/// and serving its share of the connections.
pub fn serve(config: ServeConfig, handler: Arc<dyn Handler>) -> io::Result<Server> {
    // The loops see their connections end themselves: nothing to notify.
    let limit = ConnectionLimit::new(config.max_connections, Box::new(|| {}));
    let threads = config.serving_threads();
    let mut bound = Vec::new();
    for listener in config.listeners {
        // std's listener is what can be duplicated for each loop.
        let (gate, socket) = Gate::bind(listener, limit.clone())?;
        bound.push((socket, gate));
    }
    let addrs = bound
        .iter()
        .map(|(socket, _)| socket.local_addr())
        .collect::<io::Result<Vec<_>>>()?;
    let mut loops = Vec::with_capacity(threads);
    for _ in 0..threads {
        let poll = Poll::new()?;
        let channel = Arc::new(LoopChannel {
            waker: Waker::new(poll.registry(), WAKER)?,
            inbox: Mutex::new(Inbox::default()),
            stop: Mutex::new(None),
            load: Arc::new(AtomicUsize::new(0)),
        });
        let mut listeners = Vec::with_capacity(bound.len());
        for (number, (socket, gate)) in bound.iter().enumerate() {
            // Each loop polls its own descriptor for the one listening
            // socket; whichever loop accepts first serves the connection.
            let mut socket = TcpListener::from_std(socket.try_clone()?);
            poll.registry()
                .register(&mut socket, listener_token(number), Interest::READABLE)?;
            listeners.push(Listener {
                socket,
                gate: gate.clone(),
            });
        }
        loops.push((poll, channel, listeners));
    }
    let shared = Arc::new(Shared {
        handler,
        ids: AtomicU64::new(0),
        loops: loops
            .iter()
            .map(|(_, channel, _)| channel.clone())
            .collect(),
    });
    // Built up loop by loop, so that a failure half-way stops the loops
    // already running (by dropping the server).
    let mut server = Server {
        addrs,
        loops: Vec::with_capacity(threads),
    };
    for (index, (poll, channel, listeners)) in loops.into_iter().enumerate() {
        let event_loop = EventLoop {
            index,
            poll,
            channel: channel.clone(),
            shared: shared.clone(),
            listeners,
            conns: Slab::new(),
            timers: BinaryHeap::new(),
            generation: 0,
            buf: vec![0; READ_BUFFER],
            again: Vec::new(),
            lingering: Lingering::default(),
            accept_retry: None,
        };
        let thread = thread::Builder::new()
            .name(format!("petrel-mio-{index}"))
            .spawn(move || event_loop.run())?;
        server.loops.push(LoopHandle {
            channel,
            thread: Some(thread),
        });
    }
    Ok(server)
}

/// One loop's handle of a listening socket.
struct Listener {
    socket: TcpListener,
    /// Which connections are served, and how.
    gate: Arc<Gate>,
}

/// One connection of a loop.
struct Conn {
    stream: TcpStream,
    conn: ServerConn,
    /// Tells this connection from earlier ones with the same slab key, for
    /// timers and wake-ups that outlived theirs.
    generation: u64,
    /// The deadline last pushed on the timer heap (heap entries with any
    /// other instant are stale).
    deadline: Option<Instant>,
    /// Once its session is over: how the connection ends (while its last
    /// output waits for the socket; then the socket lingers elsewhere).
    closing: Option<LingeringClose>,
    /// WRITABLE is registered: only while output is pending, so that an
    /// idle connection costs no wake-ups.
    write_interest: bool,
    /// Readiness seen and not yet used up (mio is edge-triggered: a
    /// connection that stops reading before `WouldBlock`, because its
    /// session wants no input now, must remember that there is some).
    readable: bool,
    writable: bool,
    /// The peer closed its side (or reading failed).
    eof: bool,
    /// Its place under the server's limits, until `closing` takes it.
    permit: Option<Permit>,
    /// Its place in this loop's load, given back when the connection is
    /// dropped or starts lingering.
    _load: Load,
}

impl Conn {
    /// Writes pending output until it is gone or the socket is full. An
    /// error means the peer is gone.
    fn flush(&mut self) -> io::Result<()> {
        let out = self.conn.output();
        while self.writable && !out.is_empty() {
            match self.stream.write(out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    out.drain(..n.min(out.len()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// What `drive` found a connection ready for.
enum Next {
    /// Waiting for readiness, a deadline or a wake-up.
    Wait,
    /// The session is over: the connection ends (see `end`).
    Closed,
    /// The peer is gone: nothing more can be said to it.
    Gone,
}

struct EventLoop {
    /// This loop's place in `shared.loops`.
    index: usize,
    poll: Poll,
    channel: Arc<LoopChannel>,
    shared: Arc<Shared>,
    /// Emptied when the server stops accepting.
    listeners: Vec<Listener>,
    conns: Slab<Conn>,
    timers: BinaryHeap<Timer>,
    generation: u64,
    buf: Vec<u8>,
    /// Connections that used their read budget with input left: driven
    /// again after the others had their turn.
    again: Vec<usize>,
    /// Sockets whose session is over, read until their peer closes.
    lingering: Lingering,
    /// When to accept on every listener again after an accept error (out
    /// of descriptors, say): readiness is edge-triggered, and would not
    /// tell of the connections already waiting until another one comes.
    accept_retry: Option<Instant>,
}

impl EventLoop {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut inbox = Inbox::default();
        let mut again = Vec::new();
        loop {
            let now = Instant::now();
            let stop = *self
                .channel
                .stop
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(stop) = stop {
                for mut listener in self.listeners.drain(..) {
                    let _ = self.poll.registry().deregister(&mut listener.socket);
                }
                self.accept_retry = None;
                // A lingering socket is the end of a session too: it has
                // the rest of the grace to see its peer close.
                if (self.conns.is_empty() && self.lingering.is_empty()) || now >= stop {
                    break;
                }
            }
            let mut timeout = if self.again.is_empty() && self.lingering.again.is_empty() {
                [
                    self.next_deadline(),
                    self.lingering.next_end(),
                    self.accept_retry,
                ]
                .into_iter()
                .flatten()
                .min()
                .map(|at| at.saturating_duration_since(now))
            } else {
                Some(Duration::ZERO)
            };
            if let Some(stop) = stop {
                let left = stop.saturating_duration_since(now);
                timeout = Some(timeout.map_or(left, |timeout| timeout.min(left)));
            }
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The poll itself failed: nothing on this loop can be
                // served any more.
                break;
            }
            for event in events.iter() {
                let token = event.token();
                if token == WAKER {
                    // The channel is read below, on every turn.
                    continue;
                }
                let listener = (usize::MAX - 1)
                    .checked_sub(token.0)
                    .filter(|&index| index < self.listeners.len());
                if let Some(index) = listener {
                    self.accept(index);
                } else if let Some(key) = token.0.checked_sub(LINGERING) {
                    self.lingering.discard(key, &mut self.buf);
                } else if let Some(conn) = self.conns.get_mut(token.0) {
                    let error = event.is_error();
                    conn.readable |= event.is_readable() || event.is_read_closed() || error;
                    conn.writable |= event.is_writable() || event.is_write_closed() || error;
                    let key = token.0;
                    self.isolate(key, |this| this.drive(key));
                }
            }
            {
                let mut posted = self
                    .channel
                    .inbox
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                std::mem::swap(&mut posted.woken, &mut inbox.woken);
                std::mem::swap(&mut posted.arrivals, &mut inbox.arrivals);
            }
            for arrival in inbox.arrivals.drain(..) {
                self.admit(arrival);
            }
            for (key, generation) in inbox.woken.drain(..) {
                if let Some(conn) = self.conns.get_mut(key) {
                    if conn.generation == generation {
                        self.isolate(key, |this| {
                            if let Some(conn) = this.conns.get_mut(key) {
                                conn.conn.handle_wake(Instant::now());
                            }
                            this.drive(key);
                        });
                    }
                }
            }
            std::mem::swap(&mut self.again, &mut again);
            for key in again.drain(..) {
                self.isolate(key, |this| this.drive(key));
            }
            for key in std::mem::take(&mut self.lingering.again) {
                self.lingering.discard(key, &mut self.buf);
            }
            self.fire_timers();
            self.lingering.expire(Instant::now());
            if self.accept_retry.is_some_and(|at| at <= Instant::now()) {
                self.accept_retry = None;
                for index in 0..self.listeners.len() {
                    self.accept(index);
                }
            }
        }
        // The grace period is over: every session still here ends, and
        // its handler hears of it.
        // Never the least loaded again: other loops stop handing
        // connections here (one that raced with this is handed back, as
        // the inbox is closed below).
        self.channel.load.store(usize::MAX / 2, Ordering::SeqCst);
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.isolate(key, |this| {
                if let Some(conn) = this.conns.get_mut(key) {
                    if !conn.conn.is_closed() {
                        conn.conn.handle_shutdown(Instant::now());
                    }
                    // Whatever this connection was doing, it ends now.
                    let now = Instant::now();
                    conn.closing = Some(LingeringClose::at_shutdown(now, conn.permit.take()));
                    // Offered to the socket even if it said it was full.
                    conn.writable = true;
                    this.end(key);
                }
            });
        }
        // Whatever is left is dropped with the loop, including
        // connections handed over too late to be served; their places are
        // given back as they go.
        let late = {
            let mut inbox = self
                .channel
                .inbox
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            inbox.closed = true;
            std::mem::take(&mut inbox.arrivals)
        };
        drop(late);
    }

    /// Accepts until the listener has nothing more: readiness is
    /// edge-triggered, and every loop was told about the same connections.
    fn accept(&mut self, index: usize) {
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.socket.accept() {
                Ok((stream, peer)) => {
                    let gate = listener.gate.clone();
                    self.place(stream, peer, &gate);
                }
                Err(error) => match AcceptError::classify(&error) {
                    AcceptError::ConnectionFailed => {}
                    // Another loop or this one took them all.
                    AcceptError::NoneWaiting => return,
                    // Waiting for the next connection's readiness would
                    // leave the backlog stuck until then.
                    AcceptError::OutOfResources => {
                        self.accept_retry
                            .get_or_insert_with(|| Instant::now() + ACCEPT_BACKOFF);
                        return;
                    }
                },
            }
        }
    }

    /// Refuses a connection over the limit, or hands it to the least
    /// loaded loop (this one when it is among them): whichever loop
    /// accepts first, connections spread over all of them.
    fn place(&mut self, stream: TcpStream, peer: SocketAddr, gate: &Gate) {
        let _ = stream.set_nodelay(true);
        let (config, permit) = match gate.admit(peer.ip()) {
            Admission::Admitted { config, permit } => (config, permit),
            Admission::Refused { reply } => return self.refuse(stream, reply),
        };
        let mut target = (self.channel.load.load(Ordering::SeqCst), self.index);
        for (index, channel) in self.shared.loops.iter().enumerate() {
            let load = channel.load.load(Ordering::SeqCst);
            if load < target.0 {
                target = (load, index);
            }
        }
        let there = self
            .shared
            .loops
            .get(target.1)
            .filter(|_| target.1 != self.index);
        // Counted before it is handed over, so that the next connection
        // placed, by any loop, already sees it.
        let load = Load::count(&there.unwrap_or(&self.channel).load);
        let local = gate.local_addr(|| stream.local_addr());
        let arrival = Arrival {
            stream,
            peer,
            config,
            local,
            permit,
            load,
        };
        let Some(channel) = there else {
            return self.admit(arrival);
        };
        if let Err(mut arrival) = channel.hand(arrival) {
            // That loop has just ended: this one serves the connection.
            arrival.load = Load::count(&self.channel.load);
            self.admit(*arrival);
        }
    }

    /// Starts serving a connection on this loop (its permit and load
    /// already taken).
    fn admit(&mut self, arrival: Arrival) {
        let Arrival {
            mut stream,
            peer,
            config,
            local,
            permit,
            load,
        } = arrival;
        let key = self.conns.vacant_key();
        self.generation += 1;
        let generation = self.generation;
        if self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
            .is_err()
        {
            return;
        }
        let info = ConnectionInfo {
            id: self.shared.ids.fetch_add(1, Ordering::SeqCst),
            peer,
            local,
        };
        let channel = self.channel.clone();
        let handler = self.shared.handler.clone();
        let wake = Box::new(move || channel.post(|inbox| inbox.woken.push((key, generation))));
        // The handler already hears of the connection here.
        let conn = match panic::catch_unwind(AssertUnwindSafe(|| {
            ServerConn::new(config, info, handler, Instant::now(), wake)
        })) {
            Ok(conn) => conn,
            Err(_) => {
                let _ = self.poll.registry().deregister(&mut stream);
                return;
            }
        };
        let inserted = self.conns.insert(Conn {
            stream,
            conn,
            generation,
            deadline: None,
            closing: None,
            write_interest: false,
            // Registration reports input that is already there.
            readable: false,
            writable: true,
            eof: false,
            permit: Some(permit),
            _load: load,
        });
        debug_assert_eq!(inserted, key, "the slab's vacant key is where it inserts");
        self.isolate(key, |this| this.drive(key));
    }

    /// Runs `step` for connection `key`. A panic in it (in the
    /// application's handler) ends that connection only, as it would end
    /// only its task on tokio, rather than the loop and every connection
    /// on it.
    fn isolate(&mut self, key: usize, step: impl FnOnce(&mut Self)) {
        if panic::catch_unwind(AssertUnwindSafe(|| step(self))).is_err() {
            self.close(key);
        }
    }

    /// Moves a connection as far as it goes now: write all output, then
    /// read (when the session wants input), and again; then register the
    /// interest and the deadline it waits for. A session that is over
    /// goes on to [`end`](Self::end).
    fn drive(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut reads = 0;
        let next = loop {
            if conn.conn.is_closed() {
                break Next::Closed;
            }
            if conn.flush().is_err() {
                break Next::Gone;
            }
            if conn.eof || !conn.readable || !conn.conn.wants_input() {
                break Next::Wait;
            }
            if reads == READ_BUDGET {
                self.again.push(key);
                break Next::Wait;
            }
            reads += 1;
            match conn.stream.read(&mut self.buf) {
                Ok(0) => {
                    conn.eof = true;
                    conn.conn.handle_eof(Instant::now());
                }
                Ok(n) => conn
                    .conn
                    .handle_input(Instant::now(), self.buf.get(..n).unwrap_or_default()),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => conn.readable = false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    conn.eof = true;
                    conn.conn.handle_eof(Instant::now());
                }
            }
        };
        match next {
            Next::Wait => {
                let want_write = !conn.conn.output().is_empty();
                let deadline = conn.conn.poll_timeout();
                self.wait_for(key, want_write, deadline);
            }
            Next::Closed => self.end(key),
            Next::Gone => self.close(key),
        }
    }

    /// Registers what connection `key` waits for: WRITABLE or not, and a
    /// deadline. A socket that cannot be registered is closed.
    fn wait_for(&mut self, key: usize, want_write: bool, deadline: Option<Instant>) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if want_write != conn.write_interest {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(key), interest)
                .is_err()
            {
                return self.close(key);
            }
            conn.write_interest = want_write;
        }
        if deadline != conn.deadline {
            conn.deadline = deadline;
            if let Some(at) = deadline {
                self.timers.push(Reverse((at, key, conn.generation)));
                self.compact_timers();
            }
        }
    }

    /// Ends connection `key`, whose session is over, as its
    /// [`LingeringClose`] says: its last output is flushed here (waiting
    /// for WRITABLE, with a deadline), then the socket lingers in
    /// [`Lingering`], its place under the limits already free.
    fn end(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let now = Instant::now();
        let mut closing = conn
            .closing
            .take()
            .unwrap_or_else(|| LingeringClose::after_session(now, conn.permit.take(), conn.eof));
        loop {
            match closing.poll(now, !conn.conn.output().is_empty()) {
                CloseStep::Flush { until } => {
                    if conn.flush().is_err() {
                        closing.handle_write_error();
                    } else if !conn.conn.output().is_empty() {
                        conn.closing = Some(closing);
                        return self.wait_for(key, true, Some(until));
                    }
                }
                CloseStep::ShutdownWrite => {
                    let _ = conn.stream.shutdown(Shutdown::Write);
                }
                CloseStep::Linger { until } => {
                    if let Some(conn) = self.conns.try_remove(key) {
                        let registry = self.poll.registry();
                        let stream = Registered::Yes(conn.stream);
                        self.lingering
                            .start(registry, stream, closing, until, &mut self.buf);
                    }
                    return;
                }
                CloseStep::Close => {
                    if let Some(mut conn) = self.conns.try_remove(key) {
                        let _ = self.poll.registry().deregister(&mut conn.stream);
                    }
                    return;
                }
            }
        }
    }

    /// Refuses a connection over a limit: `reply`, then a lingering close
    /// of its own (it never was a session).
    fn refuse(&mut self, mut stream: TcpStream, mut reply: Vec<u8>) {
        let mut closing = LingeringClose::refused(Instant::now());
        loop {
            match closing.poll(Instant::now(), !reply.is_empty()) {
                CloseStep::Flush { .. } => match stream.write(&reply) {
                    Ok(n) if n > 0 => {
                        reply.drain(..n.min(reply.len()));
                    }
                    // Its time is up already: the next poll gives it up.
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    _ => closing.handle_write_error(),
                },
                CloseStep::ShutdownWrite => {
                    let _ = stream.shutdown(Shutdown::Write);
                }
                CloseStep::Linger { until } => {
                    let registry = self.poll.registry();
                    let stream = Registered::No(stream);
                    return self
                        .lingering
                        .start(registry, stream, closing, until, &mut self.buf);
                }
                CloseStep::Close => return,
            }
        }
    }

    fn close(&mut self, key: usize) {
        // A connection lost to a socket error: the session and its handler
        // still hear of the end (transactions aborted, the close counted).
        // (Not through `isolate`: a panic here must not close it again.)
        if let Some(conn) = self.conns.get_mut(key).filter(|c| !c.conn.is_closed()) {
            let _ = panic::catch_unwind(AssertUnwindSafe(|| conn.conn.handle_eof(Instant::now())));
        }
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
    }

    /// Whether a heap entry is still its connection's deadline.
    fn is_current(&self, (at, key, generation): (Instant, usize, u64)) -> bool {
        self.conns
            .get(key)
            .is_some_and(|conn| conn.generation == generation && conn.deadline == Some(at))
    }

    /// The earliest current deadline; stale entries on top are dropped.
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse(timer)) = self.timers.peek() {
            if self.is_current(timer) {
                return Some(timer.0);
            }
            self.timers.pop();
        }
        None
    }

    /// Hands every deadline that has come to its connection.
    fn fire_timers(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(&Reverse(timer)) = self.timers.peek() {
            if timer.0 > now {
                break;
            }
            self.timers.pop();
            due.push(timer);
        }
        // Deadlines pushed while handling these wait for the next turn, so
        // a session whose deadline stays in the past cannot hold the loop.
        for timer in due {
            // Checked only now: handling an earlier one may have moved this
            // connection's deadline, and a deadline that went back to an
            // earlier instant can be on the heap twice.
            if !self.is_current(timer) {
                continue;
            }
            let key = timer.1;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.deadline = None;
            if conn.conn.is_closed() {
                // Its last output did not get out in time: the rest is
                // given up on, and the socket lingers.
                self.end(key);
            } else {
                self.isolate(key, |this| {
                    if let Some(conn) = this.conns.get_mut(key) {
                        conn.conn.handle_timeout(now);
                    }
                    this.drive(key);
                });
            }
        }
    }

    /// Every command moves a session's deadline, and each move leaves a
    /// stale entry behind: rebuild the heap from the live deadlines when
    /// stale ones dominate, so that it stays proportional to the
    /// connections.
    fn compact_timers(&mut self) {
        if self.timers.len() > 1024 + 2 * self.conns.len() {
            self.timers = self
                .conns
                .iter()
                .filter_map(|(key, conn)| {
                    conn.deadline.map(|at| Reverse((at, key, conn.generation)))
                })
                .collect();
        }
    }
}

/// Sockets closed gently (see [`petrel_runtime_common::close`]): their
/// session is over, or they were refused, and their write side is shut;
/// what their peer still sends is read and discarded until it closes too,
/// or until their [`LingeringClose`] gives up on it.
#[derive(Default)]
struct Lingering {
    sockets: Slab<LingeringSocket>,
    /// When each lingering socket is given up on, with its slab key and generation,
    /// in the order they started: every lingering lasts as long, so this is
    /// also the order in which they end. Entries of lingering sockets that ended
    /// earlier are stale.
    ends: VecDeque<(Instant, usize, u64)>,
    generation: u64,
    /// Lingering that used their read budget with input left.
    again: Vec<usize>,
}

/// A socket on its way to [`Lingering`], registered with the loop's poll (for
/// its connection) or not yet (refused at once).
enum Registered {
    Yes(TcpStream),
    No(TcpStream),
}

struct LingeringSocket {
    stream: TcpStream,
    closing: LingeringClose,
    /// Tells this lingering socket from earlier ones with the same slab key.
    generation: u64,
}

impl Lingering {
    fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Lingering `stream` (its write side shut) until `until`, as `closing`
    /// said.
    fn start(
        &mut self,
        registry: &Registry,
        stream: Registered,
        closing: LingeringClose,
        until: Instant,
        buf: &mut [u8],
    ) {
        let key = self.sockets.vacant_key();
        let token = linger_token(key);
        // One system call either way: a connection's registration is
        // moved to the lingering token rather than removed and made again.
        let (registered, mut stream) = match stream {
            Registered::Yes(mut stream) => (
                registry.reregister(&mut stream, token, Interest::READABLE),
                stream,
            ),
            Registered::No(mut stream) => (
                registry.register(&mut stream, token, Interest::READABLE),
                stream,
            ),
        };
        if registered.is_err() {
            let _ = registry.deregister(&mut stream);
            return;
        }
        self.generation += 1;
        let inserted = self.sockets.insert(LingeringSocket {
            stream,
            closing,
            generation: self.generation,
        });
        debug_assert_eq!(inserted, key, "the slab's vacant key is where it inserts");
        self.ends.push_back((until, key, self.generation));
        // The peer's input may be there already.
        self.discard(key, buf);
    }

    /// Reads and discards what lingering socket `key` has, until it would block; at
    /// the peer's end (or an error) the lingering is over.
    fn discard(&mut self, key: usize, buf: &mut [u8]) {
        let Some(socket) = self.sockets.get_mut(key) else {
            return;
        };
        for _ in 0..READ_BUDGET {
            match socket.stream.read(buf) {
                Ok(0) => {
                    socket.closing.handle_peer_closed();
                    return self.step(key, Instant::now());
                }
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    socket.closing.handle_peer_closed();
                    return self.step(key, Instant::now());
                }
            }
        }
        // A peer that keeps sending must not starve the loop either.
        self.again.push(key);
    }

    /// Asks lingering socket `key`'s [`LingeringClose`] whether it is over, and closes
    /// the socket if so. (Closing it ends its registration too, on Linux:
    /// the socket is the only handle of its file. An event already fetched
    /// for its token is harmless: a key given to a new lingering socket meanwhile
    /// only reads `WouldBlock`.)
    fn step(&mut self, key: usize, now: Instant) {
        let over = self.sockets.get_mut(key).is_some_and(|socket| {
            !matches!(socket.closing.poll(now, false), CloseStep::Linger { .. })
        });
        if over {
            self.sockets.try_remove(key);
        }
    }

    fn is_current(&self, (_, key, generation): (Instant, usize, u64)) -> bool {
        self.sockets
            .get(key)
            .is_some_and(|socket| socket.generation == generation)
    }

    /// When the next lingering socket is given up on; stale entries on top are dropped.
    fn next_end(&mut self) -> Option<Instant> {
        while let Some(&end) = self.ends.front() {
            if self.is_current(end) {
                return Some(end.0);
            }
            self.ends.pop_front();
        }
        None
    }

    /// Closes every lingering socket whose time is over, input unread or not.
    fn expire(&mut self, now: Instant) {
        while let Some(&end) = self.ends.front() {
            if end.0 > now {
                break;
            }
            self.ends.pop_front();
            if self.is_current(end) {
                self.step(end.1, now);
            }
        }
    }
}
