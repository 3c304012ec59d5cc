//! Scope precedence: the chains of scopes an option is looked up in, the
//! typed [`Policies`] resolved from them once at start, and `config eval`.
//!
//! Outbound, highest first: binding_group::binding::domain,
//! binding::domain, binding_group::domain, binding (its declaration inside
//! the group, then the top-level one), binding_group, global domain,
//! global. In a container, a domain stanza named exactly wins over
//! regexes, and regexes are tried in file order; only the one matching
//! domain stanza of a container is consulted.
//!
//! Inbound, for a client of a `Listen`: the `Peer` inside that `Listen`
//! with the longest matching prefix, else the one at `ESMTP_Listener`
//! level; then the `Listen`; then the pathway the Peer, Listen or listener
//! names (pathway_group::pathway, pathway, pathway_group); then the
//! `ESMTP_Listener` level; then global; then the default.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use petrel_core::client::tls_policy::TlsMode;
use petrel_core::server::InjectionPolicy;
use petrel_core::tls::{TlsEngine, TlsVerify};
use petrel_runtime_common::listen::Network;

use super::model::{Listen, Model, Peer, ScopeId, Set, GLOBAL};
use super::policy::{
    CertificateSource, Global, InboundPolicy, InboundTls, ListenPolicy, MaxRetries, OutboundPolicy,
    Policies, Runtime,
};
use super::schema::{self, DefaultValue, Extension, OptionValue, ScopeKind};
use super::Diagnostic;

/// The outbound scopes of a configuration, resolved per (binding, domain)
/// by [`Policies::outbound`].
#[derive(Debug, Clone)]
pub struct OutboundRules {
    model: Arc<Model>,
}

impl OutboundRules {
    pub(crate) fn resolve(&self, global: &Global, binding: &str, domain: &str) -> OutboundPolicy {
        let model = &self.model;
        let index = model.bindings.iter().position(|b| b.name == binding);
        let group = index
            .and_then(|i| model.bindings.get(i))
            .and_then(|b| b.group);
        let chain = model.outbound_chain(group, index, Some(domain));
        outbound_policy(model, &chain, global)
    }
}

impl Model {
    /// Where `name` is set first along `chain`.
    pub(crate) fn lookup(&self, chain: &[ScopeId], name: &str) -> Option<(&Set, ScopeId)> {
        chain.iter().find_map(|&id| {
            self.scopes
                .get(id)
                .and_then(|s| s.options.get(name))
                .map(|set| (set, id))
        })
    }

    /// The value of `name` along `chain`, or its default.
    fn value(&self, chain: &[ScopeId], name: &str) -> Option<&OptionValue> {
        self.lookup(chain, name)
            .map(|(set, _)| &set.value)
            .or_else(|| self.defaults.get(name))
    }

    fn bool(&self, chain: &[ScopeId], name: &str, fallback: bool) -> bool {
        match self.value(chain, name) {
            Some(OptionValue::Bool(b)) => *b,
            _ => fallback,
        }
    }

    fn number(&self, chain: &[ScopeId], name: &str, fallback: u64) -> u64 {
        match self.value(chain, name) {
            Some(OptionValue::Number(n)) => *n,
            _ => fallback,
        }
    }

    fn count(&self, chain: &[ScopeId], name: &str, fallback: usize) -> usize {
        usize::try_from(self.number(chain, name, fallback as u64)).unwrap_or(usize::MAX)
    }

    fn seconds(&self, chain: &[ScopeId], name: &str, fallback: u64) -> Duration {
        Duration::from_secs(self.number(chain, name, fallback))
    }

