//! The queue in virtual time: every test is a few milliseconds of real
//! time, whatever the days it simulates.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quickcheck::{quickcheck, Arbitrary, Gen, TestResult};

use super::*;
use crate::config::policy::MaxRetries;
use crate::spool::message::Recipient;

const T0: u64 = 1_750_000_000;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + secs)
}

fn secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs() - T0
}

fn recipient(address: &str) -> Recipient {
    Recipient {
        address: address.into(),
        notify: None,
        orcpt: None,
    }
}

fn message(id: u64, sender: &str, recipients: &[&str]) -> StoredMessage {
    StoredMessage {
        id: QueueId(id),
        envelope: Envelope {
            sender: sender.into(),
            recipients: recipients.iter().map(|a| recipient(a)).collect(),
            ret: None,
            envid: None,
            received_at: t(0),
            client: "192.0.2.7:40000".parse().unwrap(),
            binding: "default".into(),
        },
        states: vec![RecipientState::Pending; recipients.len()],
        attempts: vec![0; recipients.len()],
        size: 100,
    }
}

fn queue(schedule: Schedule) -> Queue {
    Queue::new(move |_, _| schedule)
}

fn events(q: &mut Queue) -> Vec<Event> {
    std::iter::from_fn(|| q.poll_event()).collect()
}

fn attempts(q: &mut Queue, now: SystemTime) -> Vec<Attempt> {
    std::iter::from_fn(|| q.poll_attempt(now)).collect()
}

/// The same outcome for every recipient of the attempt.
fn all(attempt: &Attempt, outcome: impl Fn(usize) -> Outcome) -> Vec<RecipientResult> {
    attempt
        .messages
        .iter()
        .flat_map(|m| {
            m.recipients.iter().map(|&r| RecipientResult {
                id: m.id,
                recipient: r,
                outcome: outcome(r),
            })
        })
        .collect()
}

fn transient(_: usize) -> Outcome {
    Outcome::Transient(Response::from_remote(
        "451 4.3.0 try later",
        "mx.example.com",
        Some("192.0.2.25".parse().unwrap()),
    ))
}

fn delivered(_: usize) -> Outcome {
    Outcome::Delivered(Response::new("250 2.0.0 ok"))
}

fn permanent(_: usize) -> Outcome {
    Outcome::Permanent(Response::new("550 5.1.1 no such user"))
}

fn sizes(attempts: &[Attempt]) -> Vec<usize> {
    attempts.iter().map(|a| a.messages.len()).collect()
}

fn count<T>(events: &[Event], pick: impl Fn(&Event) -> Option<T>) -> usize {
    events.iter().filter_map(pick).count()
}

fn logs(events: &[Event]) -> Vec<&LogEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log(l) => Some(l),
            _ => None,
        })
        .collect()
}

fn bounces(events: &[Event]) -> Vec<&BounceRequest> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Bounce(b) => Some(b),
            _ => None,
        })
        .collect()
}

/// The spool updates that settle recipients, with only those changes and
/// their attempt counts left out ([`attempt_records`] has those).
fn updates(events: &[Event]) -> Vec<(QueueId, Vec<StateChange>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SpoolUpdate { id, changes } => {
                let settled: Vec<StateChange> = changes
                    .iter()
                    .filter(|c| c.state != RecipientState::Pending)
                    .map(|c| StateChange { attempts: 0, ..*c })
                    .collect();
                (!settled.is_empty()).then_some((*id, settled))
            }
            _ => None,
        })
        .collect()
}

/// Every (message, recipient, state, attempts) the spool is told, in order.
fn attempt_records(events: &[Event]) -> Vec<(u64, usize, RecipientState, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SpoolUpdate { id, changes } => Some(
                changes
                    .iter()
                    .map(|c| (id.0, c.recipient, c.state, c.attempts))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

fn removals(events: &[Event]) -> Vec<QueueId> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SpoolRemove(id) => Some(*id),
            _ => None,
        })
        .collect()
}

fn failed(recipient: usize) -> StateChange {
    StateChange {
        recipient,
        state: RecipientState::Failed,
        attempts: 0,
    }
}

fn done(recipient: usize) -> StateChange {
    StateChange {
        recipient,
        state: RecipientState::Delivered,
        attempts: 0,
    }
}

/// Answers every attempt with transient failures at each deadline until
/// the queue is empty; returns the attempt times and every event.
fn defer_until_done(q: &mut Queue) -> (Vec<u64>, Vec<Event>) {
    let mut times = Vec::new();
    let mut all_events = Vec::new();
    let mut now = t(0);
    for _ in 0..100_000 {
        q.handle_timeout(now);
        while let Some(a) = q.poll_attempt(now) {
            times.push(secs(now));
            let results = all(&a, transient);
            assert!(q.handle_result(now, a.id, results));
        }
        all_events.extend(events(q));
        match q.poll_timeout() {
            Some(next) => {
                assert!(next > now, "the deadline moves on");
                now = next;
            }
            None => break,
        }
    }
    assert!(q.is_empty());
    (times, all_events)
}

