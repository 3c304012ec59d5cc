//! Petrel's SMTP sessions driven over tokio: one task per connection.
//!
//! Everything that is not waiting for sockets, timers or wake-ups lives in
//! `petrel-runtime-common` (and the protocol itself in `petrel-core`); this
//! crate is the loop around them.
//!
//! Serving, with an application that accepts every message:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use petrel_core::server::{Event, ServerConfig};
//! use petrel_tokio::{ConnectionInfo, Decision, Handler, ListenerConfig, ServeConfig};
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
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let listener = ListenerConfig::new("127.0.0.1:0".parse().unwrap(), ServerConfig::new("mx.example"));
//! let server = petrel_tokio::serve(ServeConfig::single(listener), Arc::new(AcceptAll)).await?;
//! println!("listening on {:?}", server.local_addrs());
//! server.shutdown(Duration::from_secs(1)).await;
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use petrel_core::client::ClientConfig;
use petrel_runtime_common::accept::AcceptError;
use petrel_runtime_common::client::{ClientConn, DeliveryPlan};
use petrel_runtime_common::close::{CloseStep, LingeringClose};
use petrel_runtime_common::listen::{Admission, ConnectionLimit, Gate, Permit};
use petrel_runtime_common::server::ServerConn;
use petrel_runtime_common::{poll_receive, receive, Received, ACCEPT_BACKOFF, CLOSE_FLUSH};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Notify};

pub use petrel_runtime_common::client::{
    BodySource, DeliverOptions, DeliveryReport, MessageOutcome, Outbound, TlsFailed,
};
pub use petrel_runtime_common::listen::{ListenerConfig, Network, PeerConfig, ServeConfig};
pub use petrel_runtime_common::server::{Answer, ConnectionInfo, Decision, Handler, Hold};

/// A running server.
#[derive(Debug)]
pub struct Server {
    addrs: Vec<SocketAddr>,
    /// Turns true to stop accepting; the listeners' tasks end.
    stop_accepting: watch::Sender<bool>,
    /// Turns true when the grace period is over; connections end.
    stop_serving: watch::Sender<bool>,
    /// Sockets still open, served or refused, lingering included.
    open: Arc<ConnectionLimit>,
    idle: Arc<Notify>,
}

impl Server {
    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Stops accepting, lets the sessions in progress finish (by QUIT, by
    /// closing, or by their own timeouts) and the sockets of those that
    /// ended close, for at most `grace`; then the sessions left say `421`
    /// and end, and the sockets left close.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop_accepting.send(true);
        let _ = tokio::time::timeout(grace, self.all_closed()).await;
        let _ = self.stop_serving.send(true);
        // The sessions cut now say 421 and close, at once; wait for that
        // too, so that a program exiting after `shutdown` does not cancel
        // it. (The bound only guards against a task that never runs.)
        let _ = tokio::time::timeout(CLOSE_FLUSH, self.all_closed()).await;
    }

    /// Until no socket is left.
    async fn all_closed(&self) {
        while self.open.active() > 0 {
            // Checked again at least every 50 ms in case the last
            // notification raced with the load above.
            let _ = tokio::time::timeout(Duration::from_millis(50), self.idle.notified()).await;
        }
    }
}

/// Binds every listener and starts serving on the current tokio runtime.
pub async fn serve(config: ServeConfig, handler: Arc<dyn Handler>) -> io::Result<Server> {
    let (stop_accepting, accepting) = watch::channel(false);
    let (stop_serving, serving) = watch::channel(false);
    let idle = Arc::new(Notify::new());
    let notify = idle.clone();
    let open = ConnectionLimit::new(usize::MAX, Box::new(move || notify.notify_waiters()));
    let limit = ConnectionLimit::new(config.max_connections, Box::new(|| {}));
    let ids = Arc::new(AtomicU64::new(0));
    let mut addrs = Vec::new();
    for listener_config in config.listeners {
        let (gate, listener) = Gate::bind(listener_config, limit.clone())?;
        let listener = TcpListener::from_std(listener)?;
        addrs.push(gate.config().addr);
        let accept = Accept {
            listener,
            gate,
            open: open.clone(),
            handler: handler.clone(),
            ids: ids.clone(),
            serving: serving.clone(),
        };
        tokio::spawn(accept.run(accepting.clone()));
    }
    Ok(Server {
        addrs,
        stop_accepting,
        stop_serving,
        open,
        idle,
    })
}

