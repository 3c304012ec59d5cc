//! Momentum's configuration language (`ecelerity.conf`): text → syntax
//! tree (file:line:col on every node) → typed [`policy::Policies`],
//! resolved once. `check-config` and `config eval` read the same tree.
//!
//! The stages, one module each: [`lexer`] (tokens), [`syntax`] (the tree,
//! includes), [`schema`] (every option: scopes, type, default), [`model`]
//! (scopes checked and merged), [`resolve`] (precedence, policies, eval).
//! `mta/CONFIG.md` is the reference for operators.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod lexer;
pub mod model;
pub mod policy;
pub mod resolve;
pub mod schema;
pub mod syntax;

pub use resolve::{EvalError, Evaluated, EvaluatedFrom};

use policy::Policies;
use syntax::{Includes, Source, Tree};

/// The configuration Petrel runs with no `-c FILE`: ESMTP on
/// 127.0.0.1:2525, STARTTLS with a certificate made at start, relaying
/// for loopback clients only, the spool in `./petrel-spool`.
pub const DEFAULT_CONFIG: &str = r#"# Petrel's embedded default configuration (petrel with no -c FILE).
# Relative paths are relative to the working directory.
spoolbase = "petrel-spool"

ESMTP_Listener {
  Listen "127.0.0.1:2525" {
    # A certificate for Hostname, made at start.
    TLS_Self_Signed = true
    SMTP_Extensions = ( "ENHANCEDSTATUSCODES" "PIPELINING" "8BITMIME" "SMTPUTF8"
                        "CHUNKING" "DSN" "STARTTLS" "SIZE" )
    # Loopback clients may relay anywhere; nobody else may relay at all.
    Relay_Hosts = ( "127.0.0.0/8" "::1" )
  }
}
"#;

/// A configuration, checked and resolved.
#[derive(Debug)]
pub struct Loaded {
    /// What the MTA runs with.
    pub policies: Policies,
    /// Settings that cannot take effect; the configuration runs anyway.
    pub warnings: Vec<Diagnostic>,
    /// The syntax tree, includes spliced in.
    pub tree: Tree,
    model: Arc<model::Model>,
}

/// Reads, checks and resolves the configuration in `path` and the files
/// it includes. Every problem is reported, errors and warnings, ordered
/// by file and position.
pub fn load(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let text = read(path)?;
    let source = Arc::new(Source {
        name: path.to_path_buf(),
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
    });
    load_source(source, &text)
}

/// As [`load`], for `text` named `name` in diagnostics; relative paths
/// (includes, certificates, the spool) are relative to `base_dir`. The
/// embedded default is `load_str("<default>", DEFAULT_CONFIG, cwd)`.
pub fn load_str(name: &str, text: &str, base_dir: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let source = Arc::new(Source {
        name: PathBuf::from(name),
        dir: base_dir.to_path_buf(),
    });
    load_source(source, text)
}

/// Checks the syntax of `path` alone (`check-config --syntax`): includes
/// are not opened, so a fragment naming files that are elsewhere still
/// passes. Empty: no syntax error.
pub fn check_syntax(path: &Path) -> Vec<Diagnostic> {
    let text = match read(path) {
        Ok(text) => text,
        Err(diagnostics) => return diagnostics,
    };
    let source = Arc::new(Source {
        name: path.to_path_buf(),
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
    });
    syntax::parse(source, &text, Includes::Ignore)
        .err()
        .unwrap_or_default()
}

/// `config eval`: `words` is a scope path as Momentum's console takes it
/// (`binding_group g binding b domain example.com`, `ESMTP_Listener
/// Listen 127.0.0.1:2600 Peer 10.1.2.3`, `pathway p`, or nothing for
/// global), then an option name; keywords are case-insensitive.
pub fn eval(loaded: &Loaded, words: &[String]) -> Result<Evaluated, EvalError> {
    resolve::eval(&loaded.model, &loaded.policies.global, words)
}

fn read(path: &Path) -> Result<String, Vec<Diagnostic>> {
    std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            severity: Severity::Error,
            message: format!("cannot read the configuration: {e}"),
        }]
    })
}

fn load_source(source: Arc<Source>, text: &str) -> Result<Loaded, Vec<Diagnostic>> {
    let tree = syntax::parse(source, text, Includes::Follow)?;
    let mut diagnostics = Vec::new();
    let model = Arc::new(model::build(&tree, &mut diagnostics));
    let policies = resolve::policies(Arc::clone(&model), &mut diagnostics);
    diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return Err(diagnostics);
    }
    Ok(Loaded {
        policies,
        warnings: diagnostics,
        tree,
        model,
    })
}

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// A setting that cannot take effect; the configuration runs.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A problem found in a configuration, at a file, line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as named when it was loaded (or included).
    pub file: PathBuf,
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub column: u32,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, and, where it helps, why and what to do instead.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: error: message`, the form compilers use, so that
    /// editors can jump to it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.severity,
            self.message
        )
    }
}
