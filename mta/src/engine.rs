//! The thread that owns the queue manager and carries out what it asks.
//!
//! [`crate::queue::Queue`] decides and does no IO; this thread gives it
//! messages (stored by the listeners, recovered at start, or bounces),
//! delivery results, operator requests and the clock, and does what comes
//! out: delivery attempts (on a tokio runtime of their own, through
//! [`crate::deliver`]), spool updates and removals, bounces (built by
//! [`crate::bounce`], stored as new messages), and log records.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde_json::json;

use crate::bounce::{self, Reporting};
use crate::config::policy::Policies;
use crate::control::Request;
use crate::deliver::{Deliverer, Job, JobMessage, Remote, Verdict};
use crate::log::{rfc3339, Log};
use crate::queue::{
    Attempt, AttemptId, Event, LogEvent, LogKind, Outcome, Queue, RecipientResult, Response,
    Schedule,
};
use crate::route::Router;
use crate::spool::message::QueueId;
use crate::spool::{Spool, StoredMessage};

/// Originals larger than this come back in a bounce as their headers only.
const MAX_RETURNED: usize = 1024 * 1024;

/// The longest the thread sleeps without looking at the clock: a clock
/// step (a suspended machine) is noticed within it.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// What the engine is told.
#[derive(Debug)]
pub enum Input {
    /// A message is durable in the spool (received, or a bounce).
    Stored(StoredMessage),
    /// An attempt ended.
    Finished {
        /// Which.
        attempt: AttemptId,
        /// One result per recipient of it.
        results: Vec<crate::deliver::RecipientResult>,
    },
    /// An operator's request; the answer goes back on the sender.
    Control(Request, Sender<Result<String, String>>),
    /// Start no more attempts; end once none is in flight or at the
    /// deadline, whichever comes first.
    Stop(Instant),
}

/// The running engine.
#[derive(Debug)]
pub struct Engine {
    inputs: Sender<Input>,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts the engine with the messages the spool recovered.
    pub fn start(
        policies: Arc<Policies>,
        spool: Spool,
        recovered: Vec<StoredMessage>,
        log: Log,
        router: Router,
    ) -> std::io::Result<Engine> {
        let (inputs, received) = mpsc::channel();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("petrel-deliver")
            .enable_all()
            .build()?;
        let deliverer = Arc::new(Deliverer::new(
            policies.global.runtime,
            policies.clone(),
            router,
            spool.clone(),
        ));
        let schedules = policies.clone();
        let queue =
            Queue::new(move |binding, domain| Schedule::from(&schedules.outbound(binding, domain)));
        let mut state = State {
            queue,
            spool,
            log,
            hostname: policies.global.hostname.clone(),
            deliverer,
            runtime,
            inputs: inputs.clone(),
            remotes: HashMap::new(),
            stopping: None,
        };
        let thread = std::thread::Builder::new()
            .name("petrel-queue".into())
            .spawn(move || {
                let now = SystemTime::now();
                for message in recovered {
                    state.queue.handle_message(now, message);
                }
                state.run(&received);
                // Attempts still running (past the grace period) are
                // abandoned, not waited for: their recipients are pending
                // in the spool.
                state.runtime.shutdown_background();
            })?;
        Ok(Engine {
            inputs,
            thread: Some(thread),
        })
    }

    /// Where to send [`Input`]s.
    pub fn inputs(&self) -> Sender<Input> {
        self.inputs.clone()
    }

