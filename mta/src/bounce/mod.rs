//! Delivery status notifications (RFC 3464).

use crate::spool::message::Recipient;

/// Whether `recipient` asked to hear of its failure: with no `NOTIFY`, or
/// a `NOTIFY` list that names `FAILURE` (RFC 3461 §4.1); not with
/// `NOTIFY=NEVER` nor a list without `FAILURE`.
pub fn wants_failure_notice(recipient: &Recipient) -> bool {
    match &recipient.notify {
        None => true,
        Some(notify) => notify
            .split(',')
            .any(|keyword| keyword.trim().eq_ignore_ascii_case("FAILURE")),
    }
}
