//! What a listener tells its server sessions: limits, timeouts, extensions and
//! TLS. One `ServerConfig` is shared (behind an `Arc`) by every connection of
//! a listener, or of one peer network on it.

use std::fmt;
use std::time::Duration;

use crate::tls::ServerTls;
use crate::wire::line::{MAX_COMMAND_LINE, MAX_TEXT_LINE};

/// What to do with plaintext that arrived in the same read as STARTTLS
/// (CVE-2011-0411 command injection), Momentum's `STARTTLS_Injection_Policy`.
///
/// Momentum's third value, `allow`, processes such bytes as if they had come
/// over TLS: that is the vulnerability itself, so Petrel has no such value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InjectionPolicy {
    /// Refuse STARTTLS and close the connection (the default).
    #[default]
    Reject,
    /// Discard the buffered plaintext and start TLS.
    Ignore,
}

/// A `STARTTLS_Injection_Policy` value Petrel does not take.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadInjectionPolicy {
    /// Momentum's `allow`, refused on purpose.
    Allow,
    /// Not a policy at all.
    Unknown(String),
}

impl fmt::Display for BadInjectionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allow => f.write_str(
                "STARTTLS_Injection_Policy \"allow\" is refused: it processes injected \
                 plaintext as if it had come over TLS (CVE-2011-0411); use \"reject\" or \"ignore\"",
            ),
            Self::Unknown(value) => write!(
                f,
                "unknown STARTTLS injection policy {value:?}: expected \"reject\" or \"ignore\""
            ),
        }
    }
}

impl std::error::Error for BadInjectionPolicy {}

impl std::str::FromStr for InjectionPolicy {
    type Err = BadInjectionPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "reject" => Ok(Self::Reject),
            "ignore" => Ok(Self::Ignore),
            "allow" => Err(BadInjectionPolicy::Allow),
            _ => Err(BadInjectionPolicy::Unknown(s.to_owned())),
        }
    }
}

/// Bounds on everything a peer can make the session hold or do. Defaults
/// follow RFC 5321 §4.5.3.1 where it names a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line, CRLF included (RFC 5321: 512).
    pub max_command_line: usize,
    /// Longest text line in DATA, CRLF included (RFC 5321: 1000); 0 means
    /// unlimited. Longer lines get the message rejected. BDAT bodies are
    /// binary and have no lines.
    pub max_text_line: usize,
    /// Largest message body in octets, advertised as SIZE.
    pub max_message_size: u64,
    /// Recipients accepted per transaction (RFC 5321 requires at least 100),
    /// advertised as `LIMITS RCPTMAX` (RFC 9422).
    pub max_recipients: usize,
    /// RCPTs past `max_recipients` answered `452 4.5.3` before each further
    /// one also counts towards `max_errors`: a client that sends the rest in
    /// a later transaction, as RFC 5321 §4.5.3.1.10 asks, is not punished,
    /// one that ignores the 452s still runs out of errors.
    pub max_recipient_overshoot: usize,
    /// Replies queued but not yet taken by `poll_transmit`: past this, the
    /// session stops reading pipelined commands until the driver drains it,
    /// so a peer that never reads its replies cannot grow memory.
    pub max_pipelined_replies: usize,
    /// Plaintext input held while the session waits for the application or
    /// for the driver to take body chunks; `wants_input` turns false past it.
    pub max_buffered_input: usize,
    /// Largest body chunk handed to the application in one event.
    pub body_chunk: usize,
    /// Body octets queued in events not yet polled before the session stops
    /// reading the body (backpressure).
    pub max_queued_body: usize,
    /// Syntax errors and unknown commands before the session says 421 and
    /// closes.
    pub max_errors: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_command_line: MAX_COMMAND_LINE,
            max_text_line: MAX_TEXT_LINE,
            max_message_size: 64 * 1024 * 1024,
            max_recipients: 1000,
            max_recipient_overshoot: 1000,
            max_pipelined_replies: 1000,
            max_buffered_input: 64 * 1024,
            body_chunk: 64 * 1024,
            max_queued_body: 256 * 1024,
            max_errors: 20,
        }
    }
}

