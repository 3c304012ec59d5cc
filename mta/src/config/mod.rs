//! Momentum's configuration language (`ecelerity.conf`): text → syntax
//! tree (file:line:col on every node) → typed [`policy::Policies`],
//! resolved once. `check-config` and `config eval` read the same tree.

use std::fmt;
use std::path::PathBuf;

pub mod lexer;
pub mod policy;
pub mod syntax;

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