#[test]
fn days_of_retries_double_up_to_the_cap_then_expire() {
    let mut q = queue(Schedule {
        retry_interval: Duration::from_secs(1200),
        max_retry_interval: Duration::from_secs(9600),
        max_retries: MaxRetries::Unlimited,
        message_expiration: Duration::from_secs(3 * 86400),
        ..Schedule::default()
    });
    let m = message(1, "alice@example.org", &["a@example.com", "b@EXAMPLE.com"]);
    assert!(q.handle_message(t(0), m));
    assert_eq!(q.poll_timeout(), Some(t(0)));
    let (times, events) = defer_until_done(&mut q);
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(&gaps[..6], [1200, 2400, 4800, 9600, 9600, 9600]);
    assert!(gaps[3..].iter().all(|&g| g == 9600));
    // 0, then 1200 + 2400 + 4800 = 8400, then every 9600 s while before
    // 259200: 8400 + 26 × 9600 = 258000.
    assert_eq!(times.len(), 4 + 26);
    assert_eq!(*times.last().unwrap(), 258_000);

    // The expiry: exactly one update failing both, one bounce listing
    // both, one Expired record each, and the removal.
    let expired: Vec<&LogEvent> = logs(&events)
        .into_iter()
        .filter(|l| l.kind == LogKind::Expired)
        .collect();
    assert_eq!(expired.len(), 2);
    assert!(expired.iter().all(|l| l.attempt == 30));
    assert_eq!(updates(&events), [(QueueId(1), vec![failed(0), failed(1)])]);
    let b = bounces(&events);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].original, QueueId(1));
    assert_eq!(
        b[0].recipients
            .iter()
            .map(|f| (f.recipient, f.kind, f.attempts))
            .collect::<Vec<_>>(),
        [(0, ReportKind::Expired, 30), (1, ReportKind::Expired, 30)]
    );
    assert_eq!(b[0].recipients[0].response.reply, "451 4.3.0 try later");
    assert_eq!(b[0].recipients[0].last_attempt, Some(t(258_000)));
    assert_eq!(removals(&events), [QueueId(1)]);
    // The expiry happened at its time, not at an attempt.
    let transient_logs = logs(&events)
        .into_iter()
        .filter(|l| l.kind == LogKind::Transient)
        .count();
    assert_eq!(transient_logs, 2 * 30);
    // Each deferral records the attempts made; the expiry fails both.
    let mut counted: Vec<u32> = (1..=30).collect();
    counted.push(30);
    for recipient in 0..2 {
        let recorded: Vec<u32> = attempt_records(&events)
            .into_iter()
            .filter(|r| r.1 == recipient)
            .map(|r| r.3)
            .collect();
        assert_eq!(recorded, counted);
    }
    // Events come in durable order: bounce, then update, then removal.
    let order: Vec<&Event> = events
        .iter()
        .filter(|e| !matches!(e, Event::Log(_)))
        .collect();
    let [.., bounce, update, remove] = order.as_slice() else {
        panic!("{order:?}");
    };
    assert!(matches!(bounce, Event::Bounce(_)));
    assert!(matches!(update, Event::SpoolUpdate { .. }));
    assert!(matches!(remove, Event::SpoolRemove(_)));
}

#[test]
fn transient_records_say_when_the_retry_is() {
    let mut q = queue(Schedule::default());
    q.handle_message(t(0), message(1, "s@example.org", &["a@example.com"]));
    let a = q.poll_attempt(t(0)).unwrap();
    q.handle_result(t(5), a.id, all(&a, transient));
    let e = events(&mut q);
    let l = logs(&e);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].kind, LogKind::Transient);
    assert_eq!(l[0].retry_at, Some(t(1205)));
    assert_eq!(l[0].attempt, 1);
    assert_eq!(l[0].binding, "default");
    assert_eq!(l[0].domain, "example.com");
    assert_eq!(l[0].address, "a@example.com");
    let remote = l[0].response.remote.as_ref().unwrap();
    assert_eq!(remote.host, "mx.example.com");
    assert_eq!(remote.ip, Some("192.0.2.25".parse().unwrap()));
    assert!(updates(&e).is_empty(), "a deferral changes no stored state");
    assert_eq!(q.poll_timeout(), Some(t(1205)));
    assert!(q.poll_attempt(t(1204)).is_none());
    assert!(q.poll_attempt(t(1205)).is_some());
}

#[test]
fn max_retries_explicit() {
    let mut q = queue(Schedule {
        retry_interval: Duration::from_secs(60),
        max_retry_interval: Duration::from_secs(60),
        max_retries: MaxRetries::Count(3),
        ..Schedule::default()
    });
    q.handle_message(t(0), message(1, "s@example.org", &["a@example.com"]));
    let (times, events) = defer_until_done(&mut q);
    // The first attempt and three retries; the fourth failure expires it
    // at once.
    assert_eq!(times, [0, 60, 120, 180]);
    let l = logs(&events);
    let last_two: Vec<(LogKind, Option<SystemTime>)> = l[l.len() - 2..]
        .iter()
        .map(|l| (l.kind, l.retry_at))
        .collect();
    assert_eq!(
        last_two,
        [(LogKind::Transient, None), (LogKind::Expired, None)]
    );
    assert_eq!(bounces(&events).len(), 1);
    assert_eq!(bounces(&events)[0].recipients[0].attempts, 4);

    // Zero retries: one attempt.
    let mut q = queue(Schedule {
        max_retries: MaxRetries::Count(0),
        ..Schedule::default()
    });
    q.handle_message(t(0), message(1, "s@example.org", &["a@example.com"]));
    assert_eq!(defer_until_done(&mut q).0, [0]);
}

#[test]
fn max_retries_auto_and_none() {
    // Momentum's defaults: 1200 s doubling, capped at 43200 s, expiring
    // after 86400 s. `auto` is 6 retries; the seventh attempt, at 75600 s,
    // is the last.
    let mut q = queue(Schedule::default());
    q.handle_message(t(0), message(1, "s@example.org", &["a@example.com"]));
    let (times, events) = defer_until_done(&mut q);
    assert_eq!(times, [0, 1200, 3600, 8400, 18000, 37200, 75600]);
    let expired = logs(&events)
        .into_iter()
        .find(|l| l.kind == LogKind::Expired)
        .unwrap();
    assert_eq!(expired.attempt, 7);

    // `none`: the same attempts, but the message fails only when it
    // expires, at 86400 s (the next retry would be at 118800 s).
    let mut q = queue(Schedule {
        max_retries: MaxRetries::Unlimited,
        ..Schedule::default()
    });
    q.handle_message(t(0), message(1, "s@example.org", &["a@example.com"]));
    q.poll_attempt(t(0))
        .map(|a| q.handle_result(t(0), a.id, all(&a, transient)));
    let (times, _) = defer_until_done(&mut q);
    assert_eq!(times, [1200, 3600, 8400, 18000, 37200, 75600]);

    // `auto` ignores Max_Retry_Interval, as Momentum warns: capped at
    // 1200 s, its 6 retries are used up after 7200 s.
    let mut q = queue(Schedule {
        max_retry_interval: Duration::from_secs(1200),
        ..Schedule::default()
    });
    q.handle_message(t(0), message(1, "s@example.org", &["a@example.com"]));
    let (times, _) = defer_until_done(&mut q);
    assert_eq!(times, [0, 1200, 2400, 3600, 4800, 6000, 7200]);
}

