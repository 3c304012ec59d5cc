#![cfg(test)]
//! The configuration language end to end: Momentum's published samples,
//! every option in every scope, each error at its line and column, and
//! `config eval` over a table of precedence cases.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use petrel::config::policy::{CertificateSource, HostPort, MaxRetries, Route};
use petrel::config::schema::{Kind, ScopeKind, OPTIONS};
use petrel::config::{
    check_syntax, eval, load, load_str, Diagnostic, EvalError, Loaded, Severity, DEFAULT_CONFIG,
};
use petrel_core::client::tls_policy::TlsMode;
use petrel_core::tls::TlsVerify;
use quickcheck::quickcheck;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/momentum")
}

fn sample(name: &str) -> PathBuf {
    let dir = samples();
    let prefix = format!("{name}-");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .unwrap_or_else(|| panic!("no sample {name}"))
}

/// Diagnostics as `LINE:COL: severity: message`, without the file.
fn short(diagnostics: &[Diagnostic]) -> Vec<String> {
    diagnostics
        .iter()
        .map(|d| format!("{}:{}: {}: {}", d.line, d.column, d.severity, d.message))
        .collect()
}

fn load_text(text: &str) -> Result<Loaded, Vec<String>> {
    load_str("t.conf", text, Path::new("/etc/petrel")).map_err(|d| short(&d))
}

fn errors(text: &str) -> Vec<String> {
    match load_text(text) {
        Ok(_) => panic!("loaded:\n{text}"),
        Err(errors) => errors,
    }
}

fn warnings(text: &str) -> Vec<String> {
    match load_text(text) {
        Ok(loaded) => short(&loaded.warnings),
        Err(errors) => panic!("{errors:?}"),
    }
}

const BROKEN: &[&str] = &["05", "07", "09", "12", "29", "37", "38", "40"];

#[test]
fn every_sample_marked_parseable_passes_the_syntax_check() {
    for n in 1..=41 {
        let name = format!("{n:02}");
        if BROKEN.contains(&name.as_str()) {
            continue;
        }
        let diagnostics = check_syntax(&sample(&name));
        assert!(diagnostics.is_empty(), "{name}: {diagnostics:?}");
    }
}

#[test]
fn broken_samples_fail_where_they_are_broken() {
    let expect: &[(&str, &[&str])] = &[
        ("05", &["22:3: error: expected an option name, a stanza or \"}\", found \"...\""]),
        ("07", &["17:3: error: expected an option name, a stanza or \"}\", found \"**\""]),
        (
            "09",
            &["4:7: error: expected an option name, a stanza or \"}\", found \"**Listen_Backlog\""],
        ),
        (
            "12",
            &[
                "2:19: error: expected an option name, a stanza or \"}\", found \"...\"",
                "3:32: error: expected an option name, a stanza or \"}\", found \"...\"",
                "4:56: error: expected an option name, a stanza or \"}\", found \"...\"",
            ],
        ),
        ("29", &["19:7: error: expected an option name, a stanza or \"}\", found \"...\""]),
        ("37", &["14:3: error: expected an option name, a stanza or \"}\", found \"...\""]),
        (
            "38",
            &["9:1: error: expected \"}\" to close \"binding\" opened at 2:1, found end of file"],
        ),
        ("40", &["23:3: error: expected an option name, a stanza or \"}\", found \"...\""]),
    ];
    for (name, expected) in expect {
        let path = sample(name);
        let diagnostics = check_syntax(&path);
        assert_eq!(short(&diagnostics), *expected, "{name}");
        assert!(diagnostics.iter().all(|d| d.file == path));
        // The full check stops at the same syntax errors.
        assert_eq!(short(&load(&path).unwrap_err()), *expected, "{name}");
    }
}

#[test]
fn samples_within_petrels_options_load() {
    for name in [
        "01", "11", "21", "22", "23", "24", "25", "26", "28", "30", "31", "36",
    ] {
        let loaded = load(&sample(name)).unwrap_or_else(|e| panic!("{name}: {:?}", short(&e)));
        assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
    }
    let loaded = load(&sample("04")).unwrap();
    assert_eq!(
        short(&loaded.warnings),
        [
            "9:21: warning: TLS_Protocols: TLSv1.0, TLSv1.1 cannot be enabled: Petrel's engines \
          speak TLS 1.2 and 1.3 only"
        ]
    );
}

