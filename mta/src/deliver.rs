//! Delivery attempts: one connection's worth of messages to one domain,
//! through the hosts routing gives, under the (binding, domain) TLS
//! policy, remembering hosts whose TLS is broken.
//!
//! The TLS decision itself is the core's (`client::tls_policy`); what this
//! module adds is what only an MTA can know:
//! - which host to try next: after a connection that gave every recipient
//!   a transient outcome (no connection, a `4xx` greeting, a STARTTLS that
//!   failed or was refused under `required`, a closed connection), the same
//!   messages go to the next address, then the next MX host;
//! - broken TLS: a host whose STARTTLS failed is remembered (per MX host,
//!   address and port) for [`BROKEN_TLS_MEMORY`]; while remembered, `ifavailable`
//!   with fallback `true` goes straight to plaintext instead of failing a
//!   handshake on every connection. `required`, and fallback `false`, try
//!   TLS every time: they must never deliver in plaintext.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use petrel_core::client::tls_policy::{TlsAction, TlsMode, TlsOutcome};
use petrel_core::client::{
    ClientConfig, Delivery, Envelope as WireEnvelope, Recipient as WireRecipient,
};
use petrel_core::tls::{ClientTls, ClientTlsConfig, TlsEngine};
use petrel_core::wire::command::{
    parse_command, Command, MailParams, Notify, Orcpt, RcptParams, Ret, ReversePath,
};
use petrel_runtime_common::client::{
    BodySource, DeliverOptions, DeliveryReport, Outbound, TlsFailed,
};

use crate::config::policy::{OutboundPolicy, Policies, Runtime};
use crate::route::{RouteError, Router, Target};
use crate::spool::message::{Envelope, QueueId};
use crate::spool::{Spool, StoredBody};

/// How long a host whose STARTTLS failed is remembered as broken.
pub const BROKEN_TLS_MEMORY: Duration = Duration::from_secs(3600);

/// One connection's worth of work: recipients of messages to one domain.
#[derive(Debug, Clone)]
pub struct Job {
    /// The binding (source address, policy).
    pub binding: String,
    /// The recipients' domain.
    pub domain: String,
    /// The messages and which of their recipients to deliver.
    pub messages: Vec<JobMessage>,
}

/// A message of a [`Job`].
#[derive(Debug, Clone)]
pub struct JobMessage {
    /// Its queue id (the body is read from the spool).
    pub id: QueueId,
    /// Its envelope as stored.
    pub envelope: Envelope,
    /// Indexes into `envelope.recipients`.
    pub recipients: Vec<usize>,
}

/// What became of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A server that offers DSN took it (2xx): it reports from here on.
    Delivered,
    /// A server that does not offer DSN took it (2xx): Petrel sends the
    /// "relayed" notice a recipient with `NOTIFY=SUCCESS` asked for.
    Relayed,
    /// Try again later (4xx, or no server could be reached).
    Transient,
    /// Do not try again (5xx, a null MX, a domain that does not exist).
    Permanent,
}

/// The outcome of one recipient, with where and how it was tried.
#[derive(Debug, Clone)]
pub struct RecipientResult {
    /// The message.
    pub id: QueueId,
    /// The recipient's index in the message's envelope.
    pub recipient: usize,
    /// What became of it.
    pub verdict: Verdict,
    /// The reply that decided it, as one line (`[internal]` for Petrel's
    /// own).
    pub reply: String,
    /// Where it was tried last.
    pub remote: Option<Remote>,
}

/// A host and address tried, and how the connection went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The MX (or gateway) host name.
    pub host: String,
    /// Its address.
    pub ip: IpAddr,
    /// TLS version and cipher, or `None` for plaintext.
    pub tls: Option<(String, String)>,
    /// What the TLS policy decided when STARTTLS failed or was skipped
    /// (`None` when TLS went as asked): Momentum's reason texts.
    pub tls_decision: Option<String>,
    /// How long the connection took, from connect to close.
    pub elapsed: Duration,
    /// How long the recipient's message took on that connection
    /// ([`elapsed`](petrel_runtime_common::client::MessageOutcome::elapsed)
    /// of its outcome); `None` where the message was not tried on it.
    pub message: Option<Duration>,
}

