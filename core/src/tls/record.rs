//! Observing the TLS record layer of inbound ciphertext.
//!
//! The session counts client-initiated renegotiation attempts and judges
//! each with the renegotiation policy before the engine sees it: it is the
//! authority on attempts ([who counts](crate::renegotiation#who-counts)).
//! No engine tells it of an attempt in time — rustls answers attempts
//! inside itself, and libssl's client-hello callback runs only once libssl
//! has taken the record — so the session watches the ciphertext it is
//! about to hand to the engine. That is:
//! - engine-independent: the same code sees attempts for rustls and
//!   OpenSSL, so the policy is one function for both;
//! - safe: pure parsing of bytes, no `unsafe`, no engine internals;
//! - early: the decision is made *before* the engine sees the record, so a
//!   connection over its cap is closed without libssl spending a single
//!   handshake on it.
//!
//! What can be seen from outside is enough. The record header (content
//! type, version, length) is never encrypted. In TLS 1.2 an encrypted
//! handshake message keeps content type 22 (handshake), and once the
//! initial handshake is complete the only handshake message a client may
//! send is a ClientHello — a renegotiation attempt. (TLS 1.3 hides the
//! content type of everything after the ServerHello, and has no
//! renegotiation.) Whether the client supports secure renegotiation
//! (RFC 5746) is read from its *initial* ClientHello, which is plaintext.
//!
//! # Use
//!
//! For every inbound ciphertext chunk, [`RecordObserver::split`]
//! yields [`RecordPiece`]s: consecutive slices of the chunk, each lying in
//! one record, split wherever a record starts. A piece that begins a record
//! says so with the record's content type. Before feeding such a piece to
//! the engine, the session checks: content type 22, initial handshake
//! complete, version at most TLS 1.2, engine not in a renegotiation
//! handshake ⇒ this is a renegotiation attempt; ask the policy.
//!
//! ```
//! use petrel_core::tls::record::{RecordObserver, CONTENT_TYPE_HANDSHAKE};
//!
//! let mut observer = RecordObserver::new();
//! // A handshake record header split over two chunks, then an alert.
//! let first: Vec<_> = observer.split(&[22, 3, 3]).collect();
//! assert_eq!(first.len(), 1);
//! assert_eq!(first[0].starts_record, Some(CONTENT_TYPE_HANDSHAKE));
//! let second: Vec<_> = observer.split(&[0, 1, 0xAA, 21, 3, 3, 0, 2, 1, 0]).collect();
//! assert_eq!(second.len(), 2);
//! assert_eq!(second[0].bytes, &[0, 1, 0xAA]);
//! assert_eq!(second[0].starts_record, None);
//! assert_eq!(second[1].starts_record, Some(21));
//! ```
//!
//! Framing is tracked across arbitrary chunking; malformed input never
//! panics (it may desynchronise the observer, but the engine fails such a
//! connection anyway).

/// Content type of a ChangeCipherSpec record.
pub const CONTENT_TYPE_CHANGE_CIPHER_SPEC: u8 = 20;
/// Content type of an alert record.
pub const CONTENT_TYPE_ALERT: u8 = 21;
/// Content type of a handshake record.
pub const CONTENT_TYPE_HANDSHAKE: u8 = 22;
/// Content type of an application data record.
pub const CONTENT_TYPE_APPLICATION_DATA: u8 = 23;

/// Length of a TLS record header: type (1), version (2), length (2).
const TLS_HEADER_LEN: usize = 5;
/// Length of an SSLv2 record header (2-octet form, as in SSLv2-compatible
/// ClientHellos, which OpenSSL still accepts as a first record).
const SSL2_HEADER_LEN: usize = 2;
/// Handshake message header: type (1), length (3).
const HANDSHAKE_HEADER_LEN: usize = 4;
/// Handshake type of a ClientHello.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// SSLv2 message type of a ClientHello.
const SSL2_CLIENT_HELLO: u8 = 1;
/// The RFC 5746 renegotiation_info extension.
const EXTENSION_RENEGOTIATION_INFO: u16 = 0xff01;
/// The RFC 5746 signalling cipher suite value.
const TLS_EMPTY_RENEGOTIATION_INFO_SCSV: [u8; 2] = [0x00, 0xff];
/// The most of the initial ClientHello that is kept for inspection: a full
/// record's plaintext. Real ClientHellos are a few KiB at most; a larger
/// one is treated as not offering secure renegotiation (which only matters
/// if it later tries to renegotiate) rather than buffered without bound.
pub const MAX_CLIENT_HELLO_CAPTURE: usize = 16 * 1024 + HANDSHAKE_HEADER_LEN;

