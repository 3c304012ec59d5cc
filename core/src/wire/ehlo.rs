//! EHLO capabilities: reading a server's EHLO reply (client side) and writing
//! ours (server side), RFC 5321 §4.1.1.1.
//!
//! Decisions:
//! - Keywords are case-insensitive (RFC 5321 §2.4); unknown ones are kept,
//!   upper-cased, so a client can log or match them.
//! - A SIZE keyword whose parameter is missing or malformed is read as SIZE
//!   without a fixed limit (`Some(0)`, RFC 1870 §4), not as an error: the
//!   server still announced the extension, and a malformed number must not
//!   make the client skip the SIZE check the server will do anyway.
//! - The EHLO reply carries no enhanced status code: RFC 2034 §3 exempts the
//!   replies to HELO and EHLO.

use super::reply::{Reply, ReplyRef};

/// The SMTP service extensions a server announces in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `PIPELINING` (RFC 2920).
    pub pipelining: bool,
    /// `SIZE [n]` (RFC 1870); `Some(0)` = SIZE with no fixed limit.
    pub size: Option<u64>,
    /// `8BITMIME` (RFC 6152).
    pub eight_bit_mime: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `ENHANCEDSTATUSCODES` (RFC 2034).
    pub enhanced_status_codes: bool,
    /// `CHUNKING` (RFC 3030).
    pub chunking: bool,
    /// `BINARYMIME` (RFC 3030).
    pub binary_mime: bool,
    /// `DSN` (RFC 3461).
    pub dsn: bool,
    /// `STARTTLS` (RFC 3207).
    pub starttls: bool,
    /// `RCPTMAX` of `LIMITS` (RFC 9422): recipients the server takes per
    /// transaction.
    pub rcpt_max: Option<usize>,
    /// Unknown keywords: each line as received, upper-cased.
    pub other: Vec<String>,
}

impl Capabilities {
    /// Reads a server's 250 reply to EHLO: the first line is the greeting,
    /// each other line `KEYWORD [params]`.
    pub fn from_ehlo_reply(reply: &Reply) -> Self {
        Self::from_lines(reply.lines().iter().map(String::as_str))
    }

    /// [`from_ehlo_reply`](Self::from_ehlo_reply) on a reply as received,
    /// without making it owned (invalid UTF-8 read as U+FFFD, as there).
    pub fn from_ehlo_reply_ref(reply: &ReplyRef<'_>) -> Self {
        Self::from_lines(reply.lines().map(String::from_utf8_lossy))
    }

