//! The queue manager: a sans-IO state machine that decides what is
//! attempted when, and what becomes of each recipient.
//!
//! Messages ([`Queue::handle_message`]), delivery outcomes
//! ([`Queue::handle_result`]), operator requests and the current time go
//! in; connections to open ([`Queue::poll_attempt`]), spool updates, bounce
//! requests and log records ([`Queue::poll_event`]) and the next deadline
//! ([`Queue::poll_timeout`]) come out. It reads no clock and touches no
//! file, so days of retries are tested in milliseconds.
//!
//! The unit of scheduling is a *delivery*: the pending recipients of one
//! message whose domain is the same (lower-cased, an address literal being
//! its own domain), sent through the message's binding. Each delivery has
//! its own attempt count, next attempt time and last error, so a domain
//! that is down delays none of the message's other domains. Deliveries to
//! the same *destination* (binding, domain) due at the same time share a
//! connection, up to `Max_Deliveries_Per_Connection`, and at most
//! `Max_Outbound_Connections` attempts per destination are in flight.
//!
//! The driver is a loop, like the core's: after any input, take attempts
//! ([`Queue::poll_attempt`]) until there are none, then events
//! ([`Queue::poll_event`]), then the deadline ([`Queue::poll_timeout`]);
//! at the deadline call [`Queue::handle_timeout`] and go round again.
//!
//! Events of one message come in the order they must be made durable: a
//! [`Event::Bounce`] before the [`Event::SpoolUpdate`] that marks its
//! recipients failed, so that a crash between the two loses no bounce
//! (the recipients are still pending after the restart and fail again),
//! and the update before the [`Event::SpoolRemove`].

mod schedule;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use self::schedule::{Schedule, MIN_RETRY_INTERVAL};
use crate::spool::message::{Envelope, QueueId};
use crate::spool::{RecipientState, StateChange, StoredMessage};

/// Identifies an attempt from [`Queue::poll_attempt`] to
/// [`Queue::handle_result`]; never reused by one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId(pub u64);

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A connection to open: messages for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Pass it back to [`Queue::handle_result`].
    pub id: AttemptId,
    /// The binding the messages go out through.
    pub binding: String,
    /// The domain they go to (lower-case; `[…]` for an address literal).
    pub domain: String,
    /// The messages, each one SMTP transaction. The caller reads each body
    /// from the spool.
    pub messages: Vec<AttemptMessage>,
}

/// One message of an [`Attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptMessage {
    /// Its queue id.
    pub id: QueueId,
    /// Its envelope (sender, DSN parameters, every recipient).
    pub envelope: Arc<Envelope>,
    /// Indexes into `envelope.recipients` of the recipients to send to,
    /// ascending: only pending ones of this attempt's domain.
    pub recipients: Vec<usize>,
}

/// A reply that decided a recipient's fate, and who gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The reply as the remote server gave it (`550 5.1.1 <a@b>: no such
    /// user`), or as Petrel's policy wrote it (`451 4.7.5 [internal] TLS
    /// negotiation failed`); one line.
    pub reply: String,
    /// The server that gave it, when one did.
    pub remote: Option<RemoteMta>,
}

impl Response {
    /// A reply with no server known.
    pub fn new(reply: impl Into<String>) -> Response {
        Response {
            reply: reply.into(),
            remote: None,
        }
    }

    /// A reply from `host` at `ip`.
    pub fn from_remote(
        reply: impl Into<String>,
        host: impl Into<String>,
        ip: Option<IpAddr>,
    ) -> Self {
        Response {
            reply: reply.into(),
            remote: Some(RemoteMta {
                host: host.into(),
                ip,
            }),
        }
    }
}

/// The server a reply came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMta {
    /// Its name (the MX host), or its address when it has none.
    pub host: String,
    /// The address connected to.
    pub ip: Option<IpAddr>,
}

/// What became of one recipient in an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (2xx) by a server that offers DSN: done, and the
    /// recipient's `NOTIFY` went on with it, so notices of its fate are
    /// that server's to send (RFC 3461 §5.2.1).
    Delivered(Response),
    /// Accepted (2xx) by a server that does not offer DSN: done, and the
    /// DSN duty ends here, so a recipient that asked `NOTIFY=SUCCESS`
    /// gets a "relayed" notice (RFC 3461 §5.2.2).
    Relayed(Response),
    /// Deferred (4xx, or no answer): retried on the schedule.
    Transient(Response),
    /// Refused (5xx): failed, and bounced.
    Permanent(Response),
}

impl Outcome {
    /// Classifies by the reply's first digit: `2` delivered, `5`
    /// permanent, anything else (4xx, garbage, nothing) transient, since
    /// only a clear refusal may bounce mail.
    pub fn from_reply(response: Response) -> Outcome {
        match response.reply.trim_start().as_bytes().first() {
            Some(b'2') => Outcome::Delivered(response),
            Some(b'5') => Outcome::Permanent(response),
            _ => Outcome::Transient(response),
        }
    }

    fn response(&self) -> &Response {
        match self {
            Outcome::Delivered(r)
            | Outcome::Relayed(r)
            | Outcome::Transient(r)
            | Outcome::Permanent(r) => r,
        }
    }
}

/// One recipient's outcome, for [`Queue::handle_result`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientResult {
    /// The message.
    pub id: QueueId,
    /// The recipient's index in the message's envelope.
    pub recipient: usize,
    /// What became of it.
    pub outcome: Outcome,
}

/// What a delivery status notification says of a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Failed on a 5xx reply (or a recipient Petrel cannot route).
    Permanent,
    /// Failed because `Message_Expiration` passed, or `Max_Retries` was
    /// used up, while the recipient was still deferred.
    Expired,
    /// Deferred, and retried: sent once per recipient, at its first
    /// deferral, to a recipient that asked `NOTIFY=DELAY`.
    Delayed,
    /// Accepted by a server that does not offer DSN ([`Outcome::Relayed`]),
    /// reported to a recipient that asked `NOTIFY=SUCCESS`.
    Relayed,
}

