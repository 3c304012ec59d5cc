//! Every option Petrel knows: its canonical (Momentum) name, the scopes it
//! is valid in, its type, its default and a line of documentation; and
//! the conversion of a written value into a typed [`OptionValue`].
//!
//! Values Petrel cannot honour are refused here, each with its reason,
//! so that nothing in a configuration is silently ignored.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use petrel_core::client::tls_policy::TlsMode;
use petrel_core::server::InjectionPolicy;
use petrel_core::tls::{TlsEngine, TlsVerify};
use petrel_runtime_common::listen::Network;

use super::policy::{DomainPattern, HostPort, MaxRetries, Route, Runtime};
use super::syntax::{Value, ValueKind};
use super::Diagnostic;

/// A kind of scope (stanza) Petrel implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeKind {
    /// Outside every stanza.
    Global,
    /// `Domain "name" {` (also `/regex/`).
    Domain,
    /// `Binding "name" {`.
    Binding,
    /// `Binding_Group "name" {`.
    BindingGroup,
    /// `ESMTP_Listener {`.
    EsmtpListener,
    /// `Listen "addr:port" {` inside `ESMTP_Listener`.
    Listen,
    /// `Peer "cidr" {` inside `ESMTP_Listener` or `Listen`.
    Peer,
    /// `Pathway "name" {`.
    Pathway,
    /// `Pathway_Group "name" {`.
    PathwayGroup,
}

impl ScopeKind {
    /// Every scope, outbound ones first.
    pub const ALL: [ScopeKind; 9] = [
        ScopeKind::Global,
        ScopeKind::Domain,
        ScopeKind::BindingGroup,
        ScopeKind::Binding,
        ScopeKind::EsmtpListener,
        ScopeKind::Listen,
        ScopeKind::Peer,
        ScopeKind::PathwayGroup,
        ScopeKind::Pathway,
    ];