#[test]
fn flushing_counts_towards_auto_retries() {
    let mut q = queue(Schedule::default());
    q.handle_message(t(0), message(1, "s@example.org", &["a@example.com"]));
    let mut now = t(0);
    for n in 1..=7 {
        let a = q.poll_attempt(now).unwrap();
        q.handle_result(now, a.id, all(&a, transient));
        let e = events(&mut q);
        if n < 7 {
            assert!(bounces(&e).is_empty());
            now += Duration::from_secs(1);
            assert_eq!(q.handle_flush(now, "Example.COM."), 1);
        } else {
            assert_eq!(bounces(&e).len(), 1, "the seventh failure expires it");
        }
    }
    assert!(q.is_empty());
}

#[test]
fn grouping_by_max_deliveries_per_connection() {
    let mut q = queue(Schedule {
        max_deliveries_per_connection: Some(2),
        ..Schedule::default()
    });
    for id in 1..=5 {
        q.handle_message(t(0), message(id, "s@example.org", &["a@example.com"]));
    }
    let a = attempts(&mut q, t(0));
    assert_eq!(sizes(&a), [2, 2, 1]);
    // Oldest first, and each message once.
    let ids: Vec<u64> = a
        .iter()
        .flat_map(|a| a.messages.iter().map(|m| m.id.0))
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    assert!(a
        .iter()
        .all(|a| a.domain == "example.com" && a.binding == "default"));
    assert_eq!(
        a[0].messages[0].envelope.sender, "s@example.org",
        "the envelope comes with the attempt"
    );

    // Some(0) is taken as 1.
    let mut q = queue(Schedule {
        max_deliveries_per_connection: Some(0),
        ..Schedule::default()
    });
    for id in 1..=3 {
        q.handle_message(t(0), message(id, "s@example.org", &["a@example.com"]));
    }
    assert_eq!(sizes(&attempts(&mut q, t(0))), [1, 1, 1]);

    // Unlimited: what is due is shared out over the free connections.
    let mut q = queue(Schedule {
        max_outbound_connections: 3,
        ..Schedule::default()
    });
    for id in 1..=10 {
        q.handle_message(t(0), message(id, "s@example.org", &["a@example.com"]));
    }
    assert_eq!(sizes(&attempts(&mut q, t(0))), [4, 3, 3]);
    let mut q = queue(Schedule::default());
    for id in 1..=5 {
        q.handle_message(t(0), message(id, "s@example.org", &["a@example.com"]));
    }
    assert_eq!(sizes(&attempts(&mut q, t(0))), [1, 1, 1, 1, 1]);
    let mut q = queue(Schedule {
        max_outbound_connections: 1,
        ..Schedule::default()
    });
    for id in 1..=5 {
        q.handle_message(t(0), message(id, "s@example.org", &["a@example.com"]));
    }
    assert_eq!(sizes(&attempts(&mut q, t(0))), [5]);
}

#[test]
fn destinations_are_per_binding_and_domain() {
    let mut q = queue(Schedule::default());
    q.handle_message(
        t(0),
        message(
            1,
            "s@example.org",
            &[
                "a@one.example",
                "b@TWO.example",
                "c@One.Example",
                "d@[192.0.2.1]",
            ],
        ),
    );
    let mut other = message(2, "s@example.org", &["e@one.example"]);
    other.envelope.binding = "bulk".into();
    q.handle_message(t(0), other);
    let mut a: Vec<(String, String, Vec<usize>)> = attempts(&mut q, t(0))
        .into_iter()
        .map(|a| (a.binding, a.domain, a.messages[0].recipients.clone()))
        .collect();
    a.sort();
    assert_eq!(
        a,
        [
            ("bulk".into(), "one.example".into(), vec![0]),
            ("default".into(), "[192.0.2.1]".into(), vec![3]),
            ("default".into(), "one.example".into(), vec![0, 2]),
            ("default".into(), "two.example".into(), vec![1]),
        ]
    );
}

#[test]
fn connection_cap_per_destination() {
    let mut q = queue(Schedule {
        max_outbound_connections: 2,
        max_deliveries_per_connection: Some(1),
        ..Schedule::default()
    });
    for id in 1..=5 {
        q.handle_message(t(0), message(id, "s@example.org", &["a@example.com"]));
    }
    q.handle_message(t(0), message(9, "s@example.org", &["a@other.example"]));
    let a = attempts(&mut q, t(0));
    let to_example: Vec<&Attempt> = a.iter().filter(|a| a.domain == "example.com").collect();
    assert_eq!(to_example.len(), 2, "two connections at most");
    assert_eq!(a.len(), 3, "another domain is not held up");
    // At the cap, the destination waits for an attempt to end, not for a
    // time: no deadline that would spin.
    assert_eq!(q.poll_timeout(), None);
    assert!(q.poll_attempt(t(10)).is_none());
    q.handle_result(t(10), to_example[0].id, all(to_example[0], delivered));
    assert_eq!(q.poll_timeout(), Some(t(0)));
    let next = attempts(&mut q, t(10));
    assert_eq!(sizes(&next), [1]);
    assert_eq!(next[0].messages[0].id, QueueId(3));
    assert_eq!(q.attempts_in_flight(), 3);
}

#[test]
fn mixed_results_give_each_recipient_one_outcome() {
    let mut q = queue(Schedule::default());
    q.handle_message(
        t(0),
        message(
            1,
            "s@example.org",
            &["ok@example.com", "later@example.com", "bad@example.com"],
        ),
    );
    let a = q.poll_attempt(t(0)).unwrap();
    let results = all(&a, |r| match r {
        0 => delivered(r),
        1 => transient(r),
        _ => permanent(r),
    });
    q.handle_result(t(1), a.id, results);
    let e = events(&mut q);
    let kinds: Vec<(usize, LogKind)> = logs(&e).iter().map(|l| (l.recipient, l.kind)).collect();
    assert_eq!(
        kinds,
        [
            (0, LogKind::Delivered),
            (2, LogKind::Permanent),
            (1, LogKind::Transient)
        ]
    );
    assert_eq!(updates(&e), [(QueueId(1), vec![done(0), failed(2)])]);
    let b = bounces(&e);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].recipients.len(), 1);
    assert_eq!(b[0].recipients[0].recipient, 2);
    assert_eq!(b[0].recipients[0].kind, ReportKind::Permanent);
    assert_eq!(b[0].recipients[0].response.reply, "550 5.1.1 no such user");
    assert!(removals(&e).is_empty());

    // The retry carries only the deferred recipient.
    let a = q.poll_attempt(t(1201)).unwrap();
    assert_eq!(a.messages[0].recipients, [1]);
    q.handle_result(t(1201), a.id, all(&a, delivered));
    let e = events(&mut q);
    assert_eq!(updates(&e), [(QueueId(1), vec![done(1)])]);
    assert_eq!(removals(&e), [QueueId(1)]);
    assert!(q.is_empty());
    assert_eq!(q.poll_timeout(), None);
}