impl ReportKind {
    /// Whether the recipient failed: the report is a bounce proper.
    pub fn is_failure(self) -> bool {
        matches!(self, ReportKind::Permanent | ReportKind::Expired)
    }

    /// Its `Action:` in the report (RFC 3464 §2.3.3).
    pub fn action(self) -> &'static str {
        match self {
            ReportKind::Permanent | ReportKind::Expired => "failed",
            ReportKind::Delayed => "delayed",
            ReportKind::Relayed => "relayed",
        }
    }
}

/// A recipient as a delivery status notification reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedRecipient {
    /// Its index in the message's envelope.
    pub recipient: usize,
    /// What is reported.
    pub kind: ReportKind,
    /// The reply that decided it; for an expiry, the last one it got.
    pub response: Response,
    /// Attempts made for it.
    pub attempts: u32,
    /// When the last attempt was made, if any was.
    pub last_attempt: Option<SystemTime>,
    /// For [`ReportKind::Delayed`]: when Petrel gives up (the message's
    /// expiry), if it ever does.
    pub retry_until: Option<SystemTime>,
}

/// A delivery status notification (a "bounce", though it may also report
/// a delay or a relay) to build ([`crate::bounce::build`]) and store as a
/// new message. Only made when the recipients' `Generate_Bounces` is on,
/// the sender is not the null sender, and at least one recipient asked
/// for this kind of notice (`NOTIFY`, [`crate::bounce::wants_notice`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceRequest {
    /// The message reported on.
    pub original: QueueId,
    /// Its envelope.
    pub envelope: Arc<Envelope>,
    /// The recipients to report, in envelope order.
    pub recipients: Vec<ReportedRecipient>,
}

/// What a [`LogEvent`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// Delivered.
    Delivered,
    /// Deferred, to be retried (or expired: an [`LogKind::Expired`] record
    /// follows).
    Transient,
    /// Failed on a 5xx reply.
    Permanent,
    /// Failed because it stayed deferred too long or too often.
    Expired,
}

/// One record for the log: one per recipient and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// What happened.
    pub kind: LogKind,
    /// The message.
    pub id: QueueId,
    /// The recipient's index in its envelope.
    pub recipient: usize,
    /// The recipient's address.
    pub address: String,
    /// The binding.
    pub binding: String,
    /// The domain.
    pub domain: String,
    /// Attempts made for the recipient so far (the one that gave this
    /// reply included).
    pub attempt: u32,
    /// The reply and the server that gave it.
    pub response: Response,
    /// For [`LogKind::Transient`] records of a recipient that will be
    /// retried: when.
    pub retry_at: Option<SystemTime>,
}

/// What the queue asks of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Write a log record.
    Log(LogEvent),
    /// Build and store a bounce; before the update that follows it.
    Bounce(BounceRequest),
    /// Record recipients' new states ([`crate::spool::Spool::update`]).
    SpoolUpdate {
        /// The message.
        id: QueueId,
        /// The changes.
        changes: Vec<StateChange>,
    },
    /// The message is done with: remove it
    /// ([`crate::spool::Spool::remove`]).
    SpoolRemove(QueueId),
}

/// Where a delivery stands, for `petrel queue list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeliveryState {
    /// An attempt is under way.
    InFlight,
    /// Due, waiting for a connection slot.
    Ready,
    /// Waiting for its next attempt time.
    Deferred,
    /// Held by `Suspend_Delivery`: no attempt until it is lifted.
    Suspended,
}

/// Deliveries and recipients, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Deliveries (messages, for one destination).
    pub messages: usize,
    /// Their pending recipients.
    pub recipients: usize,
}

/// One line of `petrel queue summary`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationSummary {
    /// The binding.
    pub binding: String,
    /// The domain.
    pub domain: String,
    /// Attempts in flight.
    pub connections: usize,
    /// In those attempts.
    pub in_flight: Count,
    /// Due now, waiting for a connection.
    pub ready: Count,
    /// Waiting to be retried later.
    pub deferred: Count,
    /// Held by `Suspend_Delivery`.
    pub suspended: Count,
}

/// One line of `petrel queue list DOMAIN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The message.
    pub id: QueueId,
    /// The binding.
    pub binding: String,
    /// The domain.
    pub domain: String,
    /// The envelope sender.
    pub sender: String,
    /// The pending recipients for this domain.
    pub recipients: Vec<String>,
    /// Where the delivery stands.
    pub state: DeliveryState,
    /// Attempts made (the one in flight included).
    pub attempts: u32,
    /// When the next attempt is due; `None` while one is in flight.
    pub next_attempt: Option<SystemTime>,
    /// The last transient reply.
    pub last_error: Option<String>,
    /// When the message arrived.
    pub received_at: SystemTime,
    /// When it expires.
    pub expires_at: Option<SystemTime>,
}

/// The reply given to a recipient of an attempt for which the caller
/// reported nothing: the attempt ended (a lost connection, a crash of the
/// task) without saying, so it is retried, never lost.
pub const NO_RESULT: &str = "451 4.4.0 [internal] the attempt ended without a result";

/// What the bounce of a message that expired while its destination's
/// delivery was suspended (`Suspend_Delivery`) says, never attempted.
pub const SUSPENDED: &str = "451 4.3.2 [internal] delivery suspended (Suspend_Delivery)";

/// The reply failing a recipient that has no domain (the bare
/// `<Postmaster>` of RFC 5321 §4.5.1): Petrel relays and has no mailboxes.
pub const NO_DOMAIN: &str = "550 5.1.1 [internal] no local mailboxes: Petrel only relays";