/// A slice of an inbound ciphertext chunk that lies within one TLS record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPiece<'a> {
    /// The octets, in order; concatenating the pieces of a chunk gives the
    /// chunk back.
    pub bytes: &'a [u8],
    /// `Some(content type)` if the piece begins with the first octet of a
    /// record header, `None` if it continues a record begun earlier. (For
    /// an SSLv2-format first record this is that record's first octet,
    /// which has its high bit set.)
    pub starts_record: Option<u8>,
}

impl RecordPiece<'_> {
    /// Whether this piece begins a handshake record (content type 22).
    pub fn starts_handshake_record(&self) -> bool {
        self.starts_record == Some(CONTENT_TYPE_HANDSHAKE)
    }
}

/// Where in the record framing the next octet falls.
#[derive(Debug, Clone, Copy, Default)]
enum Framing {
    /// The next octet starts a record.
    #[default]
    Boundary,
    /// Inside a header: `got` of `len` octets seen so far.
    Header {
        header: [u8; TLS_HEADER_LEN],
        got: usize,
        len: usize,
    },
    /// Inside a record body.
    Body { remaining: usize, kind: RecordKind },
}

/// What a record's complete header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordKind {
    /// The content type (for SSLv2, the header's first octet).
    content_type: u8,
    /// Whether the record is in the SSLv2 format.
    sslv2: bool,
}

/// One piece as the [`Framer`] saw it.
#[derive(Debug)]
struct FramedPiece<'a> {
    piece: RecordPiece<'a>,
    /// The record's kind, if its header is complete by the end of the piece.
    kind: Option<RecordKind>,
    /// The record body octets in the piece (after any header octets).
    body: &'a [u8],
    /// Whether the piece ends its record.
    ends_record: bool,
}

/// The record framing state machine: pure, `Copy`, so that
/// [`RecordObserver::split`] can run it over a chunk and hand the caller a
/// copy that replays the same pieces.
#[derive(Debug, Clone, Copy, Default)]
struct Framer {
    framing: Framing,
    records_started: u64,
}

impl Framer {
    /// Takes the next piece off the front of `data`: the octets up to the
    /// end of the current record (starting one if at a boundary) or of
    /// `data`. `None` only if `data` is empty.
    fn next_piece<'a>(&mut self, data: &'a [u8]) -> Option<FramedPiece<'a>> {
        let first = *data.first()?;
        let mut starts_record = None;
        let mut body: &'a [u8] = &[];
        let mut used = 0;
        loop {
            let rest = data.get(used..).unwrap_or_default();
            match self.framing {
                Framing::Boundary if used == 0 && starts_record.is_none() => {
                    // Only a connection's first record may use the SSLv2
                    // format, whose header has the high bit set.
                    let len = if self.records_started == 0 && first & 0x80 != 0 {
                        SSL2_HEADER_LEN
                    } else {
                        TLS_HEADER_LEN
                    };
                    self.records_started = self.records_started.saturating_add(1);
                    starts_record = Some(first);
                    self.framing = Framing::Header {
                        header: [0; TLS_HEADER_LEN],
                        got: 0,
                        len,
                    };
                }
                Framing::Boundary => break,
                Framing::Header { .. } | Framing::Body { .. } if rest.is_empty() => break,
                Framing::Header {
                    mut header,
                    got,
                    len,
                } => {
                    let take = rest.len().min(len.saturating_sub(got));
                    if let (Some(dst), Some(src)) =
                        (header.get_mut(got..got + take), rest.get(..take))
                    {
                        dst.copy_from_slice(src);
                    }
                    used += take;
                    let got = got + take;
                    self.framing = if got < len {
                        Framing::Header { header, got, len }
                    } else {
                        body_framing(header, len)
                    };
                    if let Framing::Body { remaining: 0, .. } = self.framing {
                        break;
                    }
                }
                Framing::Body { remaining, kind } => {
                    let take = rest.len().min(remaining);
                    body = rest.get(..take).unwrap_or_default();
                    used += take;
                    self.framing = Framing::Body {
                        remaining: remaining - take,
                        kind,
                    };
                    break;
                }
            }
        }
        let (bytes, _) = data.split_at_checked(used.max(1)).unwrap_or((data, &[]));
        let (kind, ends_record) = match self.framing {
            Framing::Body { remaining, kind } => (Some(kind), remaining == 0),
            _ => (None, false),
        };
        if ends_record {
            self.framing = Framing::Boundary;
        }
        Some(FramedPiece {
            piece: RecordPiece {
                bytes,
                starts_record,
            },
            kind,
            body,
            ends_record,
        })
    }
}