#[test]
fn recipients_without_a_result_are_deferred() {
    let mut q = queue(Schedule::default());
    q.handle_message(
        t(0),
        message(1, "s@example.org", &["a@example.com", "b@example.com"]),
    );
    let a = q.poll_attempt(t(0)).unwrap();
    let results = vec![
        RecipientResult {
            id: QueueId(1),
            recipient: 0,
            outcome: delivered(0),
        },
        // Not in the attempt: ignored.
        RecipientResult {
            id: QueueId(7),
            recipient: 0,
            outcome: permanent(0),
        },
        RecipientResult {
            id: QueueId(1),
            recipient: 9,
            outcome: permanent(0),
        },
        // A second outcome for the same recipient: ignored.
        RecipientResult {
            id: QueueId(1),
            recipient: 0,
            outcome: permanent(0),
        },
    ];
    assert!(q.handle_result(t(0), a.id, results));
    assert!(!q.handle_result(t(0), a.id, Vec::new()), "only once");
    let e = events(&mut q);
    assert_eq!(updates(&e), [(QueueId(1), vec![done(0)])]);
    let l = logs(&e);
    assert_eq!(l[1].kind, LogKind::Transient);
    assert_eq!(l[1].recipient, 1);
    assert_eq!(l[1].response.reply, NO_RESULT);
    assert!(!q.handle_result(t(0), AttemptId(99), Vec::new()));
}

#[test]
fn progress_is_recorded_before_the_attempt_ends() {
    let mut q = queue(Schedule {
        max_deliveries_per_connection: Some(10),
        ..Schedule::default()
    });
    q.handle_message(t(0), message(1, "s@example.org", &["a@example.com"]));
    q.handle_message(
        t(0),
        message(2, "s@example.org", &["b@example.com", "c@example.com"]),
    );
    let a = q.poll_attempt(t(0)).unwrap();
    assert_eq!(sizes(std::slice::from_ref(&a)), [2]);
    assert!(q.handle_progress(
        a.id,
        vec![
            RecipientResult {
                id: QueueId(1),
                recipient: 0,
                outcome: delivered(0),
            },
            RecipientResult {
                id: QueueId(2),
                recipient: 1,
                outcome: transient(1),
            },
        ]
    ));
    let e = events(&mut q);
    assert_eq!(updates(&e), [(QueueId(1), vec![done(0)])]);
    assert_eq!(removals(&e), [QueueId(1)]);
    assert_eq!(q.len(), 1);
    // The end reports the rest; the earlier outcomes are not repeated.
    q.handle_result(
        t(3),
        a.id,
        vec![
            RecipientResult {
                id: QueueId(1),
                recipient: 0,
                outcome: permanent(0),
            },
            RecipientResult {
                id: QueueId(2),
                recipient: 0,
                outcome: delivered(0),
            },
        ],
    );
    let e = events(&mut q);
    assert_eq!(updates(&e), [(QueueId(2), vec![done(0)])]);
    assert!(bounces(&e).is_empty());
    let l = logs(&e);
    assert_eq!(
        l.iter()
            .map(|l| (l.id.0, l.recipient, l.kind))
            .collect::<Vec<_>>(),
        [(2, 0, LogKind::Delivered), (2, 1, LogKind::Transient)]
    );
    assert_eq!(q.poll_attempt(t(1203)).unwrap().messages[0].recipients, [1]);
    assert!(!q.handle_progress(AttemptId(99), Vec::new()));
}

#[test]
fn a_recovered_message_resumes_where_it_stopped() {
    let mut q = queue(Schedule::default());
    let mut m = message(
        1,
        "s@example.org",
        &[
            "a@example.com",
            "b@example.com",
            "c@example.com",
            "d@other.example",
        ],
    );
    m.states = vec![
        RecipientState::Delivered,
        RecipientState::Pending,
        RecipientState::Failed,
        RecipientState::Delivered,
    ];
    q.handle_message(t(500), m);
    assert!(events(&mut q).is_empty());
    let a = attempts(&mut q, t(500));
    assert_eq!(a.len(), 1, "other.example is done");
    assert_eq!(a[0].messages[0].recipients, [1]);
    q.handle_result(t(500), a[0].id, all(&a[0], transient));
    // Delivered recipients never come back, however many retries.
    let (_, later) = defer_until_done(&mut q);
    for e in &later {
        if let Event::SpoolUpdate { changes, .. } = e {
            assert!(changes.iter().all(|c| c.recipient == 1));
        }
    }

    // A message with nothing pending is removed at once.
    let mut q = queue(Schedule::default());
    let mut m = message(2, "s@example.org", &["a@example.com"]);
    m.states = vec![RecipientState::Failed];
    q.handle_message(t(0), m);
    assert_eq!(events(&mut q), [Event::SpoolRemove(QueueId(2))]);
    assert!(q.is_empty());
    assert!(q.poll_attempt(t(0)).is_none());

    // The same id twice is refused.
    let mut q = queue(Schedule::default());
    assert!(q.handle_message(t(0), message(3, "s@example.org", &["a@example.com"])));
    assert!(!q.handle_message(t(0), message(3, "s@example.org", &["z@example.com"])));
    assert_eq!(
        q.envelope(QueueId(3)).unwrap().recipients[0].address,
        "a@example.com"
    );
}

#[test]
fn a_recovered_message_goes_on_counting_its_attempts() {
    // Three retries allowed; two attempts made before the restart, by the
    // spool's records.
    let schedule = Schedule {
        retry_interval: Duration::from_secs(60),
        max_retry_interval: Duration::from_secs(60),
        max_retries: MaxRetries::Count(3),
        ..Schedule::default()
    };
    let mut q = queue(schedule);
    let mut m = message(1, "s@example.org", &["a@example.com", "b@example.com"]);
    m.envelope.recipients[0].notify = Some("DELAY,FAILURE".into());
    m.attempts = vec![2, 1];
    q.handle_message(t(0), m);
    let (times, e) = defer_until_done(&mut q);
    assert_eq!(times, [0, 60], "attempts 3 and 4, then no more");
    let b = bounces(&e);
    assert_eq!(b.len(), 1, "no second delay notice: {b:?}");
    assert_eq!(b[0].recipients[0].kind, ReportKind::Expired);
    assert_eq!(b[0].recipients[0].attempts, 4);
}

