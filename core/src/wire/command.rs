//! SMTP command parsing: RFC 5321 §4.1 with the parameters of SIZE (RFC 1870),
//! 8BITMIME (RFC 1652), CHUNKING/BINARYMIME (RFC 3030), DSN (RFC 3461) and
//! SMTPUTF8 (RFC 6531).
//!
//! [`parse_command_ref`] takes one line without its CRLF, as framed by
//! [`LineFramer`](super::line::LineFramer), and returns a [`CommandRef`] that
//! borrows from the line, or a [`CommandError`] that knows its reply.
//! [`parse_command`] does the same and makes the owned [`Command`].
//!
//! Two types, borrowed and owned, rather than one generic over its
//! storage: a server reads a command, answers it, and keeps only what goes
//! into an event (a HELO name, a MAIL or RCPT path and parameters), so the
//! parse itself allocates nothing, in one pass; the owned types are what
//! events, envelopes and the spool carry, and a lifetime parameter there
//! would burden every user for nothing. Borrowed text is kept as written
//! (quoted local parts with their quotes, xtext undecoded) so that reading
//! it costs nothing; `into_owned` unquotes and decodes.
//!
//! Decisions:
//! - NUL, CR and LF anywhere in a command are syntax errors: they have no
//!   business in a command and are the raw material of smuggling and log
//!   injection. Non-ASCII octets are allowed only in MAIL and RCPT paths, and
//!   only when SMTPUTF8 was requested (RFC 6531 §3.6.4: 553 5.6.7 otherwise).
//! - Trailing white space is ignored (RFC 5321 §4.1.1 asks receivers to
//!   tolerate it), and so is one space after `FROM:`/`TO:`, a common client
//!   quirk; angle brackets are required, as without them the end of the
//!   address is ambiguous.
//! - Source routes are accepted and discarded (RFC 5321 §4.1.2, Appendix C).
//! - Local parts are stored unquoted, so `"a"@x` and `a@x` are the same
//!   mailbox; [`Mailbox`]'s `Display` quotes again where needed.
//! - Limits of RFC 5321 §4.5.3.1: local part 64 octets, domain 255, path 256.
//! - Parameters are checked for syntax and duplicates; unknown ones get 555
//!   (RFC 5321 §4.1.1.11), so a client never believes an extension we do not
//!   implement took effect.
//!
//! On x86-64 the common MAIL and RCPT lines are read sixteen octets at a
//! time first (`fast`, SSE2); whatever that path does not take completely,
//! valid or not, is read here octet by octet, so the grammar and every
//! error reply live in one place.

use core::net::{Ipv4Addr, Ipv6Addr};
use std::borrow::Cow;
use std::fmt;

use super::reply::{EnhancedCode, Reply};

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod fast;

/// An SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `HELO domain`.
    Helo(String),
    /// `EHLO domain`.
    Ehlo(String),
    /// `MAIL FROM:<reverse-path> [params]`.
    Mail {
        /// The sender, or the null path of a bounce.
        reverse_path: ReversePath,
        /// The ESMTP parameters.
        params: MailParams,
    },
    /// `RCPT TO:<forward-path> [params]`.
    Rcpt {
        /// The recipient.
        forward_path: ForwardPath,
        /// The ESMTP parameters.
        params: RcptParams,
    },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat {
        /// The octets of the chunk that follows the command.
        size: u64,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP [ignored]`.
    Noop,
    /// `VRFY string`.
    Vrfy(String),
    /// `EXPN string`.
    Expn(String),
    /// `HELP [string]`.
    Help(Option<String>),
    /// `QUIT`.
    Quit,
    /// `STARTTLS` (RFC 3207).
    StartTls,
}

/// The verb of a command, without arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verb {
    /// `HELO`.
    Helo,
    /// `EHLO`.
    Ehlo,
    /// `MAIL`.
    Mail,
    /// `RCPT`.
    Rcpt,
    /// `DATA`.
    Data,
    /// `BDAT`.
    Bdat,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `VRFY`.
    Vrfy,
    /// `EXPN`.
    Expn,
    /// `HELP`.
    Help,
    /// `QUIT`.
    Quit,
    /// `STARTTLS`.
    StartTls,
}

const VERBS: [(&str, Verb); 13] = [
    ("HELO", Verb::Helo),
    ("EHLO", Verb::Ehlo),
    ("MAIL", Verb::Mail),
    ("RCPT", Verb::Rcpt),
    ("DATA", Verb::Data),
    ("BDAT", Verb::Bdat),
    ("RSET", Verb::Rset),
    ("NOOP", Verb::Noop),
    ("VRFY", Verb::Vrfy),
    ("EXPN", Verb::Expn),
    ("HELP", Verb::Help),
    ("QUIT", Verb::Quit),
    ("STARTTLS", Verb::StartTls),
];

impl Verb {
    /// The verb as sent on the wire, upper case.
    pub fn as_str(self) -> &'static str {
        VERBS
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("", |(name, _)| name)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Command {
    /// The verb of this command.
    pub fn verb(&self) -> Verb {
        match self {
            Command::Helo(_) => Verb::Helo,
            Command::Ehlo(_) => Verb::Ehlo,
            Command::Mail { .. } => Verb::Mail,
            Command::Rcpt { .. } => Verb::Rcpt,
            Command::Data => Verb::Data,
            Command::Bdat { .. } => Verb::Bdat,
            Command::Rset => Verb::Rset,
            Command::Noop => Verb::Noop,
            Command::Vrfy(_) => Verb::Vrfy,
            Command::Expn(_) => Verb::Expn,
            Command::Help(_) => Verb::Help,
            Command::Quit => Verb::Quit,
            Command::StartTls => Verb::StartTls,
        }
    }
}

/// The wire form of a command, without its CRLF: what a client sends.
/// Parsing it back gives the same command.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Helo(name) => write!(f, "HELO {name}"),
            Command::Ehlo(name) => write!(f, "EHLO {name}"),
            Command::Mail {
                reverse_path,
                params,
            } => {
                match reverse_path {
                    ReversePath::Null => f.write_str("MAIL FROM:<>")?,
                    ReversePath::Mailbox(mailbox) => write!(f, "MAIL FROM:<{mailbox}>")?,
                }
                if let Some(size) = params.size {
                    write!(f, " SIZE={size}")?;
                }
                if let Some(body) = params.body {
                    f.write_str(match body {
                        BodyType::SevenBit => " BODY=7BIT",
                        BodyType::EightBitMime => " BODY=8BITMIME",
                        BodyType::BinaryMime => " BODY=BINARYMIME",
                    })?;
                }
                if params.smtputf8 {
                    f.write_str(" SMTPUTF8")?;
                }
                if let Some(ret) = params.ret {
                    f.write_str(match ret {
                        Ret::Full => " RET=FULL",
                        Ret::Hdrs => " RET=HDRS",
                    })?;
                }
                if let Some(envid) = &params.envid {
                    write!(f, " ENVID={}", xtext_encode(envid.as_bytes()))?;
                }
                Ok(())
            }
            Command::Rcpt {
                forward_path,
                params,
            } => {
                match forward_path {
                    ForwardPath::Postmaster => f.write_str("RCPT TO:<Postmaster>")?,
                    ForwardPath::Mailbox(mailbox) => write!(f, "RCPT TO:<{mailbox}>")?,
                }
                match params.notify {
                    None => {}
                    Some(Notify::Never) => f.write_str(" NOTIFY=NEVER")?,
                    Some(Notify::Some {
                        success,
                        failure,
                        delay,
                    }) => {
                        let conditions: Vec<&str> =
                            [(success, "SUCCESS"), (failure, "FAILURE"), (delay, "DELAY")]
                                .into_iter()
                                .filter_map(|(on, name)| on.then_some(name))
                                .collect();
                        write!(f, " NOTIFY={}", conditions.join(","))?;
                    }
                }
                if let Some(orcpt) = &params.orcpt {
                    let address = xtext_encode(orcpt.address.as_bytes());
                    write!(f, " ORCPT={};{address}", orcpt.addr_type)?;
                }
                Ok(())
            }
            Command::Data => f.write_str("DATA"),
            Command::Bdat { size, last: true } => write!(f, "BDAT {size} LAST"),
            Command::Bdat { size, last: false } => write!(f, "BDAT {size}"),
            Command::Rset => f.write_str("RSET"),
            Command::Noop => f.write_str("NOOP"),
            Command::Vrfy(what) => write!(f, "VRFY {what}"),
            Command::Expn(what) => write!(f, "EXPN {what}"),
            Command::Help(None) => f.write_str("HELP"),
            Command::Help(Some(topic)) => write!(f, "HELP {topic}"),
            Command::Quit => f.write_str("QUIT"),
            Command::StartTls => f.write_str("STARTTLS"),
        }
    }
}

impl Command {
    /// Appends the wire form with its CRLF.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{self}\r\n");
    }
}

/// The argument of `MAIL FROM:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`: no sender, used by bounces (RFC 5321 §4.5.5).
    Null,
    /// A sender mailbox.
    Mailbox(Mailbox),
}

/// The argument of `RCPT TO:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    /// A bare `<Postmaster>` (any case), which every server must accept
    /// (RFC 5321 §4.5.1).
    Postmaster,
    /// A recipient mailbox.
    Mailbox(Mailbox),
}

/// A mailbox, `local-part@domain`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    /// The local part, unquoted: a quoted string's content with its quoted
    /// pairs resolved.
    pub local_part: String,
    /// The domain or address literal.
    pub domain: Host,
}

/// The part of a mailbox after the `@`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Host {
    /// A domain name (with U-labels only where UTF-8 was allowed).
    Domain(String),
    /// `[1.2.3.4]`.
    Ipv4(Ipv4Addr),
    /// `[IPv6:...]`.
    Ipv6(Ipv6Addr),
    /// A general address literal, `[tag:content]`.
    General {
        /// The standardized tag.
        tag: String,
        /// The content after the colon.
        content: String,
    },
}

impl Mailbox {
    /// Whether the mailbox has non-ASCII characters, so that sending it needs
    /// the SMTPUTF8 extension (RFC 6531).
    pub fn needs_smtputf8(&self) -> bool {
        !self.local_part.is_ascii() || matches!(&self.domain, Host::Domain(d) if !d.is_ascii())
    }
}

impl fmt::Display for Mailbox {
    /// The wire form: the local part as a dot-string when it is one, else as a
    /// quoted string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = &self.local_part;
        if local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
        {
            f.write_str(local)?;
        } else {
            f.write_str("\"")?;
            for c in local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        write!(f, "@{}", self.domain)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(ip) => write!(f, "[{ip}]"),
            Host::Ipv6(ip) => write!(f, "[IPv6:{ip}]"),
            Host::General { tag, content } => write!(f, "[{tag}:{content}]"),
        }
    }
}

/// The parameters of `MAIL FROM:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n`: the declared message size (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=`: the body type (RFC 1652, RFC 3030).
    pub body: Option<BodyType>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `RET=`: what a failure DSN returns (RFC 3461).
    pub ret: Option<Ret>,
    /// `ENVID=`: the envelope identifier, xtext-decoded (RFC 3461).
    pub envid: Option<String>,
}

/// The `BODY=` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyType {
    /// `7BIT`.
    SevenBit,
    /// `8BITMIME` (RFC 1652).
    EightBitMime,
    /// `BINARYMIME` (RFC 3030; requires BDAT).
    BinaryMime,
}

/// The `RET=` parameter (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ret {
    /// Return the full message.
    Full,
    /// Return the headers only.
    Hdrs,
}

/// The parameters of `RCPT TO:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `NOTIFY=` (RFC 3461 §4.1).
    pub notify: Option<Notify>,
    /// `ORCPT=` (RFC 3461 §4.2).
    pub orcpt: Option<Orcpt>,
}