    fn text(&self, chain: &[ScopeId], name: &str) -> Option<&str> {
        match self.value(chain, name) {
            Some(OptionValue::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// A path option: relative to the directory of the file that set it.
    fn path(&self, chain: &[ScopeId], name: &str) -> Option<PathBuf> {
        match self.lookup(chain, name) {
            Some((
                Set {
                    value: OptionValue::Text(t),
                    loc,
                },
                _,
            )) => Some(loc.resolve_path(t)),
            Some(_) => None,
            None => self.text(chain, name).map(PathBuf::from),
        }
    }

    /// The outbound chain for a delivery through `binding` (of `group`)
    /// to `domain`; any may be absent.
    pub(crate) fn outbound_chain(
        &self,
        group: Option<usize>,
        binding: Option<usize>,
        domain: Option<&str>,
    ) -> Vec<ScopeId> {
        let group = group.and_then(|g| self.groups.get(g));
        let binding = binding.and_then(|b| self.bindings.get(b));
        let mut chain = Vec::new();
        if let Some(domain) = domain {
            if let Some(b) = binding {
                chain.extend(b.in_group_domains.find(domain));
                chain.extend(b.top_domains.find(domain));
            }
            if let Some(g) = group {
                chain.extend(g.domains.find(domain));
            }
        }
        if let Some(b) = binding {
            chain.extend(b.in_group);
            chain.extend(b.top);
        }
        if let Some(g) = group {
            chain.push(g.scope);
        }
        if let Some(domain) = domain {
            chain.extend(self.domains.find(domain));
        }
        chain.push(GLOBAL);
        chain
    }

    /// The scopes of pathway `name`: pathway_group::pathway, pathway,
    /// pathway_group.
    fn pathway_chain(&self, name: &str) -> Vec<ScopeId> {
        let Some(pathway) = self.pathways.iter().find(|p| p.name == name) else {
            return Vec::new();
        };
        let mut chain: Vec<ScopeId> = pathway.in_group.into_iter().chain(pathway.top).collect();
        if let Some(group) = pathway.group.and_then(|g| self.pathway_groups.get(g)) {
            chain.push(group.scope);
        }
        chain
    }

    /// The inbound chain for a client matched to `peer` on `listen`.
    pub(crate) fn inbound_chain(
        &self,
        listen: Option<&Listen>,
        peer: Option<&Peer>,
    ) -> Vec<ScopeId> {
        let listener = self.listener.as_ref().map(|l| l.scope);
        let mut chain: Vec<ScopeId> = peer
            .map(|p| p.scope)
            .into_iter()
            .chain(listen.map(|l| l.scope))
            .collect();
        let near: Vec<ScopeId> = chain.iter().copied().chain(listener).collect();
        if let Some((
            Set {
                value: OptionValue::Text(name),
                ..
            },
            _,
        )) = self.lookup(&near, "Pathway")
        {
            chain.extend(self.pathway_chain(name));
        }
        chain.extend(listener);
        chain.push(GLOBAL);
        chain
    }

    /// The `Peer` a client at `ip` on `listen` gets: the longest matching
    /// prefix among the Listen's own Peers, else among the listener's.
    pub(crate) fn peer_for<'a>(
        &'a self,
        listen: Option<&'a Listen>,
        ip: IpAddr,
    ) -> Option<&'a Peer> {
        let best = |peers: &'_ [Peer]| -> Option<usize> {
            peers
                .iter()
                .enumerate()
                .filter(|(_, p)| p.network.contains(ip))
                .max_by_key(|(_, p)| p.network.prefix())
                .map(|(i, _)| i)
        };
        if let Some(listen) = listen {
            if let Some(i) = best(&listen.peers) {
                return listen.peers.get(i);
            }
        }
        let peers = &self.listener.as_ref()?.peers;
        best(peers).and_then(|i| peers.get(i))
    }
}

fn outbound_policy(model: &Model, chain: &[ScopeId], global: &Global) -> OutboundPolicy {
    let client_certificate = match (
        model.path(chain, "TLS_Certificate"),
        model.path(chain, "TLS_Key"),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        _ => None,
    };
    OutboundPolicy {
        tls: match model.value(chain, "TLS") {
            Some(OptionValue::Mode(mode)) => *mode,
            _ => TlsMode::IfAvailable,
        },
        tls_ifavailable_fallback: model.bool(chain, "TLS_Ifavailable_Fallback", true),
        tls_verify: match model.value(chain, "TLS_Verify") {
            Some(OptionValue::Verify(v)) => *v,
            _ => TlsVerify::No,
        },
        tls_ca: model.path(chain, "TLS_CA"),
        client_certificate,
        tls_engine: global.tls_engine,
        retry_interval: model.seconds(chain, "Retry_Interval", 1200),
        max_retry_interval: model.seconds(chain, "Max_Retry_Interval", 43200),
        max_retries: match model.value(chain, "Max_Retries") {
            Some(OptionValue::MaxRetries(m)) => *m,
            _ => MaxRetries::Auto,
        },
        message_expiration: model.seconds(chain, "Message_Expiration", 86400),
        max_outbound_connections: model.count(chain, "Max_Outbound_Connections", 32),
        max_deliveries_per_connection: match model.count(chain, "Max_Deliveries_Per_Connection", 0)
        {
            0 => None,
            n => Some(n),
        },
        bind_address: match model.value(chain, "Bind_Address") {
            Some(OptionValue::Ip(ip)) => Some(*ip),
            _ => None,
        },
        ehlo_hostname: model
            .text(chain, "EHLO_Hostname")
            .unwrap_or("__hostname__")
            .replace("__hostname__", &global.hostname),
        gateway: match model.value(chain, "Gateway") {
            Some(OptionValue::HostPort(_, hp)) => Some(hp.clone()),
            _ => None,
        },
        routes: match model.value(chain, "Routes") {
            Some(OptionValue::Routes(routes)) => routes.iter().map(|(_, r)| r.clone()).collect(),
            _ => Vec::new(),
        },
        remote_smtp_port: u16::try_from(model.number(chain, "Remote_SMTP_Port", 25)).unwrap_or(25),
        generate_bounces: model.bool(chain, "Generate_Bounces", true),
        suspend_delivery: model.bool(chain, "Suspend_Delivery", false),
        delivery_response_timeout: model.seconds(chain, "Delivery_Response_Timeout", 300),
    }
}