    /// The keyword as Momentum's documentation spells it.
    pub fn keyword(self) -> &'static str {
        match self {
            ScopeKind::Global => "global",
            ScopeKind::Domain => "domain",
            ScopeKind::Binding => "binding",
            ScopeKind::BindingGroup => "binding_group",
            ScopeKind::EsmtpListener => "ESMTP_Listener",
            ScopeKind::Listen => "Listen",
            ScopeKind::Peer => "Peer",
            ScopeKind::Pathway => "pathway",
            ScopeKind::PathwayGroup => "pathway_group",
        }
    }

    /// The scope a stanza keyword opens (case-insensitive); `None` for
    /// `global` (not a stanza) and anything Petrel does not implement.
    pub fn from_keyword(keyword: &str) -> Option<Self> {
        ScopeKind::ALL
            .into_iter()
            .filter(|k| *k != ScopeKind::Global)
            .find(|k| k.keyword().eq_ignore_ascii_case(keyword))
    }

    /// The stanzas that may appear directly inside this one.
    pub fn children(self) -> &'static [ScopeKind] {
        match self {
            ScopeKind::Global => &[
                ScopeKind::Domain,
                ScopeKind::Binding,
                ScopeKind::BindingGroup,
                ScopeKind::EsmtpListener,
                ScopeKind::Pathway,
                ScopeKind::PathwayGroup,
            ],
            ScopeKind::BindingGroup => &[ScopeKind::Binding, ScopeKind::Domain],
            ScopeKind::Binding => &[ScopeKind::Domain],
            ScopeKind::EsmtpListener => &[ScopeKind::Listen, ScopeKind::Peer],
            ScopeKind::Listen => &[ScopeKind::Peer],
            ScopeKind::PathwayGroup => &[ScopeKind::Pathway],
            ScopeKind::Domain | ScopeKind::Peer | ScopeKind::Pathway => &[],
        }
    }

    /// Whether the stanza takes an argument (all but `ESMTP_Listener`).
    pub fn takes_argument(self) -> bool {
        !matches!(self, ScopeKind::Global | ScopeKind::EsmtpListener)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for ScopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes(u16);

impl Scopes {
    const fn of(kinds: &[ScopeKind]) -> Self {
        let mut bits = 0;
        let mut rest = kinds;
        while let [first, tail @ ..] = rest {
            // `ScopeKind::bit` is not const; this is the same shift.
            bits |= 1 << (*first as u16);
            rest = tail;
        }
        Scopes(bits)
    }

    const fn union(self, other: Scopes) -> Self {
        Scopes(self.0 | other.0)
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: ScopeKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The scopes, in [`ScopeKind::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = ScopeKind> {
        ScopeKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }

    /// `global, domain, …` for messages.
    pub fn list(self) -> String {
        self.iter()
            .map(ScopeKind::keyword)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

const GLOBAL: Scopes = Scopes::of(&[ScopeKind::Global]);
/// Where outbound options are valid (Momentum's scopes for them).
const OUTBOUND: Scopes = Scopes::of(&[
    ScopeKind::Global,
    ScopeKind::Domain,
    ScopeKind::BindingGroup,
    ScopeKind::Binding,
]);
/// Where inbound options are valid.
const INBOUND: Scopes = Scopes::of(&[
    ScopeKind::EsmtpListener,
    ScopeKind::Listen,
    ScopeKind::Peer,
    ScopeKind::Pathway,
    ScopeKind::PathwayGroup,
]);
const INBOUND_AND_GLOBAL: Scopes = INBOUND.union(GLOBAL);
const BOTH: Scopes = OUTBOUND.union(INBOUND);

/// An option's type: how its value is written and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`), quoted or not.
    Bool,
    /// A whole number in a range.
    Count {
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A whole number at least 1 where Momentum's `0` means "no limit",
    /// which Petrel refuses: it always has a limit here.
    Limit,
    /// Seconds, as a whole number (Momentum's durations are seconds).
    Seconds,
    /// A TCP port.
    Port,
    /// Free text.
    Text,
    /// A file or directory; relative to the file it is written in.
    Path,
    /// The name of a binding or pathway.
    Name,
    /// `no`, `ifavailable`, `required`.
    TlsMode,
    /// `no`, `ca`, `host`, `optional`.
    TlsVerify,
    /// `rustls`, `openssl` (`gnutls` refused).
    TlsEngine,
    /// `reject`, `ignore` (`allow` refused).
    Injection,
    /// `tokio`, `mio`, `smol`.
    Runtime,
    /// `none` (`require` refused).
    VerifyMode,
    /// `DEFAULT` only.
    Ciphers,
    /// Momentum's `+ALL:-SSLv3…`, which must leave TLS 1.2 and 1.3 on.
    Protocols,
    /// Any value refused: client certificates are not verified.
    ClientCa,
    /// A list of SMTP extensions Petrel implements.
    Extensions,
    /// A list of addresses and CIDR networks.
    Networks,
    /// A list of domains, `*.example.com` for subdomains.
    Domains,
    /// An IP address.
    Ip,
    /// A number of retries, `auto` or `none`.
    MaxRetries,
    /// `host`, `host:port`, `[v6]:port`.
    HostPort,
    /// A list of routes: `smtp://host[:port][?pref=N]` or `__mx__`.
    Routes,
    /// A list of name server addresses: `address`, `address:port`,
    /// `[IPv6]:port`; port 53 when none is given.
    NameServers,
}

/// Where an option comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Momentum has it.
    Momentum,
    /// Petrel's own.
    Petrel,
}

/// An option's value when no scope sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// This value, written as in a configuration file.
    Value(&'static str),
    /// No value; the text says what that means.
    Unset(&'static str),
}

/// One option.
#[derive(Debug)]
pub struct OptionSpec {
    /// The canonical name (Momentum's spelling, where it has the option).
    pub name: &'static str,
    /// Other names accepted for the same setting.
    pub aliases: &'static [&'static str],
    /// Where Petrel accepts it.
    pub scopes: Scopes,
    /// Why Petrel refuses scopes where Momentum accepts it, if it does.
    pub scope_note: Option<&'static str>,
    /// The type.
    pub kind: Kind,
    /// The default.
    pub default: DefaultValue,
    /// Momentum's or Petrel's own.
    pub origin: Origin,
    /// One line for the reference.
    pub doc: &'static str,
}

impl OptionSpec {
    /// Whether `name` names this option (case-insensitive).
    pub fn is_named(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }

    /// The default as a typed value, if there is one.
    pub fn default_value(&self) -> Option<OptionValue> {
        match self.default {
            DefaultValue::Value(text) => parse_text(self.kind, text).ok(),
            DefaultValue::Unset(_) => None,
        }
    }
}

macro_rules! option {
    ($name:literal, $scopes:expr, $kind:expr, $default:expr, $origin:ident, $doc:literal) => {
        OptionSpec {
            name: $name,
            aliases: &[],
            scopes: $scopes,
            scope_note: None,
            kind: $kind,
            default: $default,
            origin: Origin::$origin,
            doc: $doc,
        }
    };
}

use DefaultValue::{Unset, Value as Is};

/// Every option Petrel knows.
pub static OPTIONS: &[OptionSpec] = &[
    // Outbound.
    option!("TLS", OUTBOUND, Kind::TlsMode, Is("ifavailable"), Momentum,
        "STARTTLS on delivery: no, ifavailable or required (Momentum's default: no)"),
    option!("TLS_Ifavailable_Fallback", OUTBOUND, Kind::Bool, Is("true"), Momentum,
        "under ifavailable, after a failed STARTTLS: reconnect in plaintext (true) or defer (false)"),
    option!("TLS_Verify", OUTBOUND, Kind::TlsVerify, Is("no"), Momentum,
        "server certificate check on delivery: no, ca, host or optional"),
    option!("TLS_CA", OUTBOUND, Kind::Path, Unset("no CA: ca and host reject every certificate"), Momentum,
        "PEM bundle of the CAs trusted on delivery"),
    option!("TLS_Certificate", BOTH.union(GLOBAL), Kind::Path, Unset("none"), Momentum,
        "PEM certificate chain: the listener's, or the client certificate offered on delivery"),
    option!("TLS_Key", BOTH.union(GLOBAL), Kind::Path, Unset("none"), Momentum,
        "PEM private key of TLS_Certificate"),
    option!("TLS_Protocols", BOTH.union(GLOBAL), Kind::Protocols, Is("+TLSv1.2:+TLSv1.3"), Momentum,
        "TLS versions; must leave TLS 1.2 and 1.3 enabled, the only ones the engines speak"),
    option!("TLS_Ciphers", BOTH.union(GLOBAL), Kind::Ciphers, Is("DEFAULT"), Momentum,
        "cipher list; only DEFAULT (the engine's own list) is accepted"),
    option!("Retry_Interval", OUTBOUND, Kind::Seconds, Is("1200"), Momentum,
        "seconds before the first retry; doubled after each failure"),
    option!("Max_Retry_Interval", OUTBOUND, Kind::Seconds, Is("43200"), Momentum,
        "the longest interval between retries, in seconds"),
    option!("Max_Retries", OUTBOUND, Kind::MaxRetries, Is("auto"), Momentum,
        "retries before a message fails: a number, auto (from Message_Expiration) or none"),
    option!("Message_Expiration", OUTBOUND, Kind::Seconds, Is("86400"), Momentum,
        "seconds a message may stay in the queue before it bounces"),
    option!("Max_Outbound_Connections", OUTBOUND, Kind::Count { min: 1, max: 1_000_000 }, Is("32"), Momentum,
        "connections at once to one domain"),
    option!("Max_Deliveries_Per_Connection", OUTBOUND, Kind::Count { min: 0, max: u32::MAX as u64 }, Is("0"), Momentum,
        "messages sent over one connection before it is closed; 0: no limit"),
    option!("Bind_Address", Scopes::of(&[ScopeKind::Global, ScopeKind::BindingGroup, ScopeKind::Binding]),
        Kind::Ip, Unset("chosen by the system"), Momentum,
        "source address of outbound connections"),
    option!("EHLO_Hostname", OUTBOUND, Kind::Text, Is("__hostname__"), Momentum,
        "the name sent in EHLO; __hostname__ is Hostname"),
    option!("Gateway", OUTBOUND, Kind::HostPort, Unset("none: MX lookup"), Momentum,
        "send everything to this host (host, host:port or [IPv6]:port) instead of the MX"),
    option!("Routes", Scopes::of(&[ScopeKind::Global, ScopeKind::Domain]), Kind::Routes, Unset("none: MX lookup"), Momentum,
        "hosts to deliver to, in order: smtp://host[:port][?pref=N] or __mx__"),
    option!("Remote_SMTP_Port", OUTBOUND, Kind::Port, Is("25"), Momentum,
        "the port delivered to"),
    option!("Generate_Bounces", OUTBOUND, Kind::Bool, Is("true"), Momentum,
        "send a delivery status notification when a message fails"),
    option!("Suspend_Delivery", OUTBOUND, Kind::Bool, Is("false"), Momentum,
        "no delivery is attempted; messages wait (and still expire) until it is false again at a restart"),
    option!("Delivery_Response_Timeout", OUTBOUND, Kind::Seconds, Is("300"), Momentum,
        "seconds to wait for each reply of a remote server (greeting, EHLO, STARTTLS, MAIL, RCPT, DATA); the TLS handshake waits at most 60"),
    // Inbound.
    option!("TLS_Client_CA", INBOUND_AND_GLOBAL, Kind::ClientCa, Unset("none: no client certificate is asked for"), Momentum,
        "refused: Petrel's listeners do not verify client certificates"),
    option!("TLS_Verify_Mode", INBOUND, Kind::VerifyMode, Unset("no client certificate is asked for"), Momentum,
        "client certificates: only none is accepted"),
    option!("TLS_Allow_Renegotiation", INBOUND, Kind::Bool, Is("true"), Momentum,
        "allow secure client-initiated TLS 1.2 renegotiation (openssl engine only)"),
    option!("TLS_Max_Renegotiations", INBOUND, Kind::Count { min: 0, max: 1000 }, Is("3"), Petrel,
        "renegotiation attempts per connection, refused ones included, before it is closed"),
    option!("TLS_Self_Signed", INBOUND_AND_GLOBAL, Kind::Bool, Is("false"), Petrel,
        "make a self-signed certificate for Hostname at start when no TLS_Certificate is set"),
    option!("SMTP_Extensions", INBOUND, Kind::Extensions,
        Is("( ENHANCEDSTATUSCODES PIPELINING 8BITMIME SMTPUTF8 CHUNKING DSN STARTTLS SIZE )"), Momentum,
        "extensions offered; STARTTLS only when a certificate is set too"),
    option!("STARTTLS_Injection_Policy", INBOUND, Kind::Injection, Is("reject"), Momentum,
        "plaintext pipelined after STARTTLS: reject (close) or ignore (discard); allow is refused"),
    option!("Relay_Hosts", INBOUND_AND_GLOBAL, Kind::Networks, Is("( )"), Momentum,
        "clients (addresses, CIDR networks) that may relay to any domain"),
    option!("Open_Relay", INBOUND, Kind::Bool, Is("false"), Momentum,
        "every client may relay to any domain"),
    option!("Relay_Domains", Scopes::of(&[ScopeKind::Global, ScopeKind::Pathway, ScopeKind::PathwayGroup]),
        Kind::Domains, Is("( )"), Momentum,
        "domains anyone may send to; *.example.com for its subdomains"),
    option!("Max_Message_Size", INBOUND, Kind::Limit, Is("67108864"), Momentum,
        "largest message in octets, announced as SIZE (Momentum's default 0, no limit, is refused)"),
    option!("Max_Recipients_Per_Message", INBOUND, Kind::Limit, Is("1000"), Momentum,
        "recipients per transaction; more get 452 4.5.3"),
    option!("Idle_Time", INBOUND, Kind::Seconds, Is("300"), Momentum,
        "seconds a session may wait for a command or for data"),
    option!("Enable", Scopes::of(&[ScopeKind::EsmtpListener, ScopeKind::Listen]), Kind::Bool, Is("true"), Momentum,
        "false: do not listen"),
    OptionSpec {
        name: "Listener_Sessions",
        aliases: &[],
        scopes: Scopes::of(&[ScopeKind::EsmtpListener]),
        scope_note: Some("Petrel limits sessions over the whole ESMTP_Listener only"),
        kind: Kind::Count { min: 0, max: u32::MAX as u64 },
        default: Is("1000"),
        origin: Origin::Momentum,
        doc: "sessions at once over all listeners; 0: no limit (Momentum's default)",
    },
    option!("Listen_Backlog", Scopes::of(&[ScopeKind::EsmtpListener, ScopeKind::Listen]),
        Kind::Count { min: 1, max: 65535 }, Is("1024"), Momentum,
        "connections the kernel queues before they are accepted (Momentum's default: 500)"),
    option!("Binding", INBOUND, Kind::Name, Is("default"), Momentum,
        "the outbound binding of mail received here"),
    option!("Pathway", Scopes::of(&[ScopeKind::EsmtpListener, ScopeKind::Listen, ScopeKind::Peer]),
        Kind::Name, Unset("none"), Momentum,
        "the pathway whose settings apply here"),
    option!("Received_Hostname", INBOUND, Kind::Text, Unset("Hostname"), Momentum,
        "the name in the banner and in Received: headers"),
    option!("Max_Connections_Per_IP", INBOUND, Kind::Count { min: 0, max: u32::MAX as u64 }, Is("50"), Petrel,
        "connections at once from one client address; 0: no limit"),
    // Global only.
    option!("TLS_Engine", GLOBAL, Kind::TlsEngine, Is("rustls"), Momentum,
        "the TLS library: rustls or openssl (Momentum's default: openssl)"),
    OptionSpec {
        name: "spoolbase",
        aliases: &["Spool_Directory"],
        scopes: GLOBAL,
        scope_note: None,
        kind: Kind::Path,
        default: Is("/var/spool/petrel"),
        origin: Origin::Momentum,
        doc: "the spool directory (also spelt Spool_Directory)",
    },
    option!("Runtime", GLOBAL, Kind::Runtime, Is("tokio"), Petrel,
        "the runtime driving the listeners: tokio, mio or smol"),
    option!("Log_File", GLOBAL, Kind::Path, Unset("standard output"), Petrel,
        "where the JSON-lines log goes"),
    option!("Hostname", GLOBAL, Kind::Text, Unset("the system's host name"), Momentum,
        "this host's name, for the banner, Received: and EHLO"),
    option!("Name_Servers", GLOBAL, Kind::NameServers, Unset("the system's (/etc/resolv.conf)"), Petrel,
        "DNS servers for MX and address lookups: address, address:port or [IPv6]:port (port 53 by default)"),
];

/// The option `name` names (case-insensitive, aliases included).
pub fn find(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.is_named(name))
}

/// Momentum options Petrel does not implement, lower case: named as such
/// in errors, so that an operator moving from Momentum sees at once that
/// the option exists but is not supported, not that it is misspelt.
const MOMENTUM_OPTIONS: &[&str] = &[
    "accept_queue_backlog",
    "allow_ip_literal",
    "allow_null_envelope_sender",
    "allow_trailing_whitespace_in_commands",
    "authcrammd5parameters",
    "authdigestmd5parameters",
    "authloginparameters",
    "authplainparameters",
    "banner_hostname",
    "blackhole",
    "body_timeout",
    "bounce_behavior",
    "bounce_domains",
    "click_tracking_enabled",
    "concurrency",
    "connect_timeout",
    "context",
    "data_timeout",
    "default_binding",
    "delivery_method",
    "disable_nagle_algorithm",
    "domain_for_unqualified_recipient_addresses",
    "domain_for_unqualified_sender_address",
    "ehlo_timeout",
    "enable_authentication",
    "events_per_iter",
    "force_fsync",
    "generate_delay_dsn",
    "host_failure_retry",
    "idle_timeout",
    "keep_message_dicts_in_memory",
    "mailfrom_timeout",
    "max_receptions_per_connection",
    "max_recipients_per_batch",
    "max_recipients_per_connection",
    "max_resident_active_queue",
    "max_resident_active_queue_size",
    "mcmt_reception",
    "never_retry",
    "open_tracking_enabled",
    "opendkim_sign",
    "outbound_smtp_auth_pass",
    "outbound_smtp_auth_type",
    "outbound_smtp_auth_user",
    "outbound_throttle_connections",
    "outbound_throttle_messages",
    "pool_name",
    "rcptto_timeout",
    "relay_for_sending_domains",
    "require_ehlo",
    "send_8bitmime",
    "service_sessions",
    "spool_mode",
    "static_banner",
    "tcp_recv_buffer_size",
    "tcp_send_buffer_size",
    "tls_dhparams_file",
    "tls_ec_curve_names",
    "tls_enable_dhe_ciphers",
    "tls_verified_peer_can_relay",
    "tlsv13_ciphersuites",
    "use_ipv6",
    "use_ssl",
    "xclient",
];

/// Whether `name` is a Momentum option Petrel does not implement.
pub fn is_momentum_option(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    MOMENTUM_OPTIONS.contains(&lower.as_str()) || lower.starts_with("ha_proxy_")
}

/// Momentum modules (loaded with a stanza of their name).
const MOMENTUM_MODULES: &[&str] = &[
    "adaptive",
    "alias",
    "antivirus",
    "apn",
    "apn_logger",
    "auth_ds",
    "auth_radius",
    "bounce_classifier",
    "bounce_logger",
    "cidrdb",
    "csapi",
    "custom_logger",
    "datasource",
    "dkim_validate",
    "ds_core",
    "ec_logger",
    "ecstream_logger",
    "fbl",
    "gcm",
    "ha_proxy_client",
    "inbound_audit",
    "mailloop",
    "maildir",
    "mime_parsing",
    "mtasts",
    "opendkim",
    "outbound_audit",
    "outbound_smtp_auth",
    "pipe",
    "scriptlet",
    "sieve",
    "smtpapi",
    "spf",
    "spf_macros",
    "tls_macros",
    "url_tracking",
    "cluster",
    "xmpp",
];

/// Momentum stanzas that are not modules.
const MOMENTUM_STANZAS: &[&str] = &[
    "adaptive_sweep_rule",
    "authorization",
    "control_listener",
    "debug_flags",
    "eccluster_listener",
    "ecstream_listener",
    "eventloop",
    "host",
    "http_listener",
    "logs",
    "msgcserver_listener",
    "security",
    "snmp",
    "snmp_traps",
    "threadpool",
    "xmpp_listener",
];

/// How an error names a stanza keyword Petrel does not implement.
pub fn unknown_stanza(keyword: &str) -> String {
    let lower = keyword.to_ascii_lowercase();
    if MOMENTUM_MODULES.contains(&lower.as_str()) {
        format!("Momentum module \"{keyword}\" is not implemented by Petrel")
    } else if MOMENTUM_STANZAS.contains(&lower.as_str()) {
        format!("Momentum stanza \"{keyword}\" is not implemented by Petrel")
    } else {
        format!("unknown stanza \"{keyword}\"")
    }
}

/// An SMTP extension `SMTP_Extensions` may list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extension {
    /// Always offered by Petrel's core; accepted.
    EnhancedStatusCodes,
    /// RFC 2920.
    Pipelining,
    /// RFC 6152.
    EightBitMime,
    /// RFC 6531.
    SmtpUtf8,
    /// RFC 3030.
    Chunking,
    /// RFC 3461.
    Dsn,
    /// RFC 3207; offered only with a certificate.
    StartTls,
    /// RFC 1870; always offered; accepted.
    Size,
}