/// The `NOTIFY=` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Notify {
    /// `NEVER`.
    Never,
    /// A list of the conditions to notify on.
    Some {
        /// `SUCCESS`.
        success: bool,
        /// `FAILURE`.
        failure: bool,
        /// `DELAY`.
        delay: bool,
    },
}

/// The `ORCPT=` parameter: the original recipient.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Orcpt {
    /// The address type, such as `rfc822`.
    pub addr_type: String,
    /// The address, xtext-decoded.
    pub address: String,
}

/// Why a command line was refused; [`CommandError::reply`] gives the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// `500 5.5.1`: not a command we know.
    Unrecognized,
    /// `501 5.5.4`: bad or missing arguments, with the reason.
    Syntax(&'static str),
    /// `501 5.1.3`: the address is not valid, with the reason.
    BadAddress(&'static str),
    /// `555 5.5.4`: a MAIL or RCPT parameter we do not support.
    UnknownParameter(String),
    /// `501 5.5.4`: a parameter with a bad value.
    BadParameterValue(String),
    /// `501 5.5.4`: a parameter given twice.
    DuplicateParameter(String),
    /// `553 5.6.7`: UTF-8 in an address without SMTPUTF8 (RFC 6531 §3.6.4).
    Utf8NotAllowed,
}

impl CommandError {
    /// The reply that refuses the command.
    pub fn reply(&self) -> Reply {
        let (code, class, subject, detail) = match self {
            CommandError::Unrecognized => (500, 5, 5, 1),
            CommandError::BadAddress(_) => (501, 5, 1, 3),
            CommandError::UnknownParameter(_) => (555, 5, 5, 4),
            CommandError::Utf8NotAllowed => (553, 5, 6, 7),
            CommandError::Syntax(_)
            | CommandError::BadParameterValue(_)
            | CommandError::DuplicateParameter(_) => (501, 5, 5, 4),
        };
        Reply::new(
            code,
            Some(EnhancedCode::new(class, subject, detail)),
            self.to_string(),
        )
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unrecognized => f.write_str("Command unrecognized"),
            CommandError::Syntax(why) => write!(f, "Syntax error: {why}"),
            CommandError::BadAddress(why) => write!(f, "Bad address syntax: {why}"),
            CommandError::UnknownParameter(name) => write!(f, "Unsupported parameter {name}"),
            CommandError::BadParameterValue(name) => write!(f, "Bad value for parameter {name}"),
            CommandError::DuplicateParameter(name) => write!(f, "Duplicate parameter {name}"),
            CommandError::Utf8NotAllowed => f.write_str("UTF-8 address requires SMTPUTF8"),
        }
    }
}

impl std::error::Error for CommandError {}

