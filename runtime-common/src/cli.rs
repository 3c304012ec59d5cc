//! The command line of every runtime's `sink` and `send` examples, so that
//! `tokio-sink`, `mio-sink` and `smol-sink` (and the `send`s) take the same
//! flags and print the same lines.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use petrel_core::client::tls_policy::TlsMode;
use petrel_core::client::{ClientConfig, Delivery, Envelope, Recipient};
use petrel_core::server::{Event, InjectionPolicy, ServerConfig};
use petrel_core::tls::{
    ClientTls, ClientTlsConfig, ServerTls, ServerTlsConfig, TlsEngine, TlsVerify,
};
use petrel_core::wire::command::{ForwardPath, Host, MailParams, Mailbox, ReversePath};

use crate::client::{BodySource, MessageOutcome, Outbound};
use crate::listen::{ListenerConfig, ServeConfig, DEFAULT_BACKLOG, DEFAULT_MAX_CONNECTIONS_PER_IP};
use crate::server::{ConnectionInfo, Decision, Handler};

/// Takes `--name value` pairs (and bare `--flags`) from the arguments.
struct Flags {
    args: Vec<String>,
}

impl Flags {
    fn new(args: impl IntoIterator<Item = String>) -> Self {
        Self {
            args: args.into_iter().collect(),
        }
    }

    fn values(&self, name: &str) -> Vec<String> {
        self.args
            .windows(2)
            .filter(|pair| pair.first().is_some_and(|flag| flag == name))
            .filter_map(|pair| pair.get(1).cloned())
            .collect()
    }

    fn value<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        self.values(name)
            .pop()
            .map(|v| v.parse::<T>().map_err(|e| format!("{name} {v}: {e}")))
            .transpose()
    }

    fn present(&self, name: &str) -> bool {
        self.args.iter().any(|arg| arg == name)
    }

    /// Refuses flags nobody asked for, so typos do not pass silently.
    fn check(&self, known_values: &[&str], known_flags: &[&str]) -> Result<(), String> {
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            if known_values.contains(&arg.as_str()) {
                args.next();
            } else if !known_flags.contains(&arg.as_str()) {
                return Err(format!("unknown argument {arg:?}"));
            }
        }
        Ok(())
    }
}

fn parse_bool(name: &str, value: Option<String>, default: bool) -> Result<bool, String> {
    match value.as_deref() {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(format!("{name} {other}: expected true or false")),
    }
}

/// The sink's flags.
#[derive(Debug, Clone)]
pub struct SinkArgs {
    /// `--listen` (default 127.0.0.1:2525).
    pub listen: SocketAddr,
    /// `--tls-engine rustls|openssl|none` (default rustls).
    pub tls_engine: Option<TlsEngine>,
    /// `--cert FILE --key FILE`; a self-signed certificate otherwise.
    pub cert_key: Option<(PathBuf, PathBuf)>,
    /// `--allow-renegotiation true|false` (default false).
    pub allow_renegotiation: bool,
    /// `--max-renegotiations N` (default 3).
    pub max_renegotiations: u32,
    /// `--injection-policy reject|ignore` (default reject).
    pub injection_policy: InjectionPolicy,
    /// `--require-tls`.
    pub require_tls: bool,
    /// `--max-connections N` (default 1000).
    pub max_connections: usize,
    /// `--max-connections-per-ip N` (default 50; 0: no limit), for every
    /// client address, loopback included.
    pub max_connections_per_ip: Option<usize>,
    /// `--backlog N` (default 1024, bounded by `net.core.somaxconn`).
    pub backlog: u32,
    /// `--maildir DIR`: keep messages instead of discarding them.
    pub maildir: Option<PathBuf>,
    /// `--max-recipients N` per transaction (default 1000).
    pub max_recipients: usize,
    /// `--advertise-limits true|false`: announce `LIMITS RCPTMAX` (default
    /// true; false makes clients find the limit by its 452s).
    pub advertise_limits: bool,
    /// `--threads N`: the threads serving connections (default: one per
    /// core); for tokio-sink, the runtime's workers.
    pub threads: Option<NonZeroUsize>,
}