/// This host's name as the system has it (`gethostname(2)`), or
/// `localhost` if it has none.
pub fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the
    // duration of the call; gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_owned();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(buf.get(..len).unwrap_or_default()).into_owned();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}

/// Diagnostics found while resolving: one setting can reach many
/// policies, and should be reported once.
#[derive(Default)]
struct Found(Vec<Diagnostic>);

impl Found {
    fn push(&mut self, diagnostic: Diagnostic) {
        if !self.0.contains(&diagnostic) {
            self.0.push(diagnostic);
        }
    }
}

/// Resolves `model` into [`Policies`]; problems that only show once
/// scopes are combined (a certificate without its key, a setting the
/// engine cannot honour) go to `diagnostics`.
pub fn policies(model: Arc<Model>, diagnostics: &mut Vec<Diagnostic>) -> Policies {
    let mut found = Found::default();
    let global_chain = [GLOBAL];
    let global = Global {
        spool_directory: model
            .path(&global_chain, "spoolbase")
            .unwrap_or_else(|| PathBuf::from("/var/spool/petrel")),
        runtime: match model.value(&global_chain, "Runtime") {
            Some(OptionValue::Runtime(r)) => *r,
            _ => Runtime::Tokio,
        },
        log_file: model.path(&global_chain, "Log_File"),
        hostname: model
            .text(&global_chain, "Hostname")
            .map_or_else(system_hostname, str::to_owned),
        tls_engine: match model.value(&global_chain, "TLS_Engine") {
            Some(OptionValue::Engine(e)) => *e,
            _ => TlsEngine::Rustls,
        },
        name_servers: match model.value(&global_chain, "Name_Servers") {
            Some(OptionValue::NameServers(list)) => list.iter().map(|(_, a)| *a).collect(),
            _ => Vec::new(),
        },
    };
    let mut listeners = Vec::new();
    let mut max_sessions = 1000;
    if let Some(listener) = &model.listener {
        let listener_chain = [listener.scope, GLOBAL];
        max_sessions = match model.count(&listener_chain, "Listener_Sessions", 1000) {
            0 => usize::MAX,
            n => n,
        };
        for listen in &listener.listens {
            let chain = [listen.scope, listener.scope, GLOBAL];
            if !model.bool(&chain, "Enable", true) {
                continue;
            }
            let policy = |peer: Option<&Peer>, found: &mut Found| {
                let chain = model.inbound_chain(Some(listen), peer);
                Arc::new(inbound_policy(&model, &chain, &global, found))
            };
            let mut peers: Vec<(Network, Arc<InboundPolicy>)> = listen
                .peers
                .iter()
                .map(|p| (p.network, policy(Some(p), &mut found)))
                .collect();
            // A listener-level Peer inside (or equal to) one of this
            // Listen's own Peers is never chosen: the Listen's Peer wins.
            // Leaving it out lets the runtime pick by longest prefix alone.
            for peer in &listener.peers {
                let shadowed = listen.peers.iter().any(|own| {
                    own.network.prefix() <= peer.network.prefix() && own.network.contains(peer.addr)
                });
                if !shadowed {
                    peers.push((peer.network, policy(Some(peer), &mut found)));
                }
            }
            listeners.push(ListenPolicy {
                addr: listen.addr,
                backlog: u32::try_from(model.number(&chain, "Listen_Backlog", 1024))
                    .unwrap_or(1024),
                default: policy(None, &mut found),
                peers,
            });
        }
    }
    diagnostics.append(&mut found.0);
    Policies {
        global,
        listeners,
        max_sessions,
        outbound: OutboundRules { model },
    }
}

