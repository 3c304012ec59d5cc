//! Delivering: outbound connections driven by one event loop on the
//! calling thread.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use petrel_core::client::ClientConfig;
use petrel_runtime_common::client::{
    unattempted, Attempt, ClientConn, DeliverOptions, DeliveryPlan, DeliveryReport, Outbound,
};

use petrel_runtime_common::{CLOSE_FLUSH, READ_BUFFER};

/// Messages for one server, delivered over one connection by
/// [`deliver_many`].
#[derive(Debug)]
pub struct Batch {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The server's name: SNI, and the name checked with `TLS_Verify = host`.
    pub server_name: String,
    /// The client's configuration, TLS policy included.
    pub config: Arc<ClientConfig>,
    /// The messages, all submitted at once on the connection.
    pub messages: Vec<Outbound>,
}

/// Delivers `messages` to `addr` over one connection (reused for all of
/// them), and over a fresh plaintext one when the TLS policy asks for it.
/// Every message is in the report exactly once. Blocks the calling thread
/// until every message is done; [`deliver_many`] drives several
/// connections at once.
pub fn deliver(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
    messages: Vec<Outbound>,
    options: &DeliverOptions,
) -> DeliveryReport {
    let batch = Batch {
        addr,
        server_name: server_name.to_owned(),
        config,
        messages,
    };
    deliver_many(vec![batch], options).pop().unwrap_or_default()
}

/// [`deliver`] for every batch at once, each over a connection of its own,
/// all driven by one event loop on the calling thread (run one per core on
/// threads of their own to use every core). Returns one report per batch,
/// in order, once every message is done.
pub fn deliver_many(batches: Vec<Batch>, options: &DeliverOptions) -> Vec<DeliveryReport> {
    let mut poll = match Poll::new() {
        Ok(poll) => poll,
        Err(error) => {
            let why = format!("cannot poll: {error}");
            return batches
                .into_iter()
                .map(|batch| DeliveryReport {
                    finished: unattempted(batch.messages, &why),
                    reconnected_plaintext: false,
                    tls_failures: Vec::new(),
                })
                .collect();
        }
    };
    let mut jobs: Vec<Job> = Vec::with_capacity(batches.len());
    for (index, batch) in batches.into_iter().enumerate() {
        let mut job = Job {
            addr: batch.addr,
            server_name: batch.server_name,
            config: batch.config,
            plan: DeliveryPlan::new(batch.messages),
            state: State::Done,
            deadline: None,
        };
        job.next(poll.registry(), Token(index), options);
        jobs.push(job);
    }
    let mut events = Events::with_capacity(256);
    let mut buf = vec![0; READ_BUFFER];
    loop {
        let now = Instant::now();
        for (index, job) in jobs.iter_mut().enumerate() {
            if job.deadline.is_some_and(|at| at <= now) {
                job.timeout(poll.registry(), Token(index), options, &mut buf);
            }
        }
        if jobs.iter().all(|job| matches!(job.state, State::Done)) {
            break;
        }
        let next = jobs.iter().filter_map(|job| job.deadline).min();
        let timeout = next.map(|at| at.saturating_duration_since(Instant::now()));
        if let Err(error) = poll.poll(&mut events, timeout) {
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The poll itself failed: no connection can go on.
            for job in &mut jobs {
                job.abandon(poll.registry(), &format!("cannot poll: {error}"));
            }
            break;
        }
        for event in events.iter() {
            let token = event.token();
            if let Some(job) = jobs.get_mut(token.0) {
                let error = event.is_error();
                job.ready(
                    event.is_readable() || event.is_read_closed() || error,
                    event.is_writable() || event.is_write_closed() || error,
                );
                job.drive(poll.registry(), token, options, &mut buf);
            }
        }
    }
    jobs.into_iter().map(|job| job.plan.into_report()).collect()
}

/// One batch: its connection (the first, or the plaintext one after it)
/// and its report so far.
struct Job {
    addr: SocketAddr,
    server_name: String,
    config: Arc<ClientConfig>,
    plan: DeliveryPlan,
    state: State,
    /// When `timeout` is due: the connect timeout, the session's
    /// deadline, or the end of the close linger.
    deadline: Option<Instant>,
}

