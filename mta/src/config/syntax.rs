//! The syntax tree of a configuration and the parser that builds it, with
//! `include` resolution. Every node knows its file, line and column.
//!
//! The tree keeps what was written, case and repetitions included: merging
//! repeated stanzas and "last setting wins" belong to [`super::model`],
//! which reads the tree. That keeps `check-config --syntax` and the full
//! check on one parser.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::lexer::{tokenize, Pos, Token, TokenKind};
use super::{Diagnostic, Severity};

/// A file the configuration was read from.
#[derive(Debug, PartialEq, Eq)]
pub struct Source {
    /// How diagnostics name it.
    pub name: PathBuf,
    /// The directory relative paths written in it are relative to.
    pub dir: PathBuf,
}

/// A place in a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub source: Arc<Source>,
    /// Line and column.
    pub pos: Pos,
}

impl Location {
    /// A diagnostic at this place.
    pub fn diagnostic(&self, severity: Severity, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.source.name.clone(),
            line: self.pos.line,
            column: self.pos.column,
            severity,
            message: message.into(),
        }
    }

    /// An error at this place.
    pub fn error(&self, message: impl Into<String>) -> Diagnostic {
        self.diagnostic(Severity::Error, message)
    }

    /// A warning at this place.
    pub fn warning(&self, message: impl Into<String>) -> Diagnostic {
        self.diagnostic(Severity::Warning, message)
    }

    /// `FILE:LINE`, as `config eval` names where a value came from.
    pub fn file_line(&self) -> String {
        format!("{}:{}", self.source.name.display(), self.pos.line)
    }

    /// `path` as written here: relative paths are relative to this file's
    /// directory.
    pub fn resolve_path(&self, path: &str) -> PathBuf {
        self.source.dir.join(path)
    }
}

/// A value: what follows `=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// What it is.
    pub kind: ValueKind,
    /// Where it starts.
    pub loc: Location,
}

/// The forms of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueKind {
    /// `"text"`, escapes resolved.
    Str(String),
    /// An unquoted word (`true`, `1200`, `10.0.0.1`, `/path`).
    Word(String),
    /// `( item item, item )`.
    Array(Vec<Value>),
    /// `[ key = value … ]`.
    Dict(Vec<(String, Value)>),
}

impl Value {
    /// The text of a string or word; `None` for arrays and dictionaries.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            ValueKind::Str(s) | ValueKind::Word(s) => Some(s),
            ValueKind::Array(_) | ValueKind::Dict(_) => None,
        }
    }

    /// What kind of value this is, for messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            ValueKind::Str(_) => "a string",
            ValueKind::Word(_) => "a word",
            ValueKind::Array(_) => "an array",
            ValueKind::Dict(_) => "a dictionary",
        }
    }
}

/// `Name = value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The name as written.
    pub name: String,
    /// Where the name is.
    pub loc: Location,
    /// The value.
    pub value: Value,
}

/// The argument of a stanza: `binding "x" {` or `Domain /re/ {`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argument {
    /// The text, quotes removed.
    pub text: String,
    /// Whether it was quoted.
    pub quoted: bool,
    /// Where it is.
    pub loc: Location,
}

/// `Keyword [argument] { items }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    /// The keyword as written.
    pub keyword: String,
    /// Where the keyword is.
    pub loc: Location,
    /// The argument, if any.
    pub argument: Option<Argument>,
    /// The body.
    pub items: Vec<Item>,
}

/// `include "file"` or `readonly_include "file"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// The path as written.
    pub path: String,
    /// `readonly_include` (which Petrel treats as `include`: it has no
    /// console that could write configuration back).
    pub readonly: bool,
    /// Where the directive is.
    pub loc: Location,
    /// What the file(s) held, spliced into the including scope; empty
    /// when includes were not followed (`check-config --syntax`).
    pub items: Vec<Item>,
}

/// One statement of a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// `Name = value`.
    Setting(Setting),
    /// A nested scope.
    Stanza(Stanza),
    /// An include directive.
    Include(Include),
}