impl SinkArgs {
    /// Usage text.
    pub const USAGE: &'static str =
        "--listen ADDR [--tls-engine rustls|openssl|none] [--cert FILE --key FILE] \
[--allow-renegotiation true|false] [--max-renegotiations N] [--injection-policy reject|ignore] \
[--require-tls] [--max-connections N] [--max-connections-per-ip N] [--backlog N] [--maildir DIR] \
[--max-recipients N] [--advertise-limits true|false] [--threads N]";

    /// Parses the process's arguments (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let flags = Flags::new(args);
        flags.check(
            &[
                "--listen",
                "--tls-engine",
                "--cert",
                "--key",
                "--allow-renegotiation",
                "--max-renegotiations",
                "--injection-policy",
                "--max-connections",
                "--max-connections-per-ip",
                "--backlog",
                "--maildir",
                "--max-recipients",
                "--advertise-limits",
                "--threads",
            ],
            &["--require-tls"],
        )?;
        let tls_engine = match flags.values("--tls-engine").pop().as_deref() {
            None => Some(TlsEngine::Rustls),
            Some("none") => None,
            Some(engine) => Some(engine.parse::<TlsEngine>().map_err(|e| e.to_string())?),
        };
        let cert_key = match (
            flags.value::<PathBuf>("--cert")?,
            flags.value::<PathBuf>("--key")?,
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err("--cert and --key go together".into()),
        };
        Ok(Self {
            listen: flags
                .value("--listen")?
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 2525))),
            tls_engine,
            cert_key,
            allow_renegotiation: parse_bool(
                "--allow-renegotiation",
                flags.values("--allow-renegotiation").pop(),
                false,
            )?,
            max_renegotiations: flags.value("--max-renegotiations")?.unwrap_or(3),
            injection_policy: flags.value("--injection-policy")?.unwrap_or_default(),
            require_tls: flags.present("--require-tls"),
            max_connections: flags.value("--max-connections")?.unwrap_or(1000),
            // 0 turns the limit off, as in Postfix.
            max_connections_per_ip: match flags.value("--max-connections-per-ip")? {
                None => Some(DEFAULT_MAX_CONNECTIONS_PER_IP),
                Some(0) => None,
                Some(max) => Some(max),
            },
            backlog: flags.value("--backlog")?.unwrap_or(DEFAULT_BACKLOG),
            maildir: flags.value("--maildir")?,
            max_recipients: flags.value("--max-recipients")?.unwrap_or(1000),
            advertise_limits: parse_bool(
                "--advertise-limits",
                flags.values("--advertise-limits").pop(),
                true,
            )?,
            threads: flags.value("--threads")?,
        })
    }

    /// The listener this describes (reads the certificate files).
    pub fn serve_config(&self) -> Result<ServeConfig, String> {
        let mut server = ServerConfig::new("localhost");
        server.require_tls = self.require_tls;
        server.injection_policy = self.injection_policy;
        server.limits.max_recipients = self.max_recipients;
        server.extensions.limits = self.advertise_limits;
        if let Some(engine) = self.tls_engine {
            let (cert, key) = match &self.cert_key {
                Some((cert, key)) => (
                    fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?,
                    fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?,
                ),
                None => self_signed("localhost")?,
            };
            let mut tls = ServerTlsConfig::new(engine, cert, key);
            tls.allow_renegotiation = self.allow_renegotiation;
            tls.max_renegotiations = self.max_renegotiations;
            let tls = ServerTls::new(&tls).map_err(|e| e.to_string())?;
            for warning in tls.warnings() {
                eprintln!("warning: {warning}");
            }
            server.tls = Some(tls);
        }
        server.validate().map_err(|e| e.to_string())?;
        let mut listener = ListenerConfig::new(self.listen, server);
        listener.default_peer.max_connections_per_ip = self.max_connections_per_ip;
        listener.backlog = self.backlog;
        let mut serve = ServeConfig::single(listener);
        serve.max_connections = self.max_connections;
        serve.threads = self.threads;
        Ok(serve)
    }
}