enum State {
    /// The connect is in progress; the messages wait for it.
    Connecting {
        stream: TcpStream,
        attempt: Attempt,
        writable: bool,
    },
    Open(Box<Open>),
    /// Every message is in the report.
    Done,
}

/// A connected socket and its session.
struct Open {
    stream: TcpStream,
    conn: ClientConn,
    /// WRITABLE is registered: only while output is pending.
    write_interest: bool,
    /// Readiness seen and not yet used up (mio is edge-triggered).
    readable: bool,
    writable: bool,
    /// The server closed its side (or the socket failed).
    eof: bool,
    /// When a closed session's last output is given up on.
    linger: Option<Instant>,
}

/// What `Open::drive` left a connection waiting for.
enum Next {
    Wait,
    /// The session is over and its output written (or given up on).
    Finished,
}

impl Job {
    /// Starts the plan's next connection, if it has one; a connection that
    /// cannot even start leaves its messages unattempted.
    fn next(&mut self, registry: &Registry, token: Token, options: &DeliverOptions) {
        let Some(attempt) = self.plan.next_attempt() else {
            return;
        };
        let started = start_connect(self.addr, options.source).and_then(|mut stream| {
            registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
            Ok(stream)
        });
        match started {
            Ok(stream) => {
                self.deadline = Some(Instant::now() + options.connect_timeout);
                self.state = State::Connecting {
                    stream,
                    attempt,
                    writable: false,
                };
            }
            Err(error) => self.connect_failed(attempt, &error),
        }
    }

    fn connect_failed(&mut self, attempt: Attempt, error: &io::Error) {
        let why = format!("cannot connect to {}: {error}", self.addr);
        self.plan.connect_failed(attempt, &why);
        self.state = State::Done;
        self.deadline = None;
    }

    /// Readiness reported for the socket.
    fn ready(&mut self, readable: bool, writable: bool) {
        match &mut self.state {
            State::Connecting { writable: w, .. } => *w |= writable || readable,
            State::Open(open) => {
                open.readable |= readable;
                open.writable |= writable;
            }
            State::Done => {}
        }
    }

    /// Moves the connection as far as it goes now.
    fn drive(
        &mut self,
        registry: &Registry,
        token: Token,
        options: &DeliverOptions,
        buf: &mut [u8],
    ) {
        if let State::Connecting {
            stream, writable, ..
        } = &mut self.state
        {
            if !*writable {
                return;
            }
            // mio's recipe for a non-blocking connect: once writable, the
            // socket error says whether it failed, and the peer address
            // whether it is done.
            let connected = match stream.take_error() {
                Ok(None) => stream.peer_addr().map(|_| ()),
                Ok(Some(error)) | Err(error) => Err(error),
            };
            match connected {
                Ok(()) => self.open(),
                Err(error) if error.kind() == io::ErrorKind::NotConnected => {
                    *writable = false;
                    return;
                }
                Err(error) => {
                    let State::Connecting {
                        mut stream,
                        attempt,
                        ..
                    } = std::mem::replace(&mut self.state, State::Done)
                    else {
                        return;
                    };
                    let _ = registry.deregister(&mut stream);
                    return self.connect_failed(attempt, &error);
                }
            }
        }
        let State::Open(open) = &mut self.state else {
            return;
        };
        match open.drive(registry, token, buf) {
            Next::Wait => {
                self.deadline = if open.conn.closed().is_some() {
                    Some(
                        *open
                            .linger
                            .get_or_insert_with(|| Instant::now() + CLOSE_FLUSH),
                    )
                } else {
                    open.conn.poll_timeout()
                };
            }
            Next::Finished => self.finish(registry, token, options),
        }
    }