fn inbound_policy(
    model: &Model,
    chain: &[ScopeId],
    global: &Global,
    found: &mut Found,
) -> InboundPolicy {
    let certificate = model.lookup(chain, "TLS_Certificate");
    let key = model.lookup(chain, "TLS_Key");
    let self_signed = model.lookup(chain, "TLS_Self_Signed");
    let level = |id: ScopeId| chain.iter().position(|&c| c == id).unwrap_or(usize::MAX);
    let files = match (certificate, key) {
        (Some((cert, cert_at)), Some((key, key_at))) => match (&cert.value, &key.value) {
            (OptionValue::Text(c), OptionValue::Text(k)) => Some((
                CertificateSource::Files {
                    certificate: cert.loc.resolve_path(c),
                    key: key.loc.resolve_path(k),
                },
                level(cert_at).min(level(key_at)),
            )),
            _ => None,
        },
        (Some((set, _)), None) => {
            found.push(set.loc.error("TLS_Certificate is set but TLS_Key is not"));
            None
        }
        (None, Some((set, _))) => {
            found.push(set.loc.error("TLS_Key is set but TLS_Certificate is not"));
            None
        }
        (None, None) => None,
    };
    // The more specific of TLS_Certificate and TLS_Self_Signed = true wins;
    // at the same level, the files.
    let self_signed = match self_signed {
        Some((
            Set {
                value: OptionValue::Bool(true),
                ..
            },
            at,
        )) => Some(level(at)),
        Some(_) => None,
        None => model
            .defaults
            .get("TLS_Self_Signed")
            .filter(|v| **v == OptionValue::Bool(true))
            .map(|_| usize::MAX),
    };
    let source = match (files, self_signed) {
        (Some((_, files_at)), Some(self_at)) if self_at < files_at => {
            Some(CertificateSource::SelfSigned)
        }
        (Some((files, _)), _) => Some(files),
        (None, Some(_)) => Some(CertificateSource::SelfSigned),
        (None, None) => None,
    };
    let engine = global.tls_engine;
    let tls = source.map(|certificate| InboundTls {
        engine,
        certificate,
        allow_renegotiation: model.bool(chain, "TLS_Allow_Renegotiation", true),
        max_renegotiations: u32::try_from(model.number(chain, "TLS_Max_Renegotiations", 3))
            .unwrap_or(3),
    });
    if tls.is_some() && engine == TlsEngine::Rustls {
        if let Some((set, _)) = model.lookup(chain, "TLS_Allow_Renegotiation") {
            if set.value == OptionValue::Bool(true) {
                found.push(set.loc.warning(
                    "TLS_Allow_Renegotiation = true has no effect with TLS_Engine \"rustls\": \
                     rustls never renegotiates (TLS_Engine = \"openssl\" can)",
                ));
            }
        }
        if let Some((set, _)) = model.lookup(chain, "TLS_Max_Renegotiations") {
            found.push(set.loc.warning(
                "TLS_Max_Renegotiations has no effect with TLS_Engine \"rustls\": rustls \
                 never renegotiates",
            ));
        }
    }
    let extensions: &[Extension] = match model.value(chain, "SMTP_Extensions") {
        Some(OptionValue::Extensions(list)) => list,
        _ => &[],
    };
    let has = |e: Extension| extensions.contains(&e);
    if has(Extension::StartTls) && tls.is_none() {
        if let Some((set, _)) = model.lookup(chain, "SMTP_Extensions") {
            found.push(set.loc.warning(
                "STARTTLS is listed but no certificate is set (TLS_Certificate and TLS_Key, or \
                 TLS_Self_Signed = true): it is not advertised",
            ));
        }
    }
    InboundPolicy {
        starttls: has(Extension::StartTls) && tls.is_some(),
        tls,
        pipelining: has(Extension::Pipelining),
        eight_bit_mime: has(Extension::EightBitMime),
        smtputf8: has(Extension::SmtpUtf8),
        chunking: has(Extension::Chunking),
        dsn: has(Extension::Dsn),
        injection_policy: match model.value(chain, "STARTTLS_Injection_Policy") {
            Some(OptionValue::Injection(p)) => *p,
            _ => InjectionPolicy::Reject,
        },
        relay_hosts: match model.value(chain, "Relay_Hosts") {
            Some(OptionValue::Networks(list)) => list.iter().map(|(_, n)| *n).collect(),
            _ => Vec::new(),
        },
        open_relay: model.bool(chain, "Open_Relay", false),
        relay_domains: match model.value(chain, "Relay_Domains") {
            Some(OptionValue::Domains(list)) => list.iter().map(|(_, d)| d.clone()).collect(),
            _ => Vec::new(),
        },
        max_message_size: model.number(chain, "Max_Message_Size", 64 * 1024 * 1024),
        max_recipients: model.count(chain, "Max_Recipients_Per_Message", 1000),
        idle_time: model.seconds(chain, "Idle_Time", 300),
        max_connections_per_ip: match model.count(chain, "Max_Connections_Per_IP", 50) {
            0 => None,
            n => Some(n),
        },
        binding: model.text(chain, "Binding").unwrap_or("default").to_owned(),
        pathway: model.text(chain, "Pathway").map(str::to_owned),
        received_hostname: model
            .text(chain, "Received_Hostname")
            .map_or_else(|| global.hostname.clone(), str::to_owned),
    }
}