/// A parsed configuration: the items of the global scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// The file it was read from (included files are named on their
    /// nodes).
    pub source: Arc<Source>,
    /// The global scope's statements, includes spliced in.
    pub items: Vec<Item>,
}

impl Tree {
    /// The tree printed with keywords and names in lower case and no
    /// positions: two trees that differ only in case, layout and comments
    /// normalize to the same text.
    pub fn normalized(&self) -> String {
        let mut out = String::new();
        write_items(&mut out, &self.items, 0);
        out
    }
}

fn write_items(out: &mut String, items: &[Item], depth: usize) {
    let indent = "  ".repeat(depth);
    for item in items {
        match item {
            Item::Setting(s) => {
                let _ = write!(out, "{indent}{} = ", s.name.to_ascii_lowercase());
                write_value(out, &s.value);
                out.push('\n');
            }
            Item::Stanza(s) => {
                let _ = write!(out, "{indent}{}", s.keyword.to_ascii_lowercase());
                if let Some(arg) = &s.argument {
                    let _ = write!(out, " {:?}", arg.text);
                }
                out.push_str(" {\n");
                write_items(out, &s.items, depth + 1);
                let _ = writeln!(out, "{indent}}}");
            }
            Item::Include(i) => {
                let kw = if i.readonly {
                    "readonly_include"
                } else {
                    "include"
                };
                let _ = writeln!(out, "{indent}{kw} {:?}", i.path);
                write_items(out, &i.items, depth);
            }
        }
    }
}

fn write_value(out: &mut String, value: &Value) {
    match &value.kind {
        ValueKind::Str(s) | ValueKind::Word(s) => {
            let _ = write!(out, "{s:?}");
        }
        ValueKind::Array(items) => {
            out.push('(');
            for item in items {
                out.push(' ');
                write_value(out, item);
            }
            out.push_str(" )");
        }
        ValueKind::Dict(entries) => {
            out.push('[');
            for (key, item) in entries {
                let _ = write!(out, " {key} = ");
                write_value(out, item);
            }
            out.push_str(" ]");
        }
    }
}

/// Stanzas nested deeper than this are refused, so that hostile input
/// cannot exhaust the stack (Momentum's deepest real nesting is 3).
const MAX_DEPTH: usize = 32;

/// Includes nested deeper than this are refused (a cycle is caught
/// earlier; this bounds long chains of distinct files).
const MAX_INCLUDE_DEPTH: usize = 16;

/// After this many syntax errors in one file, the rest are not reported:
/// they are most likely echoes of the first ones.
const MAX_ERRORS: usize = 50;

/// Whether and how `include` directives are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Includes {
    /// Leave them unresolved (`check-config --syntax`).
    Ignore,
    /// Read the files and splice them in.
    Follow,
}

/// Parses `text`, named `source`; with [`Includes::Follow`], reads
/// included files too. Returns the tree, or every syntax error found.
pub fn parse(source: Arc<Source>, text: &str, includes: Includes) -> Result<Tree, Vec<Diagnostic>> {
    // The top file is on the stack too, so that an include of it is a
    // cycle; text not read from a file (the embedded default) has no path.
    let mut stack: Vec<PathBuf> = std::fs::canonicalize(&source.name).into_iter().collect();
    parse_file(source, text, includes, &mut stack)
}

fn parse_file(
    source: Arc<Source>,
    text: &str,
    includes: Includes,
    stack: &mut Vec<PathBuf>,
) -> Result<Tree, Vec<Diagnostic>> {
    let (tokens, lex_errors) = tokenize(text);
    let mut parser = Parser {
        tokens,
        at: 0,
        source: Arc::clone(&source),
        errors: lex_errors
            .into_iter()
            .map(|e| {
                Location {
                    source: Arc::clone(&source),
                    pos: e.pos,
                }
                .error(e.message)
            })
            .collect(),
    };
    let mut items = parser.items(None, 0);
    let mut errors = parser.errors;
    errors.sort_by_key(|d| (d.line, d.column));
    errors.truncate(MAX_ERRORS);
    if includes == Includes::Follow && errors.is_empty() {
        expand_includes(&mut items, stack, &mut errors);
    }
    if errors.is_empty() {
        Ok(Tree { source, items })
    } else {
        Err(errors)
    }
}