/// The schedule lookup: (binding, domain) to the policy's retry and
/// connection settings.
type PolicyFn = dyn Fn(&str, &str) -> Schedule + Send;

/// The queue manager. See the [module documentation](self).
pub struct Queue {
    policy: Box<PolicyFn>,
    messages: HashMap<QueueId, Message>,
    destinations: HashMap<DestId, Destination>,
    destination_ids: HashMap<(String, String), DestId>,
    next_destination: u64,
    /// Destinations with a free connection slot and a waiting delivery,
    /// by their earliest waiting delivery's due time.
    ready: BTreeSet<(SystemTime, DestId)>,
    /// Waiting deliveries that have been attempted, by expiry time.
    expiries: BTreeSet<(SystemTime, QueueId, DestId)>,
    attempts: HashMap<AttemptId, InFlight>,
    next_attempt: u64,
    events: VecDeque<Event>,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("messages", &self.messages.len())
            .field("destinations", &self.destinations.len())
            .field("attempts", &self.attempts.len())
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct DestId(u64);

#[derive(Debug)]
struct Message {
    envelope: Arc<Envelope>,
    states: Vec<RecipientState>,
    deliveries: HashMap<DestId, Delivery>,
}

#[derive(Debug)]
struct Delivery {
    /// The recipients not yet delivered nor failed, ascending.
    recipients: Vec<Pending>,
    attempts: u32,
    /// When it is due; meaningless while in flight.
    next_attempt: SystemTime,
    last_attempt: Option<SystemTime>,
    last_error: Option<Response>,
    expires_at: Option<SystemTime>,
    /// The attempt carrying it, if one is: outcomes of any other attempt
    /// are not its own.
    in_flight: Option<AttemptId>,
}

#[derive(Debug)]
struct Pending {
    index: usize,
    /// Its last transient reply: what its bounce says if it expires.
    last: Option<Response>,
    /// A delay notice was made for it in this run. Not persisted: after a
    /// restart a recipient that asked for one may get a second.
    delay_reported: bool,
}

#[derive(Debug)]
struct Destination {
    binding: String,
    domain: String,
    /// Looked up once, when the destination appears: policies are
    /// resolved once at start. A destination with nothing left is
    /// forgotten, so a new policy would apply from its next message on.
    schedule: Schedule,
    /// Deliveries not in flight, by due time.
    waiting: BTreeSet<(SystemTime, QueueId)>,
    connections: usize,
    /// Its key in `Queue::ready`, if it has one.
    indexed: Option<SystemTime>,
}

#[derive(Debug)]
struct InFlight {
    dest: DestId,
    /// Each message's recipients that have no outcome yet.
    unreported: BTreeMap<QueueId, Vec<usize>>,
    /// Transient outcomes reported before the end, applied at the end.
    transient: Vec<(QueueId, usize, Response)>,
}

/// What happened to one message's recipients in one step, turned into
/// events by `Queue::finish`.
#[derive(Debug, Default)]
struct Outcomes {
    logs: Vec<LogEvent>,
    changes: Vec<StateChange>,
    reported: Vec<ReportedRecipient>,
}

impl Queue {
    /// A queue whose schedules come from `policy(binding, domain)`; in the
    /// MTA, `move |b, d| Schedule::from(&policies.outbound(b, d))`.
    pub fn new(policy: impl Fn(&str, &str) -> Schedule + Send + 'static) -> Queue {
        Queue {
            policy: Box::new(policy),
            messages: HashMap::new(),
            destinations: HashMap::new(),
            destination_ids: HashMap::new(),
            next_destination: 0,
            ready: BTreeSet::new(),
            expiries: BTreeSet::new(),
            attempts: HashMap::new(),
            next_attempt: 0,
            events: VecDeque::new(),
        }
    }

    /// Takes a message just stored, or one recovered at start: its
    /// pending recipients are due at once; delivered and failed ones are
    /// never attempted again. A recovered delivery goes on counting from
    /// the most attempts recorded for any of its recipients (and, having
    /// been deferred before, gets no second delay notice). A message with
    /// nothing pending is reported for removal. Returns false, and changes nothing, for an id the
    /// queue already has.
    pub fn handle_message(&mut self, now: SystemTime, message: StoredMessage) -> bool {
        if self.messages.contains_key(&message.id) {
            return false;
        }
        let id = message.id;
        let envelope = Arc::new(message.envelope);
        let mut states = message.states;
        // A spool with fewer states than recipients (it should not have)
        // leaves the rest pending: never lost.
        states.resize(envelope.recipients.len(), RecipientState::Pending);
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut out = Outcomes::default();
        for (index, recipient) in envelope.recipients.iter().enumerate() {
            if states.get(index) != Some(&RecipientState::Pending) {
                continue;
            }
            match domain_of(&recipient.address) {
                Some(domain) => groups.entry(domain).or_default().push(index),
                None => {
                    let schedule = (self.policy)(&envelope.binding, "");
                    if let Some(state) = states.get_mut(index) {
                        *state = RecipientState::Failed;
                    }
                    let response = Response::new(NO_DOMAIN);
                    out.fail(
                        &envelope,
                        schedule.generate_bounces,
                        ReportedRecipient {
                            recipient: index,
                            kind: ReportKind::Permanent,
                            response: response.clone(),
                            attempts: 0,
                            last_attempt: None,
                            retry_until: None,
                        },
                    );
                    out.logs.push(LogEvent {
                        kind: LogKind::Permanent,
                        id,
                        recipient: index,
                        address: recipient.address.clone(),
                        binding: envelope.binding.clone(),
                        domain: String::new(),
                        attempt: 0,
                        response,
                        retry_at: None,
                    });
                }
            }
        }
        let mut deliveries = HashMap::new();
        for (domain, recipients) in groups {
            let dest = self.destination(&envelope.binding, &domain);
            let expires_at = self
                .destinations
                .get(&dest)
                .and_then(|d| d.schedule.expires_at(envelope.received_at));
            let attempts = recipients
                .iter()
                .filter_map(|&index| message.attempts.get(index))
                .copied()
                .max()
                .unwrap_or(0);
            deliveries.insert(
                dest,
                Delivery {
                    recipients: recipients
                        .into_iter()
                        .map(|index| Pending {
                            index,
                            last: None,
                            delay_reported: attempts > 0,
                        })
                        .collect(),
                    attempts,
                    next_attempt: now,
                    last_attempt: None,
                    last_error: None,
                    expires_at,
                    in_flight: None,
                },
            );
        }
        for (&dest, delivery) in &deliveries {
            self.park(id, dest, delivery);
            self.reindex(dest);
        }
        self.messages.insert(
            id,
            Message {
                envelope,
                states,
                deliveries,
            },
        );
        self.finish(id, out);
        true
    }