#[test]
fn a_message_recovered_after_its_expiry_is_tried_once() {
    let mut q = queue(Schedule::default());
    q.handle_message(t(200_000), message(1, "s@example.org", &["a@example.com"]));
    assert_eq!(q.poll_timeout(), Some(t(200_000)));
    let a = q.poll_attempt(t(200_000)).expect("one attempt");
    q.handle_result(t(200_000), a.id, all(&a, transient));
    let e = events(&mut q);
    assert_eq!(bounces(&e)[0].recipients[0].kind, ReportKind::Expired);
    assert!(q.is_empty());
}

#[test]
fn remove_forgets_without_bouncing() {
    let mut q = queue(Schedule::default());
    q.handle_message(t(0), message(1, "s@example.org", &["a@example.com"]));
    q.handle_message(t(0), message(2, "s@example.org", &["a@example.com"]));
    assert!(q.handle_remove(QueueId(1)));
    assert!(!q.handle_remove(QueueId(1)));
    assert_eq!(events(&mut q), [Event::SpoolRemove(QueueId(1))]);
    let a = q.poll_attempt(t(0)).unwrap();
    assert_eq!(a.messages.len(), 1);
    assert_eq!(a.messages[0].id, QueueId(2));

    // Removed while in flight: the outcome is ignored.
    assert!(q.handle_remove(QueueId(2)));
    assert_eq!(events(&mut q), [Event::SpoolRemove(QueueId(2))]);
    assert!(q.handle_result(t(1), a.id, all(&a, permanent)));
    assert!(events(&mut q).is_empty());
    assert!(q.is_empty());
    assert_eq!(q.poll_timeout(), None);
    assert!(q.summary(t(1)).is_empty());
}

#[test]
fn flush_makes_a_domain_due_now() {
    let mut q = queue(Schedule::default());
    q.handle_message(
        t(0),
        message(1, "s@example.org", &["a@example.com", "b@other.example"]),
    );
    for a in attempts(&mut q, t(0)) {
        q.handle_result(t(0), a.id, all(&a, transient));
    }
    assert!(q.poll_attempt(t(60)).is_none());
    assert_eq!(q.handle_flush(t(60), "EXAMPLE.COM"), 1);
    assert_eq!(q.handle_flush(t(60), "nowhere.example"), 0);
    assert_eq!(q.poll_timeout(), Some(t(60)));
    let a = attempts(&mut q, t(60));
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].domain, "example.com");
    // In flight: nothing to flush.
    assert_eq!(q.handle_flush(t(61), "example.com"), 0);
}

#[test]
fn the_null_sender_never_gets_a_bounce() {
    let mut q = queue(Schedule::default());
    q.handle_message(t(0), message(1, "", &["a@example.com"]));
    let a = q.poll_attempt(t(0)).unwrap();
    q.handle_result(t(0), a.id, all(&a, permanent));
    let e = events(&mut q);
    assert!(bounces(&e).is_empty());
    assert_eq!(updates(&e), [(QueueId(1), vec![failed(0)])]);
    assert_eq!(count(&e, |e| matches!(e, Event::Log(_)).then_some(())), 1);
    assert_eq!(removals(&e), [QueueId(1)]);

    // Nor on expiry.
    let mut q = queue(Schedule::default());
    q.handle_message(t(0), message(1, "", &["a@example.com"]));
    let (_, e) = defer_until_done(&mut q);
    assert!(bounces(&e).is_empty());
    assert_eq!(updates(&e), [(QueueId(1), vec![failed(0)])]);
}

#[test]
fn generate_bounces_off_never_bounces() {
    let mut q = Queue::new(|_, domain| Schedule {
        generate_bounces: domain != "quiet.example",
        ..Schedule::default()
    });
    q.handle_message(
        t(0),
        message(1, "s@example.org", &["a@quiet.example", "b@loud.example"]),
    );
    for a in attempts(&mut q, t(0)) {
        q.handle_result(t(0), a.id, all(&a, permanent));
    }
    let e = events(&mut q);
    assert_eq!(updates(&e).len(), 2);
    let b = bounces(&e);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].recipients.len(), 1);
    assert_eq!(b[0].recipients[0].recipient, 1);

    let mut q = queue(Schedule {
        generate_bounces: false,
        ..Schedule::default()
    });
    q.handle_message(t(0), message(1, "s@example.org", &["a@example.com"]));
    let (_, e) = defer_until_done(&mut q);
    assert!(bounces(&e).is_empty());
    assert_eq!(updates(&e), [(QueueId(1), vec![failed(0)])]);
}

#[test]
fn notify_decides_who_is_reported() {
    let mut q = queue(Schedule::default());
    let mut m = message(
        1,
        "s@example.org",
        &[
            "never@example.com",
            "success@example.com",
            "fail@example.com",
            "default@example.com",
        ],
    );
    m.envelope.recipients[0].notify = Some("NEVER".into());
    m.envelope.recipients[1].notify = Some("SUCCESS,DELAY".into());
    m.envelope.recipients[2].notify = Some("SUCCESS,FAILURE".into());
    q.handle_message(t(0), m);
    let a = q.poll_attempt(t(0)).unwrap();
    q.handle_result(t(0), a.id, all(&a, permanent));
    let e = events(&mut q);
    let b = bounces(&e);
    assert_eq!(b.len(), 1);
    let reported: Vec<usize> = b[0].recipients.iter().map(|f| f.recipient).collect();
    assert_eq!(reported, [2, 3]);
    assert_eq!(updates(&e)[0].1.len(), 4, "all four failed all the same");

    let mut q = queue(Schedule::default());
    let mut m = message(1, "s@example.org", &["never@example.com"]);
    m.envelope.recipients[0].notify = Some("NEVER".into());
    q.handle_message(t(0), m);
    let a = q.poll_attempt(t(0)).unwrap();
    q.handle_result(t(0), a.id, all(&a, permanent));
    assert!(bounces(&events(&mut q)).is_empty());
}

