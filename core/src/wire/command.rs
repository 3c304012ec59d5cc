//! SMTP command parsing: RFC 5321 §4.1 with the parameters of SIZE (RFC 1870),
//! 8BITMIME (RFC 1652), CHUNKING/BINARYMIME (RFC 3030), DSN (RFC 3461) and
//! SMTPUTF8 (RFC 6531).
//!
//! [`parse_command`] takes one line without its CRLF, as framed by
//! [`LineFramer`](super::line::LineFramer), and returns a typed [`Command`] or
//! a [`CommandError`] that knows its reply.
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

use core::net::{Ipv4Addr, Ipv6Addr};
use std::fmt;

use super::reply::{EnhancedCode, Reply};

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

/// Parses one command line, without its CRLF. `utf8_rcpt`: whether the
/// current transaction's MAIL carried SMTPUTF8 (UTF-8 in RCPT paths is then
/// allowed). For MAIL, UTF-8 in the path is allowed only when the same command
/// has the SMTPUTF8 parameter.
pub fn parse_command(line: &[u8], utf8_rcpt: bool) -> Result<Command, CommandError> {
    if line.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n')) {
        return Err(CommandError::Syntax("NUL, CR or LF in command"));
    }
    let line = trim_end(line);
    let (verb, args) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (line.get(..i).unwrap_or_default(), line.get(i + 1..)),
        None => (line, None),
    };
    let verb = keyword(verb, &VERBS).ok_or(CommandError::Unrecognized)?;
    match verb {
        Verb::Mail => return parse_mail(args.unwrap_or_default()),
        Verb::Rcpt => return parse_rcpt(args.unwrap_or_default(), utf8_rcpt),
        _ => {}
    }
    let args = args.unwrap_or_default();
    let args = match std::str::from_utf8(args) {
        Ok(a) if a.is_ascii() => a.trim_start_matches(' '),
        _ => return Err(CommandError::Syntax("non-ASCII octet in command")),
    };
    let arg = (!args.is_empty()).then_some(args);
    let no_arg = |command| match arg {
        None => Ok(command),
        Some(_) => Err(CommandError::Syntax("no argument allowed")),
    };
    let required = || {
        arg.map(str::to_owned)
            .ok_or(CommandError::Syntax("argument required"))
    };
    match verb {
        // HELO's text after the domain is ignored, as RFC 821 clients send some.
        Verb::Helo => Ok(Command::Helo(client_domain(
            arg.and_then(|a| a.split(' ').next()),
        )?)),
        Verb::Ehlo if args.contains(' ') => Err(CommandError::Syntax("EHLO takes one argument")),
        Verb::Ehlo => Ok(Command::Ehlo(client_domain(arg)?)),
        Verb::Data => no_arg(Command::Data),
        Verb::Rset => no_arg(Command::Rset),
        Verb::Quit => no_arg(Command::Quit),
        Verb::StartTls => no_arg(Command::StartTls),
        Verb::Noop => Ok(Command::Noop),
        Verb::Vrfy => required().map(Command::Vrfy),
        Verb::Expn => required().map(Command::Expn),
        Verb::Help => Ok(Command::Help(arg.map(str::to_owned))),
        Verb::Bdat => parse_bdat(args),
        // Parsed above, with their UTF-8 rules.
        Verb::Mail | Verb::Rcpt => Err(CommandError::Unrecognized),
    }
}

/// The argument of HELO/EHLO: leniently, any printable non-space ASCII token,
/// since clients send bare host names, IP addresses without brackets and
/// worse, and refusing them gains nothing.
fn client_domain(arg: Option<&str>) -> Result<String, CommandError> {
    match arg {
        Some(a) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_graphic()) => Ok(a.to_owned()),
        Some(_) => Err(CommandError::Syntax("invalid domain")),
        None => Err(CommandError::Syntax("domain required")),
    }
}

fn parse_bdat(args: &str) -> Result<Command, CommandError> {
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let size = words
        .next()
        .and_then(|w| decimal(w.as_bytes()))
        .ok_or(CommandError::Syntax("BDAT needs a decimal chunk size"))?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::Syntax("BDAT takes a size and LAST")),
    };
    match words.next() {
        None => Ok(Command::Bdat { size, last }),
        Some(_) => Err(CommandError::Syntax("BDAT takes a size and LAST")),
    }
}