/// Hosts whose STARTTLS failed recently: by name, address and port, since
/// two servers on one address (a `Gateway` or `Routes` naming ports) are
/// two TLS setups, and the failure of one says nothing of the other.
#[derive(Debug, Default)]
pub struct BrokenTls {
    until: Mutex<HashMap<(String, SocketAddr), Instant>>,
}

impl BrokenTls {
    /// Remembers that `host` at `addr` failed a STARTTLS at `now`.
    pub fn remember(&self, host: &str, addr: SocketAddr, now: Instant) {
        let mut until = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        // Expired entries go whenever another is added: the map stays as
        // small as the set of hosts that failed within the last hour.
        until.retain(|_, expiry| *expiry > now);
        until.insert((host.to_ascii_lowercase(), addr), now + BROKEN_TLS_MEMORY);
    }

    /// Whether `host` at `addr` is remembered as broken at `now`.
    pub fn is_broken(&self, host: &str, addr: SocketAddr, now: Instant) -> bool {
        self.until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(host.to_ascii_lowercase(), addr))
            .is_some_and(|expiry| *expiry > now)
    }
}

/// Runs [`Job`]s.
#[derive(Debug)]
pub struct Deliverer {
    runtime: Runtime,
    policies: Arc<Policies>,
    router: Router,
    spool: Spool,
    broken_tls: BrokenTls,
}

impl Deliverer {
    /// Deliveries over `runtime`, routed by `router`, bodies from `spool`.
    pub fn new(runtime: Runtime, policies: Arc<Policies>, router: Router, spool: Spool) -> Self {
        Self {
            runtime,
            policies,
            router,
            spool,
            broken_tls: BrokenTls::default(),
        }
    }

    /// Delivers `job`: every recipient of it gets exactly one result.
    pub async fn run(&self, job: Job) -> Vec<RecipientResult> {
        let policy = self.policies.outbound(&job.binding, &job.domain);
        let targets = match self.router.route(&job.domain, &policy).await {
            Ok(targets) => targets,
            Err(error) => {
                let status = error.enhanced_status();
                let (verdict, code) = match error {
                    // RFC 7505 §4.2's reply for a domain that takes no mail.
                    RouteError::NullMx => (Verdict::Permanent, 556),
                    _ if error.is_permanent() => (Verdict::Permanent, 550),
                    _ => (Verdict::Transient, 451),
                };
                let reply = format!("{code} {status} [internal] {error}");
                return everyone(&job, verdict, &reply, None);
            }
        };
        let mut last = everyone(
            &job,
            Verdict::Transient,
            "451 4.4.1 [internal] no host to deliver to",
            None,
        );
        for (host, ip, port) in addresses(&targets) {
            let results = self
                .attempt(&job, &policy, &host, SocketAddr::new(ip, port))
                .await;
            // A connection that moved nobody forward is the host's problem
            // (unreachable, 4xx greeting, TLS refused under `required`):
            // the next address may do better.
            let nobody_forward = results.iter().all(|r| r.verdict == Verdict::Transient);
            last = results;
            if !nobody_forward {
                break;
            }
        }
        last
    }

    async fn attempt(
        &self,
        job: &Job,
        policy: &OutboundPolicy,
        host: &str,
        addr: SocketAddr,
    ) -> Vec<RecipientResult> {
        let now = Instant::now();
        let known_broken = policy.tls == TlsMode::IfAvailable
            && policy.tls_ifavailable_fallback
            && self.broken_tls.is_broken(host, addr, now);
        let config = match client_config(policy, known_broken) {
            Ok(config) => Arc::new(config),
            Err(why) => {
                return everyone(
                    job,
                    Verdict::Transient,
                    &format!("451 4.3.5 [internal] {why}"),
                    None,
                )
            }
        };
        // A message unreadable now is left out, and so stays transient
        // (see `results`): the others still go.
        let outbound: Vec<Outbound> = job
            .messages
            .iter()
            .enumerate()
            .filter_map(|(index, message)| self.outbound(index, message).ok())
            .collect();
        let options = DeliverOptions {
            source: policy.bind_address,
            ..DeliverOptions::default()
        };
        let started = Instant::now();
        let report = self.deliver(addr, host, config, outbound, options).await;
        let elapsed = started.elapsed();
        if report
            .tls_failures
            .iter()
            .any(|f| is_handshake_failure(&f.outcome))
        {
            self.broken_tls.remember(host, addr, Instant::now());
        }
        let decision = if known_broken {
            Some(format!(
                "STARTTLS skipped: it failed with this host within the last {} minutes; plaintext (TLS_Ifavailable_Fallback)",
                BROKEN_TLS_MEMORY.as_secs() / 60
            ))
        } else {
            tls_decision(&report.tls_failures)
        };
        let remote = Remote {
            host: host.to_owned(),
            ip: addr.ip(),
            tls: report
                .finished
                .iter()
                .find_map(|m| m.tls.as_ref())
                .map(|info| (info.version.to_string(), info.cipher.clone())),
            tls_decision: decision,
            elapsed,
            message: None,
        };
        results(job, &remote, &report)
    }

