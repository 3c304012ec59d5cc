//! The typed policies a configuration resolves to, once, at start: what
//! the rest of the MTA reads. Nothing here knows the configuration
//! language; [`super`] produces these from the syntax tree.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use petrel_core::client::tls_policy::TlsMode;
use petrel_core::server::InjectionPolicy;
use petrel_core::tls::{TlsEngine, TlsVerify};
use petrel_runtime_common::listen::Network;

pub use super::resolve::OutboundRules;

/// Which runtime drives the listeners (`Runtime`, Petrel's own option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// tokio, multi-threaded (the default).
    Tokio,
    /// mio, one event loop per core.
    Mio,
    /// smol.
    Smol,
}

/// A resolved configuration.
#[derive(Debug, Clone)]
pub struct Policies {
    /// Global settings.
    pub global: Global,
    /// Every enabled `Listen` of the `ESMTP_Listener`, in file order.
    pub listeners: Vec<ListenPolicy>,
    /// Sessions at once over all listeners (`Listener_Sessions` at the
    /// `ESMTP_Listener` level; Momentum's `0`, no limit, is `usize::MAX`).
    pub max_sessions: usize,
    /// The outbound scopes, for [`Policies::outbound`].
    pub outbound: OutboundRules,
}

/// Settings with no scope but the global one.
#[derive(Debug, Clone)]
pub struct Global {
    /// Where messages are kept (`Spool_Directory`, or Momentum's
    /// `spoolbase`); relative paths are relative to the configuration
    /// file's directory, or to the working directory for the embedded
    /// default.
    pub spool_directory: PathBuf,
    /// The runtime (`Runtime`).
    pub runtime: Runtime,
    /// Where JSON-lines records go (`Log_File`, Petrel's own); `None`:
    /// standard output.
    pub log_file: Option<PathBuf>,
    /// This host's name, for banners, `Received:` headers and EHLO
    /// (`Hostname`; default: the system's host name).
    pub hostname: String,
    /// The TLS library of listeners and deliveries (`TLS_Engine`;
    /// Petrel's default rustls).
    pub tls_engine: TlsEngine,
    /// The DNS servers routing asks (`Name_Servers`, Petrel's own); empty:
    /// the system's (`/etc/resolv.conf`).
    pub name_servers: Vec<SocketAddr>,
}

/// One `Listen` address of the `ESMTP_Listener`, with what its peers get.
#[derive(Debug, Clone)]
pub struct ListenPolicy {
    /// The address; Momentum's `":25"` and `"*:25"` mean every IPv4
    /// address.
    pub addr: SocketAddr,
    /// `Listen_Backlog`.
    pub backlog: u32,
    /// Every peer not in `peers`.
    pub default: Arc<InboundPolicy>,
    /// `Peer` scopes (inside this `Listen` or at listener level), each
    /// resolved with everything above it; the longest matching prefix wins.
    pub peers: Vec<(Network, Arc<InboundPolicy>)>,
}

/// Where a listener's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// `TLS_Certificate` and `TLS_Key`: PEM files.
    Files {
        /// The certificate chain.
        certificate: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// `TLS_Self_Signed = true` (Petrel's own, the embedded default's): a
    /// certificate for the host name, made at start.
    SelfSigned,
}

/// A listener's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundTls {
    /// `TLS_Engine`.
    pub engine: TlsEngine,
    /// The certificate.
    pub certificate: CertificateSource,
    /// `TLS_Allow_Renegotiation` (Momentum's default `true`).
    pub allow_renegotiation: bool,
    /// Renegotiation attempts per connection before it is closed
    /// (`TLS_Max_Renegotiations`, Petrel's own; default 3).
    pub max_renegotiations: u32,
}