/// Server timeouts. RFC 5321 §4.5.3.2.7 asks a server to wait at least five
/// minutes for each command and each piece of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Waiting for a command.
    pub command: Duration,
    /// Waiting for more of a DATA or BDAT body.
    pub data: Duration,
    /// From the `220` to STARTTLS until the handshake completes.
    pub tls_handshake: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            command: Duration::from_secs(300),
            data: Duration::from_secs(300),
            tls_handshake: Duration::from_secs(60),
        }
    }
}

/// Which optional ESMTP extensions the session offers. STARTTLS is offered
/// when `ServerConfig::tls` is set, SIZE always, ENHANCEDSTATUSCODES always.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extensions {
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 6152.
    pub eight_bit_mime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 3030 BDAT.
    pub chunking: bool,
    /// RFC 3030 BODY=BINARYMIME; only offered together with CHUNKING.
    pub binary_mime: bool,
    /// RFC 3461 delivery status notification parameters.
    pub dsn: bool,
    /// RFC 9422 `LIMITS RCPTMAX=max_recipients`, so that clients send no
    /// more recipients per transaction than we take.
    pub limits: bool,
}

impl Default for Extensions {
    fn default() -> Self {
        Self {
            pipelining: true,
            eight_bit_mime: true,
            smtputf8: true,
            chunking: true,
            binary_mime: true,
            dsn: true,
            limits: true,
        }
    }
}

/// Everything a server session needs to know about its listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our name, in the greeting and the EHLO reply.
    pub hostname: String,
    /// See [`Limits`].
    pub limits: Limits,
    /// See [`Timeouts`].
    pub timeouts: Timeouts,
    /// See [`Extensions`].
    pub extensions: Extensions,
    /// STARTTLS is offered only when this is set.
    pub tls: Option<ServerTls>,
    /// Before TLS, every command but EHLO, HELO, STARTTLS, NOOP and QUIT
    /// gets `530 5.7.0 Must issue a STARTTLS command first`.
    pub require_tls: bool,
    /// See [`InjectionPolicy`].
    pub injection_policy: InjectionPolicy,
}

/// A configuration that cannot work, found by [`ServerConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl ServerConfig {
    /// The longest command line accepted: RFC 5321's 512 octets (or the
    /// configured limit) raised by what the advertised extensions add to
    /// MAIL and RCPT (RFC 1870 SIZE +26, RFC 6152/3030 BODY, RFC 6531
    /// SMTPUTF8, RFC 3461 DSN +100 for MAIL and +500 for RCPT).
    pub fn command_line_limit(&self) -> usize {
        let dsn = if self.extensions.dsn { 500 } else { 0 };
        self.limits.max_command_line + 26 + 16 + 10 + dsn
    }

    /// Checks what the session cannot check for itself; a listener calls it
    /// once at configuration time.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        let problem = if limits.max_command_line < 64 {
            "max_command_line must be at least 64 octets (RFC 5321 says 512)"
        } else if limits.max_buffered_input < self.command_line_limit() {
            "max_buffered_input must hold at least one command line"
        } else if limits.body_chunk == 0 || limits.max_queued_body < limits.body_chunk {
            "body_chunk must be positive and max_queued_body at least one chunk"
        } else if limits.max_pipelined_replies == 0 {
            "max_pipelined_replies must be positive"
        } else if limits.max_message_size == 0 {
            "max_message_size must be positive (SIZE 0 would announce no limit)"
        } else if limits.max_recipients == 0 {
            "max_recipients must be positive (RFC 5321 asks for at least 100)"
        } else if self.require_tls && self.tls.is_none() {
            "require_tls needs a TLS certificate: no client could ever send mail"
        } else if self.extensions.smtputf8 && !self.extensions.eight_bit_mime {
            "SMTPUTF8 requires 8BITMIME (RFC 6531 §3.1)"
        } else {
            return Ok(());
        };
        Err(ConfigError(problem.to_owned()))
    }

    /// A configuration with RFC defaults and no TLS.
    pub fn new(hostname: impl Into<String>) -> Self {
        Self {
            hostname: hostname.into(),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            extensions: Extensions::default(),
            tls: None,
            require_tls: false,
            injection_policy: InjectionPolicy::default(),
        }
    }
}