/// A command as parsed, borrowing its text from the line: what
/// [`parse_command_ref`] gives. [`into_owned`](Self::into_owned) (or
/// `Command::from`) makes the [`Command`] that outlives the line.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum CommandRef<'a> {
    /// `HELO domain`.
    Helo(&'a str),
    /// `EHLO domain`.
    Ehlo(&'a str),
    /// `MAIL FROM:<reverse-path> [params]`.
    Mail {
        /// The sender, or the null path of a bounce.
        reverse_path: ReversePathRef<'a>,
        /// The ESMTP parameters.
        params: MailParamsRef<'a>,
    },
    /// `RCPT TO:<forward-path> [params]`.
    Rcpt {
        /// The recipient.
        forward_path: ForwardPathRef<'a>,
        /// The ESMTP parameters.
        params: RcptParamsRef<'a>,
    },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat {
        /// The octets of the chunk that follows the command.
        size: u64,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP [ignored]`.
    Noop,
    /// `VRFY string`.
    Vrfy(&'a str),
    /// `EXPN string`.
    Expn(&'a str),
    /// `HELP [string]`.
    Help(Option<&'a str>),
    /// `QUIT`.
    Quit,
    /// `STARTTLS` (RFC 3207).
    StartTls,
}

impl<'a> CommandRef<'a> {
    /// The verb of this command.
    pub fn verb(&self) -> Verb {
        match self {
            CommandRef::Helo(_) => Verb::Helo,
            CommandRef::Ehlo(_) => Verb::Ehlo,
            CommandRef::Mail { .. } => Verb::Mail,
            CommandRef::Rcpt { .. } => Verb::Rcpt,
            CommandRef::Data => Verb::Data,
            CommandRef::Bdat { .. } => Verb::Bdat,
            CommandRef::Rset => Verb::Rset,
            CommandRef::Noop => Verb::Noop,
            CommandRef::Vrfy(_) => Verb::Vrfy,
            CommandRef::Expn(_) => Verb::Expn,
            CommandRef::Help(_) => Verb::Help,
            CommandRef::Quit => Verb::Quit,
            CommandRef::StartTls => Verb::StartTls,
        }
    }

    /// The owned command: local parts unquoted, xtext decoded.
    pub fn into_owned(self) -> Command {
        match self {
            CommandRef::Helo(name) => Command::Helo(name.to_owned()),
            CommandRef::Ehlo(name) => Command::Ehlo(name.to_owned()),
            CommandRef::Mail {
                reverse_path,
                params,
            } => Command::Mail {
                reverse_path: reverse_path.into_owned(),
                params: params.into_owned(),
            },
            CommandRef::Rcpt {
                forward_path,
                params,
            } => Command::Rcpt {
                forward_path: forward_path.into_owned(),
                params: params.into_owned(),
            },
            CommandRef::Data => Command::Data,
            CommandRef::Bdat { size, last } => Command::Bdat { size, last },
            CommandRef::Rset => Command::Rset,
            CommandRef::Noop => Command::Noop,
            CommandRef::Vrfy(what) => Command::Vrfy(what.to_owned()),
            CommandRef::Expn(what) => Command::Expn(what.to_owned()),
            CommandRef::Help(topic) => Command::Help(topic.map(str::to_owned)),
            CommandRef::Quit => Command::Quit,
            CommandRef::StartTls => Command::StartTls,
        }
    }
}

impl From<CommandRef<'_>> for Command {
    fn from(command: CommandRef<'_>) -> Self {
        command.into_owned()
    }
}

/// The argument of `MAIL FROM:`, borrowed.
#[derive(Debug, Clone, Copy)]
pub enum ReversePathRef<'a> {
    /// `<>`.
    Null,
    /// A sender mailbox.
    Mailbox(MailboxRef<'a>),
}

impl ReversePathRef<'_> {
    /// The owned path.
    pub fn into_owned(self) -> ReversePath {
        match self {
            ReversePathRef::Null => ReversePath::Null,
            ReversePathRef::Mailbox(m) => ReversePath::Mailbox(m.into_owned()),
        }
    }
}

/// The argument of `RCPT TO:`, borrowed.
#[derive(Debug, Clone, Copy)]
pub enum ForwardPathRef<'a> {
    /// A bare `<Postmaster>`.
    Postmaster,
    /// A recipient mailbox.
    Mailbox(MailboxRef<'a>),
}

impl ForwardPathRef<'_> {
    /// The owned path.
    pub fn into_owned(self) -> ForwardPath {
        match self {
            ForwardPathRef::Postmaster => ForwardPath::Postmaster,
            ForwardPathRef::Mailbox(m) => ForwardPath::Mailbox(m.into_owned()),
        }
    }
}

/// A mailbox as it was written in the command. The local part is kept as
/// written (a quoted string with its quotes), so that reading it costs
/// nothing; [`local_part`](Self::local_part) unquotes it. No `PartialEq`:
/// two spellings of one mailbox would differ; compare the owned
/// [`Mailbox`].
#[derive(Debug, Clone, Copy)]
pub struct MailboxRef<'a> {
    /// A dot-string, or a quoted string with its quotes.
    local_part: &'a str,
    domain: HostRef<'a>,
}

impl<'a> MailboxRef<'a> {
    /// The local part, unquoted: borrowed unless it has quoted pairs.
    pub fn local_part(&self) -> Cow<'a, str> {
        let Some(inner) = self
            .local_part
            .strip_prefix('"')
            .and_then(|l| l.strip_suffix('"'))
        else {
            return Cow::Borrowed(self.local_part);
        };
        if !inner.contains('\\') {
            return Cow::Borrowed(inner);
        }
        let mut unquoted = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            // The parser let a backslash in only as the start of a pair.
            let c = if c == '\\' { chars.next() } else { Some(c) };
            unquoted.extend(c);
        }
        Cow::Owned(unquoted)
    }

    /// The local part as written: a dot-string, or a quoted string with its
    /// quotes and quoted pairs.
    pub fn local_part_as_written(&self) -> &'a str {
        self.local_part
    }

    /// The domain or address literal.
    pub fn domain(&self) -> HostRef<'a> {
        self.domain
    }

    /// Whether the mailbox has non-ASCII characters (see
    /// [`Mailbox::needs_smtputf8`]).
    #[inline]
    pub fn needs_smtputf8(&self) -> bool {
        !self.local_part.is_ascii() || matches!(self.domain, HostRef::Domain(d) if !d.is_ascii())
    }

    /// The owned mailbox.
    pub fn into_owned(self) -> Mailbox {
        Mailbox {
            local_part: self.local_part().into_owned(),
            domain: self.domain.into_owned(),
        }
    }
}

/// The part of a mailbox after the `@`, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostRef<'a> {
    /// A domain name.
    Domain(&'a str),
    /// `[1.2.3.4]`.
    Ipv4(Ipv4Addr),
    /// `[IPv6:...]`.
    Ipv6(Ipv6Addr),
    /// A general address literal, `[tag:content]`.
    General {
        /// The standardized tag.
        tag: &'a str,
        /// The content after the colon.
        content: &'a str,
    },
}

impl HostRef<'_> {
    /// The owned host.
    pub fn into_owned(self) -> Host {
        match self {
            HostRef::Domain(d) => Host::Domain(d.to_owned()),
            HostRef::Ipv4(ip) => Host::Ipv4(ip),
            HostRef::Ipv6(ip) => Host::Ipv6(ip),
            HostRef::General { tag, content } => Host::General {
                tag: tag.to_owned(),
                content: content.to_owned(),
            },
        }
    }
}

/// The parameters of `MAIL FROM:`, borrowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct MailParamsRef<'a> {
    /// `SIZE=n`.
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Option<BodyType>,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
    /// `RET=`.
    pub ret: Option<Ret>,
    /// `ENVID=`, still xtext: at most 100 printable ASCII characters decoded.
    pub envid: Option<XText<'a>>,
}

impl MailParamsRef<'_> {
    /// The owned parameters, the ENVID decoded.
    pub fn into_owned(self) -> MailParams {
        MailParams {
            size: self.size,
            body: self.body,
            smtputf8: self.smtputf8,
            ret: self.ret,
            envid: self.envid.map(|envid| envid.decode().into_owned()),
        }
    }
}

/// The parameters of `RCPT TO:`, borrowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct RcptParamsRef<'a> {
    /// `NOTIFY=`.
    pub notify: Option<Notify>,
    /// `ORCPT=`.
    pub orcpt: Option<OrcptRef<'a>>,
}

impl RcptParamsRef<'_> {
    /// The owned parameters, the ORCPT address decoded.
    pub fn into_owned(self) -> RcptParams {
        RcptParams {
            notify: self.notify,
            orcpt: self.orcpt.map(OrcptRef::into_owned),
        }
    }
}

/// The `ORCPT=` parameter, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct OrcptRef<'a> {
    /// The address type, such as `rfc822`.
    pub addr_type: &'a str,
    /// The address, still xtext: 1 to 500 octets of UTF-8 decoded.
    pub address: XText<'a>,
}

impl OrcptRef<'_> {
    /// The owned parameter, the address decoded.
    pub fn into_owned(self) -> Orcpt {
        Orcpt {
            addr_type: self.addr_type.to_owned(),
            address: self.address.decode().into_owned(),
        }
    }
}

/// An RFC 3461 xtext value as written, checked by the parser to decode to
/// what its parameter allows (so decoding cannot fail).
#[derive(Debug, Clone, Copy)]
pub struct XText<'a>(&'a str);

impl<'a> XText<'a> {
    /// The value as written, `+XX` escapes and all.
    pub fn as_written(&self) -> &'a str {
        self.0
    }

    /// The decoded value: borrowed unless it has `+XX` escapes.
    pub fn decode(&self) -> Cow<'a, str> {
        if !self.0.contains('+') {
            return Cow::Borrowed(self.0);
        }
        let octets = xtext_decode(self.0.as_bytes()).unwrap_or_default();
        // The parser checked the decoded octets; lossy changes nothing.
        Cow::Owned(String::from_utf8_lossy(&octets).into_owned())
    }
}

/// Parses one command line, without its CRLF, into an owned [`Command`]:
/// [`parse_command_ref`], then [`CommandRef::into_owned`].
pub fn parse_command(line: &[u8], utf8_rcpt: bool) -> Result<Command, CommandError> {
    parse_command_ref(line, utf8_rcpt).map(CommandRef::into_owned)
}

/// Parses one command line, without its CRLF, into a [`CommandRef`] that
/// borrows from it; nothing is allocated unless a parameter's name goes
/// into the error. `utf8_rcpt`: whether the current transaction's MAIL
/// carried SMTPUTF8 (UTF-8 in RCPT paths is then allowed). For MAIL, UTF-8
/// in the path is allowed only when the same command has the SMTPUTF8
/// parameter.
#[inline]
pub fn parse_command_ref(line: &[u8], utf8_rcpt: bool) -> Result<CommandRef<'_>, CommandError> {
    // NUL, CR and LF anywhere come before any other fault. The grammar of
    // every part of a command that is read excludes them, so the line is
    // searched for them only when it failed, or (in `parse_line`) when it
    // has text that is not read.
    parse_line(trim_end(line), line, utf8_rcpt).map_err(|error| match has_nul_cr_lf(line) {
        true => NUL_CR_LF,
        false => error,
    })
}

const NUL_CR_LF: CommandError = CommandError::Syntax("NUL, CR or LF in command");

/// Whether `line` holds NUL, CR or LF.
fn has_nul_cr_lf(line: &[u8]) -> bool {
    memchr::memchr3(0, b'\r', b'\n', line).is_some()
}

/// [`parse_command_ref`] on `line` without its trailing blanks; `untrimmed`
/// is the line as received, for the NUL, CR and LF search.
#[inline(always)]
fn parse_line<'a>(
    line: &'a [u8],
    untrimmed: &[u8],
    utf8_rcpt: bool,
) -> Result<CommandRef<'a>, CommandError> {
    let Some((verb, start)) = split_verb(line) else {
        return Err(CommandError::Unrecognized);
    };
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if matches!(verb, Verb::Mail | Verb::Rcpt) {
        if let Some(command) = fast::mail_or_rcpt(line, verb, start) {
            return Ok(command);
        }
    }
    match verb {
        Verb::Mail => return parse_mail(Cursor::new(line, start)),
        Verb::Rcpt => return parse_rcpt(Cursor::new(line, start), utf8_rcpt),
        _ => {}
    }
    let mut args = line.get(start..).unwrap_or_default();
    while let Some(rest) = args.strip_prefix(b" ") {
        args = rest;
    }
    // EHLO's one word, all printable: the common case, in one pass (a
    // word at a time; printable is ASCII, so the check below would pass).
    if verb == Verb::Ehlo && !args.is_empty() && all_graphic(args) {
        // ASCII, so this cannot fail.
        let name = std::str::from_utf8(args)
            .map_err(|_| CommandError::Syntax("non-ASCII octet in command"))?;
        return Ok(CommandRef::Ehlo(name));
    }
    if !args.is_ascii() {
        return Err(CommandError::Syntax("non-ASCII octet in command"));
    }
    let no_arg = |command| match args {
        [] => Ok(command),
        _ => Err(CommandError::Syntax("no argument allowed")),
    };
    match verb {
        Verb::Data => return no_arg(CommandRef::Data),
        Verb::Rset => return no_arg(CommandRef::Rset),
        Verb::Quit => return no_arg(CommandRef::Quit),
        Verb::StartTls => return no_arg(CommandRef::StartTls),
        Verb::Bdat => return parse_bdat(args),
        _ => {}
    }
    // The text of NOOP, HELO (after the domain), VRFY, EXPN and HELP is
    // not read, so it is searched (and EHLO's, to be refused, may hold it).
    // Without text the line is the verb and blanks.
    if !args.is_empty() && has_nul_cr_lf(untrimmed) {
        return Err(NUL_CR_LF);
    }
    if verb == Verb::Noop {
        return Ok(CommandRef::Noop);
    }
    // ASCII, so this cannot fail.
    let args = std::str::from_utf8(args)
        .map_err(|_| CommandError::Syntax("non-ASCII octet in command"))?;
    let arg = (!args.is_empty()).then_some(args);
    let required = || arg.ok_or(CommandError::Syntax("argument required"));
    match verb {
        // HELO's text after the domain is ignored, as RFC 821 clients send some.
        Verb::Helo => Ok(CommandRef::Helo(client_domain(arg.map(first_word))?)),
        Verb::Ehlo if first_word(args).len() < args.len() => {
            Err(CommandError::Syntax("EHLO takes one argument"))
        }
        Verb::Ehlo => Ok(CommandRef::Ehlo(client_domain(arg)?)),
        Verb::Vrfy => required().map(CommandRef::Vrfy),
        Verb::Expn => required().map(CommandRef::Expn),
        Verb::Help => Ok(CommandRef::Help(arg)),
        // Parsed above.
        _ => Err(CommandError::Unrecognized),
    }
}

/// The verb at the front of `line` and where its arguments start, after its
/// space. Every verb is four letters (STARTTLS is STAR and four more), so
/// the first four octets, case-folded, are one number to match: ORing 0x20
/// into a letter lowers it and maps nothing else onto a lower-case letter.
#[inline]
fn split_verb(line: &[u8]) -> Option<(Verb, usize)> {
    const fn word(name: &[u8; 4]) -> u32 {
        u32::from_le_bytes(*name)
    }
    const HELO: u32 = word(b"helo");
    const EHLO: u32 = word(b"ehlo");
    const MAIL: u32 = word(b"mail");
    const RCPT: u32 = word(b"rcpt");
    const DATA: u32 = word(b"data");
    const BDAT: u32 = word(b"bdat");
    const RSET: u32 = word(b"rset");
    const NOOP: u32 = word(b"noop");
    const VRFY: u32 = word(b"vrfy");
    const EXPN: u32 = word(b"expn");
    const HELP: u32 = word(b"help");
    const QUIT: u32 = word(b"quit");
    const STAR: u32 = word(b"star");
    let (head, _) = line.split_first_chunk::<4>()?;
    let mut len = 4;
    let verb = match u32::from_le_bytes(*head) | 0x2020_2020 {
        HELO => Verb::Helo,
        EHLO => Verb::Ehlo,
        MAIL => Verb::Mail,
        RCPT => Verb::Rcpt,
        DATA => Verb::Data,
        BDAT => Verb::Bdat,
        RSET => Verb::Rset,
        NOOP => Verb::Noop,
        VRFY => Verb::Vrfy,
        EXPN => Verb::Expn,
        HELP => Verb::Help,
        QUIT => Verb::Quit,
        STAR if line.get(4..8)?.eq_ignore_ascii_case(b"TTLS") => {
            len = 8;
            Verb::StartTls
        }
        _ => return None,
    };
    match line.get(len) {
        None => Some((verb, len)),
        Some(b' ') => Some((verb, len + 1)),
        Some(_) => None,
    }
}

/// Whether every octet is printable ASCII (0x21 to 0x7e), eight at a
/// time: adding 0x5f to an ASCII octet sets its high bit when it is at
/// least 0x21, adding 1 when it is at least 0x7f, and neither carries out
/// of the octet; an octet with the high bit set fails on its own, so what
/// its carries do to its neighbours does not matter.
#[inline]
fn all_graphic(octets: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let mut words = octets.chunks_exact(8);
    let mut bad = 0;
    for word in words.by_ref() {
        let w = word.try_into().map_or(HIGH, u64::from_le_bytes);
        let below = !w.wrapping_add(ONES * 0x5f);
        let above = w.wrapping_add(ONES);
        bad |= (w | below | above) & HIGH;
    }
    bad == 0 && words.remainder().iter().all(u8::is_ascii_graphic)
}

/// `text` up to its first space.
fn first_word(text: &str) -> &str {
    let space = text.bytes().position(|b| b == b' ');
    space.and_then(|end| text.get(..end)).unwrap_or(text)
}

/// The argument of HELO/EHLO: leniently, any printable non-space ASCII token,
/// since clients send bare host names, IP addresses without brackets and
/// worse, and refusing them gains nothing.
fn client_domain(arg: Option<&str>) -> Result<&str, CommandError> {
    match arg {
        Some(a) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_graphic()) => Ok(a),
        Some(_) => Err(CommandError::Syntax("invalid domain")),
        None => Err(CommandError::Syntax("domain required")),
    }
}

/// `size [LAST]`, words separated by spaces.
#[inline]
fn parse_bdat(args: &[u8]) -> Result<CommandRef<'static>, CommandError> {
    let spaces = |from: usize| {
        let rest = args.get(from..).unwrap_or_default();
        from + rest.iter().take_while(|&&b| b == b' ').count()
    };
    let (size, end) = decimal_at(args, 0)
        .filter(|&(_, end)| matches!(args.get(end), None | Some(b' ')))
        .ok_or(CommandError::Syntax("BDAT needs a decimal chunk size"))?;
    let word = spaces(end);
    if word == args.len() {
        return Ok(CommandRef::Bdat { size, last: false });
    }
    let word_end = args
        .get(word..)
        .and_then(|rest| rest.iter().position(|&b| b == b' '))
        .map_or(args.len(), |len| word + len);
    // LAST in any case: four octets, 0x20 ORed into each.
    let last = args
        .get(word..word_end)
        .and_then(|w| w.first_chunk::<4>().filter(|_| w.len() == 4))
        .is_some_and(|w| u32::from_le_bytes(*w) | 0x2020_2020 == u32::from_le_bytes(*b"last"));
    match last && spaces(word_end) == args.len() {
        true => Ok(CommandRef::Bdat { size, last }),
        false => Err(CommandError::Syntax("BDAT takes a size and LAST")),
    }
}

fn parse_mail(mut c: Cursor<'_>) -> Result<CommandRef<'_>, CommandError> {
    if !c.eat_ignore_case(b"FROM:") {
        return Err(CommandError::Syntax("expected FROM:<address>"));
    }
    let (reverse_path, utf8_path) = match parse_path(&mut c)? {
        Path::Null => (ReversePathRef::Null, false),
        Path::Postmaster => return Err(CommandError::BadAddress("missing domain")),
        Path::Mailbox(m, non_ascii) => (ReversePathRef::Mailbox(m), non_ascii),
    };
    let mut params = MailParamsRef::default();
    for_each_param(c, Param::MAIL, |param, value, c| {
        let octets = c.octets;
        match (param, value) {
            (Param::Size, Some(at)) => {
                let (size, end) = decimal_at(octets, at)?;
                params.size = Some(size);
                Some(end)
            }
            (Param::Body, Some(at)) => {
                let types = [
                    (fold(b"7BIT"), BodyType::SevenBit),
                    (fold(b"8BITMIME"), BodyType::EightBitMime),
                    (fold(b"BINARYMIME"), BodyType::BinaryMime),
                ];
                let (word, end) = word_at(octets, at)?;
                params.body = Some(keyword(word, &types)?);
                Some(end)
            }
            (Param::Smtputf8, None) => {
                params.smtputf8 = true;
                Some(c.pos)
            }
            (Param::Ret, Some(at)) => {
                let rets = [(fold(b"FULL"), Ret::Full), (fold(b"HDRS"), Ret::Hdrs)];
                let (word, end) = word_at(octets, at)?;
                params.ret = Some(keyword(word, &rets)?);
                Some(end)
            }
            (Param::Envid, Some(at)) => {
                // RFC 3461 §4.4: printable US-ASCII, at most 100 characters.
                let (end, _) = xtext_at(octets, at, 100, |b| matches!(b, b' '..=b'~'))?;
                params.envid = Some(XText(c.text(at, end)?));
                Some(end)
            }
            // A value where none belongs, or none where one does.
            _ => None,
        }
    })?;
    if utf8_path && !params.smtputf8 {
        return Err(CommandError::Utf8NotAllowed);
    }
    Ok(CommandRef::Mail {
        reverse_path,
        params,
    })
}

fn parse_rcpt(mut c: Cursor<'_>, utf8: bool) -> Result<CommandRef<'_>, CommandError> {
    if !c.eat_ignore_case(b"TO:") {
        return Err(CommandError::Syntax("expected TO:<address>"));
    }
    let forward_path = match parse_path(&mut c)? {
        Path::Null => return Err(CommandError::BadAddress("empty recipient")),
        Path::Postmaster => ForwardPathRef::Postmaster,
        Path::Mailbox(_, true) if !utf8 => return Err(CommandError::Utf8NotAllowed),
        Path::Mailbox(m, _) => ForwardPathRef::Mailbox(m),
    };
    let mut params = RcptParamsRef::default();
    for_each_param(c, Param::RCPT, |param, value, c| match (param, value) {
        (Param::Notify, Some(at)) => {
            let (notify, end) = notify_at(c.octets, at)?;
            params.notify = Some(notify);
            Some(end)
        }
        (Param::Orcpt, Some(at)) => {
            let (semicolon, end) = orcpt_at(c.octets, at)?;
            params.orcpt = Some(OrcptRef {
                addr_type: c.text(at, semicolon)?,
                address: XText(c.text(semicolon + 1, end)?),
            });
            Some(end)
        }
        _ => None,
    })?;
    Ok(CommandRef::Rcpt {
        forward_path,
        params,
    })
}

/// Decimal digits at `at` whose value fits in a u64: the value and where the
/// digits end.
#[inline]
fn decimal_at(octets: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    let mut pos = at;
    while let Some(&d) = octets.get(pos).filter(|d| d.is_ascii_digit()) {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        pos += 1;
    }
    (pos > at).then_some((value, pos))
}

/// The word at `at`, up to a space, a comma or the end, [`fold`]ed, and
/// where it ends; `None` if it holds an octet no esmtp-value may (so that
/// what matches a keyword is a well-formed value).
#[inline]
fn word_at(octets: &[u8], at: usize) -> Option<(u128, usize)> {
    // The next 16 octets, classified eight at a time: a word that ends
    // among them (all keywords do) is found, checked and folded without
    // a loop over its octets.
    let Some((words, available)) = sixteen_at(octets, at) else {
        return Some((0, at));
    };
    let mut stops = u32::MAX << available;
    let mut bad = 0;
    for (i, w) in words.into_iter().enumerate() {
        stops |= (swar_bits(swar_equal(w, b' ') | swar_equal(w, b',')) as u32) << (8 * i);
        bad |= (swar_bits(!swar_value(w)) as u32) << (8 * i);
    }
    let len = stops.trailing_zeros() as usize;
    if len < 16 {
        let below = (1u32 << len) - 1;
        return (bad & below == 0).then(|| (fold_words(words, len), at + len));
    }
    let mut pos = at;
    while let Some(&b) = octets.get(pos).filter(|&&b| b != b' ' && b != b',') {
        if class(b) & VALUE == 0 {
            return None;
        }
        pos += 1;
    }
    // A word longer than 16 matches no keyword: see `fold`.
    let word = octets.get(at..pos).unwrap_or_default();
    Some((fold(word), pos))
}

/// The esmtp-keyword octets (letters, digits, hyphens) at `at`, [`fold`]ed,
/// and where they end; found and folded as [`word_at`] does.
#[inline(always)]
fn key_at(octets: &[u8], at: usize) -> (u128, usize) {
    let Some((words, available)) = sixteen_at(octets, at) else {
        return (0, at);
    };
    let mut stops = u32::MAX << available;
    for (i, w) in words.into_iter().enumerate() {
        stops |= u32::from(swar_bits(!swar_key(w))) << (8 * i);
    }
    let len = stops.trailing_zeros() as usize;
    if len < 16 {
        return (fold_words(words, len), at + len);
    }
    let mut end = at;
    while octets.get(end).is_some_and(|&b| class(b) & KEY != 0) {
        end += 1;
    }
    (fold(octets.get(at..end).unwrap_or_default()), end)
}

/// The 16 octets at `at` as two words (zeros past the end of `octets`),
/// and how many of them are the line's; `None` at or past its end.
#[inline(always)]
fn sixteen_at(octets: &[u8], at: usize) -> Option<([u64; 2], usize)> {
    let rest = octets.get(at..).filter(|rest| !rest.is_empty())?;
    let available = rest.len().min(16);
    let halves = |bytes: &[u8; 16]| {
        let (lo, hi) = bytes.split_at(8);
        let word = |half: &[u8]| half.try_into().map_or(0, u64::from_le_bytes);
        (word(lo), word(hi))
    };
    if let Some(bytes) = rest.first_chunk::<16>() {
        let (lo, hi) = halves(bytes);
        return Some(([lo, hi], 16));
    }
    // Near the end of the line: its last 16 octets, shifted down so that
    // `at` is lowest (zeros come in above), rather than a copy octet by
    // octet, which the loads would wait for.
    let Some(last) = octets.last_chunk::<16>() else {
        let mut padded = [0u8; 16];
        padded.iter_mut().zip(rest).for_each(|(p, &b)| *p = b);
        let (lo, hi) = halves(&padded);
        return Some(([lo, hi], available));
    };
    let (lo, hi) = halves(last);
    let value = (u128::from(lo) | u128::from(hi) << 64) >> (8 * (16 - available));
    Some(([value as u64, (value >> 64) as u64], available))
}

/// [`fold`] of the first `len` (below 16) octets of `words`.
#[inline(always)]
fn fold_words(words: [u64; 2], len: usize) -> u128 {
    let value = u128::from(words[0]) | u128::from(words[1]) << 64;
    let mask = (1u128 << (8 * len)) - 1;
    (value | u128::from_le_bytes([0x20; 16])) & mask
}

const SWAR_ONES: u64 = u64::from_le_bytes([0x01; 8]);
const SWAR_HIGH: u64 = u64::from_le_bytes([0x80; 8]);
const SWAR_LOW: u64 = u64::from_le_bytes([0x7f; 8]);

/// The high bit of each octet of `w` equal to `b`, exactly (no false
/// positives from borrows, unlike the subtraction trick).
#[inline(always)]
const fn swar_equal(w: u64, b: u8) -> u64 {
    let x = w ^ (SWAR_ONES * b as u64);
    !((x & SWAR_LOW).wrapping_add(SWAR_LOW) | x) & SWAR_HIGH
}

/// The high bit of each octet of `w` that is [`VALUE`]: 0x21 and up but
/// `=` and DEL. Adding 0x5f to the low seven bits sets the high bit when
/// they are at least 0x21 and never carries out of the octet.
#[inline(always)]
const fn swar_value(w: u64) -> u64 {
    let printable = (w & SWAR_LOW).wrapping_add(SWAR_ONES * 0x5f);
    (printable & !swar_equal(w, b'=') & !swar_equal(w, 0x7f) | w) & SWAR_HIGH
}

/// The high bit of each octet of `w` that is [`KEY`]: an ASCII letter,
/// digit or `-`. On the low seven bits, adding 0x80 - n sets the high bit
/// when an octet is at least n, and never carries out of it.
#[inline(always)]
fn swar_key(w: u64) -> u64 {
    let at_least = |x: u64, n: u8| x.wrapping_add(SWAR_ONES * u64::from(0x80 - n)) & SWAR_HIGH;
    let low = w & SWAR_LOW;
    let lower = low | (SWAR_ONES * 0x20);
    let letters = at_least(lower, b'a') & !at_least(lower, b'z' + 1);
    let digits = at_least(low, b'0') & !at_least(low, b'9' + 1);
    (letters | digits | swar_equal(w, b'-')) & !w & SWAR_HIGH
}

/// The high bits of a word's eight octets as eight bits, the first
/// octet's lowest: the multiplication moves bit 8i to bit 56 + i, and no
/// two partial products meet, so nothing carries.
#[inline(always)]
const fn swar_bits(mask: u64) -> u8 {
    (((mask & SWAR_HIGH) >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

/// `NEVER`, or a comma-separated list of `SUCCESS`, `FAILURE` and `DELAY`
/// (RFC 3461 §4.1), at `at`; and where it ends.
#[inline]
fn notify_at(octets: &[u8], at: usize) -> Option<(Notify, usize)> {
    notify_with(octets, at, |at| word_at(octets, at))
}

/// [`notify_at`] with the words read by `word_at`, which returns what
/// [`word_at`] would for every word it accepts.
#[inline(always)]
fn notify_with(
    octets: &[u8],
    at: usize,
    word_at: impl Fn(usize) -> Option<(u128, usize)>,
) -> Option<(Notify, usize)> {
    let conditions = [
        (fold(b"SUCCESS"), 0),
        (fold(b"FAILURE"), 1),
        (fold(b"DELAY"), 2),
    ];
    let (mut word, mut end) = word_at(at)?;
    if word == fold(b"NEVER") && octets.get(end) != Some(&b',') {
        return Some((Notify::Never, end));
    }
    let mut flags = [false; 3];
    loop {
        *flags.get_mut(keyword(word, &conditions)?)? = true;
        if octets.get(end) != Some(&b',') {
            break;
        }
        (word, end) = word_at(end + 1)?;
    }
    let [success, failure, delay] = flags;
    let notify = Notify::Some {
        success,
        failure,
        delay,
    };
    Some((notify, end))
}

/// `addr-type;xtext` (RFC 3461 §4.2) at `at`, the address 1 to 500 octets of
/// UTF-8 decoded: where the semicolon is and where the value ends.
#[inline]
fn orcpt_at(octets: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut semicolon = at;
    // atext, but not "=", which no esmtp-value holds.
    while let Some(&b) = octets.get(semicolon) {
        if class(b) & ATEXT == 0 || b >= 0x80 || b == b'=' {
            break;
        }
        semicolon += 1;
    }
    if semicolon == at || octets.get(semicolon) != Some(&b';') {
        return None;
    }
    let start = semicolon + 1;
    let (end, escapes) = xtext_at(octets, start, 500, |_| true)?;
    let address = octets.get(start..end)?;
    let valid = match escapes {
        // Its own decoding: ASCII.
        false => !address.is_empty(),
        true => xtext_decode_into(address, &mut [0; 500])
            .is_some_and(|a| !a.is_empty() && std::str::from_utf8(a).is_ok()),
    };
    valid.then_some((semicolon, end))
}

/// RFC 3461 xtext at `at`, up to a space or the end, decoding to at most
/// `max` octets, each escaped one accepted by `escaped`: where it ends, and
/// whether it has escapes (without, it is its own decoding).
#[inline]
fn xtext_at(
    octets: &[u8],
    at: usize,
    max: usize,
    escaped: impl Fn(u8) -> bool,
) -> Option<(usize, bool)> {
    let mut pos = at;
    let mut decoded = 0;
    let mut escapes = false;
    while let Some(&b) = octets.get(pos).filter(|&&b| b != b' ') {
        if class(b) & XCHAR != 0 {
            pos += 1;
        } else if b == b'+' {
            let hex = octets.get(pos + 1..pos + 3)?;
            let octet = (hex_digit(hex.first())? << 4) | hex_digit(hex.get(1))?;
            if !escaped(octet) {
                return None;
            }
            escapes = true;
            pos += 3;
        } else {
            return None;
        }
        decoded += 1;
    }
    (decoded <= max).then_some((pos, escapes))
}

/// Decodes `xtext` into `buf`, without allocating: the decoded octets, or
/// `None` if it is malformed or does not fit.
fn xtext_decode_into<'b>(xtext: &[u8], buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let mut len = 0;
    let mut octets = xtext.iter();
    while let Some(&b) = octets.next() {
        let octet = match b {
            b'+' => (hex_digit(octets.next())? << 4) | hex_digit(octets.next())?,
            b if class(b) & XCHAR != 0 => b,
            _ => return None,
        };
        *buf.get_mut(len)? = octet;
        len += 1;
    }
    buf.get(..len)
}

/// The value of a hex digit (either case).
fn hex_digit(b: Option<&u8>) -> Option<u8> {
    b.and_then(|&b| char::from(b).to_digit(16))
        .and_then(|d| u8::try_from(d).ok())
}

/// Decodes RFC 3461 xtext: printable ASCII except `+` and `=`, and `+XX` hex
/// escapes (lower-case hex digits are accepted too). `None` if malformed.
pub fn xtext_decode(xtext: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(xtext.len());
    let mut octets = xtext.iter();
    while let Some(&b) = octets.next() {
        match b {
            b'+' => out.push((hex_digit(octets.next())? << 4) | hex_digit(octets.next())?),
            b'!'..=b'~' if b != b'=' => out.push(b),
            _ => return None,
        }
    }
    Some(out)
}

/// Encodes octets as RFC 3461 xtext, escaping everything but printable ASCII
/// other than `+` and `=` as `+XX`.
pub fn xtext_encode(octets: &[u8]) -> String {
    let mut out = String::with_capacity(octets.len());
    for &b in octets {
        if matches!(b, b'!'..=b'~') && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// The parameters Petrel knows, by name; which command takes which is the
/// command's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    Size,
    Body,
    Smtputf8,
    Ret,
    Envid,
    Notify,
    Orcpt,
}

impl Param {
    /// This parameter's bit in a set of them.
    const fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The parameters MAIL takes.
    const MAIL: u8 = Param::Size.bit()
        | Param::Body.bit()
        | Param::Smtputf8.bit()
        | Param::Ret.bit()
        | Param::Envid.bit();

    /// The parameters RCPT takes.
    const RCPT: u8 = Param::Notify.bit() | Param::Orcpt.bit();

    /// The parameter whose name [`fold`]s to `key`.
    #[inline]
    fn named(key: u128) -> Option<Param> {
        const fn low(name: &[u8]) -> u64 {
            fold(name) as u64
        }
        const SIZE: u64 = low(b"SIZE");
        const BODY: u64 = low(b"BODY");
        const SMTPUTF8: u64 = low(b"SMTPUTF8");
        const RET: u64 = low(b"RET");
        const ENVID: u64 = low(b"ENVID");
        const NOTIFY: u64 = low(b"NOTIFY");
        const ORCPT: u64 = low(b"ORCPT");
        // Every name fits in eight octets, so a key that does not is none
        // of them; a match rather than a search: the compiler compares in
        // a tree.
        if key >> 64 != 0 {
            return None;
        }
        match key as u64 {
            SIZE => Some(Param::Size),
            BODY => Some(Param::Body),
            SMTPUTF8 => Some(Param::Smtputf8),
            RET => Some(Param::Ret),
            ENVID => Some(Param::Envid),
            NOTIFY => Some(Param::Notify),
            ORCPT => Some(Param::Orcpt),
            _ => None,
        }
    }
}

/// Reads the `KEY[=VALUE]` parameters after a path (RFC 5321 §4.1.2,
/// esmtp-param), rejecting bad syntax and duplicates, each octet once: a
/// key is checked and looked up as it is read, and the value of a parameter
/// the command `takes` is read by `apply`, given where the value starts (if
/// there is one) and returning where it ends, or `None` if it is bad. That
/// one reading is enough because a value that is no esmtp-value and one
/// that means nothing get the same reply, and `apply`'s readers take only
/// esmtp-value octets. Other parameters' values are checked for syntax,
/// then refused as unknown.
#[inline(always)]
fn for_each_param<'a>(
    mut c: Cursor<'a>,
    takes: u8,
    mut apply: impl FnMut(Param, Option<usize>, &Cursor<'a>) -> Option<usize>,
) -> Result<(), CommandError> {
    if c.peek().is_some_and(|b| b != b' ') {
        return Err(CommandError::Syntax("expected a space after the address"));
    }
    // Only parameters `apply` took can be seen again (it refuses unknown
    // ones), so a set of known parameters finds every duplicate.
    let mut seen = 0u8;
    loop {
        c.skip_while(|b| b == b' ');
        let Some(first) = c.peek() else {
            return Ok(());
        };
        // esmtp-keyword: a letter or digit, then letters, digits, hyphens.
        if !first.is_ascii_alphanumeric() {
            return Err(CommandError::Syntax("bad parameter"));
        }
        let key_start = c.pos;
        let (folded_key, key_end) = key_at(c.octets, key_start);
        c.pos = key_end;
        let key = c.octets(key_start, key_end);
        let has_value = match c.peek() {
            None | Some(b' ') => false,
            Some(b'=') => true,
            Some(_) => return Err(CommandError::Syntax("bad parameter")),
        };
        let known = Param::named(folded_key);
        if known.is_some_and(|p| seen & p.bit() != 0) {
            return Err(CommandError::DuplicateParameter(upper(key)));
        }
        let value = has_value.then_some(c.pos + 1);
        match known.filter(|p| takes & p.bit() != 0) {
            Some(param) => {
                // A value ends at a space or the end of the line.
                let ends_well = |end: usize| matches!(c.octets.get(end), None | Some(b' '));
                let end = apply(param, value, &c);
                // esmtp-value is one or more octets, whatever reads it.
                let well_formed = |&end: &usize| match value {
                    Some(start) => end > start && ends_well(end),
                    None => true,
                };
                match end.filter(well_formed) {
                    Some(end) if value.is_some() => c.pos = end,
                    Some(_) => {}
                    None => return Err(CommandError::BadParameterValue(upper(key))),
                }
                seen |= param.bit();
            }
            None => {
                if let Some(start) = value {
                    // esmtp-value: one or more octets other than "=",
                    // controls and space.
                    c.pos = start;
                    let mut valid = true;
                    let end = c.skip_while(|b| {
                        valid &= b == b' ' || class(b) & VALUE != 0;
                        b != b' '
                    });
                    if !valid || end == start {
                        return Err(CommandError::BadParameterValue(upper(key)));
                    }
                }
                return Err(CommandError::UnknownParameter(upper(key)));
            }
        }
    }
}

/// A parameter's name for an error: upper case, as it is matched.
fn upper(key: &[u8]) -> String {
    String::from_utf8_lossy(key).to_ascii_uppercase()
}

/// A parsed path, before the caller decides which forms it allows.
enum Path<'a> {
    Null,
    Postmaster,
    /// A mailbox, and whether it has non-ASCII octets.
    Mailbox(MailboxRef<'a>, bool),
}

/// Parses `<...>` at the cursor, leaving the cursor after it. UTF-8 is
/// accepted here; the caller decides whether it was allowed.
#[inline(always)]
fn parse_path<'a>(c: &mut Cursor<'a>) -> Result<Path<'a>, CommandError> {
    // One space after the colon is a common client quirk.
    c.eat(b' ');
    let start = c.pos;
    if !c.eat(b'<') {
        return Err(CommandError::BadAddress(
            "address must be in angle brackets",
        ));
    }
    if c.eat(b'>') {
        return Ok(Path::Null);
    }
    if c.eat_ignore_case(b"postmaster>") {
        return Ok(Path::Postmaster);
    }
    if c.peek() == Some(b'@') {
        // A source route, "@a,@b:": checked and discarded (RFC 5321 §4.1.2).
        loop {
            if !c.eat(b'@') {
                return Err(CommandError::BadAddress("bad source route"));
            }
            domain(c)?;
            if c.eat(b':') {
                break;
            }
            if !c.eat(b',') {
                return Err(CommandError::BadAddress("bad source route"));
            }
        }
    }
    let (local_part, local_non_ascii) = local_part(c)?;
    if !c.eat(b'@') {
        return Err(CommandError::BadAddress("missing domain"));
    }
    let (domain, domain_non_ascii) = host(c)?;
    if !c.eat(b'>') {
        return Err(CommandError::BadAddress("unexpected character in address"));
    }
    if c.pos - start > 256 {
        return Err(CommandError::BadAddress("path longer than 256 octets"));
    }
    let mailbox = MailboxRef { local_part, domain };
    // What `needs_smtputf8` would find, known from reading the octets.
    Ok(Path::Mailbox(mailbox, local_non_ascii || domain_non_ascii))
}

/// Dot-string or quoted-string (RFC 5321 §4.1.2), at most 64 octets as
/// written, returned as written, and whether it has non-ASCII octets (the
/// loops OR the octets together as they go, so no second pass asks).
#[inline(always)]
fn local_part<'a>(c: &mut Cursor<'a>) -> Result<(&'a str, bool), CommandError> {
    // The loops here and below read into locals, so that the position
    // stays in a register rather than going through the cursor each octet.
    let (octets, start) = (c.octets, c.pos);
    let mut pos = start;
    let mut seen = 0u8;
    if octets.get(pos) == Some(&b'"') {
        pos += 1;
        loop {
            let b = octets.get(pos).copied();
            pos += 1;
            match b {
                Some(b'"') => break,
                Some(b'\\') => {
                    if !matches!(octets.get(pos), Some(b' '..=b'~')) {
                        return Err(CommandError::BadAddress("bad quoted pair"));
                    }
                    pos += 1;
                }
                // qtextSMTP, plus UTF-8 (RFC 6531 §3.3).
                Some(b) if b >= b' ' && b != 0x7f => seen |= b,
                Some(_) => return Err(CommandError::BadAddress("control character in local part")),
                None => return Err(CommandError::BadAddress("unterminated quoted string")),
            }
        }
    } else {
        // Atoms separated by single dots: no dot first, last or twice.
        let mut after_dot = true;
        let mut bad = false;
        while let Some(&b) = octets.get(pos) {
            if class(b) & ATEXT != 0 {
                after_dot = false;
                seen |= b;
            } else if b == b'.' {
                bad |= after_dot;
                after_dot = true;
            } else {
                break;
            }
            pos += 1;
        }
        if bad || after_dot {
            return Err(CommandError::BadAddress("bad local part"));
        }
    }
    c.pos = pos;
    if pos - start > 64 {
        return Err(CommandError::BadAddress("local part longer than 64 octets"));
    }
    match c.text(start, pos) {
        Some(local) => Ok((local, !seen.is_ascii())),
        None => Err(CommandError::BadAddress("invalid UTF-8")),
    }
}

/// A domain or an address literal (RFC 5321 §4.1.3), and whether it has
/// non-ASCII octets (a literal never has).
#[inline(always)]
fn host<'a>(c: &mut Cursor<'a>) -> Result<(HostRef<'a>, bool), CommandError> {
    if !c.eat(b'[') {
        return domain(c).map(|(name, non_ascii)| (HostRef::Domain(name), non_ascii));
    }
    let bad = CommandError::BadAddress("bad address literal");
    // dcontent: printable ASCII except "[", "\" and "]".
    let start = c.pos;
    let end = c.skip_while(|b| matches!(b, b'!'..=b'Z' | b'^'..=b'~'));
    if !c.eat(b']') || end - start > 253 {
        return Err(bad);
    }
    let literal = c.text(start, end).ok_or(bad.clone())?;
    if let Ok(ip) = literal.parse() {
        return Ok((HostRef::Ipv4(ip), false));
    }
    let host = match literal.split_once(':') {
        Some((tag, ip)) if tag.eq_ignore_ascii_case("IPv6") => ip
            .parse()
            .map(HostRef::Ipv6)
            .map_err(|_| CommandError::BadAddress("bad IPv6 address literal")),
        Some((tag, content)) if is_label(tag.as_bytes()) && !content.is_empty() => {
            Ok(HostRef::General { tag, content })
        }
        _ => Err(bad),
    };
    host.map(|host| (host, false))
}

/// A domain name of LDH labels; non-ASCII octets are allowed in labels
/// (U-labels, RFC 6531 §3.3) and UTF-8 validity is checked. The labels are
/// checked as the name is read. Also whether it has non-ASCII octets.
#[inline(always)]
fn domain<'a>(c: &mut Cursor<'a>) -> Result<(&'a str, bool), CommandError> {
    let (octets, start) = (c.octets, c.pos);
    let mut pos = start;
    let mut label_start = start;
    let mut labels_ok = true;
    let mut seen = 0u8;
    while let Some(&b) = octets.get(pos) {
        if class(b) & LABEL == 0 {
            if b != b'.' {
                break;
            }
            labels_ok &= label_ok(octets.get(label_start..pos).unwrap_or_default());
            label_start = pos + 1;
        }
        seen |= b;
        pos += 1;
    }
    c.pos = pos;
    if pos == start {
        return Err(CommandError::BadAddress("missing domain"));
    }
    if pos - start > 255 {
        return Err(CommandError::BadAddress("domain longer than 255 octets"));
    }
    if !(labels_ok && label_ok(octets.get(label_start..pos).unwrap_or_default())) {
        return Err(CommandError::BadAddress("bad domain"));
    }
    match c.text(start, pos) {
        Some(domain) => Ok((domain, !seen.is_ascii())),
        None => Err(CommandError::BadAddress("invalid UTF-8")),
    }
}

/// [`is_label`] for a label whose octets are known to be letters, digits,
/// hyphens and UTF-8.
#[inline(always)]
fn label_ok(label: &[u8]) -> bool {
    let hyphen_at_end = label.first() == Some(&b'-') || label.last() == Some(&b'-');
    !label.is_empty() && !hyphen_at_end && (label.len() <= 63 || !label.is_ascii())
}

/// A label: letters, digits, hyphens (and UTF-8), not starting or ending with
/// a hyphen; an ASCII label has at most 63 octets (RFC 1035 §2.3.4).
fn is_label(label: &[u8]) -> bool {
    label_ok(label) && label.iter().all(|&b| class(b) & LABEL != 0)
}

/// atext (RFC 5322 §3.2.3), plus UTF-8 octets (RFC 6531 §3.3).
fn is_atext(b: u8) -> bool {
    class(b) & ATEXT != 0
}

/// Classes of octets in the grammar of paths and parameters, one bit each,
/// so that each octet is classified with one load.
const ATEXT: u8 = 1;
/// A label's octets: letters, digits, hyphens and UTF-8.
const LABEL: u8 = 2;
/// An esmtp-keyword's: letters, digits and hyphens.
const KEY: u8 = 4;
/// An esmtp-value's: 0x21 to 0xff but `=` and DEL.
const VALUE: u8 = 8;
/// What xtext carries as itself: printable ASCII but `+` and `=`.
const XCHAR: u8 = 16;

#[allow(clippy::indexing_slicing)] // Evaluated at compile time, within bounds.
const CLASSES: [u8; 256] = {
    let mut classes = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let alnum = b.is_ascii_alphanumeric();
        let utf8 = b >= 0x80;
        let special = matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'/'
                | b'='
                | b'?'
                | b'^'
                | b'_'
                | b'`'
                | b'{'
                | b'|'
                | b'}'
                | b'~'
        );
        let mut class = 0;
        if alnum || utf8 || special {
            class |= ATEXT;
        }
        if alnum || utf8 || b == b'-' {
            class |= LABEL;
        }
        if alnum || b == b'-' {
            class |= KEY;
        }
        if b > 0x20 && b != b'=' && b != 0x7f {
            class |= VALUE;
        }
        if b > 0x20 && b < 0x7f && b != b'+' && b != b'=' {
            class |= XCHAR;
        }
        classes[i] = class;
        i += 1;
    }
    classes
};