fn expand_includes(items: &mut [Item], stack: &mut Vec<PathBuf>, errors: &mut Vec<Diagnostic>) {
    for item in items {
        match item {
            Item::Stanza(s) => expand_includes(&mut s.items, stack, errors),
            Item::Include(include) => match read_include(include, stack) {
                Ok(found) => include.items = found,
                Err(mut found) => errors.append(&mut found),
            },
            Item::Setting(_) => {}
        }
    }
}

/// Reads what `include` names: a file, or a directory's `*.conf` files in
/// name order.
fn read_include(include: &Include, stack: &mut Vec<PathBuf>) -> Result<Vec<Item>, Vec<Diagnostic>> {
    let path = include.loc.resolve_path(&include.path);
    let fail = |what: String| vec![include.loc.error(what)];
    if stack.len() >= MAX_INCLUDE_DEPTH {
        return Err(fail(format!(
            "includes nested more than {MAX_INCLUDE_DEPTH} deep at {:?}",
            include.path
        )));
    }
    let files = if path.is_dir() {
        let entries = std::fs::read_dir(&path)
            .map_err(|e| fail(format!("cannot read directory {}: {e}", path.display())))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf") && !p.is_dir())
            .collect();
        files.sort();
        files
    } else {
        vec![path]
    };
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let canonical = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
        if stack.contains(&canonical) {
            errors.push(include.loc.error(format!(
                "include cycle: {} includes itself (through {})",
                file.display(),
                stack
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" → ")
            )));
            continue;
        }
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                errors.push(
                    include
                        .loc
                        .error(format!("cannot read included file {}: {e}", file.display())),
                );
                continue;
            }
        };
        let source = Arc::new(Source {
            dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
            name: file,
        });
        stack.push(canonical);
        match parse_file(source, &text, Includes::Follow, stack) {
            Ok(tree) => items.extend(tree.items),
            Err(mut found) => errors.append(&mut found),
        }
        stack.pop();
    }
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(errors)
    }
}

/// Whether `word` can name an option or a stanza: a letter or `_`, then
/// letters, digits, `_` and `-` (`NAS-IP-Address`).
pub fn is_name(word: &str) -> bool {
    let mut chars = word.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// An opened stanza, for the message when its `}` is missing.
struct Open<'a> {
    keyword: &'a str,
    pos: Pos,
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    source: Arc<Source>,
    errors: Vec<Diagnostic>,
}

/// A syntax error already recorded; the caller resynchronizes.
struct Recorded;

impl Parser {
    fn peek(&self) -> &TokenKind {
        self.tokens
            .get(self.at)
            .map_or(&TokenKind::Eof, |t| &t.kind)
    }

    fn pos(&self) -> Pos {
        self.tokens
            .get(self.at)
            .or_else(|| self.tokens.last())
            .map_or(Pos { line: 1, column: 1 }, |t| t.pos)
    }

    fn loc(&self, pos: Pos) -> Location {
        Location {
            source: Arc::clone(&self.source),
            pos,
        }
    }

    fn bump(&mut self) -> TokenKind {
        let kind = self.peek().clone();
        if kind != TokenKind::Eof {
            self.at += 1;
        }
        kind
    }

    /// Records "expected X, found <next token>" at the next token.
    fn expected(&mut self, what: &str) -> Recorded {
        let message = format!("expected {what}, found {}", self.peek());
        let loc = self.loc(self.pos());
        self.errors.push(loc.error(message));
        Recorded
    }

    /// The line of the last token consumed.
    fn previous_line(&self) -> u32 {
        self.at
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or(1, |t| t.pos.line)
    }