impl Extension {
    const ALL: [Extension; 8] = [
        Extension::EnhancedStatusCodes,
        Extension::Pipelining,
        Extension::EightBitMime,
        Extension::SmtpUtf8,
        Extension::Chunking,
        Extension::Dsn,
        Extension::StartTls,
        Extension::Size,
    ];

    /// The EHLO keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Extension::EnhancedStatusCodes => "ENHANCEDSTATUSCODES",
            Extension::Pipelining => "PIPELINING",
            Extension::EightBitMime => "8BITMIME",
            Extension::SmtpUtf8 => "SMTPUTF8",
            Extension::Chunking => "CHUNKING",
            Extension::Dsn => "DSN",
            Extension::StartTls => "STARTTLS",
            Extension::Size => "SIZE",
        }
    }
}

/// A typed option value.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// A boolean.
    Bool(bool),
    /// A number (counts, seconds, ports, octets).
    Number(u64),
    /// Text: strings, names, paths, and the accepted TLS_Ciphers,
    /// TLS_Protocols and TLS_Verify_Mode values, as written.
    Text(String),
    /// `TLS`.
    Mode(TlsMode),
    /// `TLS_Verify`.
    Verify(TlsVerify),
    /// `TLS_Engine`.
    Engine(TlsEngine),
    /// `STARTTLS_Injection_Policy`.
    Injection(InjectionPolicy),
    /// `Runtime`.
    Runtime(Runtime),
    /// `SMTP_Extensions`.
    Extensions(Vec<Extension>),
    /// `Relay_Hosts`, each as written.
    Networks(Vec<(String, Network)>),
    /// `Relay_Domains`, each as written.
    Domains(Vec<(String, DomainPattern)>),
    /// `Bind_Address`.
    Ip(IpAddr),
    /// `Max_Retries`.
    MaxRetries(MaxRetries),
    /// `Gateway`, as written and parsed.
    HostPort(String, HostPort),
    /// `Routes`, each as written.
    Routes(Vec<(String, Route)>),
    /// `Name_Servers`, each as written.
    NameServers(Vec<(String, SocketAddr)>),
}

