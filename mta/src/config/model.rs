//! The scopes of a configuration, checked and merged: every stanza Petrel
//! implements becomes a [`Scope`] (repeated declarations of the same
//! instance share one), every option is checked against the schema and
//! converted, and everything Petrel does not implement is an error.
//!
//! Settings keep where they were written, for `config eval` and for
//! diagnostics found later, when scopes are resolved.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use petrel_runtime_common::listen::Network;
use regex::{Regex, RegexBuilder};

use super::schema::{self, OptionValue, ScopeKind};
use super::syntax::{Argument, Item, Location, Stanza, Tree};
use super::Diagnostic;

/// One option set in a scope: the last setting of it there.
#[derive(Debug, Clone)]
pub struct Set {
    /// The value.
    pub value: OptionValue,
    /// Where the option's name was written.
    pub loc: Location,
}

/// One scope instance, all its declarations merged.
#[derive(Debug, Clone)]
pub struct Scope {
    /// What kind of scope.
    pub kind: ScopeKind,
    /// How `config eval` names it: `binding_group "g" binding "b"`.
    pub label: String,
    /// Its first declaration.
    pub loc: Location,
    /// Options set in it, by canonical name.
    pub options: HashMap<&'static str, Set>,
}

/// An index into [`Model::scopes`].
pub type ScopeId = usize;

/// The global scope's id.
pub const GLOBAL: ScopeId = 0;

/// The `Domain` scopes of one container.
#[derive(Debug, Default)]
pub struct Domains {
    /// By exact (normalized) name.
    exact: Vec<(String, ScopeId)>,
    /// Regex names, in file order; the source text is the merge key.
    regexes: Vec<(String, Regex, ScopeId)>,
}

impl Domains {
    /// The scope for `domain`: an exact name wins over regexes, and among
    /// regexes the first declared.
    pub fn find(&self, domain: &str) -> Option<ScopeId> {
        let key = normalize_domain(domain);
        self.exact
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, id)| *id)
            .or_else(|| {
                self.regexes
                    .iter()
                    .find(|(_, re, _)| re.is_match(&key))
                    .map(|(_, _, id)| *id)
            })
    }
}

/// A `Binding_Group`.
#[derive(Debug)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Its scope.
    pub scope: ScopeId,
    /// Its `Domain`s.
    pub domains: Domains,
}

/// A binding: declared inside its group, at top level, or both (the same
/// binding).
#[derive(Debug)]
pub struct Binding {
    /// Its name.
    pub name: String,
    /// Its group.
    pub group: Option<usize>,
    /// Declared inside the group.
    pub in_group: Option<ScopeId>,
    /// The `Domain`s declared inside the group's declaration.
    pub in_group_domains: Domains,
    /// Declared at top level.
    pub top: Option<ScopeId>,
    /// The `Domain`s of the top-level declaration.
    pub top_domains: Domains,
}

/// A `Peer`.
#[derive(Debug)]
pub struct Peer {
    /// The network.
    pub network: Network,
    /// Its address as written (for containment between peers).
    pub addr: IpAddr,
    /// Its scope.
    pub scope: ScopeId,
}

/// A `Listen` of the `ESMTP_Listener`.
#[derive(Debug)]
pub struct Listen {
    /// The address.
    pub addr: SocketAddr,
    /// The argument as written.
    pub text: String,
    /// Its scope.
    pub scope: ScopeId,
    /// Its `Peer`s.
    pub peers: Vec<Peer>,
}

/// The `ESMTP_Listener`.
#[derive(Debug)]
pub struct Listener {
    /// Its scope.
    pub scope: ScopeId,
    /// Its `Listen`s, in file order.
    pub listens: Vec<Listen>,
    /// Its own `Peer`s.
    pub peers: Vec<Peer>,
}

/// A `Pathway_Group`.
#[derive(Debug)]
pub struct PathwayGroup {
    /// Its name.
    pub name: String,
    /// Its scope.
    pub scope: ScopeId,
}

/// A pathway: inside its group, at top level, or both.
#[derive(Debug)]
pub struct Pathway {
    /// Its name.
    pub name: String,
    /// Its group.
    pub group: Option<usize>,
    /// Declared inside the group.
    pub in_group: Option<ScopeId>,
    /// Declared at top level.
    pub top: Option<ScopeId>,
}

