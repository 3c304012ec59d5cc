//! Message bodies and the octets a client sends for them.

use petrel_core::wire::dot;

/// 1 KB: a typical notification.
pub const SMALL: usize = 1024;
/// 10 MB: a large attachment.
pub const LARGE: usize = 10 * 1024 * 1024;

/// The largest BDAT chunk the bench clients send: what Petrel's own client
/// sends per chunk (one read of the body source, `BODY_CHUNK` in
/// petrel-runtime-common).
pub const BDAT_CHUNK: usize = 64 * 1024;

const HEADERS: &str = "Received: from client.example.org (client.example.org [192.0.2.7])\r\n\
\tby mx.example.com (Petrel) with ESMTPS id 4XyZ12AbCdEf\r\n\
\tfor <first.recipient@example.com>; Tue, 1 Dec 2026 12:00:00 +0000\r\n\
From: Sender Name <sender.name@example.org>\r\n\
To: First Recipient <first.recipient@example.com>\r\n\
Subject: Quarterly figures, as discussed\r\n\
Date: Tue, 1 Dec 2026 11:59:58 +0000\r\n\
Message-ID: <20261201115958.1234@client.example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n";

const PROSE: &[u8] =
    b"The quick brown fox jumps over the lazy dog while the committee reviews the \
figures for the third quarter, which came in slightly above what was forecast in spring. ";

/// A plain-text message of exactly `size` octets (headers, then lines of
/// 76 characters), ending in CRLF, with a line starting with a period now
/// and then so that DATA has dots to stuff and unstuff. It breaks none of
/// the server's body rules (no bare CR or LF, lines under 1000 octets), so
/// the server accepts it.
pub fn text(size: usize) -> Vec<u8> {
    assert!(
        size >= HEADERS.len() + 2,
        "a body of {size} octets is too short"
    );
    let mut body = Vec::with_capacity(size + 80);
    body.extend_from_slice(HEADERS.as_bytes());
    let mut line = 0usize;
    while body.len() < size {
        if line % 40 == 2 {
            body.push(b'.');
        }
        let start = (line * 13) % (PROSE.len() - 76);
        body.extend_from_slice(&PROSE[start..start + 76]);
        body.extend_from_slice(b"\r\n");
        line += 1;
    }
    body.truncate(size - 2);
    // A cut just after a CR would leave a bare CR before the final CRLF.
    if body.last() == Some(&b'\r') {
        *body.last_mut().unwrap() = b'x';
    }
    body.extend_from_slice(b"\r\n");
    body
}

/// The body as DATA sends it: dot-stuffed, with the final `.` line.
pub fn data_wire(body: &[u8]) -> Vec<u8> {
    dot::stuff(body)
}

/// The body as BDAT sends it: chunks of at most [`BDAT_CHUNK`] octets, each
/// after its `BDAT n` command, the last one `BDAT n LAST`.
pub fn bdat_wire(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / BDAT_CHUNK * 16 + 32);
    let chunks = body.chunks(BDAT_CHUNK).count();
    for (i, chunk) in body.chunks(BDAT_CHUNK).enumerate() {
        let last = if i + 1 == chunks { " LAST" } else { "" };
        out.extend_from_slice(format!("BDAT {}{last}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_size_asked_and_stuff_reversibly() {
        for size in [SMALL, SMALL + 1, 5000, 1 << 20] {
            let body = text(size);
            assert_eq!(body.len(), size);
            assert!(body.ends_with(b"\r\n"));
            assert!(
                body.windows(2).any(|w| w == b"\n."),
                "a line starts with a dot"
            );
            let wire = data_wire(&body);
            assert!(wire.len() > size, "dots were stuffed");
            assert_eq!(dot::unstuff(&wire).as_deref(), Some(&body[..]));
        }
    }

    #[test]
    fn bdat_chunks_carry_the_body() {
        let body = text(3 * BDAT_CHUNK + 10);
        let wire = bdat_wire(&body);
        assert!(wire.starts_with(b"BDAT 65536\r\n"));
        let last = "BDAT 10 LAST\r\n";
        assert!(wire[..wire.len() - 10].ends_with(last.as_bytes()));
        assert_eq!(wire.len(), body.len() + 3 * 12 + last.len());
    }
}
