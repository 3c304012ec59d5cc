//! Petrel's SMTP sessions driven over smol: one task per connection.
//!
//! Everything that is not waiting for sockets, timers or wake-ups lives in
//! `petrel-runtime-common` (and the protocol itself in `petrel-core`); this
//! crate is the loop around them, on `async-io` sockets and timers.
//!
//! [`serve`] runs its connections on threads of its own, one per core, so
//! the caller's executor (often a plain `smol::block_on`) does not carry the
//! server; [`deliver`] runs wherever it is awaited.
//!
//! Serving, with an application that accepts every message:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use petrel_core::server::{Event, ServerConfig};
//! use petrel_smol::{ConnectionInfo, Decision, Handler, ListenerConfig, ServeConfig};
//!
//! struct AcceptAll;
//!
//! impl Handler for AcceptAll {
//!     fn on_event(&self, _conn: &ConnectionInfo, _event: &Event, decision: Option<Decision>) {
//!         // A real MTA would spool the body and answer MessageEnd later,
//!         // from whatever thread finished the fsync.
//!         if let Some(decision) = decision {
//!             decision.accept();
//!         }
//!     }
//! }
//!
//! # fn main() -> std::io::Result<()> {
//! smol::block_on(async {
//!     let listener = ListenerConfig::new("127.0.0.1:0".parse().unwrap(), ServerConfig::new("mx.example"));
//!     let server = petrel_smol::serve(ServeConfig::single(listener), Arc::new(AcceptAll)).await?;
//!     println!("listening on {:?}", server.local_addrs());
//!     server.shutdown(Duration::from_secs(1)).await;
//!     Ok(())
//! })
//! # }
//! ```

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::{self, Rc};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use petrel_core::client::ClientConfig;
use petrel_runtime_common::accept::AcceptError;
use petrel_runtime_common::client::{start_connect, ClientConn, DeliveryPlan};
use petrel_runtime_common::close::{CloseStep, LingeringClose};
use petrel_runtime_common::listen::{Admission, ConnectionLimit, Gate, Permit};
use petrel_runtime_common::server::ServerConn;
use petrel_runtime_common::{
    poll_receive, receive, Received, ACCEPT_BACKOFF, CLOSE_FLUSH, READ_BUFFER,
};
use smol::channel::{Receiver, Sender};
use smol::future::{self, FutureExt as _};
use smol::io::{AsyncRead, AsyncWriteExt as _};
use smol::stream::StreamExt as _;
use smol::{Async, LocalExecutor, Timer};

pub use petrel_runtime_common::client::{
    BodySource, DeliverOptions, DeliveryReport, MessageOutcome, Outbound, TlsFailed,
};
pub use petrel_runtime_common::listen::{ListenerConfig, Network, PeerConfig, ServeConfig};
pub use petrel_runtime_common::server::{Answer, ConnectionInfo, Decision, Handler, Hold};

/// A running server: all listeners bound, connections served on one thread
/// per core.
///
/// Dropping it without [`shutdown`](Self::shutdown) stops it at once:
/// listeners close and open connections are dropped, in the background.
#[derive(Debug)]
pub struct Server {
    addrs: Vec<SocketAddr>,
    /// Closed to stop accepting: the accept loops end.
    stop_accepting: Sender<()>,
    /// Closed when the grace period is over: the connections end.
    stop_serving: Sender<()>,
    /// Nothing is ever sent: every accept loop and connection holds a
    /// sender, so `recv` fails exactly when all of them are gone.
    alive: Receiver<()>,
    /// The serving threads; they end when `alive` does.
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Stops accepting, lets the sessions in progress finish (by QUIT, by
    /// closing, or by their own timeouts) for at most `grace`, then drops
    /// the rest. Returns once every connection is gone and the server's
    /// threads have ended.
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop_accepting.close();
        let all_closed = async {
            let _ = self.alive.recv().await;
            true
        };
        let expired = async {
            Timer::after(grace).await;
            false
        };
        if !all_closed.or(expired).await {
            self.stop_serving.close();
            // Every connection task sees the close at its next poll.
            let _ = self.alive.recv().await;
        }
        let threads = std::mem::take(&mut self.threads);
        smol::unblock(move || {
            for thread in threads {
                // A thread that panicked has nothing left to clean up.
                let _ = thread.join();
            }
        })
        .await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_accepting.close();
        self.stop_serving.close();
    }
}