/// Writes `text` as a Momentum string.
fn quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

fn quoted_list<'a>(
    f: &mut fmt::Formatter<'_>,
    items: impl Iterator<Item = &'a str>,
) -> fmt::Result {
    f.write_str("(")?;
    for item in items {
        f.write_str(" ")?;
        quoted(f, item)?;
    }
    f.write_str(" )")
}

fn mode_str(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::No => "no",
        TlsMode::Required => "required",
        _ => "ifavailable",
    }
}

fn injection_str(policy: InjectionPolicy) -> &'static str {
    match policy {
        InjectionPolicy::Ignore => "ignore",
        _ => "reject",
    }
}

fn runtime_str(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Tokio => "tokio",
        Runtime::Mio => "mio",
        Runtime::Smol => "smol",
    }
}

impl fmt::Display for OptionValue {
    /// Momentum's style: strings quoted, booleans and numbers bare,
    /// arrays `( "a" "b" )`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Bool(b) => write!(f, "{b}"),
            OptionValue::Number(n) => write!(f, "{n}"),
            OptionValue::Text(t) | OptionValue::HostPort(t, _) => quoted(f, t),
            OptionValue::Mode(m) => quoted(f, mode_str(*m)),
            OptionValue::Verify(v) => quoted(f, v.as_str()),
            OptionValue::Engine(e) => quoted(f, e.as_str()),
            OptionValue::Injection(p) => quoted(f, injection_str(*p)),
            OptionValue::Runtime(r) => quoted(f, runtime_str(*r)),
            OptionValue::Extensions(list) => quoted_list(f, list.iter().map(|e| e.keyword())),
            OptionValue::Networks(list) => quoted_list(f, list.iter().map(|(s, _)| s.as_str())),
            OptionValue::Domains(list) => quoted_list(f, list.iter().map(|(s, _)| s.as_str())),
            OptionValue::Routes(list) => quoted_list(f, list.iter().map(|(s, _)| s.as_str())),
            OptionValue::NameServers(list) => quoted_list(f, list.iter().map(|(s, _)| s.as_str())),
            OptionValue::Ip(ip) => quoted(f, &ip.to_string()),
            OptionValue::MaxRetries(MaxRetries::Count(n)) => write!(f, "{n}"),
            OptionValue::MaxRetries(MaxRetries::Auto) => quoted(f, "auto"),
            OptionValue::MaxRetries(MaxRetries::Unlimited) => quoted(f, "none"),
        }
    }
}