    /// The message as the runtime's client takes it, with its body read
    /// from the spool.
    fn outbound(&self, index: usize, message: &JobMessage) -> Result<Outbound, String> {
        let body = self
            .spool
            .open_body(message.id)
            .map_err(|e| format!("cannot read the message from the spool: {e}"))?;
        let size = usize::try_from(body.len()).unwrap_or(usize::MAX);
        let envelope = wire_envelope(&message.envelope, &message.recipients, size)?;
        Ok(Outbound {
            tag: u64::try_from(index).unwrap_or(u64::MAX),
            envelope,
            body: Box::new(SpoolBody(body)),
        })
    }

    async fn deliver(
        &self,
        addr: SocketAddr,
        host: &str,
        config: Arc<ClientConfig>,
        messages: Vec<Outbound>,
        options: DeliverOptions,
    ) -> DeliveryReport {
        let host = host.to_owned();
        match self.runtime {
            Runtime::Tokio => petrel_tokio::deliver(addr, &host, config, messages, &options).await,
            Runtime::Mio => {
                let run = move || petrel_mio::deliver(addr, &host, config, messages, &options);
                tokio::task::spawn_blocking(run).await.unwrap_or_default()
            }
            Runtime::Smol => match smol_executor() {
                Some(executor) => {
                    executor
                        .spawn(async move {
                            petrel_smol::deliver(addr, &host, config, messages, &options).await
                        })
                        .await
                }
                // No thread for it: each attempt on a blocking thread.
                None => {
                    let run = move || {
                        smol::block_on(petrel_smol::deliver(
                            addr, &host, config, messages, &options,
                        ))
                    };
                    tokio::task::spawn_blocking(run).await.unwrap_or_default()
                }
            },
        }
    }
}

/// The executor smol's deliveries run on: one thread of its own, started
/// at the first, that also drives async-io's reactor (`smol::block_on`
/// does when nothing else holds it), so a socket's readiness wakes the
/// task on the thread that polls it. A `block_on` per attempt on tokio's
/// blocking threads instead had every wake-up cross threads through the
/// reactor, and cost smol's relay a third more CPU per message than
/// tokio's (`mta/BENCH.md`). Short connections, few cores: one thread is
/// smol's faster setting for the sinks too (README, "Benchmarks").
fn smol_executor() -> Option<&'static smol::Executor<'static>> {
    static EXECUTOR: smol::Executor<'static> = smol::Executor::new();
    static STARTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let started = STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("petrel-smol-deliver".into())
            .spawn(|| smol::block_on(EXECUTOR.run(std::future::pending::<()>())))
            .is_ok()
    });
    started.then_some(&EXECUTOR)
}

/// Every address of every target, in order, with its port.
fn addresses(targets: &[Target]) -> Vec<(String, IpAddr, u16)> {
    targets
        .iter()
        .flat_map(|t| t.addrs.iter().map(move |ip| (t.host.clone(), *ip, t.port)))
        .collect()
}

/// A handshake that failed, timed out or met a certificate it rejected: the
/// host's TLS is broken. A refused STARTTLS (`454`) is the server's choice
/// of the moment, and not remembered.
fn is_handshake_failure(outcome: &TlsOutcome) -> bool {
    matches!(
        outcome,
        TlsOutcome::HandshakeFailed(_)
            | TlsOutcome::CertificateRejected(_)
            | TlsOutcome::HandshakeTimedOut
    )
}