/// Binds every listener and starts serving on one thread per core (or as
/// many as [`ServeConfig::threads`] says), each with an executor of its
/// own, owned by the returned [`Server`].
///
/// Every thread accepts on every listener and serves the connections it
/// accepted: a connection's task never moves between threads, and no
/// executor queue is shared. async-io has one reactor per process, though,
/// polled by whichever thread is idle: an event for a connection of another
/// thread, parked, is handed over with a futex wake. Under a
/// connection-per-message load on 2 cores that costs about a tenth more CPU
/// than a single thread (`scripts/bench-receive`, "smol:1"); where
/// connections are cheap and cores few, [`ServeConfig::threads`] of 1 is
/// the faster choice.
pub async fn serve(config: ServeConfig, handler: Arc<dyn Handler>) -> io::Result<Server> {
    // Shutdown waits on `alive`, not on the count: nothing to notify.
    let limit = ConnectionLimit::new(config.max_connections, Box::new(|| {}));
    let threads = config.serving_threads();
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for listener_config in config.listeners {
        let (gate, listener) = Gate::bind(listener_config, limit.clone())?;
        addrs.push(gate.config().addr);
        listeners.push((listener, gate));
    }
    let (stop_accepting, accepting) = smol::channel::bounded(1);
    let (stop_serving, serving) = smol::channel::bounded(1);
    let (alive_sender, alive) = smol::channel::bounded(1);
    let shared = Arc::new(Shared {
        handler,
        ids: AtomicU64::new(0),
        serving,
        _alive: alive_sender,
    });
    let mut server = Server {
        addrs,
        stop_accepting,
        stop_serving,
        alive,
        threads: Vec::new(),
    };
    for n in 0..threads {
        // Each thread's own descriptor of each listener, registered with the
        // reactor here so that an error is the caller's.
        let mut own = Vec::new();
        for (listener, gate) in &listeners {
            own.push((Async::new(listener.try_clone()?)?, gate.clone()));
        }
        let (shared, accepting, alive) = (shared.clone(), accepting.clone(), server.alive.clone());
        // On error, dropping `server` stops the tasks, and the threads
        // already started end with them.
        let thread = std::thread::Builder::new()
            .name(format!("petrel-smol-{n}"))
            .spawn(move || {
                let executor = Rc::new(LocalExecutor::new());
                for (listener, gate) in own {
                    let accept = Accept {
                        listener,
                        gate,
                        shared: shared.clone(),
                        executor: Rc::downgrade(&executor),
                    };
                    executor.spawn(accept.run(accepting.clone())).detach();
                }
                // From here on only the tasks hold `Shared`: `alive` closes
                // when the last of them, on every thread, ends.
                drop(shared);
                smol::block_on(executor.run(async {
                    let _ = alive.recv().await;
                }))
            })?;
        server.threads.push(thread);
    }
    Ok(server)
}

/// What every accept loop and connection of one server shares.
struct Shared {
    handler: Arc<dyn Handler>,
    ids: AtomicU64,
    /// Closes when the grace period is over.
    serving: Receiver<()>,
    /// Held, through this struct, by every accept loop and connection;
    /// see [`Server::alive`].
    _alive: Sender<()>,
}

/// One listener's accept loop.
struct Accept {
    listener: Async<TcpListener>,
    /// Which connections are served, and how.
    gate: Arc<Gate>,
    shared: Arc<Shared>,
    /// This thread's executor; weak, so that a task of the executor does
    /// not keep it alive.
    executor: rc::Weak<LocalExecutor<'static>>,
}

impl Accept {
    async fn run(self, accepting: Receiver<()>) {
        loop {
            // Checked first: under a flood of connections `accept` is always
            // ready and would win every race.
            if accepting.is_closed() {
                return;
            }
            let accept = async { Some(self.listener.accept().await) };
            let stop = async {
                let _ = accepting.recv().await;
                None
            };
            match accept.or(stop).await {
                Some(Ok((stream, peer))) => self.start(stream, peer),
                Some(Err(error)) => {
                    if AcceptError::classify(&error) == AcceptError::OutOfResources {
                        Timer::after(ACCEPT_BACKOFF).await;
                    }
                }
                None => return,
            }
        }
    }