    /// The next connection to open, if one is due now and its
    /// destination has a free slot. Expiries due by `now` are handled
    /// first, so an expired delivery never goes out.
    pub fn poll_attempt(&mut self, now: SystemTime) -> Option<Attempt> {
        self.handle_timeout(now);
        let &(due, dest_id) = self.ready.first()?;
        if due > now {
            return None;
        }
        let dest = self.destinations.get_mut(&dest_id)?;
        let batch = match dest.schedule.max_deliveries_per_connection {
            Some(n) => n.max(1),
            // No limit: rather than one connection carrying the whole
            // backlog while the others stay unused, each takes its share
            // of what is due over the free connection slots.
            None => {
                let free = dest
                    .schedule
                    .connections()
                    .saturating_sub(dest.connections)
                    .max(1);
                let due = dest
                    .waiting
                    .iter()
                    .take_while(|&&(at, _)| at <= now)
                    .count();
                due.div_ceil(free).max(1)
            }
        };
        let mut taken = Vec::new();
        while taken.len() < batch {
            match dest.waiting.first() {
                Some(&(at, id)) if at <= now => {
                    dest.waiting.remove(&(at, id));
                    // Only a delivery that is there and waiting: an entry
                    // left behind by a bug must not become an attempt.
                    let waiting = self
                        .messages
                        .get(&id)
                        .and_then(|m| m.deliveries.get(&dest_id))
                        .is_some_and(|d| d.in_flight.is_none() && !d.recipients.is_empty());
                    if waiting {
                        taken.push(id);
                    }
                }
                _ => break,
            }
        }
        if taken.is_empty() {
            // Cannot be while `ready` is kept up to date; if it were not,
            // an empty attempt would hold a connection slot for nothing.
            self.reindex(dest_id);
            return None;
        }
        dest.connections += 1;
        let binding = dest.binding.clone();
        let domain = dest.domain.clone();
        let attempt = AttemptId(self.next_attempt);
        self.next_attempt += 1;
        let mut messages = Vec::with_capacity(taken.len());
        let mut unreported = BTreeMap::new();
        for id in taken {
            let Some(message) = self.messages.get_mut(&id) else {
                continue;
            };
            let Some(delivery) = message.deliveries.get_mut(&dest_id) else {
                continue;
            };
            if let Some(expires_at) = delivery.expires_at {
                self.expiries.remove(&(expires_at, id, dest_id));
            }
            delivery.in_flight = Some(attempt);
            delivery.attempts = delivery.attempts.saturating_add(1);
            delivery.last_attempt = Some(now);
            let recipients: Vec<usize> = delivery.recipients.iter().map(|p| p.index).collect();
            unreported.insert(id, recipients.clone());
            messages.push(AttemptMessage {
                id,
                envelope: message.envelope.clone(),
                recipients,
            });
        }
        self.attempts.insert(
            attempt,
            InFlight {
                dest: dest_id,
                unreported,
                transient: Vec::new(),
            },
        );
        self.reindex(dest_id);
        Some(Attempt {
            id: attempt,
            binding,
            domain,
            messages,
        })
    }

    /// Outcomes reported while the attempt goes on (a connection carrying
    /// many messages): delivered and failed recipients are recorded at
    /// once, so a crash later in the connection does not send them again;
    /// transient ones wait for the end. Returns false for an attempt that
    /// is not in flight. Results for recipients that are not in the
    /// attempt, or already reported, are ignored.
    pub fn handle_progress(
        &mut self,
        attempt: AttemptId,
        results: impl IntoIterator<Item = RecipientResult>,
    ) -> bool {
        let Some(flight) = self.attempts.get_mut(&attempt) else {
            return false;
        };
        let dest_id = flight.dest;
        let mut finals: BTreeMap<QueueId, Vec<(usize, Outcome)>> = BTreeMap::new();
        for result in results {
            if !take_unreported(&mut flight.unreported, result.id, result.recipient) {
                continue;
            }
            match result.outcome {
                Outcome::Transient(response) => {
                    flight
                        .transient
                        .push((result.id, result.recipient, response));
                }
                outcome => finals
                    .entry(result.id)
                    .or_default()
                    .push((result.recipient, outcome)),
            }
        }
        for (id, outcomes) in finals {
            let mut out = Outcomes::default();
            self.apply_finals(attempt, id, dest_id, outcomes, &mut out);
            self.finish(id, out);
        }
        true
    }