/// Takes the attempt due at `now`, answers each recipient with
/// `outcome`, and returns the events.
fn answer(q: &mut Queue, now: SystemTime, outcome: fn(usize) -> Outcome) -> Vec<Event> {
    let a = q.poll_attempt(now).unwrap();
    q.handle_result(now, a.id, all(&a, outcome));
    events(q)
}

/// Each report's recipients and what it says of them.
fn reported(events: &[Event]) -> Vec<Vec<(usize, ReportKind)>> {
    bounces(events)
        .iter()
        .map(|b| b.recipients.iter().map(|r| (r.recipient, r.kind)).collect())
        .collect()
}

#[test]
fn delay_and_relay_notices_follow_notify() {
    let mut q = queue(Schedule::default());
    let mut m = message(
        1,
        "s@example.org",
        &["d@example.com", "sd@example.com", "plain@example.com"],
    );
    m.envelope.recipients[0].notify = Some("DELAY".into());
    m.envelope.recipients[1].notify = Some("SUCCESS,DELAY".into());
    q.handle_message(t(0), m);

    // The first deferral: one delay notice, for those who asked, and no
    // state changes.
    let e = answer(&mut q, t(0), transient);
    assert_eq!(
        reported(&e),
        [vec![(0, ReportKind::Delayed), (1, ReportKind::Delayed)]]
    );
    assert_eq!(bounces(&e)[0].recipients[0].retry_until, Some(t(86400)));
    assert!(updates(&e).is_empty());

    // The second: none again.
    let next = q.poll_timeout().unwrap();
    assert!(reported(&answer(&mut q, next, transient)).is_empty());

    // Accepted by a server without DSN: a relay notice for the one that
    // asked for SUCCESS, before the update.
    let next = q.poll_timeout().unwrap();
    let e = answer(&mut q, next, |_| Outcome::Relayed(Response::new("250 ok")));
    assert_eq!(reported(&e), [vec![(1, ReportKind::Relayed)]]);
    assert_eq!(updates(&e), [(QueueId(1), vec![done(0), done(1), done(2)])]);
    let bounce_at = e.iter().position(|e| matches!(e, Event::Bounce(_)));
    let update_at = e
        .iter()
        .position(|e| matches!(e, Event::SpoolUpdate { .. }));
    assert!(bounce_at < update_at);
    assert_eq!(removals(&e), [QueueId(1)]);

    // A server that offers DSN takes the duty on: no notice from Petrel.
    let mut q = queue(Schedule::default());
    let mut m = message(2, "s@example.org", &["sd@example.com"]);
    m.envelope.recipients[0].notify = Some("SUCCESS".into());
    q.handle_message(t(0), m);
    assert!(reported(&answer(&mut q, t(0), delivered)).is_empty());
}

#[test]
fn a_recipient_without_a_domain_fails_at_once() {
    let mut q = queue(Schedule::default());
    q.handle_message(
        t(0),
        message(1, "s@example.org", &["Postmaster", "a@example.com"]),
    );
    let e = events(&mut q);
    assert_eq!(updates(&e), [(QueueId(1), vec![failed(0)])]);
    let b = bounces(&e);
    assert_eq!(b[0].recipients[0].response.reply, NO_DOMAIN);
    assert_eq!(b[0].recipients[0].kind, ReportKind::Permanent);
    assert_eq!(logs(&e)[0].kind, LogKind::Permanent);
    let a = q.poll_attempt(t(0)).unwrap();
    assert_eq!(a.messages[0].recipients, [1]);
}

#[test]
fn summary_and_list() {
    let mut q = queue(Schedule {
        max_deliveries_per_connection: Some(1),
        ..Schedule::default()
    });
    q.handle_message(
        t(0),
        message(1, "s@example.org", &["a@example.com", "b@example.com"]),
    );
    q.handle_message(t(0), message(2, "s@example.org", &["c@example.com"]));
    q.handle_message(t(0), message(3, "s@example.org", &["d@example.com"]));
    q.handle_message(t(0), message(4, "s@example.org", &["e@other.example"]));
    let first = q.poll_attempt(t(0)).unwrap();
    let second = q.poll_attempt(t(0)).unwrap();
    assert_eq!(first.messages[0].id, QueueId(1));
    q.handle_result(t(0), first.id, all(&first, transient));
    // Message 1 deferred, 2 in flight, 3 ready; 4 ready elsewhere.
    let _ = second;
    let s = q.summary(t(10));
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].domain, "example.com");
    assert_eq!(s[0].connections, 1);
    assert_eq!(
        s[0].in_flight,
        Count {
            messages: 1,
            recipients: 1
        }
    );
    assert_eq!(
        s[0].ready,
        Count {
            messages: 1,
            recipients: 1
        }
    );
    assert_eq!(
        s[0].deferred,
        Count {
            messages: 1,
            recipients: 2
        }
    );
    assert_eq!(s[1].domain, "other.example");
    assert_eq!(s[1].ready.messages, 1);

    let l = q.list("Example.com", t(10));
    let rows: Vec<(u64, DeliveryState, u32, Option<u64>)> = l
        .iter()
        .map(|e| (e.id.0, e.state, e.attempts, e.next_attempt.map(secs)))
        .collect();
    assert_eq!(
        rows,
        [
            (1, DeliveryState::Deferred, 1, Some(1200)),
            (2, DeliveryState::InFlight, 1, None),
            (3, DeliveryState::Ready, 0, Some(0)),
        ]
    );
    assert_eq!(l[0].last_error.as_deref(), Some("451 4.3.0 try later"));
    assert_eq!(l[0].recipients, ["a@example.com", "b@example.com"]);
    assert_eq!(l[0].expires_at, Some(t(86400)));
    assert!(q.list("nowhere.example", t(10)).is_empty());
}

#[test]
fn outcomes_from_replies() {
    let r = |s: &str| Outcome::from_reply(Response::new(s));
    assert!(matches!(r("250 2.1.5 ok"), Outcome::Delivered(_)));
    assert!(matches!(
        r("451 4.7.5 [internal] TLS negotiation failed"),
        Outcome::Transient(_)
    ));
    assert!(matches!(r("554 5.7.1 no"), Outcome::Permanent(_)));
    assert!(matches!(r(""), Outcome::Transient(_)));
    assert!(matches!(r("garbage"), Outcome::Transient(_)));
    assert_eq!(domain_of("a@Example.COM."), Some("example.com".into()));
    assert_eq!(domain_of("\"x@y\"@b.example"), Some("b.example".into()));
    assert_eq!(domain_of("Postmaster"), None);
    assert_eq!(domain_of("a@"), None);
}