    /// Starts no more attempts, waits at most `grace` for those in flight,
    /// and stops. Recipients of attempts still unfinished stay pending in
    /// the spool and are tried again after a restart.
    pub fn stop(mut self, grace: Duration) {
        let _ = self.inputs.send(Input::Stop(Instant::now() + grace));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct State {
    queue: Queue,
    spool: Spool,
    log: Log,
    hostname: String,
    deliverer: Arc<Deliverer>,
    runtime: tokio::runtime::Runtime,
    inputs: Sender<Input>,
    /// Where and how each recipient was last tried, for the log records
    /// the queue makes of its outcomes.
    remotes: HashMap<(QueueId, usize), Remote>,
    stopping: Option<Instant>,
}

impl State {
    fn run(&mut self, inputs: &Receiver<Input>) {
        loop {
            let now = SystemTime::now();
            self.drain_events();
            if self.stopping.is_none() {
                while let Some(attempt) = self.queue.poll_attempt(now) {
                    self.start(attempt);
                    self.drain_events();
                }
            }
            if let Some(deadline) = self.stopping {
                if self.queue.attempts_in_flight() == 0 || Instant::now() >= deadline {
                    return;
                }
            }
            let wait = self
                .queue
                .poll_timeout()
                .map_or(MAX_SLEEP, |at| at.duration_since(now).unwrap_or_default())
                .min(MAX_SLEEP);
            let wait = match self.stopping {
                Some(deadline) => wait.min(deadline.saturating_duration_since(Instant::now())),
                None => wait,
            };
            match inputs.recv_timeout(wait) {
                Ok(input) => self.handle(input),
                Err(RecvTimeoutError::Timeout) => self.queue.handle_timeout(SystemTime::now()),
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn handle(&mut self, input: Input) {
        let now = SystemTime::now();
        match input {
            Input::Stored(message) => {
                self.queue.handle_message(now, message);
            }
            Input::Finished { attempt, results } => {
                let results: Vec<RecipientResult> = results
                    .into_iter()
                    .map(|result| {
                        let response = match &result.remote {
                            Some(remote) => Response::from_remote(
                                result.reply.clone(),
                                remote.host.clone(),
                                Some(remote.ip),
                            ),
                            None => Response::new(result.reply.clone()),
                        };
                        if let Some(remote) = result.remote {
                            self.remotes.insert((result.id, result.recipient), remote);
                        }
                        RecipientResult {
                            id: result.id,
                            recipient: result.recipient,
                            outcome: match result.verdict {
                                Verdict::Delivered => Outcome::Delivered(response),
                                Verdict::Relayed => Outcome::Relayed(response),
                                Verdict::Transient => Outcome::Transient(response),
                                Verdict::Permanent => Outcome::Permanent(response),
                            },
                        }
                    })
                    .collect();
                self.queue.handle_result(now, attempt, results);
            }
            Input::Control(request, answer) => {
                let _ = answer.send(self.control(request, now));
            }
            Input::Stop(deadline) => self.stopping = Some(deadline),
        }
    }

    fn start(&mut self, attempt: Attempt) {
        let job = Job {
            binding: attempt.binding,
            domain: attempt.domain,
            messages: attempt
                .messages
                .into_iter()
                .map(|message| JobMessage {
                    id: message.id,
                    envelope: (*message.envelope).clone(),
                    recipients: message.recipients,
                })
                .collect(),
        };
        let deliverer = self.deliverer.clone();
        let inputs = self.inputs.clone();
        let id = attempt.id;
        self.runtime.spawn(async move {
            let results = deliverer.run(job).await;
            let _ = inputs.send(Input::Finished {
                attempt: id,
                results,
            });
        });
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.queue.poll_event() {
            match event {
                Event::Log(record) => self.log_outcome(&record),
                Event::Bounce(request) => self.bounce(&request),
                Event::SpoolUpdate { id, changes } => {
                    let log = self.log.clone();
                    self.spool.update(id, changes, move |done| {
                        if let Err(error) = done {
                            log.record(json!({
                                "event": "spool_error",
                                "queue_id": id.to_string(),
                                "error": error.to_string(),
                            }));
                        }
                    });
                }
                Event::SpoolRemove(id) => {
                    self.remotes.retain(|(message, _), _| *message != id);
                    self.spool.remove(id, |_| {});
                }
            }
        }
    }

    fn log_outcome(&mut self, record: &LogEvent) {
        let event = match record.kind {
            LogKind::Delivered => "delivery",
            LogKind::Transient => "transient_failure",
            LogKind::Permanent => "permanent_failure",
            LogKind::Expired => "expiry",
        };
        let remote = self.remotes.get(&(record.id, record.recipient));
        let (host, ip) = match &record.response.remote {
            Some(remote) => (
                Some(remote.host.clone()),
                remote.ip.map(|ip| ip.to_string()),
            ),
            None => (None, None),
        };
        self.log.record(json!({
            "event": event,
            "queue_id": record.id.to_string(),
            "recipient": record.address,
            "binding": record.binding,
            "domain": record.domain,
            "mx_host": host,
            "mx_ip": ip,
            "reply": record.response.reply,
            "tls": remote.and_then(|r| r.tls.as_ref()).map(|(version, cipher)| {
                json!({ "version": version, "cipher": cipher })
            }),
            "tls_decision": remote.and_then(|r| r.tls_decision.clone()),
            "connection_ms": remote.map(|r| r.elapsed.as_millis()),
            "message_ms": remote.and_then(|r| r.message).map(|d| d.as_millis()),
            "attempt": record.attempt,
            "retry_at": record.retry_at.map(rfc3339),
        }));
        if !matches!(record.kind, LogKind::Transient) {
            self.remotes.remove(&(record.id, record.recipient));
        }
    }

    /// Builds the report and stores it as a new message; it is queued once
    /// durable. A report that cannot be built or stored is logged and
    /// dropped: the original's recipients are failed either way.
    fn bounce(&mut self, request: &crate::queue::BounceRequest) {
        let (original, whole) = match report_original(&self.spool, request.original) {
            Ok(read) => read,
            Err(error) => {
                // Without the original the report still says what failed.
                self.log.record(json!({
                    "event": "bounce_error",
                    "queue_id": request.original.to_string(),
                    "error": format!("cannot read the original: {error}"),
                }));
                (Vec::new(), false)
            }
        };
        let id = self.spool.new_id();
        let reporting = Reporting {
            hostname: &self.hostname,
            now: SystemTime::now(),
            id,
            max_returned: MAX_RETURNED,
            whole,
        };
        let Some(report) = bounce::build(request, &original, &reporting) else {
            return;
        };
        let size = report.message.len() as u64;
        let stored = StoredMessage::new(id, report.envelope.clone(), size);
        let inputs = self.inputs.clone();
        let log = self.log.clone();
        let original = request.original;
        let to = report.envelope.sender.clone();
        // What the report says, as RFC 3464's actions: a bounce proper
        // ("failed"), or a delay or relay notice.
        let mut actions: Vec<&str> = request.recipients.iter().map(|r| r.kind.action()).collect();
        actions.sort_unstable();
        actions.dedup();
        let recipient = report
            .envelope
            .recipients
            .first()
            .map(|r| r.address.clone());
        self.spool.store(
            id,
            report.envelope,
            vec![Bytes::from(report.message)],
            move |done| match done {
                Ok(()) => {
                    log.record(json!({
                        "event": "bounce",
                        "queue_id": id.to_string(),
                        "original": original.to_string(),
                        "sender": to,
                        "recipient": recipient,
                        "actions": actions,
                        "size": size,
                    }));
                    let _ = inputs.send(Input::Stored(stored));
                }
                Err(error) => log.record(json!({
                    "event": "bounce_error",
                    "queue_id": original.to_string(),
                    "error": format!("cannot store the bounce: {error}"),
                })),
            },
        );
    }

    fn control(&mut self, request: Request, now: SystemTime) -> Result<String, String> {
        let mut out = String::new();
        match request {
            Request::Summary => {
                let _ = writeln!(
                    out,
                    "binding\tdomain\tconnections\tin-flight\tready\tdeferred\tsuspended"
                );
                for line in self.queue.summary(now) {
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        line.binding,
                        line.domain,
                        line.connections,
                        line.in_flight.messages,
                        line.ready.messages,
                        line.deferred.messages,
                        line.suspended.messages
                    );
                }
            }
            Request::List(domain) => {
                for entry in self.queue.list(&domain, now) {
                    let _ = writeln!(
                        out,
                        "{} {:?} attempts={} next={} from=<{}> to={} last_error={}",
                        entry.id,
                        entry.state,
                        entry.attempts,
                        entry.next_attempt.map_or_else(|| "-".to_owned(), rfc3339),
                        entry.sender,
                        entry.recipients.join(","),
                        entry.last_error.as_deref().unwrap_or("-"),
                    );
                }
            }
            Request::Flush(domain) => {
                let due = self.queue.handle_flush(now, &domain);
                let _ = writeln!(out, "{due} deliveries to {domain} due now");
            }
            Request::Remove(text) => {
                let id = u64::from_str_radix(&text, 16)
                    .map(QueueId)
                    .map_err(|_| format!("{text:?} is not a queue id"))?;
                if !self.queue.handle_remove(id) {
                    return Err(format!("no message {id} in the queue"));
                }
                self.drain_events();
                let _ = writeln!(out, "removed {id}");
            }
        }
        Ok(out)
    }
}

/// What a report needs of its original: the whole message when it is at
/// most [`MAX_RETURNED`] octets (it may go back whole), else its start up
/// to the end of its header section (at most [`MAX_RETURNED`] octets of
/// it), so that a report on a large message does not read it all.
/// Returns the octets and whether they are the whole message.
fn report_original(spool: &Spool, id: QueueId) -> std::io::Result<(Vec<u8>, bool)> {
    let mut body = spool.open_body(id)?;
    let whole = body.len() <= MAX_RETURNED as u64;
    let mut read = Vec::new();
    while let Some(chunk) = body.next_chunk(64 << 10)? {
        read.extend_from_slice(&chunk);
        let headers_read = bounce::headers_of(&read).len() < read.len();
        if !whole && (headers_read || read.len() >= MAX_RETURNED) {
            break;
        }
    }
    Ok((read, whole))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::spool::message::{Envelope, Recipient};

    fn stored(spool: &Spool, body: Vec<u8>) -> QueueId {
        let id = spool.new_id();
        let envelope = Envelope {
            sender: "a@example.org".into(),
            recipients: vec![Recipient {
                address: "b@example.com".into(),
                notify: None,
                orcpt: None,
            }],
            ret: Some("FULL".into()),
            envid: None,
            received_at: UNIX_EPOCH,
            client: "192.0.2.7:40000".parse().unwrap(),
            binding: "default".into(),
        };
        let (tx, rx) = mpsc::channel();
        spool.store(id, envelope, vec![Bytes::from(body)], move |r| {
            tx.send(r).unwrap();
        });
        rx.recv().unwrap().unwrap();
        id
    }

    #[test]
    fn a_report_reads_a_large_original_only_to_its_headers() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let small = b"Subject: s\r\n\r\nbody\r\n".to_vec();
        let id = stored(&spool, small.clone());
        assert_eq!(report_original(&spool, id).unwrap(), (small, true));

        let mut large = b"Subject: l\r\n\r\n".to_vec();
        large.resize(3 * MAX_RETURNED, b'x');
        let id = stored(&spool, large.clone());
        let (read, whole) = report_original(&spool, id).unwrap();
        assert!(!whole);
        assert!(large.starts_with(&read));
        assert!(read.len() < MAX_RETURNED, "read {} octets", read.len());
    }
}