#[inline]
fn class(b: u8) -> u8 {
    CLASSES.get(usize::from(b)).copied().unwrap_or(0)
}

/// The value whose name's [`fold`] is `word`.
#[inline]
fn keyword<T: Copy>(word: u128, table: &[(u128, T)]) -> Option<T> {
    table
        .iter()
        .find(|&&(name, _)| name == word)
        .map(|&(_, value)| value)
}

/// A word of 1 to 16 octets as one number, its letters lower-cased, so that
/// a word is compared with several in one step each; 0 (no word's number)
/// when it is empty or longer. ORing 0x20 into an octet lower-cases exactly
/// the upper-case letters and maps nothing else onto a letter or digit but
/// octets below 0x20, which the words compared (esmtp-keywords and values)
/// never hold; and as no folded octet is 0, words of different lengths
/// differ. The first octet is the lowest, as a little-endian load of the
/// word puts it (see `fold_words`).
const fn fold(word: &[u8]) -> u128 {
    if word.len() > 16 {
        return 0;
    }
    let mut folded = 0;
    let mut rest = word;
    while let [init @ .., last] = rest {
        folded = (folded << 8) | (*last | 0x20) as u128;
        rest = init;
    }
    folded
}

/// `word` (at most 16 octets, the first lowest) with its letters
/// lower-cased, when `lower`; else 0x20 in the octets where it has
/// letters. For a constant word, both are constants.
#[inline(always)]
const fn fold_letters(word: &[u8], lower: bool) -> u128 {
    let mut folded = 0;
    let mut rest = word;
    while let [init @ .., last] = rest {
        let octet = match (lower, last.is_ascii_alphabetic()) {
            (true, _) => last.to_ascii_lowercase(),
            (false, true) => 0x20,
            (false, false) => 0,
        };
        folded = (folded << 8) | octet as u128;
        rest = init;
    }
    folded
}