    /// The end of an attempt, with the outcomes not yet reported through
    /// [`Queue::handle_progress`]. Recipients of the attempt with no
    /// outcome at all are deferred with [`NO_RESULT`]. Returns false for
    /// an attempt that is not in flight; results for recipients not in
    /// the attempt, or already reported, are ignored.
    pub fn handle_result(
        &mut self,
        now: SystemTime,
        attempt: AttemptId,
        results: impl IntoIterator<Item = RecipientResult>,
    ) -> bool {
        let Some(mut flight) = self.attempts.remove(&attempt) else {
            return false;
        };
        let dest_id = flight.dest;
        let mut outcomes: BTreeMap<QueueId, Vec<(usize, Outcome)>> = BTreeMap::new();
        for (id, recipient, response) in flight.transient.drain(..) {
            outcomes
                .entry(id)
                .or_default()
                .push((recipient, Outcome::Transient(response)));
        }
        for result in results {
            if take_unreported(&mut flight.unreported, result.id, result.recipient) {
                outcomes
                    .entry(result.id)
                    .or_default()
                    .push((result.recipient, result.outcome));
            }
        }
        for (id, recipients) in &flight.unreported {
            let entry = outcomes.entry(*id).or_default();
            for &recipient in recipients {
                entry.push((recipient, Outcome::Transient(Response::new(NO_RESULT))));
            }
        }
        // Every message of the attempt, even one whose outcomes all came
        // as progress, has its delivery ended or rescheduled.
        let ids: Vec<QueueId> = flight.unreported.keys().copied().collect();
        for id in ids {
            outcomes.entry(id).or_default();
        }
        if let Some(dest) = self.destinations.get_mut(&dest_id) {
            dest.connections = dest.connections.saturating_sub(1);
        }
        for (id, mut results) in outcomes {
            results.sort_by_key(|(recipient, _)| *recipient);
            let mut out = Outcomes::default();
            let (finals, transients): (Vec<_>, Vec<_>) = results
                .into_iter()
                .partition(|(_, outcome)| !matches!(outcome, Outcome::Transient(_)));
            self.apply_finals(attempt, id, dest_id, finals, &mut out);
            self.end_attempt(now, attempt, id, dest_id, transients, &mut out);
            self.finish(id, out);
        }
        self.reindex(dest_id);
        true
    }

    /// Fails, as expired, every waiting delivery whose message expired by
    /// `now`. [`Queue::poll_attempt`] does this too.
    pub fn handle_timeout(&mut self, now: SystemTime) {
        let mut expired: BTreeMap<QueueId, Outcomes> = BTreeMap::new();
        while let Some(&(at, id, dest_id)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.remove(&(at, id, dest_id));
            let out = expired.entry(id).or_default();
            // Only waiting deliveries are in `expiries`; one in flight
            // (were it left there) ends with its attempt instead.
            let waiting = self
                .messages
                .get(&id)
                .and_then(|m| m.deliveries.get(&dest_id))
                .is_some_and(|d| d.in_flight.is_none());
            if !waiting {
                continue;
            }
            if let Some(delivery) = self.take_delivery(id, dest_id) {
                if let Some(dest) = self.destinations.get_mut(&dest_id) {
                    dest.waiting.remove(&(delivery.next_attempt, id));
                }
                self.expire(id, dest_id, delivery, out);
            }
            self.reindex(dest_id);
        }
        for (id, out) in expired {
            self.finish(id, out);
        }
    }

    /// `petrel queue flush DOMAIN`: every delivery to `domain` (any
    /// binding) that is waiting becomes due at `now`, except where
    /// `Suspend_Delivery` holds it. Returns how many.
    /// As in Momentum, a flushed attempt counts towards `Max_Retries`.
    pub fn handle_flush(&mut self, now: SystemTime, domain: &str) -> usize {
        let domain = normalize_domain(domain);
        let dests: Vec<DestId> = self
            .destinations
            .iter()
            .filter(|(_, d)| d.domain == domain && !d.schedule.suspended)
            .map(|(&id, _)| id)
            .collect();
        let mut flushed = 0;
        for dest_id in dests {
            let Some(dest) = self.destinations.get_mut(&dest_id) else {
                continue;
            };
            let later: Vec<(SystemTime, QueueId)> = dest
                .waiting
                .iter()
                .filter(|(at, _)| *at > now)
                .copied()
                .collect();
            for (at, id) in later {
                dest.waiting.remove(&(at, id));
                dest.waiting.insert((now, id));
                if let Some(delivery) = self
                    .messages
                    .get_mut(&id)
                    .and_then(|m| m.deliveries.get_mut(&dest_id))
                {
                    delivery.next_attempt = now;
                }
            }
            flushed += dest.waiting.len();
            self.reindex(dest_id);
        }
        flushed
    }

    /// `petrel queue remove ID`: forgets the message; its pending
    /// recipients are dropped without a bounce, and the spool is asked to
    /// remove it. An attempt already carrying it goes on, and its outcome
    /// is ignored. Returns false for an id the queue does not have.
    pub fn handle_remove(&mut self, id: QueueId) -> bool {
        let Some(message) = self.messages.remove(&id) else {
            return false;
        };
        for (dest_id, delivery) in message.deliveries {
            if delivery.in_flight.is_none() {
                self.unpark(id, dest_id, &delivery);
                self.reindex(dest_id);
            }
        }
        self.events.push_back(Event::SpoolRemove(id));
        true
    }