/// One listener's accept loop.
struct Accept {
    listener: TcpListener,
    gate: Arc<Gate>,
    /// Counts the open sockets, for shutdown.
    open: Arc<ConnectionLimit>,
    handler: Arc<dyn Handler>,
    ids: Arc<AtomicU64>,
    serving: watch::Receiver<bool>,
}

impl Accept {
    async fn run(self, mut accepting: watch::Receiver<bool>) {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        if AcceptError::classify(&error) == AcceptError::OutOfResources {
                            tokio::time::sleep(ACCEPT_BACKOFF).await;
                        }
                        continue;
                    }
                },
                _ = accepting.changed() => return,
            };
            self.start(stream, peer);
        }
    }

    fn start(&self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        // Held by the task until its socket is closed: shutdown waits for
        // that (the place never runs out).
        let open = self.open.try_acquire();
        let serving = self.serving.clone();
        let (config, permit) = match self.gate.admit(peer.ip()) {
            Admission::Admitted { config, permit } => (config, permit),
            Admission::Refused { reply } => {
                tokio::spawn(async move {
                    let _open = open;
                    let mut stream = stream;
                    let mut reply = reply;
                    let closing = LingeringClose::refused(now());
                    close(&mut stream, &mut reply, closing, Some(serving)).await;
                });
                return;
            }
        };
        let info = ConnectionInfo {
            id: self.ids.fetch_add(1, Ordering::SeqCst),
            peer,
            local: self.gate.local_addr(|| stream.local_addr()),
        };
        let handler = self.handler.clone();
        tokio::spawn(async move {
            let _open = open;
            let wake = Arc::new(Notify::new());
            let waker = wake.clone();
            // Boxed: moved into `run_server`, it would otherwise take its
            // room in this task's future and again in that one's.
            let conn = Box::new(ServerConn::new(
                config,
                info,
                handler,
                now(),
                Box::new(move || waker.notify_one()),
            ));
            run_server(stream, conn, permit, wake, serving).await;
        });
    }
}

/// One read, into the thread's buffer (see [`poll_receive`]): what came,
/// empty at the end of input.
async fn read_chunk(reader: &mut (impl AsyncRead + Unpin)) -> io::Result<Vec<u8>> {
    std::future::poll_fn(|cx| {
        poll_receive(|buf| {
            let mut buf = ReadBuf::new(buf);
            Pin::new(&mut *reader)
                .poll_read(cx, &mut buf)
                .map_ok(|()| buf.filled().len())
        })
    })
    .await
}

/// The time, from tokio's clock (so that paused test time is honoured).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A tokio `Instant` for a deadline, far in the future when there is none.
fn sleep_target(deadline: Option<Instant>) -> tokio::time::Instant {
    deadline.map_or_else(
        || tokio::time::Instant::now() + Duration::from_secs(86_400),
        tokio::time::Instant::from_std,
    )
}

/// Ends a connection as `closing` says (see
/// [`petrel_runtime_common::close`]), writing what is left of `output`;
/// lingering ends early when the server stops serving (`serving` changes).
async fn close(
    stream: &mut TcpStream,
    output: &mut Vec<u8>,
    mut closing: LingeringClose,
    mut serving: Option<watch::Receiver<bool>>,
) {
    loop {
        match closing.poll(now(), !output.is_empty()) {
            CloseStep::Flush { until } => {
                let until = tokio::time::Instant::from_std(until);
                match tokio::time::timeout_at(until, stream.write(output)).await {
                    Ok(Ok(n)) if n > 0 => {
                        output.drain(..n);
                    }
                    Ok(_) => closing.handle_write_error(),
                    // Time is up: the next poll gives the rest up.
                    Err(_) => {}
                }
            }
            CloseStep::ShutdownWrite => {
                let _ = stream.shutdown().await;
            }
            CloseStep::Linger { until } => {
                let until = tokio::time::Instant::from_std(until);
                tokio::select! {
                    ready = tokio::time::timeout_at(until, stream.readable()) => match ready {
                        Ok(Ok(())) => {
                            if receive(|buf| stream.try_read(buf), |_| {}) == Received::End {
                                closing.handle_peer_closed();
                            }
                        }
                        Ok(Err(_)) => closing.handle_peer_closed(),
                        // Time is up: the next poll closes.
                        Err(_) => {}
                    },
                    () = stopped(&mut serving) => return,
                }
            }
            CloseStep::Close => return,
        }
    }
}