    /// After an error: skips the rest of the line of the last token
    /// consumed (and any stanza opened on it), but not a `}` that may
    /// close the enclosing stanza, nor the next line, which most likely
    /// starts the next statement: one mistake gives one error.
    fn resync(&mut self, line: u32) {
        let mut depth = 0usize;
        loop {
            let pos = self.pos();
            match self.peek() {
                TokenKind::Eof => return,
                TokenKind::RBrace if depth == 0 => return,
                _ if depth == 0 && pos.line > line => return,
                TokenKind::LBrace => depth += 1,
                TokenKind::RBrace => depth -= 1,
                _ => {}
            }
            self.bump();
        }
    }

    /// Statements until the `}` closing `open` (consumed), or the end of
    /// the file at top level.
    fn items(&mut self, open: Option<Open<'_>>, depth: usize) -> Vec<Item> {
        let mut items = Vec::new();
        loop {
            let pos = self.pos();
            match self.peek() {
                TokenKind::Eof => {
                    if let Some(open) = open {
                        self.expected(&format!(
                            "\"}}\" to close \"{}\" opened at {}",
                            open.keyword, open.pos
                        ));
                    }
                    return items;
                }
                TokenKind::RBrace => {
                    if open.is_some() {
                        self.bump();
                        return items;
                    }
                    self.errors
                        .push(self.loc(pos).error("unexpected \"}\": no stanza is open"));
                    self.bump();
                }
                _ => {
                    let start = self.at;
                    match self.statement(depth) {
                        Ok(item) => items.push(item),
                        Err(Recorded) => {
                            if self.at == start {
                                // Not even a name: step over the culprit.
                                self.bump();
                            }
                            let line = self.previous_line();
                            self.resync(line);
                        }
                    }
                }
            }
            if self.errors.len() >= MAX_ERRORS {
                self.at = self.tokens.len();
            }
        }
    }

    fn statement(&mut self, depth: usize) -> Result<Item, Recorded> {
        let pos = self.pos();
        let name = match self.peek() {
            TokenKind::Word(w) if is_name(w) => w.clone(),
            _ => return Err(self.expected("an option name, a stanza or \"}\"")),
        };
        self.bump();
        let lower = name.to_ascii_lowercase();
        if lower == "include" || lower == "readonly_include" {
            let path = match self.peek() {
                TokenKind::Str(p) | TokenKind::Word(p) => p.clone(),
                _ => return Err(self.expected(&format!("a file name after \"{name}\""))),
            };
            self.bump();
            return Ok(Item::Include(Include {
                path,
                readonly: lower == "readonly_include",
                loc: self.loc(pos),
                items: Vec::new(),
            }));
        }
        match self.peek().clone() {
            TokenKind::Equals => {
                self.bump();
                if *self.peek() == TokenKind::LBrace {
                    // `ESMTP_Listener = {`: Momentum's docs show it on three
                    // pages; it means the same as `ESMTP_Listener {`.
                    return self.stanza(name, pos, None, depth);
                }
                let value = self.value(&name, 0)?;
                Ok(Item::Setting(Setting {
                    name,
                    loc: self.loc(pos),
                    value,
                }))
            }
            TokenKind::LBrace => self.stanza(name, pos, None, depth),
            TokenKind::Str(text) | TokenKind::Word(text) => {
                let quoted = matches!(self.peek(), TokenKind::Str(_));
                let argument = Argument {
                    text,
                    quoted,
                    loc: self.loc(self.pos()),
                };
                self.bump();
                if *self.peek() != TokenKind::LBrace {
                    return Err(self.expected(&format!(
                        "\"{{\" to open the \"{name}\" stanza (or \"=\" before a value)"
                    )));
                }
                self.stanza(name, pos, Some(argument), depth)
            }
            _ => Err(self.expected(&format!("\"=\" or \"{{\" after \"{name}\""))),
        }
    }

    /// At the `{` of a stanza.
    fn stanza(
        &mut self,
        keyword: String,
        pos: Pos,
        argument: Option<Argument>,
        depth: usize,
    ) -> Result<Item, Recorded> {
        if depth >= MAX_DEPTH {
            return Err(self.expected(&format!(
                "no more than {MAX_DEPTH} nested stanzas (\"{keyword}\" is too deep)"
            )));
        }
        self.bump();
        let items = self.items(
            Some(Open {
                keyword: &keyword,
                pos,
            }),
            depth + 1,
        );
        Ok(Item::Stanza(Stanza {
            keyword,
            loc: self.loc(pos),
            argument,
            items,
        }))
    }

