//! A fake TLS engine for the simulation (test builds only): a fixed
//! two-message handshake and framed plaintext "records", no cryptography.
//! It lets `Pair` and the session tests drive STARTTLS in virtual time and
//! fail it on demand (refuse, reject the certificate, stall) without the
//! real engines' timing or randomness.
//!
//! Wire format: the client sends [`CLIENT_HELLO`]; the server answers
//! [`SERVER_HELLO`] (or [`SERVER_REFUSAL`], or nothing when stalling).
//! Then each record is `D`, a 16-bit big-endian length and the data;
//! close_notify is a lone `C`.

use super::{
    CertificateProblem, CertificateProblemKind, CertificateStatus, TlsError, TlsFailure,
    TlsFailureKind, TlsInfo, TlsSession, TlsVersion,
};

const CLIENT_HELLO: &[u8] = b"FAKE-HELLO\n";
const SERVER_HELLO: &[u8] = b"FAKE-READY\n";
const SERVER_REFUSAL: &[u8] = b"FAKE-NO!!!\n";

/// Which end a fake session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Client,
    Server,
}

/// How a fake handshake goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum FakeHandshake {
    /// It completes.
    #[default]
    Completes,
    /// The server refuses it.
    Refused,
    /// The client rejects the server's certificate.
    CertificateRejected,
    /// The server never answers.
    Stalls,
}

#[derive(Debug)]
pub(crate) struct FakeSession {
    role: Role,
    handshake: FakeHandshake,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    plaintext: Vec<u8>,
    /// Plaintext written before the handshake completed.
    early: Vec<u8>,
    established: bool,
    failed: Option<TlsError>,
    peer_closed: bool,
}

impl FakeSession {
    pub(crate) fn new(role: Role, handshake: FakeHandshake) -> Self {
        let out = match role {
            Role::Client => CLIENT_HELLO.to_vec(),
            Role::Server => Vec::new(),
        };
        Self {
            role,
            handshake,
            inbuf: Vec::new(),
            out,
            plaintext: Vec::new(),
            early: Vec::new(),
            established: false,
            failed: None,
            peer_closed: false,
        }
    }

    fn fail(&mut self, error: TlsError) -> Result<(), TlsError> {
        self.failed = Some(error.clone());
        Err(error)
    }

    fn handshake_step(&mut self) -> Result<(), TlsError> {
        let expected = match self.role {
            Role::Server => CLIENT_HELLO,
            Role::Client => SERVER_HELLO,
        };
        if self.inbuf.len() < expected.len() {
            return Ok(());
        }
        let message: Vec<u8> = self.inbuf.drain(..expected.len()).collect();
        if self.role == Role::Server && message != CLIENT_HELLO {
            return self.fail(TlsError::Handshake(TlsFailure::new(
                TlsFailureKind::BadMessage,
                "not a fake hello",
            )));
        }
        match (self.role, self.handshake) {
            (Role::Server, FakeHandshake::Stalls) => return Ok(()),
            (Role::Server, FakeHandshake::Refused) => {
                self.out.extend_from_slice(SERVER_REFUSAL);
                return self.fail(TlsError::Handshake(TlsFailure::new(
                    TlsFailureKind::Other,
                    "fake handshake refused",
                )));
            }
            (Role::Server, _) => self.out.extend_from_slice(SERVER_HELLO),
            (Role::Client, _) if message == SERVER_REFUSAL => {
                return self.fail(TlsError::Handshake(TlsFailure::new(
                    TlsFailureKind::Other,
                    "fake server refused",
                )));
            }
            (Role::Client, FakeHandshake::CertificateRejected) => {
                return self.fail(TlsError::Certificate(CertificateProblem::new(
                    CertificateProblemKind::UnknownIssuer,
                    "fake certificate",
                )));
            }
            (Role::Client, _) => {}
        }
        self.established = true;
        let early = std::mem::take(&mut self.early);
        self.write_plaintext(&early)
    }

    fn records(&mut self) -> Result<(), TlsError> {
        loop {
            match self.inbuf.first() {
                None => return Ok(()),
                Some(b'C') => {
                    self.inbuf.remove(0);
                    self.peer_closed = true;
                }
                Some(b'D') => {
                    let Some(&[high, low]) = self.inbuf.get(1..3) else {
                        return Ok(());
                    };
                    let end = 3 + usize::from(u16::from_be_bytes([high, low]));
                    let Some(data) = self.inbuf.get(3..end) else {
                        return Ok(());
                    };
                    self.plaintext.extend_from_slice(data);
                    self.inbuf.drain(..end);
                }
                Some(_) => {
                    return self.fail(TlsError::Protocol(TlsFailure::new(
                        TlsFailureKind::BadMessage,
                        "not a fake record",
                    )))
                }
            }
        }
    }
}

impl TlsSession for FakeSession {
    fn handle_ciphertext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        self.inbuf.extend_from_slice(data);
        if !self.established {
            self.handshake_step()?;
        }
        if self.established {
            self.records()?;
        }
        Ok(())
    }

    fn read_plaintext(&mut self, out: &mut Vec<u8>) -> Result<usize, TlsError> {
        let n = self.plaintext.len();
        out.append(&mut self.plaintext);
        Ok(n)
    }

    fn write_plaintext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        if !self.established {
            self.early.extend_from_slice(data);
            return Ok(());
        }
        for piece in data.chunks(usize::from(u16::MAX)) {
            self.out.push(b'D');
            self.out
                .extend_from_slice(&(piece.len() as u16).to_be_bytes());
            self.out.extend_from_slice(piece);
        }
        Ok(())
    }

    fn poll_ciphertext(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.out.len();
        out.append(&mut self.out);
        n
    }

    fn is_handshaking(&self) -> bool {
        !self.established
    }

    fn info(&self) -> Option<TlsInfo> {
        self.established.then(|| TlsInfo {
            version: TlsVersion::Tls13,
            cipher: "FAKE".into(),
            peer_certificate: None,
            server_name: None,
            certificate: CertificateStatus::NotChecked,
        })
    }

    fn close(&mut self) {
        self.out.push(b'C');
    }

    fn peer_closed(&self) -> bool {
        self.peer_closed
    }
}