/// A value's problem: an error, or a warning that lets it stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Whether the value is refused.
    pub fatal: bool,
    /// Which part of the value (an array item) it is about; `None`: the
    /// whole value.
    pub item: Option<usize>,
    /// What is wrong.
    pub message: String,
}

fn refuse(message: impl Into<String>) -> Problem {
    Problem {
        fatal: true,
        item: None,
        message: message.into(),
    }
}

/// Converts a written value of `spec`, reporting errors and warnings at
/// the value (or the array item) they concern.
pub fn convert(
    spec: &OptionSpec,
    value: &Value,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<OptionValue> {
    let (result, problems) = convert_value(spec.kind, value);
    let mut fatal = false;
    for problem in problems {
        fatal |= problem.fatal;
        let loc = match (&value.kind, problem.item) {
            (ValueKind::Array(items), Some(i)) => items.get(i).map_or(&value.loc, |v| &v.loc),
            _ => &value.loc,
        };
        let message = format!("{}: {}", spec.name, problem.message);
        diagnostics.push(if problem.fatal {
            loc.error(message)
        } else {
            loc.warning(message)
        });
    }
    if fatal {
        None
    } else {
        result
    }
}

/// Parses a value written as configuration text (a default).
pub fn parse_text(kind: Kind, text: &str) -> Result<OptionValue, String> {
    let source = std::sync::Arc::new(super::syntax::Source {
        name: "<default>".into(),
        dir: std::path::PathBuf::new(),
    });
    let tree = super::syntax::parse(
        source,
        &format!("x = {text}"),
        super::syntax::Includes::Ignore,
    )
    .map_err(|e| format!("{e:?}"))?;
    let Some(super::syntax::Item::Setting(setting)) = tree.items.first() else {
        return Err(format!("default {text:?} is not a value"));
    };
    match convert_value(kind, &setting.value) {
        (Some(value), problems) if problems.iter().all(|p| !p.fatal) => Ok(value),
        (_, problems) => Err(format!("default {text:?}: {problems:?}")),
    }
}

fn scalar(value: &Value, what: &str) -> Result<String, Problem> {
    value
        .scalar()
        .map(str::to_owned)
        .ok_or_else(|| refuse(format!("expected {what}, found {}", value.describe())))
}

/// The items of a list: an array's, or a single value as a one-item list.
fn list_items(value: &Value) -> Vec<&Value> {
    match &value.kind {
        ValueKind::Array(items) => items.iter().collect(),
        _ => vec![value],
    }
}

fn convert_value(kind: Kind, value: &Value) -> (Option<OptionValue>, Vec<Problem>) {
    match kind {
        Kind::Extensions | Kind::Networks | Kind::Domains | Kind::Routes | Kind::NameServers => {
            convert_list(kind, value)
        }
        _ => match scalar(value, "a single value").and_then(|text| convert_scalar(kind, &text)) {
            Ok((v, warnings)) => (
                Some(v),
                warnings
                    .into_iter()
                    .map(|message| Problem {
                        fatal: false,
                        item: None,
                        message,
                    })
                    .collect(),
            ),
            Err(problem) => (None, vec![problem]),
        },
    }
}

fn number(text: &str) -> Result<u64, Problem> {
    let digits = text.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse(format!("expected a whole number, found {text:?}")));
    }
    digits
        .parse()
        .map_err(|_| refuse(format!("{text} is too large")))
}