fn parse_mail(args: &[u8]) -> Result<Command, CommandError> {
    let rest =
        strip_prefix_ci(args, b"FROM:").ok_or(CommandError::Syntax("expected FROM:<address>"))?;
    let (path, rest) = parse_path(rest)?;
    let reverse_path = match path {
        Path::Null => ReversePath::Null,
        Path::Postmaster => return Err(CommandError::BadAddress("missing domain")),
        Path::Mailbox(m) => ReversePath::Mailbox(m),
    };
    let mut params = MailParams::default();
    for_each_param(rest, |name, value| {
        let bad = || CommandError::BadParameterValue(name.to_owned());
        match name {
            "SIZE" => params.size = Some(value.and_then(decimal).ok_or_else(bad)?),
            "BODY" => {
                let types = [
                    ("7BIT", BodyType::SevenBit),
                    ("8BITMIME", BodyType::EightBitMime),
                    ("BINARYMIME", BodyType::BinaryMime),
                ];
                params.body = Some(value.and_then(|v| keyword(v, &types)).ok_or_else(bad)?);
            }
            "SMTPUTF8" if value.is_none() => params.smtputf8 = true,
            "RET" => {
                let rets = [("FULL", Ret::Full), ("HDRS", Ret::Hdrs)];
                params.ret = Some(value.and_then(|v| keyword(v, &rets)).ok_or_else(bad)?);
            }
            "ENVID" => {
                // RFC 3461 §4.4: printable US-ASCII, at most 100 characters.
                let envid = value
                    .and_then(xtext_decode)
                    .filter(|id| id.len() <= 100 && id.iter().all(|&b| matches!(b, b' '..=b'~')))
                    .and_then(|id| String::from_utf8(id).ok())
                    .ok_or_else(bad)?;
                params.envid = Some(envid);
            }
            "SMTPUTF8" => return Err(bad()),
            _ => return Err(CommandError::UnknownParameter(name.to_owned())),
        }
        Ok(())
    })?;
    let utf8_path = matches!(&reverse_path, ReversePath::Mailbox(m) if m.needs_smtputf8());
    if utf8_path && !params.smtputf8 {
        return Err(CommandError::Utf8NotAllowed);
    }
    Ok(Command::Mail {
        reverse_path,
        params,
    })
}

fn parse_rcpt(args: &[u8], utf8: bool) -> Result<Command, CommandError> {
    let rest =
        strip_prefix_ci(args, b"TO:").ok_or(CommandError::Syntax("expected TO:<address>"))?;
    let (path, rest) = parse_path(rest)?;
    let forward_path = match path {
        Path::Null => return Err(CommandError::BadAddress("empty recipient")),
        Path::Postmaster => ForwardPath::Postmaster,
        Path::Mailbox(m) if m.needs_smtputf8() && !utf8 => {
            return Err(CommandError::Utf8NotAllowed)
        }
        Path::Mailbox(m) => ForwardPath::Mailbox(m),
    };
    let mut params = RcptParams::default();
    for_each_param(rest, |name, value| {
        let bad = || CommandError::BadParameterValue(name.to_owned());
        match name {
            "NOTIFY" => params.notify = Some(value.and_then(notify).ok_or_else(bad)?),
            "ORCPT" => params.orcpt = Some(value.and_then(orcpt).ok_or_else(bad)?),
            _ => return Err(CommandError::UnknownParameter(name.to_owned())),
        }
        Ok(())
    })?;
    Ok(Command::Rcpt {
        forward_path,
        params,
    })
}

/// `NEVER`, or a comma-separated list of `SUCCESS`, `FAILURE` and `DELAY`
/// (RFC 3461 §4.1).
fn notify(value: &[u8]) -> Option<Notify> {
    if value.eq_ignore_ascii_case(b"NEVER") {
        return Some(Notify::Never);
    }
    let conditions = [("SUCCESS", 0), ("FAILURE", 1), ("DELAY", 2)];
    let mut flags = [false; 3];
    for word in value.split(|&b| b == b',') {
        *flags.get_mut(keyword(word, &conditions)?)? = true;
    }
    let [success, failure, delay] = flags;
    Some(Notify::Some {
        success,
        failure,
        delay,
    })
}

/// `addr-type;xtext` (RFC 3461 §4.2), at most 500 characters decoded.
fn orcpt(value: &[u8]) -> Option<Orcpt> {
    let semicolon = value.iter().position(|&b| b == b';')?;
    let (addr_type, address) = value.split_at_checked(semicolon)?;
    let address = xtext_decode(address.get(1..)?)?;
    if addr_type.is_empty() || !addr_type.iter().all(|&b| is_atext(b) && b.is_ascii()) {
        return None;
    }
    if address.is_empty() || address.len() > 500 {
        return None;
    }
    Some(Orcpt {
        addr_type: String::from_utf8(addr_type.to_vec()).ok()?,
        address: String::from_utf8(address).ok()?,
    })
}

