//! Delivery status notifications (RFC 3464): what a sender gets back when
//! recipients of its message fail, are delayed, or are relayed to a server
//! that will not report on them.
//!
//! [`build`] is a pure function from a [`BounceRequest`] and the original
//! message's octets (the caller reads them from the spool) to a new
//! message and the envelope to store it under: null sender, the original
//! sender as its one recipient. The message is a `multipart/report;
//! report-type=delivery-status` (RFC 6522) of three parts: a text for
//! people, the `message/delivery-status` fields for programs, and the
//! original's headers (`text/rfc822-headers`) or, when the sender asked
//! with `RET=FULL`, the whole original (`message/rfc822`).
//!
//! `NOTIFY` is honoured here as in the queue ([`wants_notice`]): a
//! recipient is reported only on the conditions it asked for, and a report
//! with nobody in it is not made at all. Petrel relays and never delivers
//! into a mailbox, so "success" is only ever "relayed" (RFC 3461 §5.2.2):
//! to a server that offers DSN, `NOTIFY` goes on and the notices are that
//! server's to send.

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::SystemTime;

use crate::log::rfc5322;
use crate::queue::{BounceRequest, ReportKind, ReportedRecipient};
use crate::spool::message::{Envelope, QueueId, Recipient};

/// Whether `recipient` asked for a notice of this kind (RFC 3461 §4.1):
/// of a failure with no `NOTIFY` or a `NOTIFY` naming `FAILURE`; of a
/// delay or a relay only when `NOTIFY` names `DELAY` or `SUCCESS`. RFC 3461
/// leaves delay notices without `NOTIFY` to the MTA; Petrel sends none, as
/// Postfix by default, since a sender that did not ask seldom wants them.
pub fn wants_notice(recipient: &Recipient, kind: ReportKind) -> bool {
    let keyword = match kind {
        ReportKind::Permanent | ReportKind::Expired => "FAILURE",
        ReportKind::Delayed => "DELAY",
        ReportKind::Relayed => "SUCCESS",
    };
    match &recipient.notify {
        None => kind.is_failure(),
        Some(notify) => notify
            .split(',')
            .any(|word| word.trim().eq_ignore_ascii_case(keyword)),
    }
}

/// Where and when a report is made.
#[derive(Debug, Clone, Copy)]
pub struct Reporting<'a> {
    /// This MTA's name: `Reporting-MTA`, the `From:` address's domain,
    /// the `Message-ID`'s right-hand side.
    pub hostname: &'a str,
    /// Now: the report's `Date:`, and the new message's arrival.
    pub now: SystemTime,
    /// The queue id the report will be stored under (`Spool::new_id`):
    /// it makes the `Message-ID` unique.
    pub id: QueueId,
    /// `RET=FULL` returns originals up to this many octets; a larger one
    /// comes back as its headers only, as Postfix's `bounce_size_limit`
    /// does, so that a bounce is never much bigger than a notice.
    pub max_returned: usize,
    /// The original given is the whole message. A caller may give only
    /// the start of an original longer than `max_returned`, its header
    /// section at least, since only that is returned.
    pub whole: bool,
}

/// A report, ready to store as a new message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// Null sender (a report is never itself reported on: RFC 3461 §6.2,
    /// RFC 5321 §4.5.5), the original sender as the one recipient, the
    /// original's binding; received now, from `0.0.0.0:0` (made here, not
    /// received from a client).
    pub envelope: Envelope,
    /// The message, CRLF line endings, no line over 998 octets.
    pub message: Vec<u8>,
}

/// Octets in a line, without its CRLF (RFC 5322 §2.1.1).
const MAX_LINE: usize = 998;
/// Where header fields and text are folded when they can be.
const FOLD_AT: usize = 78;

