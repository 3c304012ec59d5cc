//! The command and reply mixes the parsers are fed, and each parser's loop
//! over them: Petrel's (line framing and `parse_command_ref`; the
//! incremental `ReplyParser::parse_ref`) and smtp-proto's (`Request::parse`;
//! `ResponseReceiver`), each as its own server or client session calls it.

use std::hint::black_box;

use petrel_core::server::ServerConfig;
use petrel_core::wire::command::parse_command_ref;
use petrel_core::wire::line::{Frame, LineFramer};
use petrel_core::wire::reply::{ReplyParser, ReplyStatus};

/// What a client sends over one connection carrying two messages, the
/// second a bounce by BDAT: every verb a relay sees all day, with the
/// parameters that make MAIL and RCPT expensive to parse (SIZE, BODY,
/// ENVID, NOTIFY, ORCPT). Both parsers accept every line.
pub const COMMANDS: &[u8] = b"EHLO client.example.org\r\n\
MAIL FROM:<sender.name@example.org> SIZE=12345 BODY=8BITMIME ENVID=QQ314159\r\n\
RCPT TO:<first.recipient@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;first.recipient@example.com\r\n\
RCPT TO:<second@example.com> NOTIFY=NEVER\r\n\
RCPT TO:<third.person@sub.example.net>\r\n\
DATA\r\n\
RSET\r\n\
MAIL FROM:<> BODY=BINARYMIME\r\n\
RCPT TO:<postmaster@example.com>\r\n\
BDAT 65536\r\n\
BDAT 1024 LAST\r\n\
NOOP\r\n\
QUIT\r\n";

/// The number of commands in [`COMMANDS`].
pub const COMMAND_COUNT: usize = 13;

/// What a server answers to such a connection: a greeting, a multi-line
/// EHLO reply, single-line replies with enhanced status codes (one of them
/// a refusal), the 354 and the final queue id.
pub const REPLIES: &[u8] = b"220 mx.example.com ESMTP Petrel\r\n\
250-mx.example.com Hello client.example.org\r\n\
250-PIPELINING\r\n\
250-SIZE 67108864\r\n\
250-8BITMIME\r\n\
250-SMTPUTF8\r\n\
250-CHUNKING\r\n\
250-BINARYMIME\r\n\
250-DSN\r\n\
250-ENHANCEDSTATUSCODES\r\n\
250 LIMITS RCPTMAX=1000\r\n\
250 2.1.0 Ok\r\n\
250 2.1.5 Ok\r\n\
250 2.1.5 Ok\r\n\
550 5.1.1 <third.person@sub.example.net>: Recipient address rejected: User unknown\r\n\
354 End data with <CR><LF>.<CR><LF>\r\n\
250 2.0.0 Ok: queued as 4XyZ12AbCdEf\r\n\
221 2.0.0 Bye\r\n";

/// What a correct parse of [`REPLIES`] finds.
pub const REPLY_SUMMARY: ReplySummary = ReplySummary {
    replies: 9,
    code_sum: 220 + 250 + 250 + 250 + 250 + 550 + 354 + 250 + 221,
    enhanced: 6,
};

/// A digest of the replies a parser found, so both parsers can be checked
/// against the same expectation without keeping the replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplySummary {
    /// Complete replies.
    pub replies: usize,
    /// The sum of their codes.
    pub code_sum: u32,
    /// Replies in which an enhanced status code was recognised.
    pub enhanced: usize,
}

/// The command line limit of a server session with the default
/// configuration (RFC 5321's 512 octets raised for the extensions'
/// parameters): what the session frames commands with.
pub fn command_line_limit() -> usize {
    ServerConfig::new("mx.example.com").command_line_limit()
}

/// Frames and parses every command in `input` as the server session does;
/// returns how many, or the first failure.
pub fn petrel_commands(input: &[u8], line_limit: usize) -> Result<usize, String> {
    let mut framer = LineFramer::new(line_limit);
    let mut rest = input;
    let mut count = 0;
    loop {
        match framer.next(rest) {
            Frame::Line { len } => {
                let line = &rest[..len - 2];
                let command = match parse_command_ref(line, false) {
                    Ok(command) => command,
                    Err(e) => return Err(e.to_string()),
                };
                black_box(&command);
                count += 1;
                rest = &rest[len..];
            }
            Frame::Partial if rest.is_empty() => return Ok(count),
            other => return Err(format!("unexpected frame {other:?}")),
        }
    }
}

/// Parses every command in `input` with smtp-proto's `Request::parse`,
/// which frames as it parses; returns how many, or the first failure.
pub fn smtp_proto_commands(input: &[u8]) -> Result<usize, String> {
    let mut bytes = input.iter();
    let mut count = 0;
    while !bytes.as_slice().is_empty() {
        let request = smtp_proto::Request::parse(&mut bytes).map_err(|e| format!("{e:?}"))?;
        black_box(&request);
        count += 1;
    }
    Ok(count)
}

/// Parses every reply in `input` with Petrel's client-side parser, as the
/// client session reads them: each a view of the buffer.
pub fn petrel_replies(input: &[u8]) -> Result<ReplySummary, String> {
    let mut parser = ReplyParser::new();
    let mut summary = ReplySummary::default();
    let mut rest = input;
    while !rest.is_empty() {
        match parser.parse_ref(rest) {
            Ok(ReplyStatus::Complete { reply, consumed }) => {
                summary.replies += 1;
                summary.code_sum += u32::from(reply.code());
                summary.enhanced += usize::from(reply.enhanced().is_some());
                black_box(&reply);
                rest = &rest[consumed..];
            }
            Ok(ReplyStatus::Partial { .. }) => return Err("a reply was cut short".to_owned()),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(summary)
}

/// Parses every reply in `input` with smtp-proto's `ResponseReceiver`,
/// reset after each reply as its clients do.
pub fn smtp_proto_replies(input: &[u8]) -> Result<ReplySummary, String> {
    let mut receiver = smtp_proto::response::parser::ResponseReceiver::default();
    let mut summary = ReplySummary::default();
    let mut bytes = input.iter();
    while !bytes.as_slice().is_empty() {
        let response = receiver.parse(&mut bytes).map_err(|e| format!("{e:?}"))?;
        summary.replies += 1;
        summary.code_sum += u32::from(response.code);
        summary.enhanced += usize::from(response.esc != [0, 0, 0]);
        black_box(&response);
        receiver.reset();
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_parsers_take_every_command() {
        let limit = command_line_limit();
        assert_eq!(petrel_commands(COMMANDS, limit), Ok(COMMAND_COUNT));
        assert_eq!(smtp_proto_commands(COMMANDS), Ok(COMMAND_COUNT));
    }

    #[test]
    fn both_parsers_read_the_same_replies() {
        assert_eq!(petrel_replies(REPLIES), Ok(REPLY_SUMMARY));
        assert_eq!(smtp_proto_replies(REPLIES), Ok(REPLY_SUMMARY));
    }

    #[test]
    fn a_bad_command_is_reported_not_counted() {
        let limit = command_line_limit();
        assert!(petrel_commands(b"MAIL FROM:<a@b> FOO=1\r\n", limit).is_err());
        assert!(smtp_proto_commands(b"FROB\r\n").is_err());
    }
}