    fn value(&mut self, name: &str, depth: usize) -> Result<Value, Recorded> {
        let pos = self.pos();
        let kind = match self.peek().clone() {
            TokenKind::Str(s) => {
                self.bump();
                ValueKind::Str(s)
            }
            TokenKind::Word(w) => {
                self.bump();
                ValueKind::Word(w)
            }
            TokenKind::LParen if depth < MAX_DEPTH => {
                self.bump();
                ValueKind::Array(self.array(pos, depth)?)
            }
            TokenKind::LBracket if depth < MAX_DEPTH => {
                self.bump();
                ValueKind::Dict(self.dict(pos, depth)?)
            }
            _ => return Err(self.expected(&format!("a value for \"{name}\""))),
        };
        Ok(Value {
            kind,
            loc: self.loc(pos),
        })
    }

    fn array(&mut self, open: Pos, depth: usize) -> Result<Vec<Value>, Recorded> {
        let mut items = Vec::new();
        loop {
            match self.peek() {
                TokenKind::RParen => {
                    self.bump();
                    return Ok(items);
                }
                TokenKind::Comma => {
                    self.bump();
                }
                TokenKind::Str(_)
                | TokenKind::Word(_)
                | TokenKind::LParen
                | TokenKind::LBracket => {
                    items.push(self.value("an array item", depth + 1)?);
                }
                _ => {
                    return Err(self.expected(&format!(
                        "a value, \",\" or \")\" to close the array opened at {open}"
                    )))
                }
            }
        }
    }

    fn dict(&mut self, open: Pos, depth: usize) -> Result<Vec<(String, Value)>, Recorded> {
        let mut entries = Vec::new();
        loop {
            match self.peek().clone() {
                TokenKind::RBracket => {
                    self.bump();
                    return Ok(entries);
                }
                TokenKind::Comma => {
                    self.bump();
                }
                TokenKind::Str(key) | TokenKind::Word(key) => {
                    self.bump();
                    if *self.peek() != TokenKind::Equals {
                        return Err(self.expected(&format!("\"=\" after the key \"{key}\"")));
                    }
                    self.bump();
                    let value = self.value(&key, depth + 1)?;
                    entries.push((key, value));
                }
                _ => {
                    return Err(self.expected(&format!(
                        "a key, \",\" or \"]\" to close the dictionary opened at {open}"
                    )))
                }
            }
        }
    }
}