    fn start(&self, stream: Async<TcpStream>, peer: SocketAddr) {
        let Some(executor) = self.executor.upgrade() else {
            return;
        };
        let _ = stream.get_ref().set_nodelay(true);
        // Keeps the server alive (see `Server::alive`) until the socket is
        // closed, lingering included.
        let shared = self.shared.clone();
        let (config, permit) = match self.gate.admit(peer.ip()) {
            Admission::Admitted { config, permit } => (config, permit),
            Admission::Refused { mut reply } => {
                executor
                    .spawn(async move {
                        let closing = LingeringClose::refused(Instant::now());
                        close(&stream, &mut reply, closing, Some(&shared.serving)).await;
                    })
                    .detach();
                return;
            }
        };
        let info = ConnectionInfo {
            id: self.shared.ids.fetch_add(1, Ordering::SeqCst),
            peer,
            local: self.gate.local_addr(|| stream.get_ref().local_addr()),
        };
        let handler = self.shared.handler.clone();
        let connection = async move {
            // A decision answered on another thread wakes this task.
            let woken = Arc::new(Wakeup::default());
            let waker = woken.clone();
            let wake = Box::new(move || waker.wake());
            let served = async {
                // Boxed: moved into `run_server`, it would otherwise take
                // its room in this future and again in that one.
                let conn = Box::new(ServerConn::new(config, info, handler, Instant::now(), wake));
                run_server(&stream, conn, permit, &woken, &shared.serving).await
            };
            // A panicking handler ends its own connection, not the
            // executor thread that happened to run it.
            if let Ok(Ended::Closing(closing, mut output)) =
                AssertUnwindSafe(served).catch_unwind().await
            {
                close(&stream, &mut output, closing, Some(&shared.serving)).await;
            }
            drop(stream);
            drop(shared);
        };
        executor.spawn(connection).detach();
    }
}

/// What ended one wait of a lingering close.
enum Lingered {
    Readable(io::Result<()>),
    TimeUp,
    /// The server stopped serving.
    Stopped,
}

/// Ends a connection as `closing` says (see
/// [`petrel_runtime_common::close`]), writing what is left of `output`;
/// lingering ends early when the server stops serving (`serving` closes).
async fn close(
    stream: &Async<TcpStream>,
    output: &mut Vec<u8>,
    mut closing: LingeringClose,
    serving: Option<&Receiver<()>>,
) {
    loop {
        match closing.poll(Instant::now(), !output.is_empty()) {
            CloseStep::Flush { until } => {
                let mut writer = stream;
                let write = async { Some(writer.write(output).await) };
                let timeout = async {
                    Timer::at(until).await;
                    None
                };
                match write.or(timeout).await {
                    Some(Ok(n)) if n > 0 => {
                        output.drain(..n);
                    }
                    Some(_) => closing.handle_write_error(),
                    // Time is up: the next poll gives the rest up.
                    None => {}
                }
            }
            CloseStep::ShutdownWrite => {
                let _ = stream.get_ref().shutdown(Shutdown::Write);
            }
            CloseStep::Linger { until } => {
                let read = async { Lingered::Readable(stream.readable().await) };
                let timeout = async {
                    Timer::at(until).await;
                    Lingered::TimeUp
                };
                let stop = async {
                    match serving {
                        Some(serving) => {
                            let _ = serving.recv().await;
                        }
                        None => future::pending().await,
                    }
                    Lingered::Stopped
                };
                match stop.or(read).or(timeout).await {
                    Lingered::Readable(Ok(())) => {
                        if receive(|buf| read_now(stream, buf), |_| {}) == Received::End {
                            closing.handle_peer_closed();
                        }
                    }
                    Lingered::Readable(Err(_)) => closing.handle_peer_closed(),
                    // The next poll closes.
                    Lingered::TimeUp => {}
                    Lingered::Stopped => return,
                }
            }
            CloseStep::Close => return,
        }
    }
}