/// Builds the report for `request`, or `None` when there is nobody to
/// report to (the null sender) or nothing to report (every recipient
/// declined its kind of notice). `original` is the message as the spool
/// holds it; only its headers are read unless the sender asked for the
/// full message back, which only a failure returns (RFC 3461 §4.3).
pub fn build(
    request: &BounceRequest,
    original: &[u8],
    reporting: &Reporting<'_>,
) -> Option<Bounce> {
    let envelope = &request.envelope;
    if envelope.sender.is_empty() {
        return None;
    }
    let reported: Vec<&ReportedRecipient> = request
        .recipients
        .iter()
        .filter(|r| {
            envelope
                .recipients
                .get(r.recipient)
                .is_some_and(|recipient| wants_notice(recipient, r.kind))
        })
        .collect();
    if reported.is_empty() {
        return None;
    }
    let failure = reported.iter().any(|r| r.kind.is_failure());
    let hostname = one_line(reporting.hostname);

    let headers = headers_of(original);
    let full = envelope
        .ret
        .as_deref()
        .is_some_and(|ret| ret.eq_ignore_ascii_case("FULL"))
        && failure
        && reporting.whole
        && original.len() <= reporting.max_returned
        && returnable(original);
    let text = notice_text(request, &reported, &hostname, full);
    let status = delivery_status(request, &reported, &hostname);
    let (returned_type, returned) = if full {
        ("message/rfc822", crlf_lines(original, false))
    } else {
        ("text/rfc822-headers", crlf_lines(headers, true))
    };

    let eight_bit = !text.is_ascii() || !returned.is_ascii();
    let boundary = boundary(
        reporting.id,
        &[text.as_bytes(), status.as_bytes(), &returned],
    );

    let mut head = String::new();
    push_field(
        &mut head,
        "From",
        &format!("Mail Delivery System <MAILER-DAEMON@{hostname}>"),
    );
    push_field(
        &mut head,
        "To",
        &format!("<{}>", one_line(&envelope.sender)),
    );
    let subject = if failure {
        "Undelivered Mail Returned to Sender"
    } else if reported.iter().any(|r| r.kind == ReportKind::Delayed) {
        "Delayed Mail (still being retried)"
    } else {
        "Relayed Mail: no further delivery reports"
    };
    push_field(&mut head, "Subject", subject);
    push_field(&mut head, "Date", &rfc5322(reporting.now));
    push_field(
        &mut head,
        "Message-ID",
        &format!("<{}.{}@{hostname}>", reporting.id, request.original),
    );
    push_field(&mut head, "MIME-Version", "1.0");
    push_field(
        &mut head,
        "Content-Type",
        &format!("multipart/report; report-type=delivery-status; boundary=\"{boundary}\""),
    );
    if eight_bit {
        push_field(&mut head, "Content-Transfer-Encoding", "8bit");
    }
    // RFC 3834: an automatic reply, which auto-responders must not answer.
    push_field(&mut head, "Auto-Submitted", "auto-replied");
    head.push_str("\r\nThis is a MIME-encapsulated message.\r\n\r\n");

    let mut message = head.into_bytes();
    let part = |message: &mut Vec<u8>, fields: &[(&str, &str)], content: &[u8]| {
        message.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut head = String::new();
        for (name, value) in fields {
            push_field(&mut head, name, value);
        }
        head.push_str("\r\n");
        message.extend_from_slice(head.as_bytes());
        message.extend_from_slice(content);
        if !content.ends_with(b"\r\n") {
            message.extend_from_slice(b"\r\n");
        }
    };
    let charset = if text.is_ascii() {
        "text/plain; charset=us-ascii"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut text_fields = vec![
        ("Content-Description", "Notification"),
        ("Content-Type", charset),
    ];
    if !text.is_ascii() {
        text_fields.push(("Content-Transfer-Encoding", "8bit"));
    }
    part(&mut message, &text_fields, text.as_bytes());
    part(
        &mut message,
        &[
            ("Content-Description", "Delivery report"),
            ("Content-Type", "message/delivery-status"),
        ],
        status.as_bytes(),
    );
    let description = match (full, failure) {
        (true, _) => "Undelivered Message",
        (false, true) => "Undelivered Message Headers",
        (false, false) => "Message Headers",
    };
    let mut returned_fields = vec![
        ("Content-Description", description),
        ("Content-Type", returned_type),
    ];
    if !returned.is_ascii() {
        returned_fields.push(("Content-Transfer-Encoding", "8bit"));
    }
    part(&mut message, &returned_fields, &returned);
    message.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());

    Some(Bounce {
        envelope: Envelope {
            sender: String::new(),
            recipients: vec![Recipient {
                address: envelope.sender.clone(),
                notify: None,
                orcpt: None,
            }],
            ret: None,
            envid: None,
            received_at: reporting.now,
            client: SocketAddr::from(([0, 0, 0, 0], 0)),
            binding: envelope.binding.clone(),
        },
        message,
    })
}