/// What `config eval` prints: the effective value and where it is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluated {
    /// The option's canonical name.
    pub option: &'static str,
    /// The value in Momentum's syntax; `None`: not set and no default.
    pub value: Option<String>,
    /// Where the value comes from.
    pub from: EvaluatedFrom,
}

/// Where an evaluated value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvaluatedFrom {
    /// No scope sets it; the text, if any, says what the default means.
    Default(Option<&'static str>),
    /// Set in this scope, at this place.
    Scope {
        /// `binding "b" domain "example.com"`, `global`, …
        scope: String,
        /// `FILE:LINE`.
        at: String,
    },
}

impl fmt::Display for Evaluated {
    /// Two lines: `Option = value` and `# from: …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => writeln!(f, "{} = {value}", self.option)?,
            None => writeln!(f, "{} is not set", self.option)?,
        }
        match &self.from {
            EvaluatedFrom::Default(None) => write!(f, "# from: default"),
            EvaluatedFrom::Default(Some(meaning)) => write!(f, "# from: default ({meaning})"),
            EvaluatedFrom::Scope { scope, at } => write!(f, "# from: {scope} at {at}"),
        }
    }
}

/// Why `config eval` could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvalError {
    /// No words at all.
    NoOption,
    /// The last word names no option Petrel knows.
    UnknownOption(String),
    /// The option exists but not in the innermost scope given.
    NotValidIn {
        /// The option.
        option: &'static str,
        /// The scope.
        scope: ScopeKind,
    },
    /// A scope keyword without its argument.
    MissingArgument(&'static str),
    /// A word that is no scope keyword, or one out of place.
    UnexpectedWord(String),
    /// A named scope the configuration does not declare.
    NotDeclared {
        /// `binding`, `Listen`, …
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// The binding (or pathway) is not in the group given.
    NotInGroup {
        /// `binding` or `pathway`.
        what: &'static str,
        /// Its name.
        name: String,
        /// The group given.
        group: String,
    },
    /// A `Listen` or `Peer` argument that is not an address.
    BadAddress(String),
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::NoOption => f.write_str("no option given: expected [SCOPE NAME]… OPTION"),
            EvalError::UnknownOption(name) => write!(f, "unknown option \"{name}\""),
            EvalError::NotValidIn { option, scope } => {
                write!(f, "option \"{option}\" does not exist in {scope} scope")
            }
            EvalError::MissingArgument(keyword) => {
                write!(f, "\"{keyword}\" needs a name or address after it")
            }
            EvalError::UnexpectedWord(word) => write!(
                f,
                "unexpected \"{word}\": expected binding_group, binding, domain, ESMTP_Listener, \
                 Listen, Peer, pathway_group or pathway in that order, then the option"
            ),
            EvalError::NotDeclared { what, name } => {
                write!(f, "no {what} \"{name}\" in the configuration")
            }
            EvalError::NotInGroup { what, name, group } => {
                write!(f, "{what} \"{name}\" is not in group \"{group}\"")
            }
            EvalError::BadAddress(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for EvalError {}

/// The scope path of `config eval`, parsed.
#[derive(Default)]
struct Path<'w> {
    innermost: Option<ScopeKind>,
    group: Option<&'w str>,
    binding: Option<&'w str>,
    domain: Option<&'w str>,
    listener: bool,
    listen: Option<&'w str>,
    peer: Option<&'w str>,
    pathway_group: Option<&'w str>,
    pathway: Option<&'w str>,
}

/// The family of scopes a path is in; scopes of two families do not mix.
fn family(kind: ScopeKind) -> u8 {
    match kind {
        ScopeKind::Global => 0,
        ScopeKind::BindingGroup | ScopeKind::Binding | ScopeKind::Domain => 1,
        ScopeKind::EsmtpListener | ScopeKind::Listen | ScopeKind::Peer => 2,
        ScopeKind::PathwayGroup | ScopeKind::Pathway => 3,
    }
}

/// The order of scopes within a family.
fn rank(kind: ScopeKind) -> u8 {
    match kind {
        ScopeKind::Global => 0,
        ScopeKind::BindingGroup | ScopeKind::EsmtpListener | ScopeKind::PathwayGroup => 1,
        ScopeKind::Binding | ScopeKind::Listen | ScopeKind::Pathway => 2,
        ScopeKind::Domain | ScopeKind::Peer => 3,
    }
}

fn parse_path(words: &[String]) -> Result<Path<'_>, EvalError> {
    let mut path = Path::default();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let kind =
            ScopeKind::from_keyword(word).ok_or_else(|| EvalError::UnexpectedWord(word.clone()))?;
        if let Some(previous) = path.innermost {
            if family(previous) != family(kind) || rank(previous) >= rank(kind) {
                return Err(EvalError::UnexpectedWord(word.clone()));
            }
        }
        path.innermost = Some(kind);
        if kind == ScopeKind::EsmtpListener {
            path.listener = true;
            continue;
        }
        let argument = words
            .next()
            .map(String::as_str)
            .ok_or(EvalError::MissingArgument(kind.keyword()))?;
        let slot = match kind {
            ScopeKind::BindingGroup => &mut path.group,
            ScopeKind::Binding => &mut path.binding,
            ScopeKind::Domain => &mut path.domain,
            ScopeKind::Listen => &mut path.listen,
            ScopeKind::Peer => &mut path.peer,
            ScopeKind::PathwayGroup => &mut path.pathway_group,
            _ => &mut path.pathway,
        };
        *slot = Some(argument);
    }
    Ok(path)
}