/// Everything one inbound session needs, resolved for one `Listen` or
/// `Peer` scope (Peer/Listen, then its pathway, then the listener level,
/// then global).
#[derive(Debug, Clone)]
pub struct InboundPolicy {
    /// Set when a certificate is configured; STARTTLS is advertised only
    /// when `starttls` is also true.
    pub tls: Option<InboundTls>,
    /// `SMTP_Extensions` lists `STARTTLS` (and a certificate is set).
    pub starttls: bool,
    /// The other extensions `SMTP_Extensions` lists.
    pub pipelining: bool,
    /// `8BITMIME`.
    pub eight_bit_mime: bool,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
    /// `CHUNKING`.
    pub chunking: bool,
    /// `DSN`.
    pub dsn: bool,
    /// `STARTTLS_Injection_Policy`.
    pub injection_policy: InjectionPolicy,
    /// `Relay_Hosts`: clients that may relay to any domain.
    pub relay_hosts: Vec<Network>,
    /// `Open_Relay`.
    pub open_relay: bool,
    /// `Relay_Domains`: domains anyone may send to.
    pub relay_domains: Vec<DomainPattern>,
    /// `Max_Message_Size` in octets.
    pub max_message_size: u64,
    /// `Max_Recipients_Per_Message`.
    pub max_recipients: usize,
    /// `Idle_Time`: how long a session may wait for a command.
    pub idle_time: Duration,
    /// Connections at once from one client address
    /// (`Max_Connections_Per_IP`, Petrel's own; `None`: no limit).
    pub max_connections_per_ip: Option<usize>,
    /// The outbound binding this mail uses (`Binding`; default `default`).
    pub binding: String,
    /// The pathway joined (`Pathway`), for logs.
    pub pathway: Option<String>,
    /// The host name in the banner and `Received:` headers
    /// (`Received_Hostname`; default [`Global::hostname`]).
    pub received_hostname: String,
}

/// A domain in `Relay_Domains`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    /// This domain, compared case-insensitively (stored lower-case).
    Exact(String),
    /// `*.example.com`: any subdomain (not the domain itself); stored as
    /// `.example.com`, lower-case.
    Subdomains(String),
}

impl DomainPattern {
    /// Whether `domain` matches.
    pub fn matches(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        match self {
            DomainPattern::Exact(d) => domain == *d,
            DomainPattern::Subdomains(suffix) => domain.ends_with(suffix.as_str()),
        }
    }
}

/// `Max_Retries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxRetries {
    /// `auto` (the default): as many as `Message_Expiration` allows.
    Auto,
    /// `none`: no limit but `Message_Expiration`.
    Unlimited,
    /// At most this many retries.
    Count(u32),
}

/// A host and an optional port (`Gateway`, a route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// A domain name or an IP address (IPv6 without brackets).
    pub host: String,
    /// The port; `None`: `Remote_SMTP_Port`.
    pub port: Option<u16>,
}

/// One entry of `Routes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `__mx__`: the domain's MX hosts.
    Mx,
    /// `smtp://host[:port][?pref=N]`.
    Smtp {
        /// Where.
        host: HostPort,
        /// `pref=N`: lower is tried first (default 0).
        preference: u32,
    },
}

/// Everything one delivery needs to know from the configuration, resolved
/// for a (binding, domain) pair by [`Policies::outbound`], highest first:
/// binding_group::binding::domain, binding::domain, binding_group::domain,
/// binding, binding_group, global domain, global.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// `TLS` (Petrel's default `ifavailable`).
    pub tls: TlsMode,
    /// `TLS_Ifavailable_Fallback`.
    pub tls_ifavailable_fallback: bool,
    /// `TLS_Verify`.
    pub tls_verify: TlsVerify,
    /// `TLS_CA`, resolved against the directory of the file that set it.
    pub tls_ca: Option<PathBuf>,
    /// `TLS_Certificate` and `TLS_Key`: the client certificate offered when
    /// a server asks for one.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
    /// `TLS_Engine`.
    pub tls_engine: TlsEngine,
    /// `Retry_Interval`.
    pub retry_interval: Duration,
    /// `Max_Retry_Interval`.
    pub max_retry_interval: Duration,
    /// `Max_Retries`.
    pub max_retries: MaxRetries,
    /// `Message_Expiration`.
    pub message_expiration: Duration,
    /// `Max_Outbound_Connections`.
    pub max_outbound_connections: usize,
    /// `Max_Deliveries_Per_Connection`; `None`: no limit (Momentum's `0`).
    pub max_deliveries_per_connection: Option<usize>,
    /// `Bind_Address`.
    pub bind_address: Option<IpAddr>,
    /// `EHLO_Hostname`, `__hostname__` replaced by [`Global::hostname`].
    pub ehlo_hostname: String,
    /// `Gateway`.
    pub gateway: Option<HostPort>,
    /// `Routes`; empty: none.
    pub routes: Vec<Route>,
    /// `Remote_SMTP_Port`.
    pub remote_smtp_port: u16,
    /// `Generate_Bounces`.
    pub generate_bounces: bool,
    /// `Suspend_Delivery`.
    pub suspend_delivery: bool,
    /// `Delivery_Response_Timeout`: how long each reply of a remote server
    /// may take.
    pub delivery_response_timeout: Duration,
}

impl Policies {
    /// What a delivery from `binding` to `domain` uses. A binding that is
    /// not declared gets the group-less chain (domain, global).
    pub fn outbound(&self, binding: &str, domain: &str) -> OutboundPolicy {
        self.outbound.resolve(&self.global, binding, domain)
    }
}