/// The part for people: who failed, and why, in plain words.
fn notice_text(
    request: &BounceRequest,
    reported: &[&ReportedRecipient],
    hostname: &str,
    full: bool,
) -> String {
    let envelope = &request.envelope;
    let mut text = String::new();
    push_paragraph(
        &mut text,
        &format!("This is the mail delivery system at {hostname}."),
    );
    let message = format!(
        "Your message of {}, queue id {},",
        rfc5322(envelope.received_at),
        request.original
    );
    // One paragraph per occasion present, failures first, each followed
    // by its recipients.
    let occasions = [
        "could not be delivered to the recipients below. Delivery to them has been \
         given up; the reasons follow each address.",
        "has not been delivered yet to the recipients below, and delivery is still \
         being tried: you need not send it again.",
        "was accepted for the recipients below by a server that does not send \
         delivery reports: this is the last report of them you will get.",
    ];
    let occasion = |kind| match kind {
        ReportKind::Permanent | ReportKind::Expired => 0,
        ReportKind::Delayed => 1,
        ReportKind::Relayed => 2,
    };
    for (n, what) in occasions.iter().enumerate() {
        let mut group = reported.iter().filter(|r| occasion(r.kind) == n).peekable();
        if group.peek().is_none() {
            continue;
        }
        push_paragraph(&mut text, &format!("{message} {what}"));
        for r in group {
            push_recipient(&mut text, envelope, r);
        }
    }
    push_paragraph(
        &mut text,
        if full {
            "The delivery report and the message are attached."
        } else {
            "The delivery report and the message's headers are attached."
        },
    );
    text
}

/// One recipient of the part for people: its address, what happened, and
/// the reply that said so.
fn push_recipient(text: &mut String, envelope: &Envelope, r: &ReportedRecipient) {
    let address = envelope
        .recipients
        .get(r.recipient)
        .map_or("", |recipient| recipient.address.as_str());
    let server = r.response.remote.as_ref().map(|remote| match remote.ip {
        Some(ip) if remote.host != ip.to_string() => format!("{} [{ip}]", remote.host),
        _ => remote.host.clone(),
    });
    let attempts = format!(
        "{} {}",
        r.attempts,
        if r.attempts == 1 {
            "attempt"
        } else {
            "attempts"
        }
    );
    let why = match (r.kind, &server) {
        (ReportKind::Permanent, Some(server)) => {
            format!("refused for good by {server}, which said:")
        }
        (ReportKind::Permanent, None) => "failed for good:".to_owned(),
        (ReportKind::Expired, _) => format!(
            "still could not be delivered when the message expired, after {attempts}; \
             the last reply{} was:",
            server.map(|s| format!(", from {s},")).unwrap_or_default(),
        ),
        (ReportKind::Delayed, _) => format!(
            "deferred after {attempts}{}; the last reply{} was:",
            r.retry_until
                .map(|at| format!(", to be tried until {}", rfc5322(at)))
                .unwrap_or_default(),
            server.map(|s| format!(", from {s},")).unwrap_or_default(),
        ),
        (ReportKind::Relayed, Some(server)) => format!("accepted by {server}, which said:"),
        (ReportKind::Relayed, None) => "accepted:".to_owned(),
    };
    push_paragraph(text, &format!("<{address}>: {why}"));
    push_paragraph_indented(text, &r.response.reply);
}