/// A connection's wake-up by decisions answered on other threads: a flag
/// and the task's waker (one pending wake-up is enough, as each wake-up takes
/// every answer), far lighter than a channel per connection.
#[derive(Debug, Default)]
struct Wakeup {
    woken: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Wakeup {
    fn wake(&self) {
        self.woken.store(true, Ordering::SeqCst);
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Until `wake` has been called since the last time this returned.
    async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.woken.swap(false, Ordering::SeqCst) {
                return Poll::Ready(());
            }
            let mut waker = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
            drop(waker);
            // A wake between the check above and the waker's registration.
            if self.woken.swap(false, Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

/// One read, into the thread's buffer (see [`poll_receive`]): what came,
/// empty at the end of input.
///
/// async-io tries the read before it waits for readiness, so without help
/// a connection would pay a `recv` that finds nothing before every wait,
/// and again each time its loop comes round for another reason (a reply
/// written, a decision answered). `drained` says the socket is taken to be
/// empty: after a read that found nothing, or one that did not fill the
/// buffer (as tokio does, an SMTP client has sent all it had). Then the
/// poll only looks at async-io's readiness, which a level-triggered re-arm
/// makes report data already there, and reads once it is ready.
async fn read_chunk(stream: &Async<TcpStream>, drained: &mut bool) -> io::Result<Vec<u8>> {
    let mut reader = stream;
    std::future::poll_fn(|cx| {
        if *drained {
            std::task::ready!(stream.poll_readable(cx))?;
        }
        let received = poll_receive(|buf| Pin::new(&mut reader).poll_read(cx, buf));
        *drained = match &received {
            Poll::Ready(Ok(data)) => !data.is_empty() && data.len() < READ_BUFFER,
            Poll::Ready(Err(_)) => false,
            Poll::Pending => true,
        };
        received
    })
    .await
}

/// A read of what the socket has now, without waiting.
fn read_now(stream: &Async<TcpStream>, buf: &mut [u8]) -> io::Result<usize> {
    std::io::Read::read(&mut stream.get_ref(), buf)
}

/// What woke a connection's task.
enum Step {
    Written(io::Result<usize>),
    /// What one read gave (see [`read_chunk`]): empty at the end of input.
    Read(io::Result<Vec<u8>>),
    Woken,
    Timer,
    Stop,
}

/// A connection's one timer, kept armed across loop iterations.
///
/// Arming an async-io timer is a round trip through the reactor (and a
/// wake-up of the thread polling it), and a session moves its deadline
/// later with nearly every command. So the timer is only moved earlier;
/// when it fires before the session's deadline it is simply armed again.
struct Deadline {
    timer: Timer,
    armed: Option<Instant>,
}

impl Deadline {
    fn new() -> Self {
        Self {
            timer: Timer::never(),
            armed: None,
        }
    }

    /// Makes sure the timer fires no later than `deadline`.
    fn arm(&mut self, deadline: Option<Instant>) {
        if let Some(deadline) = deadline {
            if self.armed.is_none_or(|armed| deadline < armed) {
                self.timer.set_at(deadline);
                self.armed = Some(deadline);
            }
        }
    }

    /// Sleeps until the armed instant, or forever.
    async fn wait(&mut self) -> Step {
        (&mut self.timer).await;
        self.armed = None;
        Step::Timer
    }
}

/// Whether `deadline` has come.
fn due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|deadline| now >= deadline)
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How a server connection's session ended.
#[derive(Debug)]
enum Ended {
    /// The session is over (or the server stopped serving it): the
    /// connection ends as this says, with this output left to write.
    Closing(LingeringClose, Vec<u8>),
    /// The peer is gone: nothing more can be said to it.
    Gone,
}

/// Lets the executor run other tasks every few steps: async-io reads and
/// writes that are ready never yield, so one busy connection (a 50 MB body)
/// would otherwise keep its thread from every other connection and timer.
async fn yield_sometimes(steps: &mut u32) {
    *steps = steps.wrapping_add(1);
    if steps.is_multiple_of(16) {
        smol::future::yield_now().await;
    }
}

/// Drives one server connection until its session is over, or the server
/// stops serving it.
async fn run_server(
    stream: &Async<TcpStream>,
    mut conn: Box<ServerConn>,
    permit: Permit,
    woken: &Wakeup,
    serving: &Receiver<()>,
) -> Ended {
    // Pinned: a receiver keeps its listener in place between polls.
    let mut stop = std::pin::pin!(serving.clone());
    let mut eof = false;
    let mut drained = false;
    let mut deadline = Deadline::new();
    let mut steps = 0u32;
    loop {
        yield_sometimes(&mut steps).await;
        if conn.is_closed() {
            let closing = LingeringClose::after_session(Instant::now(), Some(permit), eof);
            return Ended::Closing(closing, std::mem::take(conn.output()));
        }
        if serving.is_closed() {
            // The grace period is over: the handler still hears the end.
            conn.handle_shutdown(Instant::now());
            let closing = LingeringClose::at_shutdown(Instant::now(), Some(permit));
            return Ended::Closing(closing, std::mem::take(conn.output()));
        }
        let reading = !eof && conn.wants_input();
        deadline.arm(conn.poll_timeout());
        let step = {
            let mut writer = stream;
            let output = conn.output();
            let write = async {
                if output.is_empty() {
                    future::pending().await
                } else {
                    Step::Written(writer.write(output).await)
                }
            };
            let read = async {
                if reading {
                    Step::Read(read_chunk(stream, &mut drained).await)
                } else {
                    future::pending().await
                }
            };
            let wake = async {
                woken.wait().await;
                Step::Woken
            };
            let stop = async {
                let _ = stop.next().await;
                Step::Stop
            };
            stop.or(wake).or(write).or(read).or(deadline.wait()).await
        };
        let now = Instant::now();
        match step {
            Step::Written(Ok(n)) if n > 0 => {
                conn.output().drain(..n);
            }
            Step::Written(_) => {
                // The peer is gone: nothing more can be said to it, and the
                // session (and handler) learn that it ended.
                conn.output().clear();
                conn.handle_eof(now);
                return Ended::Gone;
            }
            Step::Read(Ok(data)) if !data.is_empty() => conn.handle_input(now, &data),
            Step::Read(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
            Step::Read(_) => {
                eof = true;
                conn.handle_eof(now);
            }
            Step::Woken => conn.handle_wake(now),
            Step::Timer if due(conn.poll_timeout(), now) => conn.handle_timeout(now),
            // Early: the session's deadline moved later meanwhile.
            Step::Timer => {}
            Step::Stop => {}
        }
    }
}

/// A non-blocking connect started by runtime-common, because async-io's own
/// `connect` cannot bind a source address first.
async fn connect(addr: SocketAddr, options: &DeliverOptions) -> io::Result<Async<TcpStream>> {
    let connecting = async {
        let socket = start_connect(addr, options.source)?;
        let stream = Async::new(socket)?;
        // Writable once the handshake is over, whichever way it went.
        stream.writable().await?;
        if let Some(error) = stream.get_ref().take_error()? {
            return Err(error);
        }
        stream.get_ref().peer_addr()?;
        Ok(stream)
    };
    let timeout = async {
        Timer::after(options.connect_timeout).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
    };
    connecting.or(timeout).await
}

/// Delivers `messages` to `addr` over one connection (reused for all of
/// them), and over a fresh plaintext one when the TLS policy asks for it.
/// Every message is in the report exactly once.
pub async fn deliver(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
    messages: Vec<Outbound>,
    options: &DeliverOptions,
) -> DeliveryReport {
    let mut plan = DeliveryPlan::new(messages);
    while let Some(attempt) = plan.next_attempt() {
        match connect(addr, options).await {
            Err(error) => {
                plan.connect_failed(attempt, &format!("cannot connect to {addr}: {error}"))
            }
            Ok(stream) => {
                let mut conn = attempt.start(config.clone(), server_name, Instant::now());
                run_client(&stream, &mut conn).await;
                drop(stream);
                plan.finished(conn);
            }
        }
    }
    plan.into_report()
}

/// Drives one client connection until its session is over and its output
/// written. Replies are read while the output is written, so that neither
/// side can block the other with a full socket.
async fn run_client(stream: &Async<TcpStream>, conn: &mut ClientConn) {
    let mut eof = false;
    let mut drained = false;
    let mut closing: Option<Instant> = None;
    let mut deadline = Deadline::new();
    let mut steps = 0u32;
    loop {
        yield_sometimes(&mut steps).await;
        if conn.closed().is_some() {
            if conn.output().is_empty() {
                break;
            }
            closing.get_or_insert_with(|| Instant::now() + CLOSE_FLUSH);
        }
        let next = earliest(conn.poll_timeout(), closing);
        if eof && next.is_none() && conn.output().is_empty() {
            // Nothing can move any more (the session always closes at end
            // of input; this only guards against waiting forever).
            break;
        }
        deadline.arm(next);
        let step = {
            let mut writer = stream;
            let output = conn.output();
            let write = async {
                if output.is_empty() {
                    future::pending().await
                } else {
                    Step::Written(writer.write(output).await)
                }
            };
            let read = async {
                if eof {
                    future::pending().await
                } else {
                    Step::Read(read_chunk(stream, &mut drained).await)
                }
            };
            // Reading first: replies (or a refusal in the middle of a
            // body) are taken even while the output waits for the socket.
            read.or(write).or(deadline.wait()).await
        };
        let now = Instant::now();
        match step {
            Step::Written(Ok(n)) if n > 0 => {
                conn.output().drain(..n);
                conn.handle_written(now);
            }
            Step::Written(_) => {
                conn.output().clear();
                // What the server said before going still counts.
                while receive(
                    |buf| read_now(stream, buf),
                    |data| {
                        conn.handle_input(now, data);
                    },
                ) == Received::Data
                {}
                eof = true;
                conn.handle_eof(now);
                // Whatever is left cannot reach the server any more.
                conn.output().clear();
            }
            Step::Read(Ok(data)) if !data.is_empty() => conn.handle_input(now, &data),
            Step::Read(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
            Step::Read(_) => {
                eof = true;
                conn.handle_eof(now);
            }
            Step::Timer if due(closing, now) => break,
            Step::Timer if due(conn.poll_timeout(), now) => conn.handle_timeout(now),
            Step::Timer => {}
            Step::Woken | Step::Stop => {}
        }
    }
    let _ = stream.get_ref().shutdown(Shutdown::Both);
}