#[test]
fn samples_beyond_petrel_fail_at_each_unsupported_thing() {
    let first = |name: &str| short(&load(&sample(name)).unwrap_err());
    assert_eq!(
        first("02"),
        [
            "6:21: error: TLS_Client_CA: refused: Petrel's listeners do not ask for client \
             certificates (its TLS engines have no client-certificate verification), so a \
             client CA could not take effect",
            "8:23: error: TLS_Verify_Mode: \"require\" is refused: Petrel's listeners neither ask \
             for nor verify client certificates (its TLS engines are given no client CA); use \
             \"none\" or remove it",
        ]
    );
    assert_eq!(
        first("03")[0],
        "4:5: error: Momentum option \"Use_SSL\" is not implemented by Petrel"
    );
    assert_eq!(
        first("14")[0],
        "7:5: error: option \"Listener_Sessions\" is not valid in Peer scope (valid in: \
         ESMTP_Listener); Petrel limits sessions over the whole ESMTP_Listener only"
    );
    assert_eq!(
        first("17")[0],
        "3:1: error: Momentum module \"auth_radius\" is not implemented by Petrel"
    );
    assert_eq!(
        first("18")[0],
        "3:28: error: SMTP_Extensions: SMTP extension \"XREMOTEIP\" is not implemented by Petrel"
    );
    assert_eq!(
        first("20"),
        ["8:1: error: Momentum stanza \"Control_Listener\" is not implemented by Petrel"]
    );
    assert!(first("34")[0].starts_with("4:3: error: cannot read included file"));
    let cluster = first("41");
    assert_eq!(cluster.len(), 5, "{cluster:?}");
    assert!(cluster[4].starts_with("28:1: error: Momentum module \"cluster\""));
}

#[test]
fn lower_and_mixed_case_give_the_same_tree_and_values() {
    let lower = load(&sample("30")).unwrap();
    let mixed = load(&sample("31")).unwrap();
    assert_eq!(lower.tree.normalized(), mixed.tree.normalized());
    for option in ["Retry_Interval", "max_retry_interval", "MAX_RETRIES"] {
        let words = [option.to_owned()];
        assert_eq!(
            eval(&lower, &words).unwrap().value,
            eval(&mixed, &words).unwrap().value
        );
    }
    let policy = lower.policies.outbound("default", "example.com");
    assert_eq!(policy.max_retries, MaxRetries::Count(5));
    assert_eq!(policy.max_retry_interval.as_secs(), 1200);
}

#[test]
fn a_repeated_scope_instance_merges() {
    let loaded = load(&sample("26")).unwrap();
    for (binding, address) in [("example", "10.10.10.10"), ("example2", "10.10.10.11")] {
        let policy = loaded.policies.outbound(binding, "x.org");
        assert_eq!(policy.bind_address, Some(address.parse().unwrap()));
        assert_eq!(policy.max_outbound_connections, 5);
    }
}

/// A value of `kind` that is valid anywhere the option is.
fn sample_value(kind: Kind, name: &str) -> &'static str {
    match kind {
        Kind::Bool => "false",
        Kind::Count { min, .. } if min > 1 => unreachable!("{name}"),
        Kind::Count { .. } => "1",
        Kind::Limit => "100",
        Kind::Seconds => "60",
        Kind::Port => "2525",
        Kind::Text => "\"text\"",
        Kind::Path => "\"/tmp/x\"",
        Kind::Name if name == "Pathway" => "\"p\"",
        Kind::Name => "\"default\"",
        Kind::TlsMode => "required",
        Kind::TlsVerify => "\"ca\"",
        Kind::TlsEngine => "openssl",
        Kind::Injection => "ignore",
        Kind::Runtime => "mio",
        Kind::VerifyMode => "\"none\"",
        Kind::Ciphers => "\"DEFAULT\"",
        Kind::Protocols => "\"+ALL:-SSLv2:-SSLv3:-TLSv1.0:-TLSv1.1\"",
        Kind::ClientCa => "\"/tmp/ca.pem\"",
        Kind::Extensions => "( PIPELINING \"8BITMIME\" )",
        Kind::Networks => "( \"10.0.0.0/8\" ::1 )",
        Kind::Domains => "( example.com *.example.com )",
        Kind::Ip => "10.0.0.1",
        Kind::MaxRetries => "\"none\"",
        Kind::HostPort => "\"[fe80::a00]:1\"",
        Kind::Routes => "( \"smtp://relay.example.com?pref=1\" \"__mx__\" )",
        Kind::NameServers => "( \"127.0.0.1:5353\" \"[::1]\" )",
    }
}

/// A configuration with `line` in a scope of `kind`, and the position of
/// `line` in it.
fn in_scope(kind: ScopeKind, line: &str) -> (String, u32, u32) {
    let (open, close, indent): (&[&str], usize, usize) = match kind {
        ScopeKind::Global => (&[], 0, 0),
        ScopeKind::Domain => (&["domain \"example.com\" {"], 1, 2),
        ScopeKind::BindingGroup => (&["binding_group \"g\" {"], 1, 2),
        ScopeKind::Binding => (&["binding_group \"g\" {", "  binding \"b\" {"], 2, 4),
        ScopeKind::EsmtpListener => (&["ESMTP_Listener {"], 1, 2),
        ScopeKind::Listen => (&["ESMTP_Listener {", "  Listen \"127.0.0.1:2525\" {"], 2, 4),
        ScopeKind::Peer => (
            &[
                "ESMTP_Listener {",
                "  Listen \"127.0.0.1:2525\" {",
                "    Peer \"10.0.0.0/8\" {",
            ],
            3,
            6,
        ),
        ScopeKind::PathwayGroup => (&["pathway_group \"pg\" {"], 1, 2),
        ScopeKind::Pathway => (&["pathway_group \"pg\" {", "  pathway \"p\" {"], 2, 4),
    };
    let mut text = String::from("# scope test\npathway \"p\" {}\n");
    for l in open {
        text.push_str(l);
        text.push('\n');
    }
    let line_number = u32::try_from(text.lines().count() + 1).unwrap();
    text.push_str(&" ".repeat(indent));
    text.push_str(line);
    text.push('\n');
    for _ in 0..close {
        text.push_str("}\n");
    }
    (text, line_number, u32::try_from(indent + 1).unwrap())
}