/// The framing state after a complete header.
fn body_framing(header: [u8; TLS_HEADER_LEN], len: usize) -> Framing {
    let [b0, b1, _, b3, b4] = header;
    if len == SSL2_HEADER_LEN {
        Framing::Body {
            remaining: usize::from(u16::from_be_bytes([b0 & 0x7f, b1])),
            kind: RecordKind {
                content_type: b0,
                sslv2: true,
            },
        }
    } else {
        Framing::Body {
            remaining: usize::from(u16::from_be_bytes([b3, b4])),
            kind: RecordKind {
                content_type: b0,
                sslv2: false,
            },
        }
    }
}

/// What is known about the initial ClientHello.
#[derive(Debug)]
enum Hello {
    /// Still collecting the first handshake message's octets.
    Collecting(Vec<u8>),
    /// Settled: `Some(offered)` from a parsed ClientHello, `None` if there
    /// was none to parse (malformed, too large, or not a ClientHello).
    Done(Option<bool>),
}

impl Default for Hello {
    fn default() -> Self {
        Hello::Collecting(Vec::new())
    }
}

/// Tracks TLS record boundaries across arbitrarily chunked inbound
/// ciphertext and keeps a bounded copy of the initial ClientHello.
///
/// One per TLS session (a new one for each STARTTLS).
#[derive(Debug, Default)]
pub struct RecordObserver {
    framer: Framer,
    hello: Hello,
}

impl RecordObserver {
    /// An observer at the start of a TLS stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Observes `data`, the next inbound ciphertext chunk, in full, and
    /// returns its pieces: split wherever a record starts (see the
    /// [module docs](self)).
    ///
    /// The observer has advanced past the whole chunk when this returns, so
    /// the pieces do not borrow it: the caller may query
    /// [`secure_renegotiation_offered`](Self::secure_renegotiation_offered)
    /// while going through them. A caller that stops early does so to close
    /// the connection, so that the observer is then ahead of the engine no
    /// longer matters.
    pub fn split<'a>(&mut self, data: &'a [u8]) -> RecordPieces<'a> {
        let replay = RecordPieces {
            framer: self.framer,
            rest: data,
        };
        let mut rest = data;
        while let Some(framed) = self.framer.next_piece(rest) {
            rest = rest.get(framed.piece.bytes.len()..).unwrap_or_default();
            self.capture(&framed);
        }
        replay
    }

    /// Whether the client's initial ClientHello offered RFC 5746 secure
    /// renegotiation (the renegotiation_info extension or the
    /// `TLS_EMPTY_RENEGOTIATION_INFO_SCSV` cipher suite). `None` until a
    /// complete ClientHello has been seen, and if it could not be parsed;
    /// the policy treats `None` as insecure.
    pub fn secure_renegotiation_offered(&self) -> Option<bool> {
        match self.hello {
            Hello::Done(offered) => offered,
            Hello::Collecting(_) => None,
        }
    }

    /// How many records have started so far (including one whose header is
    /// still incomplete).
    pub fn records_started(&self) -> u64 {
        self.framer.records_started
    }

    /// Feeds a piece to the ClientHello capture while it is still
    /// collecting: the body octets of the first handshake records, until
    /// the first handshake message is complete.
    fn capture(&mut self, framed: &FramedPiece<'_>) {
        let Some(kind) = framed.kind else {
            return;
        };
        let Hello::Collecting(buf) = &mut self.hello else {
            return;
        };
        if !kind.sslv2 && kind.content_type != CONTENT_TYPE_HANDSHAKE {
            // The ClientHello is the first handshake message; anything else
            // before it is complete means there is none to parse.
            self.settle_hello(None);
            return;
        }
        let room = MAX_CLIENT_HELLO_CAPTURE.saturating_sub(buf.len());
        buf.extend_from_slice(framed.body.get(..room).unwrap_or(framed.body));
        let offered = if kind.sslv2 {
            // An SSLv2 ClientHello is exactly one record.
            if !framed.ends_record {
                return;
            }
            parse_sslv2_client_hello(buf)
        } else {
            match handshake_message_len(buf) {
                None => return,
                Some(needed) if needed > MAX_CLIENT_HELLO_CAPTURE => None,
                Some(needed) => match buf.get(..needed) {
                    Some(message) => parse_client_hello(message),
                    None => return,
                },
            }
        };
        self.settle_hello(offered);
    }

    fn settle_hello(&mut self, offered: Option<bool>) {
        if let Hello::Collecting(_) = self.hello {
            self.hello = Hello::Done(offered);
        }
    }
}

