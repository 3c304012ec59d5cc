//! Tokens of the `ecelerity.conf` language, each with the line and column
//! (1-based, counted in characters) where it starts.
//!
//! The language is lenient where Momentum's own documentation is: a bare
//! word may hold `/` (`/path/to/dh.pem`), and a bare `/regex/` may hold
//! the characters the documentation says must be quoted
//! (`Domain /yahoo\.co(m|\.uk)$/ {`).

use std::fmt;

/// A line and column, 1-based; columns count characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `=`
    Equals,
    /// `,`
    Comma,
    /// A double-quoted string, escapes resolved.
    Str(String),
    /// An unquoted word: a name, number, address, path or `/regex/`.
    Word(String),
    /// The end of the text.
    Eof,
}

impl fmt::Display for TokenKind {
    /// How an error message names a token it found.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::LBrace => f.write_str("\"{\""),
            TokenKind::RBrace => f.write_str("\"}\""),
            TokenKind::LParen => f.write_str("\"(\""),
            TokenKind::RParen => f.write_str("\")\""),
            TokenKind::LBracket => f.write_str("\"[\""),
            TokenKind::RBracket => f.write_str("\"]\""),
            TokenKind::Equals => f.write_str("\"=\""),
            TokenKind::Comma => f.write_str("\",\""),
            TokenKind::Str(s) => write!(f, "string {s:?}"),
            TokenKind::Word(w) => write!(f, "{w:?}"),
            TokenKind::Eof => f.write_str("end of file"),
        }
    }
}

/// A token and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Where it starts.
    pub pos: Pos,
}

/// A lexical error: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    /// Where the offending text starts.
    pub pos: Pos,
    /// What is wrong, for a diagnostic.
    pub message: String,
}

/// Characters of a bare word besides ASCII letters and digits: Momentum's
/// (`_ - . : * @ $ %`) and, to be lenient, a few more that never start
/// another token (`/` for unquoted paths, `+ ! ? ~ & ^`).
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '_' | '-' | '.' | ':' | '*' | '@' | '$' | '%' | '/' | '+' | '!' | '?' | '~' | '&' | '^'
        )
}

/// What may follow the closing `/` of a bare regex: the regex ends there.
fn ends_regex(next: Option<char>) -> bool {
    match next {
        None => true,
        Some(c) => c.is_whitespace() || matches!(c, '{' | '}' | ')' | ']' | ',' | '#'),
    }
}

/// Splits `text` into tokens; the last is always [`TokenKind::Eof`].
/// Errors do not stop the lexer: the offending character is skipped (or
/// the unterminated string or comment ends the text), so the parser still
/// sees the rest and one run reports what it can.
pub fn tokenize(text: &str) -> (Vec<Token>, Vec<LexError>) {
    let mut lexer = Lexer {
        chars: text
            .strip_prefix('\u{feff}')
            .unwrap_or(text)
            .chars()
            .collect(),
        at: 0,
        pos: Pos { line: 1, column: 1 },
        tokens: Vec::new(),
        errors: Vec::new(),
    };
    lexer.run();
    (lexer.tokens, lexer.errors)
}