/// The log's account of the TLS decisions of one delivery.
fn tls_decision(failures: &[TlsFailed]) -> Option<String> {
    let texts: Vec<String> = failures
        .iter()
        .map(|failed| {
            let what = match &failed.outcome {
                TlsOutcome::NotOffered => "STARTTLS not advertised".to_owned(),
                TlsOutcome::Refused(reply) => {
                    format!("STARTTLS refused: {}", one_line(&reply.to_bytes()))
                }
                TlsOutcome::HandshakeFailed(why) => format!("TLS handshake failed: {why}"),
                TlsOutcome::CertificateRejected(why) => format!("certificate rejected: {why}"),
                TlsOutcome::HandshakeTimedOut => "TLS handshake timed out".to_owned(),
                other => format!("{other:?}"),
            };
            let action = match &failed.action {
                TlsAction::ReconnectPlaintext => {
                    "delivered over a new plaintext connection (TLS_Ifavailable_Fallback)"
                        .to_owned()
                }
                TlsAction::Defer(reply) => format!("deferred: {}", one_line(&reply.to_bytes())),
                TlsAction::ContinuePlaintext => "plaintext".to_owned(),
                other => format!("{other:?}"),
            };
            format!("{what}; {action}")
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join("; then "))
}

/// The client's configuration under `policy`; with `plaintext`, no STARTTLS
/// at all (a host remembered as broken, under `ifavailable` + fallback).
fn client_config(policy: &OutboundPolicy, plaintext: bool) -> Result<ClientConfig, String> {
    let mut config = ClientConfig::new(policy.ehlo_hostname.clone());
    config.tls_mode = if plaintext { TlsMode::No } else { policy.tls };
    config.tls_fallback = policy.tls_ifavailable_fallback;
    let timeouts = &mut config.timeouts;
    let wait = policy.delivery_response_timeout;
    timeouts.greeting = wait;
    timeouts.command = wait;
    timeouts.mail = wait;
    timeouts.rcpt = wait;
    timeouts.data_init = wait;
    timeouts.tls_handshake = wait.min(Duration::from_secs(60));
    if config.tls_mode != TlsMode::No {
        let mut tls = ClientTlsConfig::new(policy.tls_engine);
        tls.verify = policy.tls_verify;
        if let Some(ca) = &policy.tls_ca {
            tls.ca_pem =
                Some(std::fs::read(ca).map_err(|e| format!("TLS_CA {}: {e}", ca.display()))?);
        }
        if let Some((certificate, key)) = &policy.client_certificate {
            let read = |path: &std::path::Path| {
                std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
            };
            tls.client_cert = Some((read(certificate)?, read(key)?));
        }
        config.tls = Some(
            ClientTls::new(&tls)
                .map_err(|e| format!("TLS ({}): {e}", engine_name(policy.tls_engine)))?,
        );
    }
    Ok(config)
}

fn engine_name(engine: TlsEngine) -> &'static str {
    engine.as_str()
}

/// The core's envelope for the stored one, with only `recipients`.
fn wire_envelope(
    envelope: &Envelope,
    recipients: &[usize],
    size: usize,
) -> Result<WireEnvelope, String> {
    let reverse_path = if envelope.sender.is_empty() {
        ReversePath::Null
    } else {
        match parse_command(format!("MAIL FROM:<{}>", envelope.sender).as_bytes(), true) {
            Ok(Command::Mail { reverse_path, .. }) => reverse_path,
            _ => {
                return Err(format!(
                    "stored sender {:?} does not parse",
                    envelope.sender
                ))
            }
        }
    };
    let mut wire = Vec::with_capacity(recipients.len());
    let mut smtputf8 = !envelope.sender.is_ascii();
    for &index in recipients {
        let stored = envelope
            .recipients
            .get(index)
            .ok_or_else(|| format!("no recipient {index}"))?;
        smtputf8 |= !stored.address.is_ascii();
        let path = match parse_command(format!("RCPT TO:<{}>", stored.address).as_bytes(), true) {
            Ok(Command::Rcpt { forward_path, .. }) => forward_path,
            _ => {
                return Err(format!(
                    "stored recipient {:?} does not parse",
                    stored.address
                ))
            }
        };
        wire.push(WireRecipient {
            path,
            params: RcptParams {
                notify: stored.notify.as_deref().and_then(notify),
                orcpt: stored.orcpt.as_deref().and_then(orcpt),
            },
        });
    }
    Ok(WireEnvelope {
        reverse_path,
        recipients: wire,
        params: MailParams {
            size: u64::try_from(size).ok(),
            smtputf8,
            ret: match envelope.ret.as_deref() {
                Some("FULL") => Some(Ret::Full),
                Some("HDRS") => Some(Ret::Hdrs),
                _ => None,
            },
            envid: envelope.envid.clone(),
            ..MailParams::default()
        },
    })
}