fn convert_scalar(kind: Kind, text: &str) -> Result<(OptionValue, Vec<String>), Problem> {
    let plain = |v| Ok((v, Vec::new()));
    let lower = text.trim().to_ascii_lowercase();
    match kind {
        Kind::Bool => match lower.as_str() {
            "true" | "yes" | "on" | "1" => plain(OptionValue::Bool(true)),
            "false" | "no" | "off" | "0" => plain(OptionValue::Bool(false)),
            _ => Err(refuse(format!("expected true or false, found {text:?}"))),
        },
        Kind::Count { min, max } => {
            let n = number(text)?;
            if n < min || n > max {
                return Err(refuse(format!(
                    "{n} is out of range: expected {min} to {max}"
                )));
            }
            plain(OptionValue::Number(n))
        }
        Kind::Limit => match number(text)? {
            0 => Err(refuse(
                "0 (Momentum's \"no limit\") is refused: Petrel always has a limit here; give one",
            )),
            n => plain(OptionValue::Number(n)),
        },
        Kind::Seconds => match number(text)? {
            0 => Err(refuse("expected at least 1 second")),
            n if n > 100 * 365 * 86400 => {
                Err(refuse(format!("{n} seconds is more than a century")))
            }
            n => plain(OptionValue::Number(n)),
        },
        Kind::Port => match number(text)? {
            n @ 1..=65535 => plain(OptionValue::Number(n)),
            n => Err(refuse(format!("{n} is not a TCP port (1 to 65535)"))),
        },
        Kind::Text => plain(OptionValue::Text(text.to_owned())),
        Kind::Path | Kind::Name => {
            if text.trim().is_empty() {
                Err(refuse("expected a non-empty value"))
            } else {
                plain(OptionValue::Text(text.to_owned()))
            }
        }
        Kind::TlsMode => TlsMode::from_str(text)
            .map(|m| (OptionValue::Mode(m), Vec::new()))
            .map_err(|e| refuse(e.to_string())),
        Kind::TlsVerify => TlsVerify::from_str(text)
            .map(|v| (OptionValue::Verify(v), Vec::new()))
            .map_err(|e| refuse(e.to_string())),
        Kind::TlsEngine => {
            if lower == "gnutls" {
                return Err(refuse(
                    "\"gnutls\" is refused: Petrel has the rustls and OpenSSL engines only; \
                     use \"rustls\" (the default; never renegotiates) or \"openssl\"",
                ));
            }
            TlsEngine::from_str(text)
                .map(|e| (OptionValue::Engine(e), Vec::new()))
                .map_err(|e| refuse(e.to_string()))
        }
        Kind::Injection => InjectionPolicy::from_str(text)
            .map(|p| (OptionValue::Injection(p), Vec::new()))
            .map_err(|e| refuse(e.to_string())),
        Kind::Runtime => match lower.as_str() {
            "tokio" => plain(OptionValue::Runtime(Runtime::Tokio)),
            "mio" => plain(OptionValue::Runtime(Runtime::Mio)),
            "smol" => plain(OptionValue::Runtime(Runtime::Smol)),
            _ => Err(refuse(format!(
                "unknown runtime {text:?}: expected \"tokio\", \"mio\" or \"smol\""
            ))),
        },
        Kind::VerifyMode => match lower.as_str() {
            "none" => plain(OptionValue::Text(text.to_owned())),
            "require" => Err(refuse(
                "\"require\" is refused: Petrel's listeners neither ask for nor verify client \
                 certificates (its TLS engines are given no client CA); use \"none\" or remove it",
            )),
            _ => Err(refuse(format!(
                "unknown mode {text:?}: expected \"none\" (\"require\" is not supported)"
            ))),
        },
        Kind::Ciphers => {
            if lower == "default" {
                plain(OptionValue::Text(text.to_owned()))
            } else {
                Err(refuse(format!(
                    "{text:?} is refused: only \"DEFAULT\" is accepted, because Petrel's engines \
                     use fixed cipher lists (rustls: its own defaults; openssl: Mozilla's \
                     intermediate list for listeners, OpenSSL's DEFAULT without weak ciphers \
                     for delivery)"
                )))
            }
        }
        Kind::Protocols => {
            protocols(text).map(|warnings| (OptionValue::Text(text.to_owned()), warnings))
        }
        Kind::ClientCa => Err(refuse(
            "refused: Petrel's listeners do not ask for client certificates (its TLS engines \
             have no client-certificate verification), so a client CA could not take effect",
        )),
        Kind::Ip => text
            .trim()
            .parse()
            .map(|ip| (OptionValue::Ip(ip), Vec::new()))
            .map_err(|_| refuse(format!("expected an IP address, found {text:?}"))),
        Kind::MaxRetries => match lower.as_str() {
            "auto" => plain(OptionValue::MaxRetries(MaxRetries::Auto)),
            "none" => plain(OptionValue::MaxRetries(MaxRetries::Unlimited)),
            _ => {
                let n = number(text).map_err(|_| {
                    refuse(format!(
                        "expected a number, \"auto\" or \"none\", found {text:?}"
                    ))
                })?;
                let n = u32::try_from(n).map_err(|_| refuse(format!("{n} is too large")))?;
                plain(OptionValue::MaxRetries(MaxRetries::Count(n)))
            }
        },
        Kind::HostPort => parse_host_port(text)
            .map(|hp| (OptionValue::HostPort(text.to_owned(), hp), Vec::new()))
            .map_err(refuse),
        Kind::Extensions | Kind::Networks | Kind::Domains | Kind::Routes | Kind::NameServers => {
            Err(refuse("expected a list"))
        }
    }
}