/// A self-signed certificate and key (PEM) for `name`, made now.
pub fn self_signed(name: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let key =
        rcgen::generate_simple_self_signed(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    Ok((
        key.cert.pem().into_bytes(),
        key.signing_key.serialize_pem().into_bytes(),
    ))
}

/// The sink's application: accept everything, count, and keep messages in
/// a maildir when asked.
#[derive(Debug, Default)]
pub struct SinkHandler {
    accepted: AtomicU64,
    rejected: AtomicU64,
    connections: AtomicU64,
    /// Recipients of the accepted messages.
    recipients: AtomicU64,
    /// Recipients accepted in each connection's open transaction.
    open_recipients: Mutex<std::collections::HashMap<u64, u64>>,
    maildir: Option<PathBuf>,
    /// Open maildir files, by connection: the file, or why it failed.
    files: Mutex<std::collections::HashMap<u64, (std::io::Result<fs::File>, PathBuf)>>,
    sequence: AtomicU64,
}

impl SinkHandler {
    /// A sink; with `maildir`, its `tmp`, `new` and `cur` are created.
    pub fn new(maildir: Option<PathBuf>) -> Result<Self, String> {
        if let Some(dir) = &maildir {
            for sub in ["tmp", "new", "cur"] {
                fs::create_dir_all(dir.join(sub)).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
        }
        Ok(Self {
            maildir,
            ..Self::default()
        })
    }

    /// The line printed at exit.
    pub fn summary(&self) -> String {
        format!(
            "accepted={} rejected={} connections={} recipients={}",
            self.accepted.load(Ordering::SeqCst),
            self.rejected.load(Ordering::SeqCst),
            self.connections.load(Ordering::SeqCst),
            self.recipients.load(Ordering::SeqCst)
        )
    }

    /// Keeps the message in the maildir as it arrives: `Ok(true)` at the
    /// end of a message that is safely in `new/`.
    fn store(&self, conn: u64, event: &Event) -> std::io::Result<bool> {
        let Some(dir) = &self.maildir else {
            return Ok(true);
        };
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::BodyStart { .. } => {
                let n = self.sequence.fetch_add(1, Ordering::SeqCst);
                let name = format!("{}.{conn}.{n}.petrel", std::process::id());
                let path = dir.join("tmp").join(&name);
                // The entry exists even if creating the file failed, so
                // that the end of the message cannot be accepted.
                files.insert(conn, (fs::File::create(&path), path));
            }
            Event::Body(chunk) => {
                if let Some((Ok(file), _)) = files.get_mut(&conn) {
                    if let Err(error) = file.write_all(chunk) {
                        if let Some(entry) = files.get_mut(&conn) {
                            entry.0 = Err(error);
                        }
                    }
                }
            }
            Event::MessageEnd { .. } => {
                let Some((file, path)) = files.remove(&conn) else {
                    return Err(std::io::Error::other("no body was stored"));
                };
                let stored = file.and_then(|file| file.sync_all());
                let stored = stored.and_then(|()| {
                    let name = path.file_name().unwrap_or_default().to_owned();
                    fs::rename(&path, dir.join("new").join(name))
                });
                if stored.is_err() {
                    let _ = fs::remove_file(&path);
                }
                stored?;
                return Ok(true);
            }
            Event::TransactionAborted(_) | Event::Closed(_) => {
                if let Some((_, path)) = files.remove(&conn) {
                    let _ = fs::remove_file(path);
                }
            }
            _ => {}
        }
        Ok(false)
    }
}

impl Handler for SinkHandler {
    fn on_event(&self, conn: &ConnectionInfo, event: &Event, decision: Option<Decision>) {
        let stored = self.store(conn.id, event);
        match event {
            Event::Closed(_) => {
                self.connections.fetch_add(1, Ordering::SeqCst);
            }
            Event::TransactionAborted(_) => {
                self.rejected.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        let recipients = {
            let mut open = self
                .open_recipients
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match event {
                Event::Rcpt { .. } if decision.is_some() => {
                    *open.entry(conn.id).or_default() += 1;
                    0
                }
                Event::MessageEnd { .. } | Event::TransactionAborted(_) | Event::Closed(_) => {
                    open.remove(&conn.id).unwrap_or(0)
                }
                _ => 0,
            }
        };
        let Some(decision) = decision else { return };
        match (event, stored) {
            (Event::MessageEnd { .. }, Ok(_)) => {
                self.accepted.fetch_add(1, Ordering::SeqCst);
                self.recipients.fetch_add(recipients, Ordering::SeqCst);
                decision.accept();
            }
            (Event::MessageEnd { .. }, Err(error)) => {
                self.rejected.fetch_add(1, Ordering::SeqCst);
                let text = format!("cannot store the message: {error}");
                decision.respond(petrel_core::wire::reply::Reply::new(
                    451,
                    "4.3.0".parse().ok(),
                    text,
                ));
            }
            _ => decision.accept(),
        }
    }
}

/// The send example's flags.
#[derive(Debug, Clone)]
pub struct SendArgs {
    /// `--to HOST:PORT`; the host part is also the TLS server name.
    pub to: String,
    /// `--count N` messages (default 1).
    pub count: u64,
    /// `--concurrency M` connections (default 1).
    pub concurrency: usize,
    /// `--size BYTES` per message body (default 1000).
    pub size: u64,
    /// `--tls no|ifavailable|required` (default ifavailable).
    pub tls: TlsMode,
    /// `--fallback true|false` (default true).
    pub fallback: bool,
    /// `--tls-engine rustls|openssl` (default rustls).
    pub tls_engine: TlsEngine,
    /// `--verify no|ca|host|optional` (default no).
    pub verify: TlsVerify,
    /// `--ca FILE`.
    pub ca: Option<PathBuf>,
    /// `--from ADDR` (default sender@petrel.test).
    pub from: String,
    /// `--rcpt ADDR`, repeatable (default rcpt@petrel.test).
    pub rcpts: Vec<String>,
}

impl SendArgs {
    /// Usage text.
    pub const USAGE: &'static str = "--to HOST:PORT [--count N] [--concurrency M] [--size BYTES] \
[--tls no|ifavailable|required] [--fallback true|false] [--tls-engine rustls|openssl] \
[--verify no|ca|host|optional] [--ca FILE] [--from ADDR] [--rcpt ADDR]...";

    /// Parses the process's arguments (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let flags = Flags::new(args);
        flags.check(
            &[
                "--to",
                "--count",
                "--concurrency",
                "--size",
                "--tls",
                "--fallback",
                "--tls-engine",
                "--verify",
                "--ca",
                "--from",
                "--rcpt",
            ],
            &[],
        )?;
        let mut rcpts = flags.values("--rcpt");
        if rcpts.is_empty() {
            rcpts.push("rcpt@petrel.test".into());
        }
        Ok(Self {
            to: flags
                .values("--to")
                .pop()
                .ok_or("--to HOST:PORT is required")?,
            count: flags.value("--count")?.unwrap_or(1),
            concurrency: flags.value::<usize>("--concurrency")?.unwrap_or(1).max(1),
            size: flags.value("--size")?.unwrap_or(1000),
            tls: flags.value("--tls")?.unwrap_or_default(),
            fallback: parse_bool("--fallback", flags.values("--fallback").pop(), true)?,
            tls_engine: flags
                .values("--tls-engine")
                .pop()
                .map_or(Ok(TlsEngine::Rustls), |e| {
                    e.parse()
                        .map_err(|e: petrel_core::tls::UnknownTlsEngine| e.to_string())
                })?,
            verify: flags
                .values("--verify")
                .pop()
                .map_or(Ok(TlsVerify::No), |v| {
                    v.parse()
                        .map_err(|e: petrel_core::tls::UnknownTlsVerify| e.to_string())
                })?,
            ca: flags.value("--ca")?,
            from: flags
                .values("--from")
                .pop()
                .unwrap_or_else(|| "sender@petrel.test".into()),
            rcpts,
        })
    }

    /// The host part of `--to`: the TLS server name.
    pub fn server_name(&self) -> &str {
        let host = self
            .to
            .rsplit_once(':')
            .map_or(self.to.as_str(), |(host, _)| host);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The client configuration this describes (reads the CA file).
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let mut config = ClientConfig::new("petrel-send.localhost");
        config.tls_mode = self.tls;
        config.tls_fallback = self.fallback;
        if self.tls != TlsMode::No {
            let mut tls = ClientTlsConfig::new(self.tls_engine);
            tls.verify = self.verify;
            if let Some(ca) = &self.ca {
                tls.ca_pem = Some(fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?);
            }
            config.tls = Some(ClientTls::new(&tls).map_err(|e| e.to_string())?);
        }
        Ok(config)
    }

    /// Message number `n`: a unique Message-ID, and a body of `--size`
    /// octets generated as it is sent.
    pub fn message(&self, n: u64) -> Result<Outbound, String> {
        let reverse_path = ReversePath::Mailbox(mailbox(&self.from)?);
        let recipients = self
            .rcpts
            .iter()
            .map(|r| {
                Ok(Recipient {
                    path: ForwardPath::Mailbox(mailbox(r)?),
                    params: Default::default(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let header = format!(
            "From: <{}>\r\nTo: <{}>\r\nSubject: petrel-send {n}\r\nMessage-ID: <{}.{n}@petrel-send.localhost>\r\n\r\n",
            self.from,
            self.rcpts.join(">, <"),
            std::process::id()
        );
        let body = GeneratedBody::new(Bytes::from(header), self.size);
        Ok(Outbound {
            tag: n,
            envelope: Envelope {
                reverse_path,
                recipients,
                params: MailParams {
                    size: Some(body.len()),
                    ..MailParams::default()
                },
            },
            body: Box::new(body),
        })
    }
}

/// `local@domain` as a mailbox.
pub fn mailbox(address: &str) -> Result<Mailbox, String> {
    let (local, domain) = address
        .rsplit_once('@')
        .ok_or_else(|| format!("{address:?} is not local@domain"))?;
    Ok(Mailbox {
        local_part: local.to_owned(),
        domain: Host::Domain(domain.to_owned()),
    })
}

/// A header, then filler lines up to a total size, made as they are read.
#[derive(Debug)]
pub struct GeneratedBody {
    header: Bytes,
    /// Filler octets after the header.
    filler: u64,
    header_read: bool,
    remaining: u64,
}

/// One filler line (76 octets and CRLF); a line of dots would also do, but
/// a realistic line keeps dot-stuffing out of the measurements.
const FILLER: &[u8] =
    b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod temp\r\n";

impl GeneratedBody {
    /// `header` followed by filler, `size` octets in all (at least the
    /// header), always ending in CRLF.
    pub fn new(header: Bytes, size: u64) -> Self {
        let filler = size.saturating_sub(header.len() as u64);
        Self {
            header,
            filler,
            header_read: false,
            remaining: filler,
        }
    }

    /// Total octets.
    pub fn len(&self) -> u64 {
        self.header.len() as u64 + self.filler
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl BodySource for GeneratedBody {
    fn next_chunk(&mut self, max: usize) -> std::io::Result<Option<Bytes>> {
        if !self.header_read && !self.header.is_empty() {
            self.header_read = true;
            return Ok(Some(self.header.clone()));
        }
        let mut chunk = Vec::new();
        while self.remaining > 0 && chunk.len() < max {
            let left = usize::try_from(self.remaining).unwrap_or(usize::MAX);
            // Whole filler lines while they leave a remainder that can still
            // end in CRLF; then one last line of exactly what is left.
            let line = if left == FILLER.len() || left >= FILLER.len() + 2 {
                FILLER.len()
            } else {
                left
            };
            if !chunk.is_empty() && chunk.len() + line > max {
                break;
            }
            if line == FILLER.len() {
                chunk.extend_from_slice(FILLER);
            } else if line >= 2 {
                chunk.extend(std::iter::repeat_n(b'x', line - 2));
                chunk.extend_from_slice(b"\r\n");
            } else {
                // A single octet cannot be a line; DATA's end adds the CRLF.
                chunk.push(b'x');
            }
            self.remaining -= line as u64;
        }
        Ok((!chunk.is_empty()).then(|| Bytes::from(chunk)))
    }

    fn rewind(&mut self) -> std::io::Result<()> {
        self.header_read = false;
        self.remaining = self.filler;
        Ok(())
    }
}

/// The send example's counts, over all its connections, and how long each
/// delivered message took on its connection
/// ([`MessageOutcome::elapsed`]).
#[derive(Debug, Default)]
pub struct SendTally {
    delivered: AtomicU64,
    transient: AtomicU64,
    permanent: AtomicU64,
    tls: AtomicU64,
    plaintext: AtomicU64,
    elapsed: Mutex<Vec<std::time::Duration>>,
}

impl SendTally {
    /// Counts a finished message: delivered when every recipient was,
    /// permanent when any was refused for good, transient otherwise.
    pub fn add(&self, finished: &MessageOutcome) {
        let all = |d| finished.outcomes.iter().all(|o| o.delivery == d);
        let counter = if all(Delivery::Delivered) {
            let over = if finished.tls.is_some() {
                &self.tls
            } else {
                &self.plaintext
            };
            over.fetch_add(1, Ordering::SeqCst);
            self.elapsed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(finished.elapsed);
            &self.delivered
        } else if finished
            .outcomes
            .iter()
            .any(|o| o.delivery == Delivery::Permanent)
        {
            &self.permanent
        } else {
            &self.transient
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts messages that could not even be tried (connection failed).
    pub fn add_transient(&self, count: u64) {
        self.transient.fetch_add(count, Ordering::SeqCst);
    }

    /// The final line: the counts, then the median and 99th percentile of
    /// the delivered messages' times in microseconds (0 when none was).
    pub fn summary(&self) -> String {
        let mut elapsed = self
            .elapsed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        elapsed.sort_unstable();
        format!(
            "delivered={} transient={} permanent={} tls={} plaintext={} p50_us={} p99_us={}",
            self.delivered.load(Ordering::SeqCst),
            self.transient.load(Ordering::SeqCst),
            self.permanent.load(Ordering::SeqCst),
            self.tls.load(Ordering::SeqCst),
            self.plaintext.load(Ordering::SeqCst),
            percentile_us(&elapsed, 50),
            percentile_us(&elapsed, 99),
        )
    }
}

impl SendArgs {
    /// The messages of each connection: `--count` messages over at most
    /// `--concurrency` connections, each reused for its share.
    pub fn plan(&self) -> Result<Vec<Vec<Outbound>>, String> {
        shares(self.count, self.concurrency)
            .into_iter()
            .map(|range| range.map(|n| self.message(n)).collect())
            .collect()
    }

    /// Where to connect.
    pub fn addr(&self) -> Result<SocketAddr, String> {
        self.to
            .parse()
            .map_err(|e| format!("--to {}: {e}", self.to))
    }
}

/// The `p`th percentile of `sorted` (nearest rank) in whole microseconds.
fn percentile_us(sorted: &[std::time::Duration], p: usize) -> u128 {
    let rank = (sorted.len() * p).div_ceil(100);
    sorted
        .get(rank.saturating_sub(1))
        .map_or(0, std::time::Duration::as_micros)
}

/// Splits `0..count` into `parts` nearly equal ranges, one per connection.
pub fn shares(count: u64, parts: usize) -> Vec<std::ops::Range<u64>> {
    let parts = parts.max(1) as u64;
    (0..parts)
        .map(|i| (count * i / parts)..(count * (i + 1) / parts))
        .filter(|range| !range.is_empty())
        .collect()
}

/// Shared by a sink example's main: parse, or print usage and exit 2.
pub fn sink_args_or_exit(program: &str) -> (SinkArgs, ServeConfig, Arc<SinkHandler>) {
    let result = SinkArgs::parse(std::env::args().skip(1)).and_then(|args| {
        let serve = args.serve_config()?;
        let handler = Arc::new(SinkHandler::new(args.maildir.clone())?);
        Ok((args, serve, handler))
    });
    result.unwrap_or_else(|error| {
        eprintln!("{program}: {error}\nusage: {program} {}", SinkArgs::USAGE);
        std::process::exit(2)
    })
}

/// Shared by a send example's main: parse, or print usage and exit 2.
pub fn send_args_or_exit(program: &str) -> (SendArgs, Arc<ClientConfig>) {
    let result = SendArgs::parse(std::env::args().skip(1))
        .and_then(|args| Ok((args.clone(), Arc::new(args.client_config()?))));
    result.unwrap_or_else(|error| {
        eprintln!("{program}: {error}\nusage: {program} {}", SendArgs::USAGE);
        std::process::exit(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn sink_flags() {
        let sink = SinkArgs::parse(args(
            "--listen 127.0.0.1:0 --tls-engine none --require-tls --max-connections 2 --injection-policy ignore",
        ))
        .unwrap();
        assert_eq!(sink.tls_engine, None);
        assert!(sink.require_tls);
        assert_eq!(sink.max_connections, 2);

        assert_eq!(sink.injection_policy, InjectionPolicy::Ignore);
        assert!(SinkArgs::parse(args("--listne 1")).is_err());
        assert!(SinkArgs::parse(args("--injection-policy allow")).is_err());
        // require-TLS without a certificate cannot work.
        assert!(sink.serve_config().is_err());
        assert_eq!(sink.max_connections_per_ip, Some(50));
        assert_eq!(sink.backlog, 1024);
        let limited = SinkArgs::parse(args(
            "--tls-engine none --max-connections-per-ip 3 --backlog 7",
        ))
        .unwrap();
        let serve = limited.serve_config().unwrap();
        let listener = &serve.listeners[0];
        assert_eq!(listener.backlog, 7);
        assert_eq!(listener.default_peer.max_connections_per_ip, Some(3));
        let unlimited = SinkArgs::parse(args("--max-connections-per-ip 0")).unwrap();
        assert_eq!(unlimited.max_connections_per_ip, None);
        assert!(SinkArgs::parse(args("--backlog -1")).is_err());
    }

    #[test]
    fn send_flags_and_messages() {
        let send = SendArgs::parse(args(
            "--to [::1]:25 --count 5 --rcpt a@b.c --rcpt d@e.f --tls required --size 300",
        ))
        .unwrap();
        assert_eq!(send.server_name(), "::1");
        assert_eq!(send.tls, TlsMode::Required);
        assert_eq!(send.rcpts.len(), 2);
        let mut message = send.message(3).unwrap();
        let mut body = Vec::new();
        while let Some(chunk) = message.body.next_chunk(7).unwrap() {
            body.extend_from_slice(&chunk);
        }
        assert_eq!(body.len(), 300);
        assert_eq!(message.envelope.params.size, Some(300));
        assert!(body.ends_with(b"\r\n"));
        assert!(String::from_utf8_lossy(&body).contains("Message-ID: <"));
        assert_eq!(shares(10, 3), [0..3, 3..6, 6..10]);
        assert_eq!(shares(2, 5).len(), 2);
    }

    #[test]
    fn the_tally_reports_the_delivered_messages_times() {
        let tally = SendTally::default();
        let send = SendArgs::parse(args("--to 127.0.0.1:25")).unwrap();
        let finished = |delivery, millis| MessageOutcome {
            tag: 0,
            envelope: send.message(0).unwrap().envelope,
            outcomes: vec![petrel_core::client::RecipientOutcome {
                recipient: 0,
                delivery,
                reply: petrel_core::wire::reply::Reply::new(250, None, "ok"),
            }],
            tls: None,
            dsn: false,
            elapsed: std::time::Duration::from_millis(millis),
        };
        assert!(tally.summary().ends_with(" p50_us=0 p99_us=0"));
        for millis in (1..=100).rev() {
            tally.add(&finished(Delivery::Delivered, millis));
        }
        // Not delivered: not timed.
        tally.add(&finished(Delivery::Transient, 1_000_000));
        assert_eq!(
            tally.summary(),
            "delivered=100 transient=1 permanent=0 tls=0 plaintext=100 p50_us=50000 p99_us=99000"
        );
    }

    #[test]
    fn large_generated_bodies_have_exact_sizes() {
        for size in [0u64, 1, 2, 77, 78, 79, 1000, 100_003] {
            let mut body = GeneratedBody::new(Bytes::from_static(b"H: v\r\n\r\n"), size);
            let mut total = 0u64;
            while let Some(chunk) = body.next_chunk(4096).unwrap() {
                total += chunk.len() as u64;
            }
            assert_eq!(total, size.max(8), "size {size}");
        }
    }
}