/// Decodes RFC 3461 xtext: printable ASCII except `+` and `=`, and `+XX` hex
/// escapes (lower-case hex digits are accepted too). `None` if malformed.
pub fn xtext_decode(xtext: &[u8]) -> Option<Vec<u8>> {
    fn hex(b: Option<&u8>) -> Option<u8> {
        b.and_then(|&b| char::from(b).to_digit(16))
            .and_then(|d| u8::try_from(d).ok())
    }
    let mut out = Vec::with_capacity(xtext.len());
    let mut octets = xtext.iter();
    while let Some(&b) = octets.next() {
        match b {
            b'+' => out.push((hex(octets.next())? << 4) | hex(octets.next())?),
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

/// Splits the text after a path into `KEY[=VALUE]` parameters (RFC 5321
/// §4.1.2, esmtp-param), rejecting bad syntax and duplicates, and hands each
/// to `apply` with the key upper-cased.
fn for_each_param<'a>(
    rest: &'a [u8],
    mut apply: impl FnMut(&str, Option<&'a [u8]>) -> Result<(), CommandError>,
) -> Result<(), CommandError> {
    if !rest.is_empty() && !rest.starts_with(b" ") {
        return Err(CommandError::Syntax("expected a space after the address"));
    }
    let mut seen: Vec<String> = Vec::new();
    for param in rest.split(|&b| b == b' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (param.get(..i).unwrap_or_default(), param.get(i + 1..)),
            None => (param, None),
        };
        let key_ok = key.first().is_some_and(u8::is_ascii_alphanumeric)
            && key.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-');
        if !key_ok {
            return Err(CommandError::Syntax("bad parameter"));
        }
        let name = String::from_utf8_lossy(key).to_ascii_uppercase();
        if seen.contains(&name) {
            return Err(CommandError::DuplicateParameter(name));
        }
        // esmtp-value: one or more octets other than "=", controls and space.
        if value
            .is_some_and(|v| v.is_empty() || v.iter().any(|&b| b == b'=' || b < 0x21 || b == 0x7f))
        {
            return Err(CommandError::BadParameterValue(name));
        }
        apply(&name, value)?;
        seen.push(name);
    }
    Ok(())
}

/// A parsed path, before the caller decides which forms it allows.
enum Path {
    Null,
    Postmaster,
    Mailbox(Mailbox),
}

/// Parses `<...>` at the front of `input`, returning it and what follows.
/// UTF-8 is accepted here; the caller decides whether it was allowed.
fn parse_path(input: &[u8]) -> Result<(Path, &[u8]), CommandError> {
    // One space after the colon is a common client quirk.
    let input = input.strip_prefix(b" ").unwrap_or(input);
    let mut c = Cursor(input);
    if !c.eat(b'<') {
        return Err(CommandError::BadAddress(
            "address must be in angle brackets",
        ));
    }
    if c.eat(b'>') {
        return Ok((Path::Null, c.0));
    }
    if let Some(rest) = strip_prefix_ci(c.0, b"postmaster>") {
        return Ok((Path::Postmaster, rest));
    }
    if c.peek() == Some(b'@') {
        // A source route, "@a,@b:": checked and discarded (RFC 5321 §4.1.2).
        loop {
            if !c.eat(b'@') {
                return Err(CommandError::BadAddress("bad source route"));
            }
            domain(&mut c)?;
            if c.eat(b':') {
                break;
            }
            if !c.eat(b',') {
                return Err(CommandError::BadAddress("bad source route"));
            }
        }
    }
    let local_part = local_part(&mut c)?;
    if !c.eat(b'@') {
        return Err(CommandError::BadAddress("missing domain"));
    }
    let domain = host(&mut c)?;
    if !c.eat(b'>') {
        return Err(CommandError::BadAddress("unexpected character in address"));
    }
    if input.len() - c.0.len() > 256 {
        return Err(CommandError::BadAddress("path longer than 256 octets"));
    }
    Ok((Path::Mailbox(Mailbox { local_part, domain }), c.0))
}

/// Dot-string or quoted-string (RFC 5321 §4.1.2), at most 64 octets.
fn local_part(c: &mut Cursor<'_>) -> Result<String, CommandError> {
    let start = c.0.len();
    let local = if c.eat(b'"') {
        let mut local = Vec::new();
        loop {
            match c.next() {
                Some(b'"') => break,
                Some(b'\\') => match c.next() {
                    Some(b @ b' '..=b'~') => local.push(b),
                    _ => return Err(CommandError::BadAddress("bad quoted pair")),
                },
                // qtextSMTP, plus UTF-8 (RFC 6531 §3.3).
                Some(b) if b >= b' ' && b != 0x7f => local.push(b),
                Some(_) => return Err(CommandError::BadAddress("control character in local part")),
                None => return Err(CommandError::BadAddress("unterminated quoted string")),
            }
        }
        local
    } else {
        let local = c.take_while(|b| is_atext(b) || b == b'.');
        if local.split(|&b| b == b'.').any(<[u8]>::is_empty) {
            return Err(CommandError::BadAddress("bad local part"));
        }
        local.to_vec()
    };
    if start - c.0.len() > 64 {
        return Err(CommandError::BadAddress("local part longer than 64 octets"));
    }
    String::from_utf8(local).map_err(|_| CommandError::BadAddress("invalid UTF-8"))
}

/// A domain or an address literal (RFC 5321 §4.1.3).
fn host(c: &mut Cursor<'_>) -> Result<Host, CommandError> {
    if !c.eat(b'[') {
        return domain(c).map(Host::Domain);
    }
    let bad = CommandError::BadAddress("bad address literal");
    // dcontent: printable ASCII except "[", "\" and "]".
    let literal = c.take_while(|b| matches!(b, b'!'..=b'Z' | b'^'..=b'~'));
    if !c.eat(b']') || literal.len() > 253 {
        return Err(bad);
    }
    let literal = std::str::from_utf8(literal).map_err(|_| bad.clone())?;
    if let Ok(ip) = literal.parse() {
        return Ok(Host::Ipv4(ip));
    }
    match literal.split_once(':') {
        Some((tag, ip)) if tag.eq_ignore_ascii_case("IPv6") => ip
            .parse()
            .map(Host::Ipv6)
            .map_err(|_| CommandError::BadAddress("bad IPv6 address literal")),
        Some((tag, content)) if is_label(tag.as_bytes()) && !content.is_empty() => {
            Ok(Host::General {
                tag: tag.to_owned(),
                content: content.to_owned(),
            })
        }
        _ => Err(bad),
    }
}

/// A domain name of LDH labels; non-ASCII octets are allowed in labels
/// (U-labels, RFC 6531 §3.3) and UTF-8 validity is checked.
fn domain(c: &mut Cursor<'_>) -> Result<String, CommandError> {
    let domain = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b >= 0x80);
    if domain.is_empty() {
        return Err(CommandError::BadAddress("missing domain"));
    }
    if domain.len() > 255 {
        return Err(CommandError::BadAddress("domain longer than 255 octets"));
    }
    if !domain.split(|&b| b == b'.').all(is_label) {
        return Err(CommandError::BadAddress("bad domain"));
    }
    String::from_utf8(domain.to_vec()).map_err(|_| CommandError::BadAddress("invalid UTF-8"))
}

/// A label: letters, digits, hyphens (and UTF-8), not starting or ending with
/// a hyphen; an ASCII label has at most 63 octets (RFC 1035 §2.3.4).
fn is_label(label: &[u8]) -> bool {
    let hyphen_at_end = label.first() == Some(&b'-') || label.last() == Some(&b'-');
    let fits = label.len() <= 63 || !label.is_ascii();
    !label.is_empty()
        && !hyphen_at_end
        && fits
        && label
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
}

/// atext (RFC 5322 §3.2.3), plus UTF-8 octets (RFC 6531 §3.3).
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

/// The value whose name matches `word`, ignoring ASCII case.
fn keyword<T: Copy>(word: &[u8], table: &[(&str, T)]) -> Option<T> {
    table
        .iter()
        .find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(word))
        .map(|&(_, value)| value)
}

/// A non-empty string of decimal digits whose value fits in a u64.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then_some(())
            .and_then(|()| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
    })
}

fn strip_prefix_ci<'a>(input: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = input.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

fn trim_end(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    line.get(..end).unwrap_or_default()
}

/// The unparsed rest of a path.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn eat(&mut self, b: u8) -> bool {
        let matched = self.peek() == Some(b);
        if matched {
            self.next();
        }
        matched
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let end = self.0.iter().position(|&b| !f(b)).unwrap_or(self.0.len());
        let (taken, rest) = self.0.split_at_checked(end).unwrap_or((self.0, &[]));
        self.0 = rest;
        taken
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

    quickcheck! {
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