/// When `serving` changes; never without one.
async fn stopped(serving: &mut Option<watch::Receiver<bool>>) {
    match serving {
        Some(serving) => {
            let _ = serving.changed().await;
        }
        None => std::future::pending().await,
    }
}

async fn run_server(
    mut stream: TcpStream,
    mut conn: Box<ServerConn>,
    permit: Permit,
    wake: Arc<Notify>,
    mut serving: watch::Receiver<bool>,
) {
    let mut eof = false;
    let closing = loop {
        if conn.is_closed() {
            break LingeringClose::after_session(now(), Some(permit), eof);
        }
        let deadline = conn.poll_timeout();
        let reading = conn.wants_input() && !eof;
        let writing = !conn.output().is_empty();
        let (mut reader, mut writer) = stream.split();
        tokio::select! {
            written = writer.write(conn.output()), if writing => match written {
                Ok(n) if n > 0 => { conn.output().drain(..n); }
                // The peer is gone: the session learns it as an end of input.
                _ => {
                    conn.output().clear();
                    conn.handle_eof(now());
                    return;
                }
            },
            read = read_chunk(&mut reader), if reading => match read {
                Ok(data) if !data.is_empty() => conn.handle_input(now(), &data),
                _ => {
                    eof = true;
                    conn.handle_eof(now());
                }
            },
            () = wake.notified() => conn.handle_wake(now()),
            () = tokio::time::sleep_until(sleep_target(deadline)), if deadline.is_some() => {
                conn.handle_timeout(now());
            }
            _ = serving.changed() => {
                // The grace period is over: the session says 421 and ends,
                // and the application hears of any transaction cut.
                conn.handle_shutdown(now());
                break LingeringClose::at_shutdown(now(), Some(permit));
            }
        }
    };
    close(&mut stream, conn.output(), closing, Some(serving)).await;
}

async fn connect(addr: SocketAddr, options: &DeliverOptions) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = options.source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = tokio::time::timeout(options.connect_timeout, socket.connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
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
                let mut conn = attempt.start(config.clone(), server_name, now());
                run_client(stream, &mut conn).await;
                plan.finished(conn);
            }
        }
    }
    plan.into_report()
}

async fn run_client(mut stream: TcpStream, conn: &mut ClientConn) {
    let mut eof = false;
    loop {
        if conn.closed().is_some() {
            let closing = LingeringClose::outbound(now());
            return close(&mut stream, conn.output(), closing, None).await;
        }
        let deadline = conn.poll_timeout();
        let writing = !conn.output().is_empty();
        let (mut reader, mut writer) = stream.split();
        tokio::select! {
            written = writer.write(conn.output()), if writing => match written {
                Ok(n) if n > 0 => {
                    conn.output().drain(..n);
                    conn.handle_written(now());
                }
                _ => {
                    conn.output().clear();
                    // What the server said before going still counts.
                    while receive(|buf| stream.try_read(buf), |data| {
                        conn.handle_input(now(), data);
                    }) == Received::Data {}
                    eof = true;
                    conn.handle_eof(now());
                }
            },
            read = read_chunk(&mut reader), if !eof => match read {
                Ok(data) if !data.is_empty() => conn.handle_input(now(), &data),
                _ => {
                    eof = true;
                    conn.handle_eof(now());
                }
            },
            () = tokio::time::sleep_until(sleep_target(deadline)), if deadline.is_some() => {
                conn.handle_timeout(now());
            }
        }
    }
}