/// The `message/delivery-status` part: the per-message fields, then one
/// group per recipient (RFC 3464 §2.2, §2.3).
fn delivery_status(
    request: &BounceRequest,
    reported: &[&ReportedRecipient],
    hostname: &str,
) -> String {
    let envelope = &request.envelope;
    let mut status = String::new();
    push_field(&mut status, "Reporting-MTA", &format!("dns; {hostname}"));
    push_field(
        &mut status,
        "X-Petrel-Queue-ID",
        &request.original.to_string(),
    );
    if let Some(envid) = &envelope.envid {
        push_field(&mut status, "Original-Envelope-Id", &ascii(envid));
    }
    push_field(&mut status, "Arrival-Date", &rfc5322(envelope.received_at));
    for f in reported {
        status.push_str("\r\n");
        let Some(recipient) = envelope.recipients.get(f.recipient) else {
            continue;
        };
        if let Some(orcpt) = &recipient.orcpt {
            // Stored as `type;address`, the address xtext-decoded.
            let (kind, address) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
            push_field(
                &mut status,
                "Original-Recipient",
                &format!("{}; {}", ascii(kind.trim()), ascii(address.trim())),
            );
        }
        // RFC 6533 §3: an address that is not ASCII is of the utf-8
        // type, escaped to ASCII.
        let kind = if recipient.address.is_ascii() {
            "rfc822"
        } else {
            "utf-8"
        };
        push_field(
            &mut status,
            "Final-Recipient",
            &format!("{kind}; {}", ascii(&recipient.address)),
        );
        push_field(&mut status, "Action", f.kind.action());
        push_field(&mut status, "Status", &status_code(f));
        if let Some(remote) = &f.response.remote {
            let name = if remote.host.is_empty() {
                remote.ip.map(|ip| format!("[{ip}]"))
            } else {
                Some(ascii(&remote.host))
            };
            if let Some(name) = name {
                push_field(&mut status, "Remote-MTA", &format!("dns; {name}"));
            }
        }
        push_field(
            &mut status,
            "Diagnostic-Code",
            &format!("smtp; {}", ascii(&f.response.reply)),
        );
        if let Some(at) = f.last_attempt {
            push_field(&mut status, "Last-Attempt-Date", &rfc5322(at));
        }
        if let Some(at) = f.retry_until {
            push_field(&mut status, "Will-Retry-Until", &rfc5322(at));
        }
    }
    status
}

/// The `Status:` of a recipient: an expiry's 4.4.7 (RFC 3463: delivery
/// time expired), whatever its last reply said; otherwise the reply's
/// enhanced code when its class fits the report (5 for a failure, 4 for a
/// delay, 2 for a relay), else that class's x.0.0.
fn status_code(f: &ReportedRecipient) -> String {
    let class = match f.kind {
        ReportKind::Expired => return "4.4.7".to_owned(),
        ReportKind::Permanent => "5",
        ReportKind::Delayed => "4",
        ReportKind::Relayed => "2",
    };
    enhanced_code(&f.response.reply)
        .filter(|code| code.starts_with(class))
        .unwrap_or_else(|| format!("{class}.0.0"))
}

/// The RFC 3463 code after a reply's basic code: `550 5.1.1 …` gives
/// `5.1.1`.
pub fn enhanced_code(reply: &str) -> Option<String> {
    let reply = reply.trim_start();
    let basic = reply.get(..3)?;
    if !basic.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = reply.get(3..)?.strip_prefix([' ', '-'])?;
    let token = rest.split_whitespace().next()?;
    let mut parts = token.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let number = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    let valid = parts.next().is_none()
        && matches!(class, "2" | "4" | "5")
        && number(subject, 3)
        && number(detail, 3);
    valid.then(|| token.to_owned())
}

/// A message's header section: up to its first empty line, or all of it.
pub(crate) fn headers_of(message: &[u8]) -> &[u8] {
    let mut at = 0;
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            return message.get(..at).unwrap_or(message);
        }
        at += line.len();
    }
    message
}