#[test]
fn every_option_in_every_scope() {
    let mut checked = 0;
    for spec in OPTIONS {
        let mut line = format!("{} = {}", spec.name, sample_value(spec.kind, spec.name));
        // A certificate needs its key where listeners use it.
        if spec.name == "TLS_Certificate" {
            line.push_str(" TLS_Key = \"/tmp/k\"");
        } else if spec.name == "TLS_Key" {
            line.push_str(" TLS_Certificate = \"/tmp/c\"");
        }
        for kind in ScopeKind::ALL {
            let (text, l, c) = in_scope(kind, &line);
            let result = load_text(&text);
            let at = format!("{l}:{c}: error: ");
            if !spec.scopes.contains(kind) {
                let errors = result.err().unwrap_or_else(|| panic!("accepted:\n{text}"));
                let expected = format!(
                    "{at}option \"{}\" is not valid in {kind} scope (valid in: {})",
                    spec.name,
                    spec.scopes.list()
                );
                assert!(
                    errors.iter().any(|e| e.starts_with(&expected)),
                    "{expected}\n{errors:?}\n{text}"
                );
            } else if spec.kind == Kind::ClientCa {
                let errors = result.unwrap_err();
                assert!(errors[0].contains("TLS_Client_CA: refused"), "{errors:?}");
            } else {
                let loaded = result.unwrap_or_else(|e| panic!("{e:?}\n{text}"));
                assert!(loaded.warnings.is_empty(), "{:?}\n{text}", loaded.warnings);
                // And eval finds it there, except where the path needs
                // more than the scope's keyword.
                if kind == ScopeKind::Global {
                    let value = eval(&loaded, &[spec.name.to_owned()]).unwrap();
                    assert!(
                        value.to_string().ends_with(&format!("t.conf:{l}")),
                        "{value}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, OPTIONS.len() * 9);
}

#[test]
fn each_error_names_its_place() {
    let cases: &[(&str, &str)] = &[
        ("Frobnicate = 1\n", "1:1: error: unknown option \"Frobnicate\""),
        ("x {\n}\n", "1:1: error: unknown stanza \"x\""),
        (
            "opendkim \"o\" {\n  key = \"k\"\n}\n",
            "1:1: error: Momentum module \"opendkim\" is not implemented by Petrel",
        ),
        (
            "ESMTP_Listener {\n  apn {}\n}\n",
            "2:3: error: Momentum module \"apn\" is not implemented by Petrel",
        ),
        (
            "Listen \":25\" {}\n",
            "1:1: error: stanza \"Listen\" is not valid in global scope (valid in: ESMTP_Listener)",
        ),
        (
            "domain \"a\" {\n  binding \"b\" {}\n}\n",
            "2:3: error: stanza \"binding\" is not valid in domain scope (valid in: global, \
             binding_group)",
        ),
        ("binding {\n}\n", "1:1: error: \"binding\" needs a name: binding \"name\" { … }"),
        (
            "ESMTP_Listener \"x\" {}\n",
            "1:16: error: \"ESMTP_Listener\" takes no name: ESMTP_Listener { … }",
        ),
        (
            "domain \"/a(b/\" {}\n",
            "1:8: error: invalid regular expression /a(b/: error: unclosed group",
        ),
        (
            "ESMTP_Listener {\n  Listen \"/tmp/x\" {}\n}\n",
            "2:10: error: \"/tmp/x\" is a Unix-domain socket, which ESMTP_Listener does not support \
             in Petrel: give \"address:port\"",
        ),
        (
            "ESMTP_Listener {\n  Peer \"10.0.0.0/33\" {}\n}\n",
            "2:8: error: Peer: prefix /33 too long for 10.0.0.0",
        ),
        (
            "TLS_Engine = gnutls\n",
            "1:14: error: TLS_Engine: \"gnutls\" is refused: Petrel has the rustls and OpenSSL \
             engines only; use \"rustls\" (the default; never renegotiates) or \"openssl\"",
        ),
        (
            "ESMTP_Listener {\n  STARTTLS_Injection_Policy = \"allow\"\n}\n",
            "2:31: error: STARTTLS_Injection_Policy: STARTTLS_Injection_Policy \"allow\" is \
             refused: it processes injected plaintext as if it had come over TLS \
             (CVE-2011-0411); use \"reject\" or \"ignore\"",
        ),
        (
            "TLS_Protocols = \"+ALL:-TLSv1.3\"\n",
            "1:17: error: TLS_Protocols: \"+ALL:-TLSv1.3\" is refused: it turns off TLS 1.2 or \
             TLS 1.3, and Petrel's engines always offer both (and nothing older)",
        ),
        ("TLS = maybe\n", "1:7: error: TLS: unknown TLS mode \"maybe\": expected \"no\", \"ifavailable\" or \"required\""),
        ("Retry_Interval = 20m\n", "1:18: error: Retry_Interval: expected a whole number, found \"20m\""),
        ("Retry_Interval = ( 1 )\n", "1:18: error: Retry_Interval: expected a single value, found an array"),
        (
            "ESMTP_Listener {\n  Max_Message_Size = 0\n}\n",
            "2:22: error: Max_Message_Size: 0 (Momentum's \"no limit\") is refused: Petrel always \
             has a limit here; give one",
        ),
        (
            "Relay_Hosts = ( \"10.0.0.0/8\"\n  \"banana\" )\n",
            "2:3: error: Relay_Hosts: bad network address \"banana\"",
        ),
        (
            "binding_group \"a\" {\n  binding \"b\" {}\n}\nbinding_group \"c\" {\n  binding \"b\" {}\n}\n",
            "5:11: error: binding \"b\" is already in binding_group \"a\"; a binding belongs to one group",
        ),
        (
            "ESMTP_Listener {\n  Binding = \"nosuch\"\n}\n",
            "2:3: error: Binding: no binding \"nosuch\" is declared",
        ),
        (
            "ESMTP_Listener {\n  Listen \":25\" {\n    Pathway = \"nosuch\"\n  }\n}\n",
            "3:5: error: Pathway: no pathway \"nosuch\" is declared",
        ),
        (
            "ESMTP_Listener {\n  TLS_Certificate = \"c.pem\"\n  Listen \":25\" {}\n}\n",
            "2:3: error: TLS_Certificate is set but TLS_Key is not",
        ),
        (
            "Routes = ( \"lmtp://10.0.0.1\" )\n",
            "1:12: error: Routes: route scheme \"lmtp\" is not implemented by Petrel: it delivers \
             over SMTP only",
        ),
    ];
    for (text, expected) in cases {
        let found = errors(text);
        assert_eq!(
            found.first().map(String::as_str),
            Some(*expected),
            "{text}\n{found:?}"
        );
    }
}

#[test]
fn all_errors_of_a_file_are_reported() {
    let found = errors("A = 1\nESMTP_Listener {\n  B = 2\n  TLS = no\n}\nopendkim {}\n");
    assert_eq!(
        found,
        [
            "1:1: error: unknown option \"A\"",
            "3:3: error: unknown option \"B\"",
            "4:3: error: option \"TLS\" is not valid in ESMTP_Listener scope (valid in: global, \
             domain, binding_group, binding)",
            "6:1: error: Momentum module \"opendkim\" is not implemented by Petrel",
        ]
    );
}

#[test]
fn warnings_for_settings_that_cannot_take_effect() {
    let text = "ESMTP_Listener {\n  TLS_Allow_Renegotiation = true\n  TLS_Self_Signed = true\n  \
                Listen \":25\" {}\n  Listen \":26\" {}\n}\n";
    assert_eq!(
        warnings(text),
        ["2:3: warning: TLS_Allow_Renegotiation = true has no effect with TLS_Engine \"rustls\": \
          rustls never renegotiates (TLS_Engine = \"openssl\" can)"]
    );
    // Momentum's default true is no reason for a warning, nor is the
    // setting with the engine that honours it.
    assert!(
        warnings("ESMTP_Listener {\n  TLS_Self_Signed = true\n  Listen \":25\" {}\n}\n").is_empty()
    );
    assert!(warnings(&format!("TLS_Engine = openssl\n{text}")).is_empty());
    assert_eq!(
        warnings(
            "ESMTP_Listener {\n  Listen \":25\" {\n    SMTP_Extensions = ( STARTTLS )\n  }\n}\n"
        ),
        [
            "3:5: warning: STARTTLS is listed but no certificate is set (TLS_Certificate and \
          TLS_Key, or TLS_Self_Signed = true): it is not advertised"
        ]
    );
    assert_eq!(
        warnings("TLS = no\nTLS = required\n"),
        ["2:1: warning: \"TLS\" is set again in this scope (first at 1:1); the last setting wins"]
    );
}

#[test]
fn the_embedded_default_loads_cleanly() {
    let loaded = load_str("<default>", DEFAULT_CONFIG, Path::new("")).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let p = &loaded.policies;
    assert_eq!(p.global.spool_directory, PathBuf::from("petrel-spool"));
    assert_eq!(p.listeners.len(), 1);
    let listen = &p.listeners[0];
    assert_eq!(listen.addr, "127.0.0.1:2525".parse().unwrap());
    assert!(listen.peers.is_empty());
    let policy = &listen.default;
    assert!(policy.starttls);
    let tls = policy.tls.as_ref().unwrap();
    assert_eq!(tls.certificate, CertificateSource::SelfSigned);
    assert!(tls.allow_renegotiation);
    assert_eq!(tls.max_renegotiations, 3);
    assert!(policy.pipelining && policy.eight_bit_mime && policy.smtputf8);
    assert!(policy.chunking && policy.dsn);
    let relays: Vec<IpAddr> = ["127.0.0.1", "127.255.0.9", "::1"]
        .map(|a| a.parse().unwrap())
        .into();
    for ip in relays {
        assert!(policy.relay_hosts.iter().any(|n| n.contains(ip)), "{ip}");
    }
    assert!(!policy
        .relay_hosts
        .iter()
        .any(|n| n.contains("10.0.0.1".parse().unwrap())));
    assert!(!policy.open_relay);
    assert_eq!(policy.binding, "default");
    assert_eq!(policy.received_hostname, p.global.hostname);
    assert_eq!(policy.max_connections_per_ip, Some(50));
    assert_eq!(p.max_sessions, 1000);
    let outbound = p.outbound("default", "example.com");
    assert_eq!(outbound.tls, TlsMode::IfAvailable);
    assert_eq!(outbound.ehlo_hostname, p.global.hostname);
}

#[test]
fn name_servers_resolve_into_global() {
    let loaded = load_text("Name_Servers = ( \"127.0.0.1:5353\" \"[::1]\" 192.0.2.53 )\n").unwrap();
    let expected: Vec<std::net::SocketAddr> = ["127.0.0.1:5353", "[::1]:53", "192.0.2.53:53"]
        .map(|a| a.parse().unwrap())
        .into();
    assert_eq!(loaded.policies.global.name_servers, expected);
    // Unset: the system's.
    let loaded = load_str("<default>", DEFAULT_CONFIG, Path::new("")).unwrap();
    assert!(loaded.policies.global.name_servers.is_empty());
    assert!(errors("Name_Servers = ( \"ns1.example.com\" )\n")[0]
        .contains("name servers are given by address"));
}

#[test]
fn relative_paths_are_relative_to_their_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/tls.conf"),
        "TLS_Certificate = \"cert.pem\"\nTLS_Key = \"/abs/key.pem\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("main.conf"),
        "spoolbase = \"spool\"\nESMTP_Listener {\n  Listen \":25\" {\n    include \"sub/tls.conf\"\n  }\n}\n",
    )
    .unwrap();
    let loaded = load(&dir.path().join("main.conf")).unwrap();
    assert_eq!(
        loaded.policies.global.spool_directory,
        dir.path().join("spool")
    );
    let tls = loaded.policies.listeners[0].default.tls.clone().unwrap();
    assert_eq!(
        tls.certificate,
        CertificateSource::Files {
            certificate: dir.path().join("sub/cert.pem"),
            key: PathBuf::from("/abs/key.pem"),
        }
    );
}

const OUTBOUND: &str = r#"TLS = "no"
domain "example.com" { TLS = "required" }
domain /\.example\.org$/ { TLS = "required" }
domain "www.example.org" { TLS = "ifavailable" }
binding_group "g" {
  TLS_Verify = "ca"
  Max_Outbound_Connections = 3
  domain "example.com" { Max_Outbound_Connections = 4 }
  domain "example.org" { Max_Outbound_Connections = 10 }
  binding "b" {
    Max_Outbound_Connections = 5
    domain "example.com" { Max_Outbound_Connections = 6 }
  }
}
binding "b" {
  Max_Outbound_Connections = 7
  Bind_Address = 192.0.2.7
  domain "example.net" { Max_Outbound_Connections = 9 }
  domain "example.org" { Max_Outbound_Connections = 11 }
}
binding "solo" {
  Retry_Interval = 60
  Gateway = "[2001:db8::1]:2525"
}
domain "relay.test" {
  Routes = ( "smtp://relay.example.com:587?pref=5" "__mx__" )
}
"#;

fn eval_lines(loaded: &Loaded, words: &str) -> String {
    let words: Vec<String> = words.split_whitespace().map(str::to_owned).collect();
    match eval(loaded, &words) {
        Ok(e) => e.to_string(),
        Err(e) => format!("error: {e}"),
    }
}

fn eval_table(text: &str, cases: &[(&str, &str)]) {
    let loaded = load_str("p.conf", text, Path::new("/")).unwrap();
    for (words, expected) in cases {
        assert_eq!(eval_lines(&loaded, words), *expected, "{words}");
    }
}

#[test]
fn eval_outbound_precedence() {
    eval_table(
        OUTBOUND,
        &[
            (
                "binding_group g binding b domain example.com Max_Outbound_Connections",
                "Max_Outbound_Connections = 6\n# from: binding_group \"g\" binding \"b\" domain \"example.com\" at p.conf:12",
            ),
            // A binding inside a group finds its group.
            (
                "binding b domain example.com Max_Outbound_Connections",
                "Max_Outbound_Connections = 6\n# from: binding_group \"g\" binding \"b\" domain \"example.com\" at p.conf:12",
            ),
            // binding::domain over binding_group::domain.
            (
                "binding b domain example.org max_outbound_connections",
                "Max_Outbound_Connections = 11\n# from: binding \"b\" domain \"example.org\" at p.conf:19",
            ),
            (
                "BINDING b DOMAIN EXAMPLE.NET Max_Outbound_Connections",
                "Max_Outbound_Connections = 9\n# from: binding \"b\" domain \"example.net\" at p.conf:18",
            ),
            (
                "binding_group g domain example.com Max_Outbound_Connections",
                "Max_Outbound_Connections = 4\n# from: binding_group \"g\" domain \"example.com\" at p.conf:8",
            ),
            // binding (in the group first) over binding_group.
            (
                "binding b domain other.com Max_Outbound_Connections",
                "Max_Outbound_Connections = 5\n# from: binding_group \"g\" binding \"b\" at p.conf:11",
            ),
            (
                "binding b Bind_Address",
                "Bind_Address = \"192.0.2.7\"\n# from: binding \"b\" at p.conf:17",
            ),
            (
                "binding b domain example.com TLS_Verify",
                "TLS_Verify = \"ca\"\n# from: binding_group \"g\" at p.conf:6",
            ),
            (
                "binding_group g domain other.com Max_Outbound_Connections",
                "Max_Outbound_Connections = 3\n# from: binding_group \"g\" at p.conf:7",
            ),
            // global domain under every binding level, over global.
            (
                "binding b domain example.com TLS",
                "TLS = \"required\"\n# from: domain \"example.com\" at p.conf:2",
            ),
            (
                "binding solo domain mail.example.org TLS",
                "TLS = \"required\"\n# from: domain \"/\\.example\\.org$/\" at p.conf:3",
            ),
            // An exact name wins over a regex declared before it.
            (
                "domain www.example.org TLS",
                "TLS = \"ifavailable\"\n# from: domain \"www.example.org\" at p.conf:4",
            ),
            ("TLS", "TLS = \"no\"\n# from: global at p.conf:1"),
            (
                "binding solo TLS_Verify",
                "TLS_Verify = \"no\"\n# from: default",
            ),
            (
                "binding solo Retry_Interval",
                "Retry_Interval = 60\n# from: binding \"solo\" at p.conf:22",
            ),
            (
                "binding solo domain relay.test Routes",
                "Routes = ( \"smtp://relay.example.com:587?pref=5\" \"__mx__\" )\n# from: domain \"relay.test\" at p.conf:26",
            ),
            (
                "binding solo Routes",
                "error: option \"Routes\" does not exist in binding scope",
            ),
            ("TLS_CA", "TLS_CA is not set\n# from: default (no CA: ca and host reject every certificate)"),
            ("Max_Retries", "Max_Retries = \"auto\"\n# from: default"),
            ("spool_directory", "spoolbase = \"/var/spool/petrel\"\n# from: default"),
            (
                "domain example.com TLS_Allow_Renegotiation",
                "error: option \"TLS_Allow_Renegotiation\" does not exist in domain scope",
            ),
            ("binding nosuch TLS", "error: no binding \"nosuch\" in the configuration"),
            (
                "binding_group g binding solo TLS",
                "error: binding \"solo\" is not in group \"g\"",
            ),
            ("Frobnicate", "error: unknown option \"Frobnicate\""),
            (
                "domain example.com binding b TLS",
                "error: unexpected \"binding\": expected binding_group, binding, domain, \
                 ESMTP_Listener, Listen, Peer, pathway_group or pathway in that order, then the option",
            ),
            // The last word is always the option (Binding is an inbound one).
            ("binding", "error: option \"Binding\" does not exist in global scope"),
            ("binding b", "error: unknown option \"b\""),
        ],
    );
}

#[test]
fn outbound_policies_resolve_the_same_way() {
    let loaded = load_str("p.conf", OUTBOUND, Path::new("/")).unwrap();
    let p = &loaded.policies;
    let b = p.outbound("b", "example.com");
    assert_eq!(b.max_outbound_connections, 6);
    assert_eq!(b.tls, TlsMode::Required);
    assert_eq!(b.tls_verify, TlsVerify::Ca);
    assert_eq!(b.bind_address, Some("192.0.2.7".parse().unwrap()));
    assert_eq!(p.outbound("b", "EXAMPLE.org").max_outbound_connections, 11);
    assert_eq!(p.outbound("nosuch", "example.com").tls, TlsMode::Required);
    assert_eq!(p.outbound("nosuch", "example.net").tls, TlsMode::No);
    let solo = p.outbound("solo", "x.example.org");
    assert_eq!(solo.tls, TlsMode::Required);
    assert_eq!(solo.retry_interval.as_secs(), 60);
    assert_eq!(
        solo.gateway,
        Some(HostPort {
            host: "2001:db8::1".into(),
            port: Some(2525)
        })
    );
    assert!(solo.routes.is_empty());
    assert_eq!(
        p.outbound("solo", "relay.test").routes,
        [
            Route::Smtp {
                host: HostPort {
                    host: "relay.example.com".into(),
                    port: Some(587)
                },
                preference: 5
            },
            Route::Mx
        ]
    );
    assert_eq!(solo.remote_smtp_port, 25);
    assert!(solo.generate_bounces);
    assert_eq!(solo.max_deliveries_per_connection, None);
}

const INBOUND: &str = r#"ESMTP_Listener {
  TLS_Allow_Renegotiation = false
  Peer "10.0.0.0/8" { Idle_Time = 10 }
  Peer "10.1.0.0/16" { Idle_Time = 16 }
  Listen "127.0.0.1:2600" {
    Idle_Time = 60
    Peer "10.1.2.0/24" { Idle_Time = 24 }
    Peer "192.168.0.0/16" { Pathway = "p" }
  }
  Listen ":2700" {
    Pathway = "q"
  }
  Listen "[::1]:2800" {
    Enable = false
  }
}
pathway_group "pg" {
  Max_Message_Size = 1000
  pathway "p" { Open_Relay = true }
}
pathway "p" {
  Open_Relay = false
  Idle_Time = 5
  Max_Recipients_Per_Message = 200
}
pathway "q" { TLS_Allow_Renegotiation = true }
"#;

#[test]
fn eval_inbound_precedence() {
    let l = "ESMTP_Listener Listen 127.0.0.1:2600";
    eval_table(
        INBOUND,
        &[
            (
                &format!("{l} Peer 10.1.2.3 Idle_Time"),
                "Idle_Time = 24\n# from: ESMTP_Listener Listen \"127.0.0.1:2600\" Peer \"10.1.2.0/24\" at p.conf:7",
            ),
            // No Peer of the Listen matches: the listener's, longest prefix.
            (
                &format!("{l} Peer 10.1.9.9 Idle_Time"),
                "Idle_Time = 16\n# from: ESMTP_Listener Peer \"10.1.0.0/16\" at p.conf:4",
            ),
            (
                &format!("{l} Peer 10.9.9.9 Idle_Time"),
                "Idle_Time = 10\n# from: ESMTP_Listener Peer \"10.0.0.0/8\" at p.conf:3",
            ),
            // Listen over listener.
            (
                &format!("{l} Peer 172.16.0.1 Idle_Time"),
                "Idle_Time = 60\n# from: ESMTP_Listener Listen \"127.0.0.1:2600\" at p.conf:6",
            ),
            (
                &format!("{l} Idle_Time"),
                "Idle_Time = 60\n# from: ESMTP_Listener Listen \"127.0.0.1:2600\" at p.conf:6",
            ),
            (
                "ESMTP_Listener Peer 10.1.2.3 Idle_Time",
                "Idle_Time = 16\n# from: ESMTP_Listener Peer \"10.1.0.0/16\" at p.conf:4",
            ),
            (
                "esmtp_listener listen 127.0.0.1:2600 peer 10.1.0.0/16 idle_time",
                "Idle_Time = 16\n# from: ESMTP_Listener Peer \"10.1.0.0/16\" at p.conf:4",
            ),
            // The pathway a Peer joins: pathway_group::pathway first …
            (
                &format!("{l} Peer 192.168.1.1 Open_Relay"),
                "Open_Relay = true\n# from: pathway_group \"pg\" pathway \"p\" at p.conf:19",
            ),
            // … but the Listen's own settings over the pathway's,
            (
                &format!("{l} Peer 192.168.1.1 Idle_Time"),
                "Idle_Time = 60\n# from: ESMTP_Listener Listen \"127.0.0.1:2600\" at p.conf:6",
            ),
            // then pathway, then pathway_group,
            (
                &format!("{l} Peer 192.168.1.1 Max_Recipients_Per_Message"),
                "Max_Recipients_Per_Message = 200\n# from: pathway \"p\" at p.conf:24",
            ),
            (
                &format!("{l} Peer 192.168.1.1 Max_Message_Size"),
                "Max_Message_Size = 1000\n# from: pathway_group \"pg\" at p.conf:18",
            ),
            // then the listener level, then global, then the default.
            (
                &format!("{l} Peer 192.168.1.1 TLS_Allow_Renegotiation"),
                "TLS_Allow_Renegotiation = false\n# from: ESMTP_Listener at p.conf:2",
            ),
            (
                &format!("{l} Peer 192.168.1.1 Max_Connections_Per_IP"),
                "Max_Connections_Per_IP = 50\n# from: default",
            ),
            // A wildcard Listen answers for any address of its port.
            (
                "ESMTP_Listener Listen 127.0.0.2:2700 TLS_Allow_Renegotiation",
                "TLS_Allow_Renegotiation = true\n# from: pathway \"q\" at p.conf:26",
            ),
            (
                "pathway_group pg pathway p Open_Relay",
                "Open_Relay = true\n# from: pathway_group \"pg\" pathway \"p\" at p.conf:19",
            ),
            (
                "pathway p Max_Message_Size",
                "Max_Message_Size = 1000\n# from: pathway_group \"pg\" at p.conf:18",
            ),
            ("pathway q Idle_Time", "Idle_Time = 300\n# from: default"),
            (
                "ESMTP_Listener Listen 127.0.0.1:2600 Received_Hostname",
                &format!(
                    "Received_Hostname = \"{}\"\n# from: default (Hostname)",
                    petrel::config::resolve::system_hostname()
                ),
            ),
            (
                "ESMTP_Listener Listen 127.0.0.1:9999 Idle_Time",
                "error: no Listen \"127.0.0.1:9999\" in the configuration",
            ),
            (
                "ESMTP_Listener Listen 127.0.0.1:2600 Peer 10.9.0.0/16 Idle_Time",
                "error: no Peer \"10.9.0.0/16\" in the configuration",
            ),
            (
                "ESMTP_Listener Listen 127.0.0.1:2600 Peer 10.1.2.3 Enable",
                "error: option \"Enable\" does not exist in Peer scope",
            ),
            (
                "pathway_group pg pathway q Idle_Time",
                "error: pathway \"q\" is not in group \"pg\"",
            ),
        ],
    );
}

#[test]
fn inbound_policies_match_eval() {
    let loaded = load_str("p.conf", INBOUND, Path::new("/")).unwrap();
    let listeners = &loaded.policies.listeners;
    // The disabled Listen is left out.
    assert_eq!(listeners.len(), 2);
    let listen = &listeners[0];
    let for_ip = |ip: &str| {
        let ip: IpAddr = ip.parse().unwrap();
        listen
            .peers
            .iter()
            .filter(|(n, _)| n.contains(ip))
            .max_by_key(|(n, _)| n.prefix())
            .map_or(&listen.default, |(_, p)| p)
            .clone()
    };
    assert_eq!(for_ip("10.1.2.3").idle_time.as_secs(), 24);
    assert_eq!(for_ip("10.1.9.9").idle_time.as_secs(), 16);
    assert_eq!(for_ip("10.9.9.9").idle_time.as_secs(), 10);
    assert_eq!(for_ip("172.16.0.1").idle_time.as_secs(), 60);
    let joined = for_ip("192.168.1.1");
    assert!(joined.open_relay);
    assert_eq!(joined.pathway.as_deref(), Some("p"));
    assert_eq!(joined.max_message_size, 1000);
    assert_eq!(joined.max_recipients, 200);
    assert_eq!(listeners[1].addr, "0.0.0.0:2700".parse().unwrap());
    assert_eq!(listeners[1].default.pathway.as_deref(), Some("q"));
}

#[test]
fn a_listen_peer_wins_over_a_more_specific_listener_peer() {
    let text = "ESMTP_Listener {\n  Peer \"10.1.0.0/16\" { Idle_Time = 16 }\n  Peer \
                \"11.0.0.0/8\" { Idle_Time = 11 }\n  Listen \":25\" {\n    Peer \"10.0.0.0/8\" { \
                Idle_Time = 8 }\n  }\n}\n";
    let loaded = load_text(text).unwrap();
    let listen = &loaded.policies.listeners[0];
    let networks: Vec<u8> = listen.peers.iter().map(|(n, _)| n.prefix()).collect();
    // 10.1/16 lies inside the Listen's 10/8 and is never chosen there.
    assert_eq!(networks, [8, 8]);
    assert_eq!(
        eval_lines(
            &loaded,
            "ESMTP_Listener Listen 0.0.0.0:25 Peer 10.1.2.3 Idle_Time"
        ),
        "Idle_Time = 8\n# from: ESMTP_Listener Listen \":25\" Peer \"10.0.0.0/8\" at t.conf:5"
    );
}

#[test]
fn diagnostics_display_like_a_compiler() {
    let d = Diagnostic {
        file: "a.conf".into(),
        line: 3,
        column: 7,
        severity: Severity::Warning,
        message: "m".into(),
    };
    assert_eq!(d.to_string(), "a.conf:3:7: warning: m");
    let e = EvalError::NoOption;
    assert!(e.to_string().starts_with("no option given"));
}

#[test]
fn the_reference_lists_every_option() {
    let reference =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("CONFIG.md")).unwrap();
    for spec in OPTIONS {
        assert!(
            reference.contains(&format!("| `{}`", spec.name)),
            "{}",
            spec.name
        );
    }
    assert!(reference.contains(DEFAULT_CONFIG.lines().nth(2).unwrap()));
}

quickcheck! {
    /// No text makes the loader panic.
    fn loading_never_panics(text: String) -> bool {
        let _ = load_str("q.conf", &text, Path::new("/nonexistent"));
        true
    }

    /// Nor does any arrangement of the language's own pieces.
    fn loading_pieces_never_panics(pieces: Vec<u8>) -> bool {
        const PIECES: &[&str] = &[
            "{", "}", "(", ")", "[", "]", "=", ",", "\n", "ESMTP_Listener", "Listen", "\":25\"",
            "Peer", "\"10.0.0.0/8\"", "binding", "binding_group", "domain", "/a(/", "pathway",
            "Pathway", "\"p\"", "TLS", "Idle_Time", "1", "true", "include", "\"x\"",
        ];
        let text: Vec<&str> = pieces.iter().map(|i| PIECES[usize::from(*i) % PIECES.len()]).collect();
        let _ = load_str("q.conf", &text.join(" "), Path::new("/nonexistent"));
        true
    }
}