struct Lexer {
    chars: Vec<char>,
    at: usize,
    pos: Pos,
    tokens: Vec<Token>,
    errors: Vec<LexError>,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        if c == '\n' {
            self.pos.line = self.pos.line.saturating_add(1);
            self.pos.column = 1;
        } else {
            self.pos.column = self.pos.column.saturating_add(1);
        }
        Some(c)
    }

    fn push(&mut self, kind: TokenKind, pos: Pos) {
        self.tokens.push(Token { kind, pos });
    }

    fn run(&mut self) {
        while let Some(c) = self.peek() {
            let pos = self.pos;
            let single = match c {
                '{' => Some(TokenKind::LBrace),
                '}' => Some(TokenKind::RBrace),
                '(' => Some(TokenKind::LParen),
                ')' => Some(TokenKind::RParen),
                '[' => Some(TokenKind::LBracket),
                ']' => Some(TokenKind::RBracket),
                '=' => Some(TokenKind::Equals),
                ',' => Some(TokenKind::Comma),
                _ => None,
            };
            if let Some(kind) = single {
                self.bump();
                self.push(kind, pos);
            } else if c.is_whitespace() {
                self.bump();
            } else if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.bump();
                }
            } else if c == '"' {
                self.string(pos);
            } else if c == '/' && self.peek_at(1) == Some('*') {
                self.block_comment(pos);
            } else if c == '/' {
                self.slash_word(pos);
            } else if is_word_char(c) {
                let word = self.take_word();
                self.push(TokenKind::Word(word), pos);
            } else {
                self.bump();
                // Typographic quotes come from documents pasted into a
                // configuration (one of Momentum's own pages has them).
                let message = if matches!(c, '\u{201c}' | '\u{201d}' | '\u{2018}' | '\u{2019}') {
                    format!("unexpected typographic quote {c:?}: expected a plain '\"'")
                } else {
                    format!("unexpected character {c:?}: expected a name, a value, a comment or one of {{ }} ( ) [ ] = ,")
                };
                self.errors.push(LexError { pos, message });
            }
        }
        let pos = self.pos;
        self.push(TokenKind::Eof, pos);
    }

    fn take_word(&mut self) -> String {
        let mut word = String::new();
        while let Some(c) = self.peek().filter(|&c| is_word_char(c)) {
            word.push(c);
            self.bump();
        }
        word
    }

    /// `"…"`: may span lines; `\"` and `\\` are escapes, any other
    /// backslash is kept as it is, so a quoted regex such as `"\.fr$"`
    /// means what it says.
    fn string(&mut self, pos: Pos) {
        self.bump();
        let mut text = String::new();
        loop {
            match self.bump() {
                None => {
                    self.errors.push(LexError {
                        pos,
                        message: "unterminated string: no closing '\"' before end of file"
                            .to_owned(),
                    });
                    return;
                }
                Some('"') => break,
                Some('\\') => match self.peek() {
                    Some(c @ ('"' | '\\')) => {
                        self.bump();
                        text.push(c);
                    }
                    _ => text.push('\\'),
                },
                Some(c) => text.push(c),
            }
        }
        self.push(TokenKind::Str(text), pos);
    }

    /// `/* … */`, which Momentum's overview documents (not nesting).
    fn block_comment(&mut self, pos: Pos) {
        self.bump();
        self.bump();
        loop {
            match self.bump() {
                None => {
                    self.errors.push(LexError {
                        pos,
                        message: "unterminated comment: no closing \"*/\" before end of file"
                            .to_owned(),
                    });
                    return;
                }
                Some('*') if self.peek() == Some('/') => {
                    self.bump();
                    return;
                }
                Some(_) => {}
            }
        }
    }

    /// A word that starts with `/`: a bare regex when a later `/` on the
    /// same run of non-blank characters closes it (`/yahoo\.co(m|\.uk)$/`,
    /// also `…$/{`), otherwise a path (`/path/to/dh.pem`).
    fn slash_word(&mut self, pos: Pos) {
        let mut end = None;
        let mut i = 1;
        while let Some(c) = self.peek_at(i) {
            if c.is_whitespace() {
                break;
            }
            if c == '\\' {
                i += 2;
                continue;
            }
            if c == '/' && ends_regex(self.peek_at(i + 1)) {
                end = Some(i + 1);
                break;
            }
            i += 1;
        }
        let word = match end {
            Some(len) => (0..len).filter_map(|_| self.bump()).collect(),
            None => self.take_word(),
        };
        self.push(TokenKind::Word(word), pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{quickcheck, Arbitrary, Gen};

    fn kinds(text: &str) -> Vec<TokenKind> {
        let (tokens, errors) = tokenize(text);
        assert!(errors.is_empty(), "{errors:?}");
        tokens.into_iter().map(|t| t.kind).collect()
    }

    fn word(w: &str) -> TokenKind {
        TokenKind::Word(w.to_owned())
    }

    #[test]
    fn words_strings_and_punctuation() {
        assert_eq!(
            kinds("NAS-IP-Address = fd01:345::1 # comment\n"),
            vec![
                word("NAS-IP-Address"),
                TokenKind::Equals,
                word("fd01:345::1"),
                TokenKind::Eof
            ]
        );
        assert_eq!(
            kinds(r#"x = ( "a" b,c ) [ k = "v\"\\\." ]"#),
            vec![
                word("x"),
                TokenKind::Equals,
                TokenKind::LParen,
                TokenKind::Str("a".into()),
                word("b"),
                TokenKind::Comma,
                word("c"),
                TokenKind::RParen,
                TokenKind::LBracket,
                word("k"),
                TokenKind::Equals,
                TokenKind::Str(r#"v"\\."#.into()),
                TokenKind::RBracket,
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn regexes_and_paths() {
        assert_eq!(
            kinds("Domain /google\\.(com|es|ru)$/{"),
            vec![
                word("Domain"),
                word("/google\\.(com|es|ru)$/"),
                TokenKind::LBrace,
                TokenKind::Eof
            ]
        );
        assert_eq!(
            kinds("tls_dhparams_file = /path/to/dh.pem\n"),
            vec![
                word("tls_dhparams_file"),
                TokenKind::Equals,
                word("/path/to/dh.pem"),
                TokenKind::Eof
            ]
        );
        assert_eq!(kinds("/* a\n } */ x"), vec![word("x"), TokenKind::Eof]);
    }

    #[test]
    fn positions_count_characters() {
        let (tokens, _) = tokenize("é = \"a\nb\" c\n  d");
        let pos: Vec<_> = tokens.iter().map(|t| (t.pos.line, t.pos.column)).collect();
        // é is a bad character: skipped, reported, and counted as one column.
        assert_eq!(pos, vec![(1, 3), (1, 5), (2, 4), (3, 3), (3, 4)]);
    }

    #[test]
    fn errors_do_not_stop_the_lexer() {
        let (tokens, errors) = tokenize("a = \u{201d}b\u{201d}\nc = \"open");
        assert_eq!(errors.len(), 3);
        assert_eq!(errors[0].pos, Pos { line: 1, column: 5 });
        assert!(errors[0].message.contains("typographic quote"));
        assert_eq!(errors[2].pos, Pos { line: 2, column: 5 });
        assert!(errors[2].message.contains("unterminated string"));
        assert_eq!(tokens.last().map(|t| &t.kind), Some(&TokenKind::Eof));
    }

    /// One token's text and what it lexes to.
    #[derive(Debug, Clone)]
    struct Piece(&'static str);

    const PIECES: &[&str] = &[
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        "=",
        ",",
        "\"a string\"",
        "\"two\nlines\"",
        "\"esc\\\"aped\"",
        "word",
        "TLS_Ca",
        "10.0.0.0/8",
        "fd01:345::1",
        "0640",
        "*.example.com",
        "/yahoo\\.co(m|\\.uk)$/",
        "/path/to/dh.pem",
    ];

    impl Arbitrary for Piece {
        fn arbitrary(g: &mut Gen) -> Self {
            Piece(g.choose(PIECES).copied().unwrap_or("x"))
        }
    }

    #[derive(Debug, Clone)]
    struct Gap(&'static str);

    impl Arbitrary for Gap {
        fn arbitrary(g: &mut Gen) -> Self {
            Gap(g
                .choose(&[
                    " ",
                    "\n",
                    "\t",
                    "  \r\n",
                    " # a comment { \" (\n",
                    " /* c */ ",
                ])
                .copied()
                .unwrap_or(" "))
        }
    }

    quickcheck! {
        /// Arbitrary text never panics, and always ends in one `Eof`.
        fn lexing_never_panics(text: String) -> bool {
            let (tokens, _) = tokenize(&text);
            tokens.iter().filter(|t| t.kind == TokenKind::Eof).count() == 1
        }

        /// Whitespace and comments between tokens change nothing but
        /// positions.
        fn gaps_do_not_matter(pieces: Vec<(Piece, Gap)>) -> bool {
            let tight: String = pieces.iter().map(|(p, _)| format!("{} ", p.0)).collect();
            let loose: String = pieces.iter().map(|(p, g)| format!("{}{}", p.0, g.0)).collect();
            let strip = |t: &str| -> Vec<TokenKind> {
                tokenize(t).0.into_iter().map(|t| t.kind).collect()
            };
            strip(&tight) == strip(&loose)
        }
    }
}
