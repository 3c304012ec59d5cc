//! The owned command parser as it was before the borrowed one replaced it
//! (commit b9101df), kept verbatim as the oracle of the equivalence checks:
//! `parse_command_ref(line).map(into_owned)` must give what this gives.
//! Not to be improved: its behaviour is the specification. Changed only
//! to compile outside the crate (public items imported, a wildcard arm).

use petrel_core::wire::command::{
    xtext_decode, BodyType, Command, CommandError, ForwardPath, Host, MailParams, Mailbox, Notify,
    Orcpt, RcptParams, Ret, ReversePath, Verb,
};

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
        // Parsed above, with their UTF-8 rules (and `Verb` is
        // non-exhaustive outside its crate).
        _ => Err(CommandError::Unrecognized),
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