/// The line without trailing spaces and tabs.
#[inline]
fn trim_end(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    line.get(..end).unwrap_or_default()
}

/// A command line as it is read: the octets, the same as text when they are
/// UTF-8 (checked once, so that each piece becomes a `&str` without
/// checking it again), and how far reading got.
#[derive(Debug, Clone, Copy)]
struct Cursor<'a> {
    octets: &'a [u8],
    text: Option<&'a str>,
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at `pos` in `line`.
    fn new(line: &'a [u8], pos: usize) -> Self {
        Cursor {
            octets: line,
            text: std::str::from_utf8(line).ok(),
            pos,
        }
    }

    /// Moves past the octets `keep` accepts; returns the new position. The
    /// position is a local in the loop, not the cursor's field.
    #[inline(always)]
    fn skip_while(&mut self, mut keep: impl FnMut(u8) -> bool) -> usize {
        let mut pos = self.pos;
        while self.octets.get(pos).is_some_and(|&b| keep(b)) {
            pos += 1;
        }
        self.pos = pos;
        pos
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.octets.get(self.pos).copied()
    }

    #[inline]
    fn eat(&mut self, b: u8) -> bool {
        let matched = self.peek() == Some(b);
        self.pos += usize::from(matched);
        matched
    }

    /// Moves past `word` (at most 16 octets) if it comes next, in any
    /// ASCII case: the next 16 octets compared at once, with 0x20 ORed
    /// into the octets where `word` has a letter (which lower-cases a
    /// letter and makes nothing else equal to one).
    #[inline(always)]
    fn eat_ignore_case(&mut self, word: &[u8]) -> bool {
        let end = self.pos + word.len();
        let (lower, letters) = (fold_letters(word, true), fold_letters(word, false));
        let matched = sixteen_at(self.octets, self.pos).is_some_and(|(words, available)| {
            let next = u128::from(words[0]) | u128::from(words[1]) << 64;
            let mask = u128::MAX >> (8 * (16 - word.len().min(16)));
            word.len() <= available && (next & mask | letters) == lower
        });
        if matched {
            self.pos = end;
        }
        matched
    }

    fn octets(&self, start: usize, end: usize) -> &'a [u8] {
        self.octets.get(start..end).unwrap_or_default()
    }

    /// The octets from `start` to `end` as text, if they are UTF-8. The
    /// parser cuts only before or after an ASCII octet, so in UTF-8 text
    /// its cuts are character boundaries.
    #[inline(always)]
    fn text(&self, start: usize, end: usize) -> Option<&'a str> {
        match self.text {
            Some(text) => text.get(start..end),
            None => std::str::from_utf8(self.octets(start, end)).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{quickcheck, Arbitrary, Gen};

    fn mailbox(local: &str, domain: &str) -> Mailbox {
        Mailbox {
            local_part: local.into(),
            domain: Host::Domain(domain.into()),
        }
    }

    fn parse(line: &str) -> Command {
        parse_command(line.as_bytes(), false).unwrap_or_else(|e| panic!("{line}: {e:?}"))
    }

    fn host_of(line: &str) -> Host {
        match parse(line) {
            Command::Rcpt {
                forward_path: ForwardPath::Mailbox(m),
                ..
            } => m.domain,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn mail_params(line: &str) -> MailParams {
        match parse(line) {
            Command::Mail { params, .. } => params,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn rcpt_params(line: &str) -> RcptParams {
        match parse(line) {
            Command::Rcpt { params, .. } => params,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn parses_commands() {
        let bdat = |size, last| Command::Bdat { size, last };
        let table = [
            ("HELO mx.example", Command::Helo("mx.example".into())),
            (
                "helo mx.example ignored text",
                Command::Helo("mx.example".into()),
            ),
            ("EHLO [192.0.2.1]", Command::Ehlo("[192.0.2.1]".into())),
            ("ehlo  localhost  ", Command::Ehlo("localhost".into())),
            ("DATA", Command::Data),
            ("data ", Command::Data),
            ("RSET", Command::Rset),
            ("NOOP", Command::Noop),
            ("NOOP whatever", Command::Noop),
            ("QUIT", Command::Quit),
            ("StartTLS", Command::StartTls),
            ("VRFY postmaster", Command::Vrfy("postmaster".into())),
            ("EXPN list name", Command::Expn("list name".into())),
            ("HELP", Command::Help(None)),
            ("HELP MAIL", Command::Help(Some("MAIL".into()))),
            ("BDAT 0 LAST", bdat(0, true)),
            ("bdat 18446744073709551615 last", bdat(u64::MAX, true)),
            ("BDAT 1000", bdat(1000, false)),
        ];
        for (line, expected) in table {
            assert_eq!(parse(line), expected, "{line}");
        }
    }

    #[test]
    fn parses_paths() {
        let table = [
            ("MAIL FROM:<a@b.example>", "a", "b.example"),
            ("mail from: <a@b.example>", "a", "b.example"),
            (
                "MAIL FROM:<a.b-c+d@x-y.example>\t",
                "a.b-c+d",
                "x-y.example",
            ),
            ("MAIL FROM:<\"a b\\\"c\"@x>", "a b\"c", "x"),
            ("MAIL FROM:<\"\"@x>", "", "x"),
            (
                "MAIL FROM:<@r1.example,@r2.example:u@d.example>",
                "u",
                "d.example",
            ),
            (
                "MAIL FROM:<üser@bücher.example> SMTPUTF8",
                "üser",
                "bücher.example",
            ),
            ("RCPT TO:<postmaster@x>", "postmaster", "x"),
            ("RcPt To:<u@d>", "u", "d"),
            ("RCPT TO: <@r:u@d>", "u", "d"),
        ];
        for (line, local, domain) in table {
            let m = match parse(line) {
                Command::Mail {
                    reverse_path: ReversePath::Mailbox(m),
                    ..
                }
                | Command::Rcpt {
                    forward_path: ForwardPath::Mailbox(m),
                    ..
                } => m,
                other => panic!("{line}: {other:?}"),
            };
            assert_eq!(m, mailbox(local, domain), "{line}");
        }
        let null = Command::Mail {
            reverse_path: ReversePath::Null,
            params: MailParams::default(),
        };
        assert_eq!(parse("MAIL FROM:<>"), null);
        for line in ["RCPT TO:<Postmaster>", "RCPT TO:<postMASTER> "] {
            let postmaster = Command::Rcpt {
                forward_path: ForwardPath::Postmaster,
                params: RcptParams::default(),
            };
            assert_eq!(parse(line), postmaster);
        }
    }

    #[test]
    fn parses_parameters() {
        let line = "MAIL FROM:<u@d> SIZE=1000 BODY=8bitmime RET=HDRS ENVID=QQ+2Bx SMTPUTF8";
        let expected = MailParams {
            size: Some(1000),
            body: Some(BodyType::EightBitMime),
            smtputf8: true,
            ret: Some(Ret::Hdrs),
            envid: Some("QQ+x".into()),
        };
        assert_eq!(mail_params(line), expected);
        let p = mail_params("MAIL FROM:<u@d>  body=BINARYMIME  ret=full ");
        assert_eq!(
            (p.body, p.ret),
            (Some(BodyType::BinaryMime), Some(Ret::Full))
        );
        assert_eq!(
            mail_params("MAIL FROM:<> BODY=7BIT").body,
            Some(BodyType::SevenBit)
        );
        let p = rcpt_params("RCPT TO:<u@d> NOTIFY=NEVER");
        assert_eq!(p.notify, Some(Notify::Never));
        let p = rcpt_params("RCPT TO:<u@d> NOTIFY=success,DELAY ORCPT=rfc822;u+40d.example");
        let notify = Notify::Some {
            success: true,
            failure: false,
            delay: true,
        };
        let orcpt = Orcpt {
            addr_type: "rfc822".into(),
            address: "u@d.example".into(),
        };
        assert_eq!(
            p,
            RcptParams {
                notify: Some(notify),
                orcpt: Some(orcpt)
            }
        );
    }

    #[test]
    fn parses_address_literals() {
        let general = Host::General {
            tag: "x-tag".into(),
            content: "any.thing".into(),
        };
        let table = [
            ("[192.0.2.1]", Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1))),
            ("[IPv6:::1]", Host::Ipv6(Ipv6Addr::LOCALHOST)),
            (
                "[ipv6:2001:db8::1]",
                Host::Ipv6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            ),
            (
                "[IPv6:::ffff:192.0.2.1]",
                Host::Ipv6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()),
            ),
            ("[x-tag:any.thing]", general),
        ];
        for (literal, expected) in table {
            assert_eq!(host_of(&format!("RCPT TO:<u@{literal}>")), expected);
        }
    }

    #[test]
    fn rejects_commands() {
        let table = [
            ("", "500 5.5.1"),
            ("FOO", "500 5.5.1"),
            ("MAILFROM:<a@b>", "500 5.5.1"),
            ("HELO\tx", "500 5.5.1"),
            ("NOOP\0", "501 5.5.4"),
            ("NOOP a\rb", "501 5.5.4"),
            ("NOOP\n", "501 5.5.4"),
            ("NOOP é", "501 5.5.4"),
            ("HELO", "501 5.5.4"),
            ("HELO  ", "501 5.5.4"),
            ("EHLO", "501 5.5.4"),
            ("EHLO a b", "501 5.5.4"),
            ("EHLO a\x01", "501 5.5.4"),
            ("DATA x", "501 5.5.4"),
            ("RSET x", "501 5.5.4"),
            ("QUIT now", "501 5.5.4"),
            ("STARTTLS x", "501 5.5.4"),
            ("VRFY", "501 5.5.4"),
            ("EXPN ", "501 5.5.4"),
            ("BDAT", "501 5.5.4"),
            ("BDAT -1", "501 5.5.4"),
            ("BDAT 18446744073709551616", "501 5.5.4"),
            ("BDAT 10 FIRST", "501 5.5.4"),
            ("BDAT 10 LAST x", "501 5.5.4"),
            ("MAIL", "501 5.5.4"),
            ("MAIL TO:<a@b>", "501 5.5.4"),
            ("MAIL  FROM:<a@b>", "501 5.5.4"),
            ("RCPT FROM:<a@b>", "501 5.5.4"),
            ("MAIL FROM:a@b", "501 5.1.3"),
            ("MAIL FROM:  <a@b>", "501 5.1.3"),
            ("MAIL FROM:<a@b", "501 5.1.3"),
            ("MAIL FROM:<a>", "501 5.1.3"),
            ("MAIL FROM:<Postmaster>", "501 5.1.3"),
            ("MAIL FROM:<a@>", "501 5.1.3"),
            ("MAIL FROM:<@b>", "501 5.1.3"),
            ("MAIL FROM:<.a@b>", "501 5.1.3"),
            ("MAIL FROM:<a.@b>", "501 5.1.3"),
            ("MAIL FROM:<a..b@c>", "501 5.1.3"),
            ("MAIL FROM:<a b@c>", "501 5.1.3"),
            ("MAIL FROM:<\"a@b>", "501 5.1.3"),
            ("MAIL FROM:<\"a\x01\"@b>", "501 5.1.3"),
            ("MAIL FROM:<a@b..c>", "501 5.1.3"),
            ("MAIL FROM:<a@b.>", "501 5.1.3"),
            ("MAIL FROM:<a@-b.c>", "501 5.1.3"),
            ("MAIL FROM:<a@b_c>", "501 5.1.3"),
            ("MAIL FROM:<a@[1.2.3]>", "501 5.1.3"),
            ("MAIL FROM:<a@[1.2.3.4>", "501 5.1.3"),
            ("MAIL FROM:<a@[IPv6:1.2.3.4]>", "501 5.1.3"),
            ("MAIL FROM:<a@[tag:]>", "501 5.1.3"),
            ("MAIL FROM:<a@[-tag:x]>", "501 5.1.3"),
            ("MAIL FROM:<@x:>", "501 5.1.3"),
            ("MAIL FROM:<@x;a@b>", "501 5.1.3"),
            ("RCPT TO:<>", "501 5.1.3"),
            ("RCPT TO:<Postmaster> ", "250"),
            ("MAIL FROM:<a@b>x", "501 5.5.4"),
            ("MAIL FROM:<a@b> =1", "501 5.5.4"),
            ("MAIL FROM:<a@b> -X", "501 5.5.4"),
            ("MAIL FROM:<a@b> SIZE", "501 5.5.4"),
            ("MAIL FROM:<a@b> SIZE=", "501 5.5.4"),
            ("MAIL FROM:<a@b> SIZE=1k", "501 5.5.4"),
            ("MAIL FROM:<a@b> SIZE=99999999999999999999", "501 5.5.4"),
            ("MAIL FROM:<a@b> SIZE=1 SIZE=1", "501 5.5.4"),
            ("MAIL FROM:<a@b> BODY=9BIT", "501 5.5.4"),
            ("MAIL FROM:<a@b> SMTPUTF8=yes", "501 5.5.4"),
            ("MAIL FROM:<a@b> SMTPUTF8 smtputf8", "501 5.5.4"),
            ("MAIL FROM:<a@b> RET=ALL", "501 5.5.4"),
            ("MAIL FROM:<a@b> ENVID=a+2", "501 5.5.4"),
            ("MAIL FROM:<a@b> ENVID=a+0A", "501 5.5.4"),
            ("MAIL FROM:<a@b> ENVID=a=b", "501 5.5.4"),
            // Found by the command fuzz target: an empty value is refused
            // before the duplicate is seen.
            ("MAIL FROM:<a@b> ENVID= ENVID=x", "501 5.5.4"),
            ("RCPT TO:<a@b> ORCPT= NOTIFY=NEVER", "501 5.5.4"),
            ("MAIL FROM:<a@b> AUTH=<>", "555 5.5.4"),
            ("MAIL FROM:<a@b> NOTIFY=NEVER", "555 5.5.4"),
            ("RCPT TO:<a@b> SIZE=10", "555 5.5.4"),
            ("RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS", "501 5.5.4"),
            ("RCPT TO:<a@b> NOTIFY=SUCCESS,", "501 5.5.4"),
            ("RCPT TO:<a@b> NOTIFY=sometimes", "501 5.5.4"),
            ("RCPT TO:<a@b> ORCPT=rfc822", "501 5.5.4"),
            ("RCPT TO:<a@b> ORCPT=;a@b", "501 5.5.4"),
            ("RCPT TO:<a@b> ORCPT=rfc822;", "501 5.5.4"),
            ("RCPT TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER", "501 5.5.4"),
            ("MAIL FROM:<üser@b>", "553 5.6.7"),
            ("MAIL FROM:<u@bücher.example>", "553 5.6.7"),
            ("RCPT TO:<üser@b>", "553 5.6.7"),
            ("MAIL FROM:<\"\u{e9}\"@b> SIZE=1", "553 5.6.7"),
        ];
        for (line, expected) in table {
            let got = match parse_command(line.as_bytes(), false) {
                Ok(_) => "250".to_owned(),
                Err(e) => {
                    let r = e.reply();
                    format!("{} {}", r.code(), r.enhanced().unwrap())
                }
            };
            assert_eq!(got, expected, "{line}");
        }
    }

    #[test]
    fn length_limits() {
        let local = "l".repeat(64);
        let label = "d".repeat(63);
        let domain = [label.as_str(); 2].join(".");
        assert!(parse_command(format!("RCPT TO:<{local}@{domain}>").as_bytes(), false).is_ok());
        let err = |line: String| parse_command(line.as_bytes(), false).unwrap_err();
        assert_eq!(
            err(format!("RCPT TO:<{local}l@x>")),
            CommandError::BadAddress("local part longer than 64 octets")
        );
        assert_eq!(
            err(format!("RCPT TO:<u@{label}d>")),
            CommandError::BadAddress("bad domain")
        );
        let long_domain = [label.as_str(); 4].join(".") + ".x";
        assert!(matches!(
            err(format!("RCPT TO:<u@{long_domain}>")),
            CommandError::BadAddress(_)
        ));
        let path = format!("RCPT TO:<{local}@{}>", [label.as_str(); 3].join("."));
        assert_eq!(
            err(path),
            CommandError::BadAddress("path longer than 256 octets")
        );
        let envid = "e".repeat(100);
        assert!(parse_command(format!("MAIL FROM:<> ENVID={envid}").as_bytes(), false).is_ok());
        assert!(parse_command(format!("MAIL FROM:<> ENVID={envid}e").as_bytes(), false).is_err());
    }

    #[test]
    fn utf8_in_recipients_follows_mail() {
        let line = "RCPT TO:<用户@例子.广告>".as_bytes();
        assert_eq!(
            parse_command(line, false),
            Err(CommandError::Utf8NotAllowed)
        );
        let Ok(Command::Rcpt {
            forward_path: ForwardPath::Mailbox(m),
            ..
        }) = parse_command(line, true)
        else {
            panic!("UTF-8 recipient refused");
        };
        assert!(m.needs_smtputf8());
        assert_eq!(m.to_string(), "用户@例子.广告");
        assert_eq!(
            parse_command(b"RCPT TO:<\xff@b>", true),
            Err(CommandError::BadAddress("invalid UTF-8"))
        );
        assert_eq!(
            parse_command(b"RCPT TO:<u@b> ORCPT=utf-8;\xc3\xa9", true),
            Err(CommandError::BadParameterValue("ORCPT".into()))
        );
    }

    #[test]
    fn error_replies() {
        let table = [
            (CommandError::Unrecognized, "500 5.5.1 Command unrecognized"),
            (
                CommandError::Syntax("no argument allowed"),
                "501 5.5.4 Syntax error: no argument allowed",
            ),
            (
                CommandError::BadAddress("bad domain"),
                "501 5.1.3 Bad address syntax: bad domain",
            ),
            (
                CommandError::UnknownParameter("X".into()),
                "555 5.5.4 Unsupported parameter X",
            ),
            (
                CommandError::BadParameterValue("SIZE".into()),
                "501 5.5.4 Bad value for parameter SIZE",
            ),
            (
                CommandError::DuplicateParameter("RET".into()),
                "501 5.5.4 Duplicate parameter RET",
            ),
            (
                CommandError::Utf8NotAllowed,
                "553 5.6.7 UTF-8 address requires SMTPUTF8",
            ),
        ];
        for (error, expected) in table {
            assert_eq!(
                error.reply().to_bytes(),
                format!("{expected}\r\n").as_bytes()
            );
        }
    }

    #[test]
    fn verbs() {
        for (name, verb) in VERBS {
            assert_eq!(verb.as_str(), name);
            assert_eq!(verb.to_string(), name);
        }
        assert_eq!(parse("MAIL FROM:<>").verb(), Verb::Mail);
        assert_eq!(parse("starttls").verb(), Verb::StartTls);
    }

    #[test]
    fn mailbox_display_quotes_when_needed() {
        assert_eq!(mailbox("a.b", "x").to_string(), "a.b@x");
        assert_eq!(mailbox("a b", "x").to_string(), "\"a b\"@x");
        assert_eq!(mailbox("a\"\\", "x").to_string(), "\"a\\\"\\\\\"@x");
        assert_eq!(mailbox("", "x").to_string(), "\"\"@x");
        assert_eq!(mailbox(".a", "x").to_string(), "\".a\"@x");
        let literal = |domain| {
            Mailbox {
                local_part: "u".into(),
                domain,
            }
            .to_string()
        };
        assert_eq!(
            literal(Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1))),
            "u@[192.0.2.1]"
        );
        assert_eq!(literal(Host::Ipv6(Ipv6Addr::LOCALHOST)), "u@[IPv6:::1]");
        assert_eq!(
            literal(Host::General {
                tag: "t".into(),
                content: "c".into()
            }),
            "u@[t:c]"
        );
    }

    #[test]
    fn xtext() {
        assert_eq!(xtext_decode(b"a+2Bb+3d"), Some(b"a+b=".to_vec()));
        assert_eq!(xtext_decode(b""), Some(Vec::new()));
        for bad in [&b"+"[..], b"+4", b"+GG", b"a b", b"a=b", b"\xff"] {
            assert_eq!(xtext_decode(bad), None);
        }
        assert_eq!(xtext_encode(b"a+b= \xff~"), "a+2Bb+3D+20+FF~");
    }

    /// A command line built from a prefix that reaches deep into the parser
    /// and octets that matter to it.
    #[derive(Debug, Clone)]
    struct NearlyValid(Vec<u8>);

    impl Arbitrary for NearlyValid {
        fn arbitrary(g: &mut Gen) -> Self {
            let prefixes = [
                "MAIL FROM:<",
                "RCPT TO:<",
                "MAIL FROM:<a@b> ",
                "RCPT TO:<a@b> ",
                "MAIL FROM:<\"",
                "RCPT TO:<@",
                "MAIL FROM:<a@[",
                "RCPT TO:<a@[IPv6:",
                "EHLO ",
                "HELO ",
                "BDAT ",
            ];
            let alphabet = b"<>@[]:;,.\"\\+= -aZ9\0\r\n\t\xc3\xa9\xff";
            let mut line = g.choose(&prefixes).unwrap().as_bytes().to_vec();
            let params = [
                "SIZE=",
                "BODY=",
                "SMTPUTF8",
                "ENVID=",
                "RET=",
                "NOTIFY=",
                "ORCPT=rfc822;",
            ];
            for _ in 0..usize::arbitrary(g) % 40 {
                if u8::arbitrary(g) % 8 == 0 {
                    line.extend_from_slice(g.choose(&params).unwrap().as_bytes());
                } else {
                    line.push(*g.choose(alphabet).unwrap());
                }
            }
            NearlyValid(line)
        }

        fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
            Box::new(self.0.shrink().map(NearlyValid))
        }
    }

    #[test]
    fn commands_render_for_the_wire() {
        for line in [
            "MAIL FROM:<> SIZE=1000 BODY=BINARYMIME SMTPUTF8 RET=HDRS ENVID=a+2Bb",
            "MAIL FROM:<\"a b\"@[IPv6:::1]>",
            "RCPT TO:<Postmaster>",
            "RCPT TO:<x@y.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;x+2By@z",
            "RCPT TO:<x@y.example> NOTIFY=NEVER",
            "BDAT 10 LAST",
            "BDAT 0",
            "HELP",
        ] {
            let command = parse_command(line.as_bytes(), false).unwrap();
            assert_eq!(command.to_string(), line);
            let mut wire = Vec::new();
            command.write_to(&mut wire);
            assert_eq!(wire, format!("{line}\r\n").into_bytes());
        }
    }

    /// A parsed mailbox, written out and parsed again, is the same mailbox.
    fn redisplay_is_stable(line: &[u8]) -> bool {
        match parse_command(line, true) {
            Ok(Command::Rcpt {
                forward_path: ForwardPath::Mailbox(m),
                ..
            }) => {
                let again = format!("RCPT TO:<{m}>");
                matches!(parse_command(again.as_bytes(), true),
                    Ok(Command::Rcpt { forward_path: ForwardPath::Mailbox(n), .. }) if n == m)
            }
            _ => true,
        }
    }

    /// `word_at` as it was, an octet at a time.
    fn word_at_octetwise(octets: &[u8], at: usize) -> Option<(u128, usize)> {
        let mut pos = at;
        while let Some(&b) = octets.get(pos).filter(|&&b| b != b' ' && b != b',') {
            if class(b) & VALUE == 0 {
                return None;
            }
            pos += 1;
        }
        Some((fold(octets.get(at..pos).unwrap_or_default()), pos))
    }

    #[test]
    fn swar_classes_match_the_table() {
        for b in 0..=255u8 {
            for other in [0, b' ', b',', b'=', b'a', 0x7f, 0x80, 0xff] {
                for at in 0..8 {
                    let mut octets = [other; 8];
                    octets[at] = b;
                    let w = u64::from_le_bytes(octets);
                    let (value, comma) =
                        (swar_bits(!swar_value(w)), swar_bits(swar_equal(w, b',')));
                    let key = swar_bits(swar_key(w));
                    for (i, &o) in octets.iter().enumerate() {
                        assert_eq!(
                            value >> i & 1 == 0,
                            class(o) & VALUE != 0,
                            "{o:#x} in {octets:?}"
                        );
                        assert_eq!(comma >> i & 1 == 1, o == b',', "{o:#x} in {octets:?}");
                        assert_eq!(
                            key >> i & 1 == 1,
                            class(o) & KEY != 0,
                            "{o:#x} in {octets:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn words_are_read_as_octet_by_octet() {
        let line = b"NOTIFY=SUCCESS,FAILURE,DELAY X=ABCDEFGHIJKLMNOP,ABCDEFGHIJKLMNOPQ Y=a\x01b";
        for len in 0..=line.len() {
            for at in 0..=len + 1 {
                let octets = &line[..len];
                assert_eq!(
                    word_at(octets, at),
                    word_at_octetwise(octets, at),
                    "{len} {at}"
                );
            }
        }
    }

    /// `key_at` as the octet loop and `fold` read a key.
    fn key_at_octetwise(octets: &[u8], at: usize) -> (u128, usize) {
        let mut end = at;
        while octets.get(end).is_some_and(|&b| class(b) & KEY != 0) {
            end += 1;
        }
        (fold(octets.get(at..end).unwrap_or_default()), end)
    }

    #[test]
    fn keys_are_read_as_octet_by_octet() {
        let line =
            b"SIZE=1 body=8bit X-ABCDEFGHIJKLMNO=1 X-ABCDEFGHIJKLMNOP Y-ABCDEFGHIJKLMNOPQ \x80a";
        for len in 0..=line.len() {
            let octets = &line[..len];
            for at in 0..=len + 1 {
                assert_eq!(
                    key_at(octets, at),
                    key_at_octetwise(octets, at),
                    "{len} {at}"
                );
                let available = sixteen_at(octets, at).map(|(_, n)| n);
                assert_eq!(available, (at < len).then(|| (len - at).min(16)));
            }
        }
    }

    quickcheck! {
        fn key_at_is_octetwise(octets: Vec<u8>, at: u8) -> bool {
            let at = usize::from(at) % (octets.len() + 2);
            key_at(&octets, at) == key_at_octetwise(&octets, at)
        }

        fn eat_ignore_case_is_eq_ignore_ascii_case(octets: Vec<u8>, at: u8, which: u8) -> bool {
            let words: [&[u8]; 4] = [b"FROM:", b"TO:", b"postmaster>", b"LAST"];
            let word = words[usize::from(which) % words.len()];
            let mut octets = octets;
            let at = usize::from(at) % (octets.len() + 2);
            // Half the time the word itself at `at`, each letter's case
            // from the octet it displaces.
            if which % 2 == 0 && at <= octets.len() {
                let cased: Vec<u8> = word
                    .iter()
                    .zip(octets[at..].iter().chain([&0; 16]))
                    .map(|(w, o)| if o % 2 == 0 { w.to_ascii_uppercase() } else { *w })
                    .collect();
                octets.splice(at..at, cased);
            }
            let expected = octets
                .get(at..at + word.len())
                .is_some_and(|next| next.eq_ignore_ascii_case(word));
            let mut c = Cursor { octets: &octets, text: None, pos: at };
            let eaten = c.eat_ignore_case(word);
            eaten == expected && c.pos == at + if expected { word.len() } else { 0 }
        }

        fn word_at_is_octetwise(octets: Vec<u8>, at: u8) -> bool {
            let at = usize::from(at) % (octets.len() + 2);
            word_at(&octets, at) == word_at_octetwise(&octets, at)
        }

        fn never_panics(line: Vec<u8>, utf8: bool) -> bool {
            let _ = parse_command(&line, utf8);
            true
        }

        fn never_panics_near_valid(line: NearlyValid, utf8: bool) -> bool {
            if let Err(e) = parse_command(&line.0, utf8) {
                let _ = e.reply();
            }
            redisplay_is_stable(&line.0)
        }

        fn mailbox_display_round_trips(local: String, quote_heavy: Vec<bool>) -> bool {
            // Any local part without controls can be written out and read back.
            let mut local: String = local.chars().filter(|c| !c.is_control()).collect();
            local.extend(quote_heavy.iter().map(|&q| if q { '"' } else { '.' }));
            let m = mailbox(&local, "example.org");
            let line = format!("RCPT TO:<{m}>");
            let written_local = line.len() - "RCPT TO:<@example.org>".len();
            match parse_command(line.as_bytes(), true) {
                Ok(Command::Rcpt { forward_path: ForwardPath::Mailbox(n), .. }) => n == m,
                Err(CommandError::BadAddress(_)) => written_local > 64,
                _ => false,
            }
        }

        fn parsed_commands_render_and_parse_back(line: NearlyValid, utf8: bool) -> bool {
            match parse_command(&line.0, utf8) {
                Ok(command) => parse_command(command.to_string().as_bytes(), utf8) == Ok(command),
                Err(_) => true,
            }
        }

        fn xtext_round_trips(octets: Vec<u8>) -> bool {
            xtext_decode(xtext_encode(&octets).as_bytes()) == Some(octets)
        }
    }
}