// ---- the property ----

/// One step of a random run.
#[derive(Debug, Clone)]
enum Op {
    /// A message: each recipient's (domain, initial state).
    Add {
        recipients: Vec<(u8, u8)>,
        null_sender: bool,
    },
    /// The clock moves on.
    Advance(u16),
    /// Open every attempt that is due.
    Poll,
    /// End one open attempt: per recipient 0 delivered, 1 transient, 2
    /// permanent, 3 no result; `progress` reports some of it first.
    Answer {
        which: u8,
        outcomes: Vec<u8>,
        progress: bool,
    },
    /// Flush a domain.
    Flush(u8),
    /// Remove a message (`petrel queue remove`).
    Remove(u8),
}

#[derive(Debug, Clone)]
struct Run {
    schedule: Schedule,
    ops: Vec<Op>,
}

impl Arbitrary for Run {
    fn arbitrary(g: &mut Gen) -> Self {
        let retry = u64::from(u8::arbitrary(g) % 100) + 1;
        let schedule = Schedule {
            retry_interval: Duration::from_secs(retry),
            max_retry_interval: Duration::from_secs(retry * u64::from(u8::arbitrary(g) % 8 + 1)),
            max_retries: match u8::arbitrary(g) % 3 {
                0 => MaxRetries::Auto,
                1 => MaxRetries::Unlimited,
                _ => MaxRetries::Count(u32::from(u8::arbitrary(g) % 5)),
            },
            message_expiration: Duration::from_secs(u64::from(u16::arbitrary(g) % 3000)),
            max_outbound_connections: usize::from(u8::arbitrary(g) % 3) + 1,
            max_deliveries_per_connection: match u8::arbitrary(g) % 3 {
                0 => None,
                n => Some(usize::from(n)),
            },
            generate_bounces: bool::arbitrary(g),
            suspended: u8::arbitrary(g) % 8 == 0,
        };
        let n = usize::arbitrary(g) % 60;
        let ops = (0..n)
            .map(|_| match u8::arbitrary(g) % 6 {
                0 => Op::Add {
                    recipients: (0..u8::arbitrary(g) % 4 + 1)
                        .map(|_| (u8::arbitrary(g) % 3, u8::arbitrary(g) % 5))
                        .collect(),
                    null_sender: u8::arbitrary(g) % 4 == 0,
                },
                1 => Op::Advance(u16::arbitrary(g) % 2000),
                2 => Op::Poll,
                3 => Op::Answer {
                    which: u8::arbitrary(g),
                    outcomes: (0..8).map(|_| u8::arbitrary(g) % 4).collect(),
                    progress: bool::arbitrary(g),
                },
                4 => Op::Flush(u8::arbitrary(g) % 3),
                _ => Op::Remove(u8::arbitrary(g)),
            })
            .collect();
        Run { schedule, ops }
    }
}

/// Checks every event and attempt against what the spool would hold.
#[derive(Default)]
struct Model {
    /// Each recipient's state, as the spool has it.
    states: HashMap<(QueueId, usize), RecipientState>,
    /// Recipients in an open attempt.
    in_flight: HashSet<(QueueId, usize)>,
    removed: HashSet<QueueId>,
    /// Messages removed by the operator: their recipients end nowhere.
    forgotten: HashSet<QueueId>,
    /// Recipients finished (delivered or failed) by the queue.
    finished: HashMap<(QueueId, usize), usize>,
    /// The attempts last recorded for each recipient.
    attempts: HashMap<(QueueId, usize), u32>,
}

impl Model {
    fn attempt(&mut self, a: &Attempt) -> Result<(), String> {
        if a.messages.is_empty() || a.messages.iter().any(|m| m.recipients.is_empty()) {
            return Err(format!("an empty attempt: {a:?}"));
        }
        for m in &a.messages {
            if self.removed.contains(&m.id) {
                return Err(format!("{} attempted after its removal", m.id));
            }
            for &r in &m.recipients {
                let state = self.states.get(&(m.id, r));
                if state != Some(&RecipientState::Pending) {
                    return Err(format!("{}/{r} attempted in state {state:?}", m.id));
                }
                if !self.in_flight.insert((m.id, r)) {
                    return Err(format!("{}/{r} in two attempts", m.id));
                }
            }
        }
        Ok(())
    }

    fn events(&mut self, q: &mut Queue) -> Result<(), String> {
        while let Some(e) = q.poll_event() {
            match e {
                Event::SpoolUpdate { id, changes } => {
                    if self.removed.contains(&id) {
                        return Err(format!("update of removed {id}"));
                    }
                    for c in changes {
                        let recorded = self.attempts.insert((id, c.recipient), c.attempts);
                        if recorded.is_some_and(|before| before > c.attempts) {
                            return Err(format!("{id}/{}: attempts went down", c.recipient));
                        }
                        let old = self.states.insert((id, c.recipient), c.state);
                        if old != Some(RecipientState::Pending) {
                            return Err(format!("{id}/{}: {old:?} -> {:?}", c.recipient, c.state));
                        }
                        // A pending recipient's record only counts attempts.
                        if c.state == RecipientState::Pending {
                            continue;
                        }
                        *self.finished.entry((id, c.recipient)).or_default() += 1;
                        self.in_flight.remove(&(id, c.recipient));
                    }
                }
                Event::SpoolRemove(id) => {
                    if !self.removed.insert(id) {
                        return Err(format!("{id} removed twice"));
                    }
                    let pending = self
                        .states
                        .iter()
                        .any(|((m, _), s)| *m == id && *s == RecipientState::Pending);
                    if pending && !self.forgotten.contains(&id) {
                        return Err(format!("{id} removed with recipients pending"));
                    }
                }
                Event::Bounce(b) => {
                    if b.envelope.sender.is_empty() || b.recipients.is_empty() {
                        return Err(format!("bad bounce {b:?}"));
                    }
                }
                Event::Log(_) => {}
            }
        }
        Ok(())
    }
}

fn outcome_for(code: u8) -> Option<Outcome> {
    match code {
        0 => Some(delivered(0)),
        1 => Some(transient(0)),
        2 => Some(permanent(0)),
        _ => None,
    }
}