fn notify(text: &str) -> Option<Notify> {
    if text.eq_ignore_ascii_case("NEVER") {
        return Some(Notify::Never);
    }
    let has = |word: &str| text.split(',').any(|w| w.eq_ignore_ascii_case(word));
    Some(Notify::Some {
        success: has("SUCCESS"),
        failure: has("FAILURE"),
        delay: has("DELAY"),
    })
}

fn orcpt(text: &str) -> Option<Orcpt> {
    let (addr_type, address) = text.split_once(';')?;
    Some(Orcpt {
        addr_type: addr_type.to_owned(),
        address: address.to_owned(),
    })
}

fn one_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end()
        .replace("\r\n", " ")
}

/// A body read from the spool as the client session wants it: a message
/// being delivered is never held whole in memory.
struct SpoolBody(StoredBody);

impl BodySource for SpoolBody {
    fn next_chunk(&mut self, max: usize) -> std::io::Result<Option<Bytes>> {
        self.0.next_chunk(max)
    }

    fn rewind(&mut self) -> std::io::Result<()> {
        self.0.rewind();
        Ok(())
    }
}

/// One result per recipient of `job`, all alike.
fn everyone(
    job: &Job,
    verdict: Verdict,
    reply: &str,
    remote: Option<&Remote>,
) -> Vec<RecipientResult> {
    job.messages
        .iter()
        .flat_map(|message| {
            message
                .recipients
                .iter()
                .map(move |&recipient| RecipientResult {
                    id: message.id,
                    recipient,
                    verdict,
                    reply: reply.to_owned(),
                    remote: remote.cloned(),
                })
        })
        .collect()
}