/// Momentum's `TLS_Protocols` (`+ALL:-SSLv2:-SSLv3`): names prefixed with
/// `+` (or nothing) or `-`, applied in order to an empty set. Petrel's
/// engines always speak exactly TLS 1.2 and 1.3: a value turning either
/// off is refused (the operator asked for something stricter than Petrel
/// can do); one turning older versions on is accepted with a warning (it
/// cannot take effect, and Petrel is stricter than asked).
fn protocols(text: &str) -> Result<Vec<String>, Problem> {
    const NAMES: [&str; 6] = ["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
    let mut on = [false; 6];
    for part in text.split(':').map(str::trim).filter(|p| !p.is_empty()) {
        let (enable, name) = match part.strip_prefix('-') {
            Some(name) => (false, name),
            None => (true, part.strip_prefix('+').unwrap_or(part)),
        };
        let name = name.to_ascii_lowercase();
        let index = match name.as_str() {
            "all" => None,
            "sslv2" => Some(0),
            "sslv3" => Some(1),
            "tlsv1" | "tlsv1.0" => Some(2),
            "tlsv1.1" => Some(3),
            "tlsv1.2" => Some(4),
            "tlsv1.3" => Some(5),
            _ => {
                return Err(refuse(format!(
                    "unknown protocol {part:?}: expected ALL, SSLv2, SSLv3, TLSv1.0, TLSv1.1, \
                     TLSv1.2 or TLSv1.3, each after + or -"
                )))
            }
        };
        match index {
            None => on = [enable; 6],
            Some(i) => {
                if let Some(slot) = on.get_mut(i) {
                    *slot = enable;
                }
            }
        }
    }
    if !(on[4] && on[5]) {
        return Err(refuse(format!(
            "{text:?} is refused: it turns off TLS 1.2 or TLS 1.3, and Petrel's engines \
             always offer both (and nothing older)"
        )));
    }
    let old: Vec<&str> = NAMES
        .iter()
        .zip(on)
        .take(4)
        .filter_map(|(name, on)| on.then_some(*name))
        .collect();
    Ok(if old.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "{} cannot be enabled: Petrel's engines speak TLS 1.2 and 1.3 only",
            old.join(", ")
        )]
    })
}

/// `host`, `host:port`, `[IPv6]`, `[IPv6]:port`, or a bare IPv6 address.
pub fn parse_host_port(text: &str) -> Result<HostPort, String> {
    let text = text.trim();
    let bad = || format!("expected host, host:port or [IPv6]:port, found {text:?}");
    let port = |p: &str| -> Result<u16, String> {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("bad port {p:?} in {text:?}"))
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let host = host.strip_prefix("IPv6:").unwrap_or(host);
        if host.parse::<IpAddr>().is_err() {
            return Err(bad());
        }
        let port = match after {
            "" => None,
            _ => Some(port(after.strip_prefix(':').ok_or_else(bad)?)?),
        };
        return Ok(HostPort {
            host: host.to_owned(),
            port,
        });
    }
    if text.parse::<IpAddr>().is_ok() {
        return Ok(HostPort {
            host: text.to_owned(),
            port: None,
        });
    }
    let (host, port) = match text.split_once(':') {
        Some((host, p)) => (host, Some(port(p)?)),
        None => (text, None),
    };
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !valid {
        return Err(bad());
    }
    Ok(HostPort {
        host: host.to_owned(),
        port,
    })
}

/// A name server: an IP address with an optional port (53 by default).
/// Names are refused: a resolver cannot look up its own name servers.
fn parse_name_server(text: &str) -> Result<SocketAddr, String> {
    let hp = parse_host_port(text)?;
    let ip: IpAddr = hp.host.parse().map_err(|_| {
        format!(
            "expected an IP address, address:port or [IPv6]:port, found {text:?} \
             (name servers are given by address)"
        )
    })?;
    Ok(SocketAddr::new(ip, hp.port.unwrap_or(53)))
}

/// A route: `__mx__` or `smtp://host[:port][?pref=N]`.
fn parse_route(text: &str) -> Result<Route, String> {
    if text.eq_ignore_ascii_case("__mx__") {
        return Ok(Route::Mx);
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!(
            "expected smtp://host[:port][?pref=N] or __mx__, found {text:?}"
        ));
    };
    if !scheme.eq_ignore_ascii_case("smtp") {
        return Err(format!(
            "route scheme {scheme:?} is not implemented by Petrel: it delivers over SMTP only"
        ));
    }
    let (host, query) = match rest.split_once('?') {
        Some((host, query)) => (host, Some(query)),
        None => (rest, None),
    };
    let mut preference = 0;
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        match pair.split_once('=') {
            Some(("pref", n)) => {
                preference = n
                    .parse()
                    .map_err(|_| format!("bad preference {n:?} in {text:?}"))?
            }
            _ => return Err(format!("unknown route parameter {pair:?} (only pref=N)")),
        }
    }
    Ok(Route::Smtp {
        host: parse_host_port(host.trim_end_matches('/'))?,
        preference,
    })
}

fn convert_list(kind: Kind, value: &Value) -> (Option<OptionValue>, Vec<Problem>) {
    if let ValueKind::Dict(_) = value.kind {
        return (None, vec![refuse("expected a list, found a dictionary")]);
    }
    let mut problems = Vec::new();
    let mut extensions = Vec::new();
    let mut networks = Vec::new();
    let mut domains = Vec::new();
    let mut routes = Vec::new();
    let mut name_servers = Vec::new();
    for (i, item) in list_items(value).into_iter().enumerate() {
        let at = |message: String| Problem {
            fatal: true,
            item: Some(i),
            message,
        };
        let Some(text) = item.scalar().map(str::trim) else {
            problems.push(at(format!(
                "expected a list item, found {}",
                item.describe()
            )));
            continue;
        };
        match kind {
            Kind::Extensions => {
                let upper = text.to_ascii_uppercase();
                match Extension::ALL.into_iter().find(|e| e.keyword() == upper) {
                    Some(e) => extensions.push(e),
                    None => problems.push(at(format!(
                        "SMTP extension {text:?} is not implemented by Petrel"
                    ))),
                }
            }
            Kind::Networks => match Network::from_str(text) {
                Ok(n) => networks.push((text.to_owned(), n)),
                Err(e) => problems.push(at(e.to_string())),
            },
            Kind::Domains => match domain_pattern(text) {
                Some(d) => domains.push((text.to_owned(), d)),
                None => problems.push(at(format!("expected a domain or *.domain, found {text:?}"))),
            },
            Kind::NameServers => match parse_name_server(text) {
                Ok(addr) => name_servers.push((text.to_owned(), addr)),
                Err(e) => problems.push(at(e)),
            },
            _ => match parse_route(text) {
                Ok(r) => routes.push((text.to_owned(), r)),
                Err(e) => problems.push(at(e)),
            },
        }
    }
    if !problems.is_empty() {
        return (None, problems);
    }
    let value = match kind {
        Kind::Extensions => OptionValue::Extensions(extensions),
        Kind::Networks => OptionValue::Networks(networks),
        Kind::Domains => OptionValue::Domains(domains),
        Kind::NameServers => OptionValue::NameServers(name_servers),
        _ => OptionValue::Routes(routes),
    };
    (Some(value), problems)
}