/// Every scope of a configuration.
#[derive(Debug)]
pub struct Model {
    /// Every scope; [`GLOBAL`] first.
    pub scopes: Vec<Scope>,
    /// The global scope's `Domain`s.
    pub domains: Domains,
    /// `Binding_Group`s.
    pub groups: Vec<Group>,
    /// Bindings.
    pub bindings: Vec<Binding>,
    /// The `ESMTP_Listener`, if any.
    pub listener: Option<Listener>,
    /// `Pathway_Group`s.
    pub pathway_groups: Vec<PathwayGroup>,
    /// Pathways.
    pub pathways: Vec<Pathway>,
    /// Every option's default value, by canonical name.
    pub defaults: HashMap<&'static str, OptionValue>,
}

/// Where the walker is, with what it needs to place child stanzas.
#[derive(Debug, Clone, Copy)]
enum Ctx {
    Global,
    Domain,
    Group(usize),
    Binding { binding: usize, in_group: bool },
    Listener,
    Listen(usize),
    Peer,
    PathwayGroup(usize),
    Pathway,
}

impl Ctx {
    fn kind(self) -> ScopeKind {
        match self {
            Ctx::Global => ScopeKind::Global,
            Ctx::Domain => ScopeKind::Domain,
            Ctx::Group(_) => ScopeKind::BindingGroup,
            Ctx::Binding { .. } => ScopeKind::Binding,
            Ctx::Listener => ScopeKind::EsmtpListener,
            Ctx::Listen(_) => ScopeKind::Listen,
            Ctx::Peer => ScopeKind::Peer,
            Ctx::PathwayGroup(_) => ScopeKind::PathwayGroup,
            Ctx::Pathway => ScopeKind::Pathway,
        }
    }
}

/// A domain name as scopes are matched: lower case, no trailing dot,
/// `[192.0.2.1]` as `192.0.2.1`, `[IPv6:…]` with the address in its
/// canonical form.
pub fn normalize_domain(domain: &str) -> String {
    let lower = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if let Some(inner) = lower.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        if let Some(v6) = inner.strip_prefix("ipv6:") {
            if let Ok(addr) = v6.parse::<Ipv6Addr>() {
                return format!("[ipv6:{addr}]");
            }
        } else if let Ok(addr) = inner.parse::<Ipv4Addr>() {
            return addr.to_string();
        }
    }
    lower
}

/// A `Listen` address: `":25"` and `"*:25"` (every IPv4 address),
/// `"[*]:25"` (every IPv6 address), `"127.0.0.1:25"`, `"[::1]:8650"`.
/// Port 0 (Petrel's addition) lets the kernel choose; `petrel` prints the
/// address it got, which is what tests and scripts need.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if text.starts_with('/') {
        return Err(format!(
            "{text:?} is a Unix-domain socket, which ESMTP_Listener does not support in Petrel: \
             give \"address:port\""
        ));
    }
    let bad = || format!("expected \"address:port\" (\":25\", \"[::1]:25\"), found {text:?}");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let ip = match host {
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "[*]" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => IpAddr::V6(v6.parse().map_err(|_| bad())?),
            None => IpAddr::V4(host.parse().map_err(|_| bad())?),
        },
    };
    Ok(SocketAddr::new(ip, port))
}

/// A `Peer` argument: an address or CIDR network, and its address part.
pub fn parse_peer(text: &str) -> Result<(Network, IpAddr), String> {
    let network = Network::from_str(text.trim()).map_err(|e| e.to_string())?;
    let addr = text
        .trim()
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("bad network address {text:?}"))?;
    Ok((network, addr))
}

/// `"text"` as a label shows a stanza argument.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\\\""))
}