fn results_for(a: &Attempt, codes: &[u8]) -> Vec<RecipientResult> {
    let mut n = 0;
    let mut results = Vec::new();
    for m in &a.messages {
        for &r in &m.recipients {
            let code = codes.get(n % codes.len().max(1)).copied().unwrap_or(1);
            n += 1;
            if let Some(outcome) = outcome_for(code) {
                results.push(RecipientResult {
                    id: m.id,
                    recipient: r,
                    outcome,
                });
            }
        }
    }
    results
}

fn run(run: Run) -> Result<(), String> {
    let domains = ["a.example", "b.example", "[192.0.2.1]"];
    let mut q = queue(run.schedule);
    let mut model = Model::default();
    let mut open: Vec<Attempt> = Vec::new();
    let mut now = t(0);
    let mut next_id = 0;
    for op in run.ops {
        match op {
            Op::Add {
                recipients,
                null_sender,
            } => {
                next_id += 1;
                let id = QueueId(next_id);
                let addresses: Vec<String> = recipients
                    .iter()
                    .enumerate()
                    .map(|(i, (d, _))| format!("r{i}@{}", domains[usize::from(*d)]))
                    .collect();
                let refs: Vec<&str> = addresses.iter().map(String::as_str).collect();
                let mut m = message(id.0, if null_sender { "" } else { "s@example.org" }, &refs);
                m.envelope.received_at = now;
                m.states = recipients
                    .iter()
                    .map(|(_, s)| match s {
                        0 => RecipientState::Delivered,
                        1 => RecipientState::Failed,
                        _ => RecipientState::Pending,
                    })
                    .collect();
                for (i, s) in m.states.iter().enumerate() {
                    model.states.insert((id, i), *s);
                }
                q.handle_message(now, m);
            }
            Op::Advance(s) => {
                now += Duration::from_secs(u64::from(s));
                q.handle_timeout(now);
            }
            Op::Poll => {
                while let Some(a) = q.poll_attempt(now) {
                    model.attempt(&a)?;
                    open.push(a);
                }
            }
            Op::Answer {
                which,
                outcomes,
                progress,
            } => {
                if open.is_empty() {
                    continue;
                }
                let a = open.remove(usize::from(which) % open.len());
                let results = results_for(&a, &outcomes);
                if progress {
                    let (first, rest) = results.split_at(results.len() / 2);
                    q.handle_progress(a.id, first.to_vec());
                    model.events(&mut q)?;
                    q.handle_result(now, a.id, rest.to_vec());
                } else {
                    q.handle_result(now, a.id, results);
                }
                for m in &a.messages {
                    for &r in &m.recipients {
                        model.in_flight.remove(&(m.id, r));
                    }
                }
            }
            Op::Flush(d) => {
                q.handle_flush(now, domains[usize::from(d)]);
            }
            Op::Remove(which) => {
                if next_id > 0 {
                    let id = QueueId(u64::from(which) % next_id + 1);
                    let known = !model.removed.contains(&id);
                    if known {
                        model.forgotten.insert(id);
                    }
                    if q.handle_remove(id) != known {
                        return Err(format!("remove {id}: the queue disagrees"));
                    }
                }
            }
        }
        model.events(&mut q)?;
    }
    // Then let everything run out: open attempts end in failure, and
    // every later one too, until the queue is empty.
    for a in open.drain(..) {
        q.handle_result(now, a.id, Vec::new());
    }
    model.in_flight.clear();
    model.events(&mut q)?;
    for _ in 0..100_000 {
        q.handle_timeout(now);
        while let Some(a) = q.poll_attempt(now) {
            model.attempt(&a)?;
            q.handle_result(now, a.id, results_for(&a, &[1]));
            model.in_flight.clear();
        }
        model.events(&mut q)?;
        match q.poll_timeout() {
            Some(next) if next > now => now = next,
            Some(_) => return Err("a deadline that does not move".into()),
            None => break,
        }
    }
    if !q.is_empty() || q.attempts_in_flight() > 0 {
        return Err(format!("not drained: {q:?}"));
    }
    for ((id, r), state) in &model.states {
        if *state == RecipientState::Pending && !model.forgotten.contains(id) {
            return Err(format!("{id}/{r} still pending"));
        }
    }
    for (key, n) in &model.finished {
        if *n != 1 {
            return Err(format!("{key:?} finished {n} times"));
        }
    }
    for id in 1..=next_id {
        if !model.removed.contains(&QueueId(id)) {
            return Err(format!("{id} never removed"));
        }
    }
    Ok(())
}

quickcheck! {
    fn every_recipient_ends_once_and_delivered_ones_are_never_retried(r: Run) -> TestResult {
        match run(r) {
            Ok(()) => TestResult::passed(),
            Err(e) => TestResult::error(e),
        }
    }
}

#[test]
fn suspended_delivery_waits_and_still_expires() {
    let mut q = Queue::new(|_, domain| Schedule {
        suspended: domain == "held.example",
        ..Schedule::default()
    });
    q.handle_message(
        t(0),
        message(1, "s@example.org", &["a@held.example", "b@open.example"]),
    );
    // Only the destination that is not suspended is attempted.
    let a = attempts(&mut q, t(0));
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].domain, "open.example");
    q.handle_result(t(0), a[0].id, all(&a[0], delivered));
    events(&mut q);

    // A flush does not lift the suspension; the summary and the list say
    // where the delivery stands.
    assert_eq!(q.handle_flush(t(10), "held.example"), 0);
    assert!(attempts(&mut q, t(10)).is_empty());
    let s = q.summary(t(10));
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].suspended.messages, 1);
    assert_eq!(s[0].ready.messages, 0);
    assert_eq!(
        q.list("held.example", t(10))[0].state,
        DeliveryState::Suspended
    );

    // Never attempted, it still expires with its message, and its bounce
    // says why nothing was tried.
    assert_eq!(q.poll_timeout(), Some(t(86400)));
    assert!(attempts(&mut q, t(86400)).is_empty());
    let e = events(&mut q);
    let b = bounces(&e);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].recipients.len(), 1);
    assert_eq!(b[0].recipients[0].kind, ReportKind::Expired);
    assert_eq!(b[0].recipients[0].attempts, 0);
    assert_eq!(b[0].recipients[0].response.reply, SUSPENDED);
    assert!(q.is_empty());
}