/// `config eval`: the effective value of the option named by the last of
/// `words` in the scope the others name.
pub fn eval(model: &Model, global: &Global, words: &[String]) -> Result<Evaluated, EvalError> {
    let (option_word, scope_words) = words.split_last().ok_or(EvalError::NoOption)?;
    let spec =
        schema::find(option_word).ok_or_else(|| EvalError::UnknownOption(option_word.clone()))?;
    let path = parse_path(scope_words)?;
    let scope = path.innermost.unwrap_or(ScopeKind::Global);
    if !spec.scopes.contains(scope) {
        return Err(EvalError::NotValidIn {
            option: spec.name,
            scope,
        });
    }
    let chain = match family(scope) {
        1 => outbound_eval_chain(model, &path)?,
        2 => inbound_eval_chain(model, &path)?,
        3 => pathway_eval_chain(model, &path)?,
        _ => vec![GLOBAL],
    };
    if let Some((set, id)) = model.lookup(&chain, spec.name) {
        return Ok(Evaluated {
            option: spec.name,
            value: Some(set.value.to_string()),
            from: EvaluatedFrom::Scope {
                scope: model
                    .scopes
                    .get(id)
                    .map_or_else(String::new, |s| s.label.clone()),
                at: set.loc.file_line(),
            },
        });
    }
    let quoted = |text: &str| OptionValue::Text(text.to_owned()).to_string();
    let (value, meaning) = match spec.default {
        DefaultValue::Value(_) => (model.defaults.get(spec.name).map(ToString::to_string), None),
        DefaultValue::Unset(meaning) => match spec.name {
            // These defaults are known once the configuration is loaded.
            "Hostname" => (Some(quoted(&global.hostname)), Some(meaning)),
            "Received_Hostname" => (
                model
                    .text(&chain, "Hostname")
                    .map(quoted)
                    .or_else(|| Some(quoted(&global.hostname))),
                Some(meaning),
            ),
            _ => (None, Some(meaning)),
        },
    };
    Ok(Evaluated {
        option: spec.name,
        value,
        from: EvaluatedFrom::Default(meaning),
    })
}