impl fmt::Display for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn source(name: &str) -> Arc<Source> {
        Arc::new(Source {
            name: PathBuf::from(name),
            dir: PathBuf::new(),
        })
    }

    fn parse_str(text: &str) -> Result<Tree, Vec<Diagnostic>> {
        parse(source("t.conf"), text, Includes::Ignore)
    }

    fn errors(text: &str) -> Vec<String> {
        match parse_str(text) {
            Ok(tree) => panic!("parsed: {tree}"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_form_of_stanza_and_value() {
        let text = r#"
ESMTP_Listener = {
  Listen ":25"{ }
  Listen "[::1]:8650" {}
}
Binding_Group group {
  Binding "example1"
  {
    Bind_Address = 10.10.10.10  # trailing comment
  }
  Domain /yahoo\.co(m|\.uk)$/ {
  }
}
opendkim "o" { headerlist = ("from", "to", "message-id") }
x = [ a = "1", b = ( c d ) ]
query = "two
lines"
include "bar.conf"
"#;
        let tree = parse_str(text).unwrap();
        assert_eq!(
            tree.normalized(),
            r#"esmtp_listener {
  listen ":25" {
  }
  listen "[::1]:8650" {
  }
}
binding_group "group" {
  binding "example1" {
    bind_address = "10.10.10.10"
  }
  domain "/yahoo\\.co(m|\\.uk)$/" {
  }
}
opendkim "o" {
  headerlist = ( "from" "to" "message-id" )
}
x = [ a = "1" b = ( "c" "d" ) ]
query = "two\nlines"
include "bar.conf"
"#
        );
    }

    #[test]
    fn nodes_carry_positions() {
        let tree = parse_str("a = 1\nb \"x\" {\n  c = ( 1\n 2 )\n}\n").unwrap();
        let Item::Stanza(b) = &tree.items[1] else {
            panic!()
        };
        assert_eq!(b.loc.pos, Pos { line: 2, column: 1 });
        assert_eq!(
            b.argument.as_ref().unwrap().loc.pos,
            Pos { line: 2, column: 3 }
        );
        let Item::Setting(c) = &b.items[0] else {
            panic!()
        };
        assert_eq!(c.loc.pos, Pos { line: 3, column: 3 });
        let ValueKind::Array(values) = &c.value.kind else {
            panic!()
        };
        assert_eq!(values[1].loc.pos, Pos { line: 4, column: 2 });
    }

    #[test]
    fn errors_name_position_and_expectation() {
        assert_eq!(
            errors("binding \"b\" {\n  x = 1\n"),
            vec![
                "t.conf:3:1: error: expected \"}\" to close \"binding\" opened at 1:1, found end of file"
            ]
        );
        assert_eq!(
            errors("x {\n  a =\n}\n"),
            vec!["t.conf:3:1: error: expected a value for \"a\", found \"}\""]
        );
        assert_eq!(
            errors("Gateway 10.0.0.1\nb = 2"),
            vec!["t.conf:2:1: error: expected \"{\" to open the \"Gateway\" stanza (or \"=\" before a value), found \"b\""]
        );
        assert_eq!(
            errors("a = ( 1 2\nb = 3\n"),
            vec!["t.conf:2:3: error: expected a value, \",\" or \")\" to close the array opened at 1:5, found \"=\""]
        );
        assert_eq!(
            errors("}\n"),
            vec!["t.conf:1:1: error: unexpected \"}\": no stanza is open"]
        );
    }

    #[test]
    fn recovery_reports_each_mistake_once() {
        let text = "x {\n  ...\n  a = 1\n  **b = 2**\n}\nListen \"x\" {...}\n";
        assert_eq!(
            errors(text),
            vec![
                "t.conf:2:3: error: expected an option name, a stanza or \"}\", found \"...\"",
                "t.conf:4:3: error: expected an option name, a stanza or \"}\", found \"**b\"",
                "t.conf:6:13: error: expected an option name, a stanza or \"}\", found \"...\"",
            ]
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "a {".repeat(10_000);
        assert!(!errors(&text).is_empty());
        let text = format!("a = {}", "(".repeat(10_000));
        assert!(!errors(&text).is_empty());
    }

    #[test]
    fn includes_splice_and_cycles_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("main.conf"), "domain \"x\" {\n  include \"d\"\n}\n").unwrap();
        std::fs::create_dir(p.join("d")).unwrap();
        std::fs::write(p.join("d/b.conf"), "TLS = \"no\"\n").unwrap();
        std::fs::write(p.join("d/a.conf"), "TLS = \"required\"\n").unwrap();
        std::fs::write(p.join("d/ignored.txt"), "nonsense {").unwrap();
        let src = Arc::new(Source {
            name: p.join("main.conf"),
            dir: p.to_path_buf(),
        });
        let text = std::fs::read_to_string(p.join("main.conf")).unwrap();
        let tree = parse(Arc::clone(&src), &text, Includes::Follow).unwrap();
        assert_eq!(
            tree.normalized(),
            "domain \"x\" {\n  include \"d\"\n  tls = \"required\"\n  tls = \"no\"\n}\n"
        );

        std::fs::write(p.join("d/a.conf"), "include \"../main.conf\"\n").unwrap();
        let errors = parse(src, &text, Includes::Follow).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("include cycle"), "{}", errors[0]);
        assert_eq!(errors[0].line, 1);
        assert!(errors[0].file.ends_with("d/a.conf"));
    }
}