/// The results of one connection: its report matched back to the job's
/// recipients by tag (the message's index in the job). A message that
/// could not be given to the runtime (its body unreadable), or a recipient
/// the report misses, stays transient: nobody is ever lost.
fn results(job: &Job, remote: &Remote, report: &DeliveryReport) -> Vec<RecipientResult> {
    let mut all = Vec::new();
    for (index, message) in job.messages.iter().enumerate() {
        let outcome = report
            .finished
            .iter()
            .find(|m| usize::try_from(m.tag).ok() == Some(index));
        for (position, &recipient) in message.recipients.iter().enumerate() {
            let decided = outcome.and_then(|m| m.outcomes.iter().find(|o| o.recipient == position));
            let dsn = outcome.is_some_and(|m| m.dsn);
            let (verdict, reply) = match decided {
                Some(one) => (
                    match one.delivery {
                        Delivery::Delivered if dsn => Verdict::Delivered,
                        Delivery::Delivered => Verdict::Relayed,
                        Delivery::Transient => Verdict::Transient,
                        Delivery::Permanent => Verdict::Permanent,
                    },
                    one_line(&one.reply.to_bytes()),
                ),
                None => (
                    Verdict::Transient,
                    "451 4.3.0 [internal] the message could not be read from the spool".to_owned(),
                ),
            };
            all.push(RecipientResult {
                id: message.id,
                recipient,
                verdict,
                reply,
                remote: Some(Remote {
                    message: outcome.map(|m| m.elapsed),
                    ..remote.clone()
                }),
            });
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::message::Recipient;
    use petrel_core::client::RecipientOutcome;
    use petrel_core::wire::reply::Reply;
    use petrel_runtime_common::client::MessageOutcome;

    fn stored(recipients: &[&str]) -> Envelope {
        Envelope {
            sender: "a@example.org".into(),
            recipients: recipients
                .iter()
                .map(|address| Recipient {
                    address: (*address).into(),
                    notify: Some("SUCCESS,FAILURE".into()),
                    orcpt: Some("rfc822;orig@example.net".into()),
                })
                .collect(),
            ret: Some("HDRS".into()),
            envid: Some("env-1".into()),
            received_at: std::time::SystemTime::UNIX_EPOCH,
            client: "127.0.0.1:1".parse().unwrap(),
            binding: "default".into(),
        }
    }

    #[test]
    fn the_wire_envelope_keeps_the_dsn_parameters_of_the_chosen_recipients() {
        let envelope = stored(&["x@a.test", "y@b.test", "\"q u\"@b.test"]);
        let wire = wire_envelope(&envelope, &[1, 2], 10).unwrap();
        let addresses: Vec<String> = wire
            .recipients
            .iter()
            .map(|r| match &r.path {
                petrel_core::wire::command::ForwardPath::Mailbox(m) => m.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(addresses, ["y@b.test", "\"q u\"@b.test"]);
        assert_eq!(
            wire.recipients[0].params.notify,
            Some(Notify::Some {
                success: true,
                failure: true,
                delay: false
            })
        );
        assert_eq!(
            wire.recipients[0].params.orcpt.as_ref().unwrap().address,
            "orig@example.net"
        );
        assert_eq!(wire.params.ret, Some(Ret::Hdrs));
        assert_eq!(wire.params.envid.as_deref(), Some("env-1"));
        assert_eq!(wire.params.size, Some(10));
        assert!(wire_envelope(&envelope, &[7], 10).is_err());
    }

    #[test]
    fn results_follow_the_tags_not_the_order_nor_the_envelopes() {
        // Two messages with the same envelope: finished in reverse order,
        // one delivered and one deferred; a third never given to the
        // runtime (its body unreadable).
        let envelope = stored(&["x@a.test"]);
        let job = Job {
            binding: "default".into(),
            domain: "a.test".into(),
            messages: (0..3)
                .map(|n| JobMessage {
                    id: QueueId(n),
                    envelope: envelope.clone(),
                    recipients: vec![0],
                })
                .collect(),
        };
        let wire = wire_envelope(&envelope, &[0], 1).unwrap();
        let outcome = |tag, code: u16, delivery| MessageOutcome {
            tag,
            envelope: wire.clone(),
            outcomes: vec![RecipientOutcome {
                recipient: 0,
                delivery,
                reply: Reply::new(code, None, "text"),
            }],
            tls: None,
            dsn: true,
            elapsed: Duration::from_millis(u64::from(code)),
        };
        let report = DeliveryReport {
            finished: vec![
                outcome(1, 451, Delivery::Transient),
                outcome(0, 250, Delivery::Delivered),
            ],
            ..DeliveryReport::default()
        };
        let remote = Remote {
            host: "mx.a.test".into(),
            ip: "127.0.0.1".parse().unwrap(),
            tls: None,
            tls_decision: None,
            elapsed: Duration::ZERO,
            message: None,
        };
        let results = results(&job, &remote, &report);
        let verdicts: Vec<_> = results.iter().map(|r| (r.id.0, r.verdict)).collect();
        assert_eq!(
            verdicts,
            [
                (0, Verdict::Delivered),
                (1, Verdict::Transient),
                (2, Verdict::Transient)
            ]
        );
        assert_eq!(results[0].reply, "250 text");
        // Each with its own message's time; the one not in the report
        // has none.
        let times: Vec<_> = results
            .iter()
            .map(|r| r.remote.as_ref().and_then(|remote| remote.message))
            .collect();
        assert_eq!(
            times,
            [
                Some(Duration::from_millis(250)),
                Some(Duration::from_millis(451)),
                None
            ]
        );
    }

    #[test]
    fn broken_tls_is_remembered_for_an_hour_per_host_address_and_port() {
        let memory = BrokenTls::default();
        let now = Instant::now();
        let addr: SocketAddr = "192.0.2.1:25".parse().unwrap();
        let other: SocketAddr = "192.0.2.2:25".parse().unwrap();
        let other_port: SocketAddr = "192.0.2.1:2525".parse().unwrap();
        assert!(!memory.is_broken("mx.example", addr, now));
        memory.remember("MX.example", addr, now);
        assert!(memory.is_broken("mx.example", addr, now + Duration::from_secs(3599)));
        assert!(!memory.is_broken("mx.example", other, now));
        assert!(!memory.is_broken("mx.example", other_port, now));
        assert!(!memory.is_broken("mx2.example", addr, now));
        assert!(!memory.is_broken("mx.example", addr, now + BROKEN_TLS_MEMORY));
    }
}