fn outbound_eval_chain(model: &Model, path: &Path<'_>) -> Result<Vec<ScopeId>, EvalError> {
    let mut group = match path.group {
        Some(name) => Some(
            model
                .groups
                .iter()
                .position(|g| g.name == name)
                .ok_or_else(|| EvalError::NotDeclared {
                    what: "binding_group",
                    name: name.to_owned(),
                })?,
        ),
        None => None,
    };
    let binding = match path.binding {
        Some(name) => {
            let index = model
                .bindings
                .iter()
                .position(|b| b.name == name)
                .ok_or_else(|| EvalError::NotDeclared {
                    what: "binding",
                    name: name.to_owned(),
                })?;
            let own = model.bindings.get(index).and_then(|b| b.group);
            match (group, path.group) {
                (Some(g), Some(group_name)) if own != Some(g) => {
                    return Err(EvalError::NotInGroup {
                        what: "binding",
                        name: name.to_owned(),
                        group: group_name.to_owned(),
                    })
                }
                // A binding inside a group finds its group.
                _ => group = own,
            }
            Some(index)
        }
        None => None,
    };
    Ok(model.outbound_chain(group, binding, path.domain))
}

fn inbound_eval_chain(model: &Model, path: &Path<'_>) -> Result<Vec<ScopeId>, EvalError> {
    let listener = model.listener.as_ref().ok_or(EvalError::NotDeclared {
        what: "ESMTP_Listener",
        name: String::new(),
    })?;
    let listen = match path.listen {
        Some(text) => {
            let addr = super::model::parse_listen(text).map_err(EvalError::BadAddress)?;
            // A wildcard Listen serves every address of its family.
            let found = listener
                .listens
                .iter()
                .find(|l| l.addr == addr || l.text == text)
                .or_else(|| {
                    listener.listens.iter().find(|l| {
                        l.addr.port() == addr.port()
                            && l.addr.ip().is_unspecified()
                            && l.addr.is_ipv4() == addr.is_ipv4()
                    })
                });
            Some(found.ok_or_else(|| EvalError::NotDeclared {
                what: "Listen",
                name: text.to_owned(),
            })?)
        }
        None => None,
    };
    let peer = match path.peer {
        Some(text) => {
            let (network, addr) = super::model::parse_peer(text).map_err(EvalError::BadAddress)?;
            let full = if addr.is_ipv4() { 32 } else { 128 };
            if network.prefix() == full {
                model.peer_for(listen, addr)
            } else {
                let own = listen.and_then(|l| l.peers.iter().find(|p| p.network == network));
                let found = own.or_else(|| listener.peers.iter().find(|p| p.network == network));
                Some(found.ok_or_else(|| EvalError::NotDeclared {
                    what: "Peer",
                    name: text.to_owned(),
                })?)
            }
        }
        None => None,
    };
    Ok(model.inbound_chain(listen, peer))
}

fn pathway_eval_chain(model: &Model, path: &Path<'_>) -> Result<Vec<ScopeId>, EvalError> {
    let group = match path.pathway_group {
        Some(name) => Some(
            model
                .pathway_groups
                .iter()
                .position(|g| g.name == name)
                .ok_or_else(|| EvalError::NotDeclared {
                    what: "pathway_group",
                    name: name.to_owned(),
                })?,
        ),
        None => None,
    };
    let mut chain = match path.pathway {
        Some(name) => {
            let pathway = model
                .pathways
                .iter()
                .find(|p| p.name == name)
                .ok_or_else(|| EvalError::NotDeclared {
                    what: "pathway",
                    name: name.to_owned(),
                })?;
            if let (Some(g), Some(group_name)) = (group, path.pathway_group) {
                if pathway.group != Some(g) {
                    return Err(EvalError::NotInGroup {
                        what: "pathway",
                        name: name.to_owned(),
                        group: group_name.to_owned(),
                    });
                }
            }
            model.pathway_chain(name)
        }
        None => group
            .and_then(|g| model.pathway_groups.get(g))
            .map(|g| vec![g.scope])
            .unwrap_or_default(),
    };
    chain.push(GLOBAL);
    Ok(chain)
}