    /// The connect succeeded: the session starts, with every message
    /// submitted and QUIT after them.
    fn open(&mut self) {
        let State::Connecting {
            stream, attempt, ..
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let conn = attempt.start(self.config.clone(), &self.server_name, Instant::now());
        self.state = State::Open(Box::new(Open {
            stream,
            conn,
            // Still registered as while connecting.
            write_interest: true,
            // The greeting may be there already; a read that finds
            // nothing costs one syscall.
            readable: true,
            writable: true,
            eof: false,
            linger: None,
        }));
    }

    /// The session is over: its results go to the report, and the
    /// messages the TLS policy sent back go over a fresh plaintext
    /// connection.
    fn finish(&mut self, registry: &Registry, token: Token, options: &DeliverOptions) {
        let State::Open(mut open) = std::mem::replace(&mut self.state, State::Done) else {
            return;
        };
        self.deadline = None;
        let _ = registry.deregister(&mut open.stream);
        let _ = open.stream.shutdown(Shutdown::Both);
        self.plan.finished(open.conn);
        self.next(registry, token, options);
    }

    /// The deadline has come.
    fn timeout(
        &mut self,
        registry: &Registry,
        token: Token,
        options: &DeliverOptions,
        buf: &mut [u8],
    ) {
        match &mut self.state {
            State::Connecting { .. } => {
                let State::Connecting {
                    mut stream,
                    attempt,
                    ..
                } = std::mem::replace(&mut self.state, State::Done)
                else {
                    return;
                };
                let _ = registry.deregister(&mut stream);
                let error = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                self.connect_failed(attempt, &error);
            }
            State::Open(open) if open.conn.closed().is_some() => {
                // Its last output did not get out in time.
                self.finish(registry, token, options);
            }
            State::Open(open) => {
                self.deadline = None;
                open.conn.handle_timeout(Instant::now());
                self.drive(registry, token, options, buf);
            }
            State::Done => self.deadline = None,
        }
    }

    /// Gives up: every message not yet done is in the report as
    /// transient.
    fn abandon(&mut self, registry: &Registry, why: &str) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Connecting {
                mut stream,
                attempt,
                ..
            } => {
                let _ = registry.deregister(&mut stream);
                self.plan.connect_failed(attempt, why);
            }
            State::Open(mut open) => {
                let _ = registry.deregister(&mut open.stream);
                open.conn.handle_eof(Instant::now());
                self.plan.finished(open.conn);
                // Given up: a plaintext reconnection is not made either.
                if let Some(attempt) = self.plan.next_attempt() {
                    self.plan.connect_failed(attempt, why);
                }
            }
            State::Done => {}
        }
        self.deadline = None;
    }
}

impl Open {
    /// Writes all output, then reads, and again, until the socket or the
    /// session has to wait.
    fn drive(&mut self, registry: &Registry, token: Token, buf: &mut [u8]) -> Next {
        loop {
            if self.flush().is_err() {
                // The server is gone: what is left cannot reach it. What it
                // said before going (a refusal in the middle of a body) is
                // still read, so that it becomes the outcome.
                self.conn.output().clear();
                while !self.eof {
                    match self.stream.read(buf) {
                        Ok(n) if n > 0 => self
                            .conn
                            .handle_input(Instant::now(), buf.get(..n).unwrap_or_default()),
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                        _ => break,
                    }
                }
                if !self.eof {
                    self.eof = true;
                    self.conn.handle_eof(Instant::now());
                    self.conn.output().clear();
                }
            }
            if self.conn.closed().is_some() && (self.conn.output().is_empty() || self.eof) {
                return Next::Finished;
            }
            // Replies are read even while output waits for the socket: a
            // server may answer (or refuse) before it takes the rest.
            if !self.readable || self.eof {
                break;
            }
            match self.stream.read(buf) {
                Ok(0) => {
                    self.eof = true;
                    self.conn.handle_eof(Instant::now());
                }
                Ok(n) => self
                    .conn
                    .handle_input(Instant::now(), buf.get(..n).unwrap_or_default()),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.eof = true;
                    self.conn.handle_eof(Instant::now());
                }
            }
        }
        let want = !self.conn.output().is_empty();
        if want != self.write_interest {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if registry
                .reregister(&mut self.stream, token, interest)
                .is_err()
            {
                // Without readiness this connection cannot go on.
                self.conn.output().clear();
                self.eof = true;
                self.conn.handle_eof(Instant::now());
                return Next::Finished;
            }
            self.write_interest = want;
        }
        Next::Wait
    }

    /// Writes pending output until it is gone or the socket is full,
    /// letting the connection stream more body after each write.
    fn flush(&mut self) -> io::Result<()> {
        while self.writable && !self.conn.output().is_empty() {
            let out = self.conn.output();
            match self.stream.write(out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    out.drain(..n.min(out.len()));
                    self.conn.handle_written(Instant::now());
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

fn start_connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    petrel_runtime_common::client::start_connect(addr, source).map(TcpStream::from_std)
}