/// Whether a message can go back verbatim inside `message/rfc822`: no
/// NUL, no line longer than a line may be.
fn returnable(message: &[u8]) -> bool {
    !message.contains(&0)
        && message
            .split(|&b| b == b'\n')
            .all(|line| line.strip_suffix(b"\r").unwrap_or(line).len() <= MAX_LINE)
}

/// `octets` with every line ending in CRLF; with `fold`, a line longer
/// than [`MAX_LINE`] is cut into continuation lines (header folding;
/// bodies are checked by [`returnable`] instead).
fn crlf_lines(octets: &[u8], fold: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(octets.len() + octets.len() / 32);
    for line in octets.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // A bare CR is no line ending (RFC 5322 §2.3), and some readers
        // take it for one: it becomes a space.
        let line: Vec<u8> = line
            .iter()
            .map(|&b| if b == b'\r' { b' ' } else { b })
            .collect();
        let line = line.as_slice();
        if fold {
            let mut pieces = line.chunks(MAX_LINE - 1);
            if let Some(first) = pieces.next() {
                out.extend_from_slice(first);
            }
            for piece in pieces {
                out.extend_from_slice(b"\r\n ");
                out.extend_from_slice(piece);
            }
        } else {
            out.extend_from_slice(line);
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A boundary that none of the parts contains. The parts' hash is in it,
/// so a message cannot be made to contain the boundary its own bounce
/// will use; the counter is there all the same.
fn boundary(id: QueueId, parts: &[&[u8]]) -> String {
    // FNV-1a: no need for strength, only for depending on every octet.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let mut n: u64 = 0;
    loop {
        let boundary = format!("=_petrel_{id}_{hash:016x}_{n}");
        if !parts.iter().any(|p| contains(p, boundary.as_bytes())) {
            return boundary;
        }
        n += 1;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Text fit for one header line: control characters (CR and LF above
/// all, which would start a new field) become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// [`one_line`], with anything not ASCII written `\x{HEX}` (RFC 6533 §3),
/// for the `message/delivery-status` fields, which are ASCII.
fn ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in one_line(s).chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
        }
    }
    out
}

/// Appends `Name: value` CRLF, folded at spaces near [`FOLD_AT`] and cut
/// where a word alone would pass [`MAX_LINE`].
fn push_field(out: &mut String, name: &str, value: &str) {
    let value = one_line(value);
    let mut line = format!("{name}:");
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if line.len() + 1 + word.len() > FOLD_AT && line.len() > name.len() + 1 {
            out.push_str(&line);
            out.push_str("\r\n");
            line.clear();
        }
        line.push(' ');
        for c in word.chars() {
            if line.len() + c.len_utf8() > MAX_LINE {
                out.push_str(&line);
                out.push_str("\r\n");
                line = String::from(" ");
            }
            line.push(c);
        }
    }
    out.push_str(&line);
    out.push_str("\r\n");
}

/// Appends a paragraph of text wrapped near [`FOLD_AT`], then an empty
/// line.
fn push_paragraph(out: &mut String, text: &str) {
    push_wrapped(out, text, "");
    out.push_str("\r\n");
}

/// A quoted reply: indented, wrapped the same way.
fn push_paragraph_indented(out: &mut String, text: &str) {
    push_wrapped(out, text, "    ");
    out.push_str("\r\n");
}

fn push_wrapped(out: &mut String, text: &str, indent: &str) {
    let text = one_line(text);
    let mut line = String::from(indent);
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if line.len() > indent.len() && line.len() + 1 + word.len() > FOLD_AT {
            out.push_str(&line);
            out.push_str("\r\n");
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        for c in word.chars() {
            if line.len() + c.len_utf8() > MAX_LINE {
                out.push_str(&line);
                out.push_str("\r\n");
                line = String::from(indent);
            }
            line.push(c);
        }
    }
    out.push_str(&line);
    out.push_str("\r\n");
}