/// Builds the model of `tree`: everything not an error is in it; errors
/// and warnings go to `diagnostics`.
pub fn build(tree: &Tree, diagnostics: &mut Vec<Diagnostic>) -> Model {
    let mut builder = Builder {
        model: Model {
            scopes: Vec::new(),
            domains: Domains::default(),
            groups: Vec::new(),
            bindings: Vec::new(),
            listener: None,
            pathway_groups: Vec::new(),
            pathways: Vec::new(),
            defaults: schema::OPTIONS
                .iter()
                .filter_map(|spec| Some((spec.name, spec.default_value()?)))
                .collect(),
        },
        diagnostics,
    };
    let start = Location {
        source: std::sync::Arc::clone(&tree.source),
        pos: super::lexer::Pos { line: 1, column: 1 },
    };
    builder.new_scope(ScopeKind::Global, "global".to_owned(), start);
    builder.walk(&tree.items, Ctx::Global, GLOBAL);
    builder.check_references();
    builder.model
}

struct Builder<'d> {
    model: Model,
    diagnostics: &'d mut Vec<Diagnostic>,
}

impl Builder<'_> {
    fn new_scope(&mut self, kind: ScopeKind, label: String, loc: Location) -> ScopeId {
        self.model.scopes.push(Scope {
            kind,
            label,
            loc,
            options: HashMap::new(),
        });
        self.model.scopes.len() - 1
    }

    fn label(&self, id: ScopeId) -> String {
        self.model
            .scopes
            .get(id)
            .map_or_else(String::new, |s| s.label.clone())
    }

    fn walk(&mut self, items: &[Item], ctx: Ctx, id: ScopeId) {
        for item in items {
            match item {
                Item::Setting(setting) => self.option(setting, ctx, id),
                Item::Include(include) => self.walk(&include.items, ctx, id),
                Item::Stanza(stanza) => self.stanza(stanza, ctx, id),
            }
        }
    }

    fn option(&mut self, setting: &super::syntax::Setting, ctx: Ctx, id: ScopeId) {
        let Some(spec) = schema::find(&setting.name) else {
            let message = if schema::is_momentum_option(&setting.name) {
                format!(
                    "Momentum option \"{}\" is not implemented by Petrel",
                    setting.name
                )
            } else {
                format!("unknown option \"{}\"", setting.name)
            };
            self.diagnostics.push(setting.loc.error(message));
            return;
        };
        let kind = ctx.kind();
        if !spec.scopes.contains(kind) {
            let mut message = format!(
                "option \"{}\" is not valid in {} scope (valid in: {})",
                spec.name,
                kind,
                spec.scopes.list()
            );
            if let Some(note) = spec.scope_note {
                message.push_str("; ");
                message.push_str(note);
            }
            self.diagnostics.push(setting.loc.error(message));
            return;
        }
        let Some(value) = schema::convert(spec, &setting.value, self.diagnostics) else {
            return;
        };
        let Some(scope) = self.model.scopes.get_mut(id) else {
            return;
        };
        let set = Set {
            value,
            loc: setting.loc.clone(),
        };
        if let Some(previous) = scope.options.insert(spec.name, set) {
            // Across files, setting an option again is how an included
            // file overrides: only a repetition within one file is
            // worth a word.
            if previous.loc.source.name == setting.loc.source.name {
                self.diagnostics.push(setting.loc.warning(format!(
                    "\"{}\" is set again in this scope (first at {}); the last setting wins",
                    spec.name, previous.loc.pos
                )));
            }
        }
    }

    fn stanza(&mut self, stanza: &Stanza, ctx: Ctx, id: ScopeId) {
        let Some(kind) = ScopeKind::from_keyword(&stanza.keyword) else {
            self.diagnostics
                .push(stanza.loc.error(schema::unknown_stanza(&stanza.keyword)));
            return;
        };
        if !ctx.kind().children().contains(&kind) {
            let parents: Vec<&str> = ScopeKind::ALL
                .into_iter()
                .filter(|p| p.children().contains(&kind))
                .map(ScopeKind::keyword)
                .collect();
            self.diagnostics.push(stanza.loc.error(format!(
                "stanza \"{}\" is not valid in {} scope (valid in: {})",
                stanza.keyword,
                ctx.kind(),
                parents.join(", ")
            )));
            return;
        }
        let argument = match (&stanza.argument, kind.takes_argument()) {
            (Some(arg), true) => Some(arg),
            (None, false) => None,
            (None, true) => {
                self.diagnostics.push(stanza.loc.error(format!(
                    "\"{}\" needs a name: {} \"name\" {{ … }}",
                    stanza.keyword,
                    kind.keyword()
                )));
                return;
            }
            (Some(arg), false) => {
                self.diagnostics.push(arg.loc.error(format!(
                    "\"{}\" takes no name: {} {{ … }}",
                    stanza.keyword,
                    kind.keyword()
                )));
                return;
            }
        };
        let child = match (kind, argument) {
            (ScopeKind::EsmtpListener, _) => self.listener(stanza).map(|id| (Ctx::Listener, id)),
            (_, Some(arg)) => self.child(kind, arg, stanza, ctx, id),
            (_, None) => None,
        };
        if let Some((child_ctx, child_id)) = child {
            self.walk(&stanza.items, child_ctx, child_id);
        }
    }

    fn listener(&mut self, stanza: &Stanza) -> Option<ScopeId> {
        if let Some(listener) = &self.model.listener {
            return Some(listener.scope);
        }
        let scope = self.new_scope(
            ScopeKind::EsmtpListener,
            "ESMTP_Listener".to_owned(),
            stanza.loc.clone(),
        );
        self.model.listener = Some(Listener {
            scope,
            listens: Vec::new(),
            peers: Vec::new(),
        });
        Some(scope)
    }

    fn error(&mut self, loc: &Location, message: String) -> Option<(Ctx, ScopeId)> {
        self.diagnostics.push(loc.error(message));
        None
    }

    /// The child scope `kind "arg"` of `parent`, created or found.
    fn child(
        &mut self,
        kind: ScopeKind,
        arg: &Argument,
        stanza: &Stanza,
        ctx: Ctx,
        parent: ScopeId,
    ) -> Option<(Ctx, ScopeId)> {
        let label = match ctx {
            Ctx::Global => format!("{} {}", kind.keyword(), quote(&arg.text)),
            _ => format!(
                "{} {} {}",
                self.label(parent),
                kind.keyword(),
                quote(&arg.text)
            ),
        };
        let loc = stanza.loc.clone();
        match kind {
            ScopeKind::Domain => self
                .domain(arg, ctx, label, loc)
                .map(|id| (Ctx::Domain, id)),
            ScopeKind::BindingGroup => {
                let index = match self.model.groups.iter().position(|g| g.name == arg.text) {
                    Some(i) => i,
                    None => {
                        let scope = self.new_scope(kind, label, loc);
                        self.model.groups.push(Group {
                            name: arg.text.clone(),
                            scope,
                            domains: Domains::default(),
                        });
                        self.model.groups.len() - 1
                    }
                };
                let scope = self.model.groups.get(index)?.scope;
                Some((Ctx::Group(index), scope))
            }
            ScopeKind::Binding => {
                let group = match ctx {
                    Ctx::Group(g) => Some(g),
                    _ => None,
                };
                let index = match self.model.bindings.iter().position(|b| b.name == arg.text) {
                    Some(i) => i,
                    None => {
                        self.model.bindings.push(Binding {
                            name: arg.text.clone(),
                            group: None,
                            in_group: None,
                            in_group_domains: Domains::default(),
                            top: None,
                            top_domains: Domains::default(),
                        });
                        self.model.bindings.len() - 1
                    }
                };
                let existing = self.model.bindings.get(index)?;
                if let (Some(g), Some(other)) = (group, existing.group) {
                    if g != other {
                        let other = self.model.groups.get(other).map_or("", |g| g.name.as_str());
                        let message = format!(
                            "binding \"{}\" is already in binding_group \"{other}\"; a binding \
                             belongs to one group",
                            arg.text
                        );
                        return self.error(&arg.loc, message);
                    }
                }
                let slot = if group.is_some() {
                    existing.in_group
                } else {
                    existing.top
                };
                let scope = match slot {
                    Some(scope) => scope,
                    None => self.new_scope(kind, label, loc),
                };
                let binding = self.model.bindings.get_mut(index)?;
                if group.is_some() {
                    binding.group = group;
                    binding.in_group = Some(scope);
                } else {
                    binding.top = Some(scope);
                }
                Some((
                    Ctx::Binding {
                        binding: index,
                        in_group: group.is_some(),
                    },
                    scope,
                ))
            }
            ScopeKind::Listen => {
                let addr = match parse_listen(&arg.text) {
                    Ok(addr) => addr,
                    Err(e) => return self.error(&arg.loc, e),
                };
                let existing = self
                    .model
                    .listener
                    .as_ref()?
                    .listens
                    .iter()
                    .position(|l| l.addr == addr);
                let index = match existing {
                    Some(i) => i,
                    None => {
                        let scope = self.new_scope(kind, label, loc);
                        let listener = self.model.listener.as_mut()?;
                        listener.listens.push(Listen {
                            addr,
                            text: arg.text.clone(),
                            scope,
                            peers: Vec::new(),
                        });
                        listener.listens.len() - 1
                    }
                };
                let scope = self.model.listener.as_ref()?.listens.get(index)?.scope;
                Some((Ctx::Listen(index), scope))
            }
            ScopeKind::Peer => {
                let (network, addr) = match parse_peer(&arg.text) {
                    Ok(parsed) => parsed,
                    Err(e) => return self.error(&arg.loc, format!("Peer: {e}")),
                };
                let found = {
                    let listener = self.model.listener.as_ref()?;
                    let peers = match ctx {
                        Ctx::Listen(l) => &listener.listens.get(l)?.peers,
                        _ => &listener.peers,
                    };
                    peers.iter().find(|p| p.network == network).map(|p| p.scope)
                };
                let scope = match found {
                    Some(scope) => scope,
                    None => {
                        let scope = self.new_scope(kind, label, loc);
                        let listener = self.model.listener.as_mut()?;
                        let peers = match ctx {
                            Ctx::Listen(l) => &mut listener.listens.get_mut(l)?.peers,
                            _ => &mut listener.peers,
                        };
                        peers.push(Peer {
                            network,
                            addr,
                            scope,
                        });
                        scope
                    }
                };
                Some((Ctx::Peer, scope))
            }
            ScopeKind::PathwayGroup => {
                let index = match self
                    .model
                    .pathway_groups
                    .iter()
                    .position(|g| g.name == arg.text)
                {
                    Some(i) => i,
                    None => {
                        let scope = self.new_scope(kind, label, loc);
                        self.model.pathway_groups.push(PathwayGroup {
                            name: arg.text.clone(),
                            scope,
                        });
                        self.model.pathway_groups.len() - 1
                    }
                };
                let scope = self.model.pathway_groups.get(index)?.scope;
                Some((Ctx::PathwayGroup(index), scope))
            }
            ScopeKind::Pathway => {
                let group = match ctx {
                    Ctx::PathwayGroup(g) => Some(g),
                    _ => None,
                };
                let index = match self.model.pathways.iter().position(|p| p.name == arg.text) {
                    Some(i) => i,
                    None => {
                        self.model.pathways.push(Pathway {
                            name: arg.text.clone(),
                            group: None,
                            in_group: None,
                            top: None,
                        });
                        self.model.pathways.len() - 1
                    }
                };
                let existing = self.model.pathways.get(index)?;
                if let (Some(g), Some(other)) = (group, existing.group) {
                    if g != other {
                        let other = self
                            .model
                            .pathway_groups
                            .get(other)
                            .map_or("", |g| g.name.as_str());
                        let message = format!(
                            "pathway \"{}\" is already in pathway_group \"{other}\"; a pathway \
                             belongs to one group",
                            arg.text
                        );
                        return self.error(&arg.loc, message);
                    }
                }
                let slot = if group.is_some() {
                    existing.in_group
                } else {
                    existing.top
                };
                let scope = match slot {
                    Some(scope) => scope,
                    None => self.new_scope(kind, label, loc),
                };
                let pathway = self.model.pathways.get_mut(index)?;
                if group.is_some() {
                    pathway.group = group;
                    pathway.in_group = Some(scope);
                } else {
                    pathway.top = Some(scope);
                }
                Some((Ctx::Pathway, scope))
            }
            ScopeKind::Global | ScopeKind::EsmtpListener => None,
        }
    }

    fn domain(
        &mut self,
        arg: &Argument,
        ctx: Ctx,
        label: String,
        loc: Location,
    ) -> Option<ScopeId> {
        let text = arg.text.trim();
        let regex = match text.strip_prefix('/').and_then(|t| t.strip_suffix('/')) {
            Some(pattern) if text.len() >= 2 => {
                // Domains are case-insensitive, so regexes match them so.
                match RegexBuilder::new(pattern)
                    .case_insensitive(true)
                    .size_limit(1 << 20)
                    .build()
                {
                    Ok(re) => Some(re),
                    Err(e) => {
                        let detail = e.to_string();
                        let last = detail.lines().last().unwrap_or("").trim();
                        let message = format!("invalid regular expression {text}: {last}");
                        self.diagnostics.push(arg.loc.error(message));
                        return None;
                    }
                }
            }
            _ => None,
        };
        let key = match regex {
            Some(_) => text.to_owned(),
            None => normalize_domain(text),
        };
        if key.is_empty() {
            self.diagnostics.push(
                arg.loc
                    .error("domain: expected a domain name, found an empty one"),
            );
            return None;
        }
        let existing = {
            let domains = self.domains_mut(ctx)?;
            match &regex {
                Some(_) => domains
                    .regexes
                    .iter()
                    .find(|(k, _, _)| *k == key)
                    .map(|(_, _, id)| *id),
                None => domains
                    .exact
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, id)| *id),
            }
        };
        if existing.is_some() {
            return existing;
        }
        let scope = self.new_scope(ScopeKind::Domain, label, loc);
        let domains = self.domains_mut(ctx)?;
        match regex {
            Some(re) => domains.regexes.push((key, re, scope)),
            None => domains.exact.push((key, scope)),
        }
        Some(scope)
    }

    fn domains_mut(&mut self, ctx: Ctx) -> Option<&mut Domains> {
        match ctx {
            Ctx::Global => Some(&mut self.model.domains),
            Ctx::Group(g) => self.model.groups.get_mut(g).map(|g| &mut g.domains),
            Ctx::Binding { binding, in_group } => self.model.bindings.get_mut(binding).map(|b| {
                if in_group {
                    &mut b.in_group_domains
                } else {
                    &mut b.top_domains
                }
            }),
            _ => None,
        }
    }

    /// `Binding = "x"` and `Pathway = "x"` must name a declared binding
    /// (or Momentum's implicit `default`) and a declared pathway.
    fn check_references(&mut self) {
        let mut errors = Vec::new();
        for scope in &self.model.scopes {
            if let Some(Set {
                value: OptionValue::Text(name),
                loc,
            }) = scope.options.get("Binding")
            {
                if name != "default" && !self.model.bindings.iter().any(|b| b.name == *name) {
                    errors.push(loc.error(format!("Binding: no binding \"{name}\" is declared")));
                }
            }
            if let Some(Set {
                value: OptionValue::Text(name),
                loc,
            }) = scope.options.get("Pathway")
            {
                if !self.model.pathways.iter().any(|p| p.name == *name) {
                    errors.push(loc.error(format!("Pathway: no pathway \"{name}\" is declared")));
                }
            }
        }
        self.diagnostics.append(&mut errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        let a = |s: &str| parse_listen(s).map(|a| a.to_string());
        assert_eq!(a(":25"), Ok("0.0.0.0:25".into()));
        assert_eq!(a("*:25"), Ok("0.0.0.0:25".into()));
        assert_eq!(a("[*]:25"), Ok("[::]:25".into()));
        assert_eq!(a("127.0.0.1:25"), Ok("127.0.0.1:25".into()));
        assert_eq!(a("[::1]:8650"), Ok("[::1]:8650".into()));
        assert_eq!(a("[::]:25"), Ok("[::]:25".into()));
        assert!(a("/tmp/2025").unwrap_err().contains("Unix-domain"));
        assert!(a("25").is_err());
        assert_eq!(a("127.0.0.1:0"), Ok("127.0.0.1:0".into()));
        assert!(a("1.2.3.4:65536").is_err());
    }

    #[test]
    fn domain_names_normalize() {
        assert_eq!(normalize_domain("Example.COM."), "example.com");
        assert_eq!(normalize_domain("[192.0.2.1]"), "192.0.2.1");
        assert_eq!(
            normalize_domain("[IPv6:FD82:7796:815b:be0:222:19ff:fe52:3629]"),
            "[ipv6:fd82:7796:815b:be0:222:19ff:fe52:3629]"
        );
    }
}