    /// The next thing for the caller to do, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When something next becomes due: a delivery whose destination has
    /// a free slot, or an expiry. A destination at its connection limit
    /// waits for an attempt to end (an input), not for a time. May be in
    /// the past: then call [`Queue::poll_attempt`] at once.
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        let ready = self.ready.first().map(|&(at, _)| at);
        let expiry = self.expiries.first().map(|&(at, _, _)| at);
        match (ready, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A message's envelope, while the queue has the message.
    pub fn envelope(&self, id: QueueId) -> Option<&Arc<Envelope>> {
        self.messages.get(&id).map(|m| &m.envelope)
    }

    /// Messages in the queue.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether the queue has no message.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Attempts in flight.
    pub fn attempts_in_flight(&self) -> usize {
        self.attempts.len()
    }

    /// `petrel queue summary`: per destination, sorted by binding and
    /// domain.
    pub fn summary(&self, now: SystemTime) -> Vec<DestinationSummary> {
        let mut rows: BTreeMap<(String, String), DestinationSummary> = BTreeMap::new();
        for (&dest_id, dest) in &self.destinations {
            let row = rows
                .entry((dest.binding.clone(), dest.domain.clone()))
                .or_insert_with(|| DestinationSummary {
                    binding: dest.binding.clone(),
                    domain: dest.domain.clone(),
                    connections: 0,
                    in_flight: Count::default(),
                    ready: Count::default(),
                    deferred: Count::default(),
                    suspended: Count::default(),
                });
            row.connections += dest.connections;
            for &(at, id) in &dest.waiting {
                let count = if dest.schedule.suspended {
                    &mut row.suspended
                } else if at <= now {
                    &mut row.ready
                } else {
                    &mut row.deferred
                };
                count.messages += 1;
                count.recipients += self.pending_of(id, dest_id).len();
            }
        }
        for flight in self.attempts.values() {
            let Some(dest) = self.destinations.get(&flight.dest) else {
                continue;
            };
            if let Some(row) = rows.get_mut(&(dest.binding.clone(), dest.domain.clone())) {
                for &id in flight.unreported.keys() {
                    let pending = self.pending_of(id, flight.dest).len();
                    if pending > 0 {
                        row.in_flight.messages += 1;
                        row.in_flight.recipients += pending;
                    }
                }
            }
        }
        rows.into_values().collect()
    }

    /// `petrel queue list DOMAIN`: every delivery to `domain`, any binding,
    /// in queue-id order.
    pub fn list(&self, domain: &str, now: SystemTime) -> Vec<ListEntry> {
        let domain = normalize_domain(domain);
        let mut entries = Vec::new();
        for (&dest_id, dest) in &self.destinations {
            if dest.domain != domain {
                continue;
            }
            for (&id, message) in &self.messages {
                let Some(delivery) = message.deliveries.get(&dest_id) else {
                    continue;
                };
                let state = if delivery.in_flight.is_some() {
                    DeliveryState::InFlight
                } else if dest.schedule.suspended {
                    DeliveryState::Suspended
                } else if delivery.next_attempt <= now {
                    DeliveryState::Ready
                } else {
                    DeliveryState::Deferred
                };
                entries.push(ListEntry {
                    id,
                    binding: dest.binding.clone(),
                    domain: dest.domain.clone(),
                    sender: message.envelope.sender.clone(),
                    recipients: delivery
                        .recipients
                        .iter()
                        .filter_map(|p| message.envelope.recipients.get(p.index))
                        .map(|r| r.address.clone())
                        .collect(),
                    state,
                    attempts: delivery.attempts,
                    next_attempt: delivery
                        .in_flight
                        .is_none()
                        .then_some(delivery.next_attempt),
                    last_error: delivery.last_error.as_ref().map(|r| r.reply.clone()),
                    received_at: message.envelope.received_at,
                    expires_at: delivery.expires_at,
                });
            }
        }
        entries.sort_by(|a, b| (a.id, &a.binding).cmp(&(b.id, &b.binding)));
        entries
    }

    // ---- internals ----

    /// The destination's id, making it (and looking its schedule up) if
    /// it is new.
    fn destination(&mut self, binding: &str, domain: &str) -> DestId {
        let key = (binding.to_owned(), domain.to_owned());
        if let Some(&id) = self.destination_ids.get(&key) {
            return id;
        }
        let id = DestId(self.next_destination);
        self.next_destination += 1;
        let schedule = (self.policy)(binding, domain);
        self.destinations.insert(
            id,
            Destination {
                binding: key.0.clone(),
                domain: key.1.clone(),
                schedule,
                waiting: BTreeSet::new(),
                connections: 0,
                indexed: None,
            },
        );
        self.destination_ids.insert(key, id);
        id
    }

    /// Puts a delivery that is not in flight in its destination's waiting
    /// set and, once attempted, in the expiry index. (A delivery never
    /// attempted gets its one attempt even past its expiry: a message
    /// recovered after a long stop is tried before it is bounced.)
    /// A suspended destination's deliveries are in the expiry index from
    /// the start: no attempt will come to let them expire after it.
    fn park(&mut self, id: QueueId, dest_id: DestId, delivery: &Delivery) {
        let mut suspended = false;
        if let Some(dest) = self.destinations.get_mut(&dest_id) {
            dest.waiting.insert((delivery.next_attempt, id));
            suspended = dest.schedule.suspended;
        }
        if delivery.attempts > 0 || suspended {
            if let Some(expires_at) = delivery.expires_at {
                self.expiries.insert((expires_at, id, dest_id));
            }
        }
    }

    fn unpark(&mut self, id: QueueId, dest_id: DestId, delivery: &Delivery) {
        if let Some(dest) = self.destinations.get_mut(&dest_id) {
            dest.waiting.remove(&(delivery.next_attempt, id));
        }
        if let Some(expires_at) = delivery.expires_at {
            self.expiries.remove(&(expires_at, id, dest_id));
        }
    }

    /// Brings the destination's entry in `ready` up to date, and forgets
    /// a destination with nothing waiting and nothing in flight.
    fn reindex(&mut self, dest_id: DestId) {
        let Some(dest) = self.destinations.get_mut(&dest_id) else {
            return;
        };
        let key = if !dest.schedule.suspended && dest.connections < dest.schedule.connections() {
            dest.waiting.first().map(|&(at, _)| at)
        } else {
            None
        };
        if dest.indexed != key {
            if let Some(old) = dest.indexed {
                self.ready.remove(&(old, dest_id));
            }
            if let Some(new) = key {
                self.ready.insert((new, dest_id));
            }
            dest.indexed = key;
        }
        if dest.waiting.is_empty() && dest.connections == 0 {
            let key = (dest.binding.clone(), dest.domain.clone());
            self.destinations.remove(&dest_id);
            self.destination_ids.remove(&key);
        }
    }

    fn pending_of(&self, id: QueueId, dest_id: DestId) -> &[Pending] {
        self.messages
            .get(&id)
            .and_then(|m| m.deliveries.get(&dest_id))
            .map_or(&[], |d| &d.recipients)
    }

    fn take_delivery(&mut self, id: QueueId, dest_id: DestId) -> Option<Delivery> {
        self.messages
            .get_mut(&id)
            .and_then(|m| m.deliveries.remove(&dest_id))
    }

    /// Records delivered and permanently failed recipients of a delivery
    /// in flight.
    fn apply_finals(
        &mut self,
        attempt: AttemptId,
        id: QueueId,
        dest_id: DestId,
        outcomes: Vec<(usize, Outcome)>,
        out: &mut Outcomes,
    ) {
        let Some(dest) = self.destinations.get(&dest_id) else {
            return;
        };
        let Some(message) = self.messages.get_mut(&id) else {
            return;
        };
        let Some(delivery) = message.deliveries.get_mut(&dest_id) else {
            return;
        };
        if delivery.in_flight != Some(attempt) {
            return;
        }
        for (recipient, outcome) in outcomes {
            let Some(at) = delivery
                .recipients
                .iter()
                .position(|p| p.index == recipient)
            else {
                continue;
            };
            delivery.recipients.remove(at);
            let (kind, state) = match outcome {
                Outcome::Delivered(_) | Outcome::Relayed(_) => {
                    (LogKind::Delivered, RecipientState::Delivered)
                }
                Outcome::Permanent(_) => (LogKind::Permanent, RecipientState::Failed),
                // Transient outcomes are not final; callers keep them out.
                Outcome::Transient(_) => continue,
            };
            if let Some(s) = message.states.get_mut(recipient) {
                *s = state;
            }
            let response = outcome.response().clone();
            let reported = |kind| ReportedRecipient {
                recipient,
                kind,
                response: response.clone(),
                attempts: delivery.attempts,
                last_attempt: delivery.last_attempt,
                retry_until: None,
            };
            let generate = dest.schedule.generate_bounces;
            match outcome {
                Outcome::Permanent(_) => {
                    out.fail(&message.envelope, generate, reported(ReportKind::Permanent));
                }
                Outcome::Relayed(_) => {
                    out.changes.push(StateChange {
                        recipient,
                        state,
                        attempts: delivery.attempts,
                    });
                    out.report(&message.envelope, generate, reported(ReportKind::Relayed));
                }
                _ => out.changes.push(StateChange {
                    recipient,
                    state,
                    attempts: delivery.attempts,
                }),
            }
            out.logs.push(log_event(
                kind,
                id,
                recipient,
                &message.envelope,
                dest,
                delivery.attempts,
                response,
                None,
            ));
        }
    }

    /// Ends a delivery's attempt: what is left of it is deferred, or
    /// fails as expired, or, with nothing left, the delivery ends.
    fn end_attempt(
        &mut self,
        now: SystemTime,
        attempt: AttemptId,
        id: QueueId,
        dest_id: DestId,
        transients: Vec<(usize, Outcome)>,
        out: &mut Outcomes,
    ) {
        let ours = self
            .messages
            .get(&id)
            .and_then(|m| m.deliveries.get(&dest_id))
            .is_some_and(|d| d.in_flight == Some(attempt));
        let Some(schedule) = self.destinations.get(&dest_id).map(|d| d.schedule) else {
            return;
        };
        if !ours {
            return;
        }
        let Some(mut delivery) = self.take_delivery(id, dest_id) else {
            return;
        };
        delivery.in_flight = None;
        for (recipient, outcome) in transients {
            if let Some(p) = delivery
                .recipients
                .iter_mut()
                .find(|p| p.index == recipient)
            {
                let response = outcome.response().clone();
                delivery.last_error = Some(response.clone());
                p.last = Some(response);
            }
        }
        if delivery.recipients.is_empty() {
            return;
        }
        let out_of_retries = schedule
            .retry_limit()
            .is_some_and(|limit| delivery.attempts > limit);
        let out_of_time = delivery.expires_at.is_some_and(|at| at <= now);
        let retry_at = (!out_of_retries && !out_of_time)
            .then(|| later(now, schedule.retry_delay(delivery.attempts)));
        if let (Some(message), Some(dest)) =
            (self.messages.get(&id), self.destinations.get(&dest_id))
        {
            for p in &delivery.recipients {
                let response = p.last.clone().unwrap_or_else(|| Response::new(NO_RESULT));
                out.logs.push(log_event(
                    LogKind::Transient,
                    id,
                    p.index,
                    &message.envelope,
                    dest,
                    delivery.attempts,
                    response,
                    retry_at,
                ));
            }
        }
        match retry_at {
            Some(at) => {
                // The attempt count goes to the spool with each deferral,
                // so that a restart goes on counting.
                out.changes
                    .extend(delivery.recipients.iter().map(|p| StateChange {
                        recipient: p.index,
                        state: RecipientState::Pending,
                        attempts: delivery.attempts,
                    }));
                if let Some(message) = self.messages.get(&id) {
                    let generate = schedule.generate_bounces;
                    for p in &mut delivery.recipients {
                        if p.delay_reported {
                            continue;
                        }
                        p.delay_reported = out.report(
                            &message.envelope,
                            generate,
                            ReportedRecipient {
                                recipient: p.index,
                                kind: ReportKind::Delayed,
                                response: p
                                    .last
                                    .clone()
                                    .unwrap_or_else(|| Response::new(NO_RESULT)),
                                attempts: delivery.attempts,
                                last_attempt: delivery.last_attempt,
                                retry_until: delivery.expires_at,
                            },
                        );
                    }
                }
                delivery.next_attempt = at;
                self.park(id, dest_id, &delivery);
                if let Some(message) = self.messages.get_mut(&id) {
                    message.deliveries.insert(dest_id, delivery);
                }
            }
            None => self.expire(id, dest_id, delivery, out),
        }
    }

    /// Fails a delivery (already taken out of its message and out of the
    /// indexes) as expired.
    fn expire(&mut self, id: QueueId, dest_id: DestId, delivery: Delivery, out: &mut Outcomes) {
        let (Some(dest), Some(message)) =
            (self.destinations.get(&dest_id), self.messages.get_mut(&id))
        else {
            return;
        };
        for p in delivery.recipients {
            if let Some(s) = message.states.get_mut(p.index) {
                *s = RecipientState::Failed;
            }
            let response = p.last.unwrap_or_else(|| {
                Response::new(if dest.schedule.suspended {
                    SUSPENDED
                } else {
                    NO_RESULT
                })
            });
            out.fail(
                &message.envelope,
                dest.schedule.generate_bounces,
                ReportedRecipient {
                    recipient: p.index,
                    kind: ReportKind::Expired,
                    response: response.clone(),
                    attempts: delivery.attempts,
                    last_attempt: delivery.last_attempt,
                    retry_until: None,
                },
            );
            out.logs.push(log_event(
                LogKind::Expired,
                id,
                p.index,
                &message.envelope,
                dest,
                delivery.attempts,
                response,
                None,
            ));
        }
    }

    /// Turns one message's outcomes into events, in the order they must
    /// be made durable, and removes the message once nothing is pending.
    fn finish(&mut self, id: QueueId, out: Outcomes) {
        let Outcomes {
            logs,
            mut changes,
            reported,
        } = out;
        self.events.extend(logs.into_iter().map(Event::Log));
        let Some(message) = self.messages.get(&id) else {
            return;
        };
        if !reported.is_empty() {
            self.events.push_back(Event::Bounce(BounceRequest {
                original: id,
                envelope: message.envelope.clone(),
                recipients: reported,
            }));
        }
        if !changes.is_empty() {
            changes.sort_by_key(|c| c.recipient);
            self.events.push_back(Event::SpoolUpdate { id, changes });
        }
        if !message.states.contains(&RecipientState::Pending) {
            self.messages.remove(&id);
            self.events.push_back(Event::SpoolRemove(id));
        }
    }
}

impl Outcomes {
    /// Records a failed recipient: its state change and, when one is due,
    /// its place in the bounce.
    fn fail(&mut self, envelope: &Envelope, generate_bounces: bool, reported: ReportedRecipient) {
        self.changes.push(StateChange {
            recipient: reported.recipient,
            state: RecipientState::Failed,
            attempts: reported.attempts,
        });
        self.report(envelope, generate_bounces, reported);
    }