fn domain_pattern(text: &str) -> Option<DomainPattern> {
    let lower = text.trim_end_matches('.').to_ascii_lowercase();
    let (sub, name) = match lower.strip_prefix("*.") {
        Some(name) => (true, name),
        None => (false, lower.as_str()),
    };
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    valid.then(|| {
        if sub {
            DomainPattern::Subdomains(format!(".{name}"))
        } else {
            DomainPattern::Exact(name.to_owned())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_parses() {
        for spec in OPTIONS {
            if let DefaultValue::Value(text) = spec.default {
                assert!(parse_text(spec.kind, text).is_ok(), "{}: {text}", spec.name);
            }
        }
    }

    #[test]
    fn names_are_unique_and_found_case_insensitively() {
        for spec in OPTIONS {
            assert!(std::ptr::eq(
                find(&spec.name.to_ascii_uppercase()).unwrap(),
                spec
            ));
            assert!(!is_momentum_option(spec.name), "{}", spec.name);
        }
        assert_eq!(find("spool_directory").map(|s| s.name), Some("spoolbase"));
    }

    fn check(kind: Kind, text: &str) -> Result<String, String> {
        parse_text(kind, text).map(|v| v.to_string())
    }

    #[test]
    fn values_print_in_momentums_style() {
        assert_eq!(check(Kind::Bool, "\"yes\""), Ok("true".into()));
        assert_eq!(check(Kind::Seconds, "\"1200\""), Ok("1200".into()));
        assert_eq!(check(Kind::TlsMode, "REQUIRED"), Ok("\"required\"".into()));
        assert_eq!(
            check(Kind::Networks, "(\"10.0.0.0/8\", ::1)"),
            Ok("( \"10.0.0.0/8\" \"::1\" )".into())
        );
        assert_eq!(check(Kind::MaxRetries, "\"auto\""), Ok("\"auto\"".into()));
        assert_eq!(check(Kind::MaxRetries, "5"), Ok("5".into()));
    }

    #[test]
    fn refused_values_say_why() {
        assert!(check(Kind::TlsEngine, "gnutls")
            .unwrap_err()
            .contains("rustls and OpenSSL engines only"));
        assert!(check(Kind::Injection, "allow")
            .unwrap_err()
            .contains("CVE-2011-0411"));
        assert!(check(Kind::Ciphers, "HIGH").is_err());
        assert!(check(Kind::Ciphers, "default").is_ok());
        assert!(check(Kind::Protocols, "+ALL:-TLSv1.2").is_err());
        assert!(check(Kind::Protocols, "-ALL:+TLSv1.3").is_err());
        assert!(check(Kind::Protocols, "+ALL:-SSLv2:-SSLv3").is_ok());
        assert!(check(Kind::Protocols, "+ALL:-SSLv3:-TLSv1.0:-TLSv1.1").is_ok());
        assert!(check(Kind::Protocols, "+TLSv1.4").is_err());
        assert!(check(Kind::VerifyMode, "require")
            .unwrap_err()
            .contains("client"));
        assert!(check(Kind::Extensions, "( STARTTLS \"AUTH LOGIN\" )")
            .unwrap_err()
            .contains("not implemented by Petrel"));
        assert!(check(Kind::Limit, "0").unwrap_err().contains("no limit"));
        assert!(check(Kind::Port, "65536").is_err());
        assert!(check(Kind::Routes, "( \"lmtp://x\" )").is_err());
    }

    #[test]
    fn protocols_warn_about_versions_they_cannot_enable() {
        assert_eq!(protocols("+TLSv1.2:+TLSv1.3"), Ok(vec![]));
        assert_eq!(
            protocols("+ALL:-SSLv2:-SSLv3"),
            Ok(vec![
                "TLSv1.0, TLSv1.1 cannot be enabled: Petrel's engines speak TLS 1.2 and 1.3 only"
                    .into()
            ])
        );
    }

    #[test]
    fn host_ports_and_routes() {
        let hp = |h: &str, p| HostPort {
            host: h.into(),
            port: p,
        };
        assert_eq!(
            parse_host_port("[fe80::a00]:1"),
            Ok(hp("fe80::a00", Some(1)))
        );
        assert_eq!(parse_host_port("10.10.10.50"), Ok(hp("10.10.10.50", None)));
        assert_eq!(parse_host_port("fe80::a00:1"), Ok(hp("fe80::a00:1", None)));
        assert_eq!(
            parse_host_port("mx.example.com:2525"),
            Ok(hp("mx.example.com", Some(2525)))
        );
        assert!(parse_host_port("a b").is_err());
        assert_eq!(
            parse_route("smtp://my.local.smart.host?pref=1"),
            Ok(Route::Smtp {
                host: hp("my.local.smart.host", None),
                preference: 1
            })
        );
        assert_eq!(parse_route("__mx__"), Ok(Route::Mx));
    }

    #[test]
    fn name_servers_are_addresses_with_port_53_by_default() {
        assert_eq!(
            check(
                Kind::NameServers,
                "( \"127.0.0.1:5353\" \"[::1]:53\" 192.0.2.1 ::1 )"
            ),
            Ok("( \"127.0.0.1:5353\" \"[::1]:53\" \"192.0.2.1\" \"::1\" )".into())
        );
        assert_eq!(
            parse_name_server("192.0.2.1"),
            Ok("192.0.2.1:53".parse().unwrap())
        );
        assert_eq!(
            parse_name_server("[2001:db8::1]:5353"),
            Ok("[2001:db8::1]:5353".parse().unwrap())
        );
        assert_eq!(parse_name_server("::1"), Ok("[::1]:53".parse().unwrap()));
        assert!(parse_name_server("ns.example.com")
            .unwrap_err()
            .contains("given by address"));
        assert!(parse_name_server("127.0.0.1:0").is_err());
        assert_eq!(check(Kind::NameServers, "( )"), Ok("( )".into()));
    }
}