/// The pieces of one chunk; see [`RecordObserver::split`]. Borrows only
/// the chunk.
#[derive(Debug, Clone)]
pub struct RecordPieces<'a> {
    /// The framing as it was before the chunk, replayed over it.
    framer: Framer,
    rest: &'a [u8],
}

impl<'a> Iterator for RecordPieces<'a> {
    type Item = RecordPiece<'a>;

    fn next(&mut self) -> Option<RecordPiece<'a>> {
        let framed = self.framer.next_piece(self.rest)?;
        self.rest = self
            .rest
            .get(framed.piece.bytes.len()..)
            .unwrap_or_default();
        Some(framed.piece)
    }
}

/// The total length (header included) of the handshake message at the
/// start of `buf`, once its header is complete.
fn handshake_message_len(buf: &[u8]) -> Option<usize> {
    let header = buf.get(..HANDSHAKE_HEADER_LEN)?;
    let mut reader = Reader(header);
    reader.u8()?;
    Some(HANDSHAKE_HEADER_LEN + reader.u24()?)
}

/// A bounds-checked reader over untrusted octets: every accessor returns
/// `None` instead of reading past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<usize> {
        let [a, b] = self.take(2)?.try_into().ok()?;
        Some(usize::from(u16::from_be_bytes([a, b])))
    }

    fn u24(&mut self) -> Option<usize> {
        let [a, b, c] = self.take(3)?.try_into().ok()?;
        Some(usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Parses a ClientHello handshake message (RFC 5246 §7.4.1.2, RFC 8446
/// §4.1.2) just far enough to see whether it offers secure renegotiation.
/// `None` if it is not a well-formed ClientHello.
fn parse_client_hello(message: &[u8]) -> Option<bool> {
    let mut msg = Reader(message);
    if msg.u8()? != HANDSHAKE_CLIENT_HELLO {
        return None;
    }
    let len = msg.u24()?;
    let mut body = Reader(msg.take(len)?);
    body.take(2)?; // legacy_version
    body.take(32)?; // random
    let session_id_len = usize::from(body.u8()?);
    body.take(session_id_len)?;
    let suites_len = body.u16()?;
    let suites = body.take(suites_len)?;
    if suites.len() % 2 != 0 {
        return None;
    }
    let scsv = suites
        .chunks_exact(2)
        .any(|suite| suite == TLS_EMPTY_RENEGOTIATION_INFO_SCSV);
    let compression_len = usize::from(body.u8()?);
    body.take(compression_len)?;
    if body.is_empty() {
        // No extensions at all (allowed before TLS 1.3).
        return Some(scsv);
    }
    let extensions_len = body.u16()?;
    let mut extensions = Reader(body.take(extensions_len)?);
    let mut renegotiation_info = false;
    while !extensions.is_empty() {
        let extension_type = extensions.u16()?;
        let extension_len = extensions.u16()?;
        extensions.take(extension_len)?;
        renegotiation_info |= extension_type == usize::from(EXTENSION_RENEGOTIATION_INFO);
    }
    Some(scsv || renegotiation_info)
}

/// Parses an SSLv2-format ClientHello record body: it has no extensions,
/// so only the SCSV (as the 3-octet cipher spec 0x0000ff) can signal
/// secure renegotiation.
fn parse_sslv2_client_hello(body: &[u8]) -> Option<bool> {
    let mut msg = Reader(body);
    if msg.u8()? != SSL2_CLIENT_HELLO {
        return None;
    }
    msg.take(2)?; // version
    let specs_len = msg.u16()?;
    let session_id_len = msg.u16()?;
    let challenge_len = msg.u16()?;
    let specs = msg.take(specs_len)?;
    msg.take(session_id_len)?;
    msg.take(challenge_len)?;
    if specs.len() % 3 != 0 {
        return None;
    }
    Some(specs.chunks_exact(3).any(|spec| spec == [0x00, 0x00, 0xff]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{quickcheck, TestResult};

    /// (absolute offset, content type) of every record start reported.
    fn starts(observer: &mut RecordObserver, chunks: &[&[u8]]) -> Vec<(usize, u8)> {
        let mut offset = 0;
        let mut found = Vec::new();
        for chunk in chunks {
            let mut rebuilt = Vec::new();
            for piece in observer.split(chunk) {
                if let Some(ty) = piece.starts_record {
                    found.push((offset, ty));
                }
                assert!(!piece.bytes.is_empty());
                offset += piece.bytes.len();
                rebuilt.extend_from_slice(piece.bytes);
            }
            assert_eq!(&rebuilt, chunk);
        }
        found
    }

    fn record(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![ty, 3, 3];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    /// A minimal ClientHello message with the given suites and extensions.
    fn client_hello(suites: &[u16], extensions: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // session id
        body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
        for s in suites {
            body.extend_from_slice(&s.to_be_bytes());
        }
        body.extend_from_slice(&[1, 0]); // null compression
        let mut ext = Vec::new();
        for (ty, data) in extensions {
            ext.extend_from_slice(&ty.to_be_bytes());
            ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
            ext.extend_from_slice(data);
        }
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut msg = vec![HANDSHAKE_CLIENT_HELLO];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        msg
    }

    fn offered(stream: &[u8]) -> Option<bool> {
        let mut observer = RecordObserver::new();
        observer.split(stream).for_each(drop);
        observer.secure_renegotiation_offered()
    }

    #[test]
    fn reports_record_starts_with_content_types() {
        let mut stream = record(22, &[1, 2, 3]);
        stream.extend(record(20, &[1]));
        stream.extend(record(23, &[]));
        stream.extend(record(21, &[2, 40]));
        let mut observer = RecordObserver::new();
        assert_eq!(
            starts(&mut observer, &[&stream]),
            vec![(0, 22), (8, 20), (14, 23), (19, 21)]
        );
        assert_eq!(observer.records_started(), 4);
    }

    #[test]
    fn pieces_stop_at_record_starts_only() {
        let mut stream = record(23, &[9; 10]);
        stream.extend(record(22, &[8; 3]));
        let mut observer = RecordObserver::new();
        let pieces: Vec<_> = observer.split(&stream[..7]).collect();
        assert_eq!(pieces.len(), 1);
        let pieces: Vec<_> = observer.split(&stream[7..]).collect();
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].bytes.len(), 8);
        assert_eq!(pieces[0].starts_record, None);
        assert!(pieces[1].starts_handshake_record());
    }

    #[test]
    fn pieces_do_not_borrow_the_observer() {
        let hello = record(22, &client_hello(&[0x00ff], &[]));
        let stream = [hello.clone(), record(23, &[1; 3])].concat();
        let mut observer = RecordObserver::new();
        let mut pieces = observer.split(&stream);
        // The whole chunk is observed already, whatever is taken of it.
        assert_eq!(observer.secure_renegotiation_offered(), Some(true));
        assert_eq!(observer.records_started(), 2);
        assert_eq!(pieces.next().unwrap().bytes, &hello[..]);
        let next: Vec<_> = observer.split(&[21, 3, 3, 0, 2, 1, 0]).collect();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].starts_record, Some(CONTENT_TYPE_ALERT));
    }

    #[test]
    fn empty_records_are_pieces_of_their_own() {
        let stream = [record(23, &[]), record(23, &[]), record(22, &[5])].concat();
        let mut observer = RecordObserver::new();
        let pieces: Vec<_> = observer.split(&stream).collect();
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|p| p.starts_record.is_some()));
        assert_eq!(pieces[2].bytes.len(), 6);
    }

    #[test]
    fn header_split_octet_by_octet() {
        let stream = [record(22, &[1; 4]), record(23, &[2; 2])].concat();
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        let mut observer = RecordObserver::new();
        assert_eq!(starts(&mut observer, &chunks), vec![(0, 22), (9, 23)]);
    }

    #[test]
    fn detects_renegotiation_info_and_scsv() {
        let ri = client_hello(&[0x1301], &[(0, b""), (0xff01, &[0])]);
        let scsv = client_hello(&[0x1301, 0x00ff], &[(10, &[0, 2, 0, 29])]);
        let neither = client_hello(&[0x1301, 0xc02f], &[(10, &[0, 2, 0, 29])]);
        assert_eq!(offered(&record(22, &ri)), Some(true));
        assert_eq!(offered(&record(22, &scsv)), Some(true));
        assert_eq!(offered(&record(22, &neither)), Some(false));
    }

    #[test]
    fn client_hello_without_extensions() {
        let mut msg = client_hello(&[0x00ff], &[]);
        // Drop the empty extensions block and fix the length.
        msg.truncate(msg.len() - 2);
        let body_len = (msg.len() - 4) as u32;
        msg[1..4].copy_from_slice(&body_len.to_be_bytes()[1..]);
        assert_eq!(parse_client_hello(&msg), Some(true));
    }

    #[test]
    fn client_hello_fragmented_over_records() {
        let msg = client_hello(&[0xc02f], &[(0xff01, &[0])]);
        let (a, b) = msg.split_at(10);
        let stream = [record(22, a), record(22, b)].concat();
        let mut observer = RecordObserver::new();
        observer.split(&stream[..8]).for_each(drop);
        assert_eq!(observer.secure_renegotiation_offered(), None);
        observer.split(&stream[8..]).for_each(drop);
        assert_eq!(observer.secure_renegotiation_offered(), Some(true));
    }

    #[test]
    fn no_client_hello_means_unknown() {
        // An alert first: nothing to parse, ever.
        let stream = [
            record(21, &[2, 40]),
            record(22, &client_hello(&[0x00ff], &[])),
        ]
        .concat();
        assert_eq!(offered(&stream), None);
        // A handshake message that is not a ClientHello.
        assert_eq!(offered(&record(22, &[2, 0, 0, 1, 0])), None);
        // Malformed: suites length runs past the message.
        let mut bad = client_hello(&[0x00ff], &[]);
        bad[4 + 2 + 32 + 1] = 0xff;
        assert_eq!(offered(&record(22, &bad)), None);
        // Declared larger than the capture limit.
        assert_eq!(offered(&record(22, &[1, 0x01, 0, 0, 3, 3])), None);
    }

    #[test]
    fn sslv2_client_hello() {
        // SSLv2 hello: type 1, version 3.1, specs 6, session id 0,
        // challenge 16; specs: one real suite and the SCSV.
        let mut body = vec![1, 3, 1, 0, 6, 0, 0, 0, 16];
        body.extend_from_slice(&[0x00, 0x00, 0x2f, 0x00, 0x00, 0xff]);
        body.extend_from_slice(&[5; 16]);
        let mut stream = vec![0x80 | (body.len() >> 8) as u8, body.len() as u8];
        stream.extend_from_slice(&body);
        stream.extend(record(22, &[0; 3]));
        let mut observer = RecordObserver::new();
        let found = starts(&mut observer, &[&stream]);
        assert_eq!(found, vec![(0, 0x80), (2 + body.len(), 22)]);
        assert_eq!(observer.secure_renegotiation_offered(), Some(true));
    }

    /// The first flight of a real rustls client.
    fn rustls_client_hello(tls12_only: bool) -> Vec<u8> {
        use std::sync::Arc;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut out).unwrap();
        }
        out
    }

    /// The first flight of a real OpenSSL client.
    fn openssl_client_hello(tls12_only: bool) -> Vec<u8> {
        use openssl::ssl::{HandshakeError, SslConnector, SslMethod, SslVersion};
        let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
        if tls12_only {
            builder
                .set_max_proto_version(Some(SslVersion::TLS1_2))
                .unwrap();
        }
        let connector = builder.build();
        match connector.connect("localhost", crate::tls::MemoryTransport::new()) {
            Err(HandshakeError::WouldBlock(mut mid)) => {
                let mut out = Vec::new();
                mid.get_mut().take_outgoing(&mut out);
                out
            }
            other => panic!("expected the client to wait for the server: {other:?}"),
        }
    }

    #[test]
    fn real_client_hellos_offer_secure_renegotiation() {
        for tls12_only in [false, true] {
            for (client, hello) in [
                ("rustls", rustls_client_hello(tls12_only)),
                ("openssl", openssl_client_hello(tls12_only)),
            ] {
                assert!(hello.len() > 100, "{client}: {} octets", hello.len());
                assert_eq!(hello[0], CONTENT_TYPE_HANDSHAKE);
                assert_eq!(
                    offered(&hello),
                    Some(true),
                    "{client} (TLS 1.2 only: {tls12_only})"
                );
                // Octet by octet, too.
                let mut observer = RecordObserver::new();
                for octet in hello.chunks(1) {
                    observer.split(octet).for_each(drop);
                }
                assert_eq!(observer.secure_renegotiation_offered(), Some(true));
                // Without both signals it must read as not offered.
                let mut stripped = hello.clone();
                strip_secure_renegotiation(&mut stripped[5..]);
                assert_eq!(offered(&stripped), Some(false), "{client}");
            }
        }
    }

    /// Renames the SCSV and the renegotiation_info extension in a
    /// ClientHello (lengths unchanged) to unassigned values.
    fn strip_secure_renegotiation(msg: &mut [u8]) {
        let mut at = 4 + 2 + 32;
        at += 1 + usize::from(msg[at]);
        let suites_len = usize::from(u16::from_be_bytes([msg[at], msg[at + 1]]));
        at += 2;
        for suite in msg[at..at + suites_len].chunks_exact_mut(2) {
            if suite == [0x00, 0xff] {
                suite.copy_from_slice(&[0x0a, 0x0a]);
            }
        }
        at += suites_len;
        at += 1 + usize::from(msg[at]);
        let end = at + 2 + usize::from(u16::from_be_bytes([msg[at], msg[at + 1]]));
        at += 2;
        while at < end {
            if msg[at..at + 2] == [0xff, 0x01] {
                msg[at..at + 2].copy_from_slice(&[0xfa, 0xfa]);
            }
            let len = usize::from(u16::from_be_bytes([msg[at + 2], msg[at + 3]]));
            at += 4 + len;
        }
    }

    /// Splits `data` at the given cut points (taken modulo its length).
    fn chunked(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|c| if data.is_empty() { 0 } else { c % data.len() })
            .collect();
        points.push(0);
        points.push(data.len());
        points.sort_unstable();
        points.dedup();
        points
            .windows(2)
            .map(|w| data[w[0]..w[1]].to_vec())
            .collect()
    }

    quickcheck! {
        fn never_panics(chunks: Vec<Vec<u8>>) -> bool {
            let mut observer = RecordObserver::new();
            for chunk in &chunks {
                observer.split(chunk).for_each(drop);
            }
            let _ = observer.secure_renegotiation_offered();
            true
        }

        fn parsers_never_panic(data: Vec<u8>) -> bool {
            let _ = parse_client_hello(&data);
            let _ = parse_sslv2_client_hello(&data);
            true
        }

        fn chunking_invariance(data: Vec<u8>, cuts: Vec<usize>) -> TestResult {
            let whole = {
                let mut observer = RecordObserver::new();
                (starts(&mut observer, &[&data]), observer.secure_renegotiation_offered())
            };
            let pieces = chunked(&data, &cuts);
            let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            let split = {
                let mut observer = RecordObserver::new();
                (starts(&mut observer, &refs), observer.secure_renegotiation_offered())
            };
            TestResult::from_bool(whole == split)
        }

        fn chunking_invariance_on_wellformed_records(
            bodies: Vec<(u8, Vec<u8>)>,
            hello_suites: Vec<u16>,
            cuts: Vec<usize>
        ) -> bool {
            let mut data = record(22, &client_hello(&hello_suites, &[]));
            for (ty, body) in &bodies {
                data.extend(record(20 + ty % 4, body));
            }
            let mut expected = Vec::new();
            let mut at = 0;
            let mut observer = RecordObserver::new();
            for piece in observer.split(&data) {
                if let Some(ty) = piece.starts_record {
                    expected.push((at, ty));
                }
                at += piece.bytes.len();
            }
            let pieces = chunked(&data, &cuts);
            let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            let mut split = RecordObserver::new();
            starts(&mut split, &refs) == expected
                && expected.len() == bodies.len() + 1
                && split.secure_renegotiation_offered()
                    == Some(hello_suites.contains(&0x00ff))
        }
    }
}