    /// Puts `reported` in this step's notice when one is due for it:
    /// `Generate_Bounces` on, a sender to tell, and a recipient that asked
    /// for this kind of notice. Returns whether it was put in.
    fn report(
        &mut self,
        envelope: &Envelope,
        generate_bounces: bool,
        reported: ReportedRecipient,
    ) -> bool {
        // The null sender gets no notice: that is how bounce loops end
        // (RFC 5321 §4.5.5), and how a bounce that cannot be delivered is
        // dropped.
        let wanted = envelope
            .recipients
            .get(reported.recipient)
            .is_some_and(|r| crate::bounce::wants_notice(r, reported.kind));
        let due = generate_bounces && !envelope.sender.is_empty() && wanted;
        if due {
            self.reported.push(reported);
        }
        due
    }
}

#[allow(clippy::too_many_arguments)]
fn log_event(
    kind: LogKind,
    id: QueueId,
    recipient: usize,
    envelope: &Envelope,
    dest: &Destination,
    attempt: u32,
    response: Response,
    retry_at: Option<SystemTime>,
) -> LogEvent {
    LogEvent {
        kind,
        id,
        recipient,
        address: envelope
            .recipients
            .get(recipient)
            .map(|r| r.address.clone())
            .unwrap_or_default(),
        binding: dest.binding.clone(),
        domain: dest.domain.clone(),
        attempt,
        response,
        retry_at,
    }
}

/// Removes `recipient` of `id` from an attempt's unreported ones: true if
/// it was there (so this is its first outcome).
fn take_unreported(
    unreported: &mut BTreeMap<QueueId, Vec<usize>>,
    id: QueueId,
    recipient: usize,
) -> bool {
    let Some(recipients) = unreported.get_mut(&id) else {
        return false;
    };
    match recipients.iter().position(|&r| r == recipient) {
        Some(at) => {
            recipients.remove(at);
            true
        }
        None => false,
    }
}

/// `now + delay`, saturating: a delay past what `SystemTime` can hold
/// means "as late as can be said".
fn later(now: SystemTime, delay: Duration) -> SystemTime {
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(now)
}

/// The scheduling domain of an address: what follows its last `@`,
/// lower-cased, without a final dot (`Example.COM.` and `example.com` are
/// one destination). `None` when there is no domain.
pub fn domain_of(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    let domain = normalize_domain(domain);
    (!domain.is_empty()).then_some(domain)
}

fn normalize_domain(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}