    fn from_lines<S: AsRef<str>>(lines: impl Iterator<Item = S>) -> Self {
        let mut caps = Capabilities::default();
        for line in lines.skip(1) {
            let line = line.as_ref();
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let flag = match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => &mut caps.pipelining,
                "8BITMIME" => &mut caps.eight_bit_mime,
                "SMTPUTF8" => &mut caps.smtputf8,
                "ENHANCEDSTATUSCODES" => &mut caps.enhanced_status_codes,
                "CHUNKING" => &mut caps.chunking,
                "BINARYMIME" => &mut caps.binary_mime,
                "DSN" => &mut caps.dsn,
                "STARTTLS" => &mut caps.starttls,
                "SIZE" => {
                    caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                    continue;
                }
                "LIMITS" => {
                    // RFC 9422 §4: `NAME=value` pairs; unknown names and
                    // malformed values are ignored, and 0 is not a limit.
                    caps.rcpt_max = words
                        .filter_map(|pair| pair.split_once('='))
                        .find(|(name, _)| name.eq_ignore_ascii_case("RCPTMAX"))
                        .and_then(|(_, n)| n.parse().ok())
                        .filter(|&n| n > 0);
                    continue;
                }
                _ => {
                    caps.other.push(line.trim().to_ascii_uppercase());
                    continue;
                }
            };
            *flag = true;
        }
        caps
    }

    /// The lines a server advertises after its greeting line, in a stable
    /// order: PIPELINING, SIZE n, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES,
    /// CHUNKING, BINARYMIME, DSN, STARTTLS, LIMITS, then `other`.
    pub fn to_lines(&self) -> Vec<String> {
        let keyword = |on: bool, keyword: &str| on.then(|| keyword.to_owned());
        [
            keyword(self.pipelining, "PIPELINING"),
            self.size.map(|n| format!("SIZE {n}")),
            keyword(self.eight_bit_mime, "8BITMIME"),
            keyword(self.smtputf8, "SMTPUTF8"),
            keyword(self.enhanced_status_codes, "ENHANCEDSTATUSCODES"),
            keyword(self.chunking, "CHUNKING"),
            keyword(self.binary_mime, "BINARYMIME"),
            keyword(self.dsn, "DSN"),
            keyword(self.starttls, "STARTTLS"),
            self.rcpt_max.map(|n| format!("LIMITS RCPTMAX={n}")),
        ]
        .into_iter()
        .flatten()
        .chain(self.other.iter().cloned())
        .collect()
    }

    /// The complete 250 EHLO reply: first line `greeting`, then
    /// [`to_lines`](Self::to_lines).
    pub fn ehlo_reply(&self, greeting: &str) -> Reply {
        let mut lines = vec![greeting.to_owned()];
        lines.extend(self.to_lines());
        Reply::multiline(250, None, lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Capabilities {
        Capabilities {
            pipelining: true,
            size: Some(35_882_577),
            eight_bit_mime: true,
            smtputf8: true,
            enhanced_status_codes: true,
            chunking: true,
            binary_mime: true,
            dsn: true,
            starttls: true,
            rcpt_max: Some(500),
            other: vec!["AUTH PLAIN LOGIN".into()],
        }
    }

    #[test]
    fn reads_ehlo_reply() {
        let reply = Reply::multiline(
            250,
            None,
            [
                "mx.example at your service",
                "size 1000",
                "8bitmime",
                " Pipelining ",
                "",
                "auth plain",
                "X-FOO",
            ]
            .map(String::from)
            .to_vec(),
        );
        let caps = Capabilities::from_ehlo_reply(&reply);
        assert_eq!(
            caps,
            Capabilities {
                pipelining: true,
                size: Some(1000),
                eight_bit_mime: true,
                other: vec!["AUTH PLAIN".into(), "X-FOO".into()],
                ..Capabilities::default()
            }
        );
        // The greeting is never a keyword.
        let greeting_only = Reply::new(250, None, "STARTTLS");
        assert_eq!(
            Capabilities::from_ehlo_reply(&greeting_only),
            Capabilities::default()
        );
    }

    #[test]
    fn size_without_valid_limit() {
        for line in [
            "SIZE",
            "SIZE 0",
            "SIZE big",
            "SIZE -1",
            "SIZE 99999999999999999999",
        ] {
            let reply = Reply::multiline(250, None, vec!["hi".into(), line.into()]);
            assert_eq!(
                Capabilities::from_ehlo_reply(&reply).size,
                Some(0),
                "{line}"
            );
        }
    }

    #[test]
    fn limits_rcptmax() {
        for (line, expected) in [
            ("LIMITS RCPTMAX=20", Some(20)),
            ("limits MAILMAX=5 rcptmax=7", Some(7)),
            ("LIMITS MAILMAX=5", None),
            ("LIMITS RCPTMAX=0", None),
            ("LIMITS RCPTMAX=many", None),
            ("LIMITS RCPTMAX", None),
        ] {
            let reply = Reply::multiline(250, None, vec!["hi".into(), line.into()]);
            assert_eq!(
                Capabilities::from_ehlo_reply(&reply).rcpt_max,
                expected,
                "{line}"
            );
        }
    }

    #[test]
    fn a_reply_as_received_reads_as_the_owned_one() {
        use crate::wire::reply::{ReplyParser, ReplyStatus};
        let wire =
            b"250-mx hi\r\n250-pipelining\r\n250-SIZE 10\r\n250-X-\xff  odd \r\n250 8BITMIME\r\n";
        let mut parser = ReplyParser::new();
        let Ok(ReplyStatus::Complete { reply, .. }) = parser.parse_ref(wire) else {
            panic!("no reply");
        };
        let caps = Capabilities::from_ehlo_reply_ref(&reply);
        assert_eq!(caps, Capabilities::from_ehlo_reply(&reply.into_owned()));
        assert!(caps.pipelining && caps.eight_bit_mime);
        assert_eq!(caps.other, ["X-\u{fffd}  ODD"]);
    }

    #[test]
    fn advertises_in_stable_order() {
        let reply = all().ehlo_reply("mx.example ESMTP");
        assert_eq!(
            String::from_utf8(reply.to_bytes()).unwrap(),
            "250-mx.example ESMTP\r\n250-PIPELINING\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n\
             250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-BINARYMIME\r\n\
             250-DSN\r\n250-STARTTLS\r\n250-LIMITS RCPTMAX=500\r\n250 AUTH PLAIN LOGIN\r\n"
        );
        assert_eq!(Capabilities::default().to_lines(), Vec::<String>::new());
        assert_eq!(
            Capabilities::default().ehlo_reply("hi").to_bytes(),
            b"250 hi\r\n"
        );
    }

    #[test]
    fn round_trips() {
        let caps = all();
        assert_eq!(Capabilities::from_ehlo_reply(&caps.ehlo_reply("hi")), caps);
        let unlimited = Capabilities {
            size: Some(0),
            ..Capabilities::default()
        };
        assert_eq!(
            Capabilities::from_ehlo_reply(&unlimited.ehlo_reply("hi")),
            unlimited
        );
    }
}
