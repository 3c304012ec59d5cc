//! The openssl engine: libssl 3 driven through `SslStream` over a
//! [`MemoryTransport`].
//!
//! OpenSSL is stream-oriented, so it is given an in-memory transport instead
//! of a socket: received ciphertext is pushed into it before OpenSSL is
//! driven, and whatever OpenSSL wrote is handed out by `poll_ciphertext`.
//! An empty transport reads as `WouldBlock`, which OpenSSL reports as
//! `WANT_READ`: "feed me more", never an error.
//!
//! This is the only engine that can renegotiate (TLS 1.2). Whether it may
//! is fixed per listener when the context is built (see
//! [`OpensslServer::new`]); the per-attempt policy (counting, capping) is
//! the session's, in [`crate::renegotiation`].

use ::openssl::error::ErrorStack;
use ::openssl::pkey::PKey;
use ::openssl::ssl::{
    ErrorCode, NameType, Ssl, SslAcceptor, SslContext, SslMethod, SslOptions, SslStream, SslVersion,
};
use ::openssl::x509::X509;

use super::{MemoryTransport, ServerTlsConfig, TlsError, TlsInfo, TlsSession, TlsVersion};

/// `SSL_OP_ALLOW_CLIENT_RENEGOTIATION` (OpenSSL 3.0, bit 8). The `openssl`
/// crate has no constant for it, so the bit is spelt out (an untyped
/// literal, because the options' integer type differs between libssl
/// versions). Since 3.0 an OpenSSL server refuses every client-initiated
/// renegotiation unless this is set.
fn allow_client_renegotiation() -> SslOptions {
    SslOptions::from_bits_retain(0x100)
}

/// The largest plaintext of one TLS record: one `ssl_read` never returns
/// more, so a buffer this size reads a record per call.
const MAX_PLAINTEXT_RECORD: usize = 16 * 1024;

/// A listener's OpenSSL context.
#[derive(Clone, Debug)]
pub(super) struct OpensslServer {
    context: SslContext,
}

fn config_error(what: &str, e: ErrorStack) -> TlsError {
    TlsError::Config(format!("{what}: {e}"))
}

impl OpensslServer {
    /// Builds an `SslAcceptor` (Mozilla intermediate v5: TLS 1.2 and 1.3,
    /// AEAD suites only) with the chain, key and renegotiation setting.
    pub(super) fn new(config: &ServerTlsConfig) -> Result<Self, TlsError> {
        let chain = X509::stack_from_pem(&config.cert_chain_pem)
            .map_err(|e| config_error("cannot parse the certificate PEM", e))?;
        let mut chain = chain.into_iter();
        let Some(leaf) = chain.next() else {
            return Err(TlsError::Config(
                "no certificate found in the certificate PEM".to_owned(),
            ));
        };
        let key = PKey::private_key_from_pem(&config.key_pem)
            .map_err(|e| config_error("cannot parse the private key PEM", e))?;

        let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
            .map_err(|e| config_error("cannot create an OpenSSL context", e))?;
        builder
            .set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(|e| config_error("cannot set the minimum TLS version", e))?;
        builder
            .set_certificate(&leaf)
            .map_err(|e| config_error("unusable certificate", e))?;
        for intermediate in chain {
            builder
                .add_extra_chain_cert(intermediate)
                .map_err(|e| config_error("unusable chain certificate", e))?;
        }
        builder
            .set_private_key(&key)
            .map_err(|e| config_error("unusable private key", e))?;
        builder
            .check_private_key()
            .map_err(|e| config_error("the private key does not match the certificate", e))?;

        // Security decision: which renegotiations libssl itself accepts.
        // - Insecure (pre-RFC 5746) renegotiation is never accepted:
        //   ALLOW_UNSAFE_LEGACY_RENEGOTIATION stays cleared, so a client
        //   that did not offer secure renegotiation gets no_renegotiation.
        // - Refused (TLS_Allow_Renegotiation = false): NO_RENEGOTIATION
        //   makes libssl answer a ClientHello on an established connection
        //   with a no_renegotiation warning at once.
        // - Allowed: OpenSSL 3 also requires ALLOW_CLIENT_RENEGOTIATION, and
        //   NO_RENEGOTIATION must be clear or it would still refuse.
        // The cap on attempts is enforced by the session before libssl sees
        // the record (crate::renegotiation), since libssl has none.
        builder.clear_options(SslOptions::ALLOW_UNSAFE_LEGACY_RENEGOTIATION);
        let allow_client = allow_client_renegotiation();
        if config.allow_renegotiation {
            builder.clear_options(SslOptions::NO_RENEGOTIATION);
            builder.set_options(allow_client);
        } else {
            builder.clear_options(allow_client);
            builder.set_options(SslOptions::NO_RENEGOTIATION);
        }

        Ok(OpensslServer {
            context: builder.build().into_context(),
        })
    }

    /// Starts one server connection.
    pub(super) fn new_session(&self) -> Result<OpensslSession, TlsError> {
        let mut ssl = Ssl::new(&self.context)
            .map_err(|e| config_error("cannot start an OpenSSL connection", e))?;
        ssl.set_accept_state();
        let stream = SslStream::new(ssl, MemoryTransport::new())
            .map_err(|e| config_error("cannot start an OpenSSL connection", e))?;
        Ok(OpensslSession {
            stream,
            established: false,
            plaintext: Vec::new(),
            unsent: Vec::new(),
            failed: None,
            peer_closed: false,
        })
    }
}

/// One server connection of the openssl engine.
#[derive(Debug)]
pub(super) struct OpensslSession {
    stream: SslStream<MemoryTransport>,
    /// Whether the initial handshake has completed (renegotiations do not
    /// reset it: the connection stays established during them).
    established: bool,
    /// Decrypted application data not yet taken by the session.
    plaintext: Vec<u8>,
    /// Plaintext accepted by `write_plaintext` that OpenSSL could not
    /// encrypt yet: before the initial handshake, and while a
    /// renegotiation handshake is in progress (`SSL_write` then wants to
    /// read the peer's next flight first).
    unsent: Vec<u8>,
    /// The first fatal error; every later input repeats it.
    failed: Option<TlsError>,
    peer_closed: bool,
}

/// Whether an OpenSSL result only means "needs more input" (or, never with
/// a memory transport, "needs to send").
fn wants_io(code: ErrorCode) -> bool {
    code == ErrorCode::WANT_READ || code == ErrorCode::WANT_WRITE
}

impl OpensslSession {
    fn fail(&mut self, error: TlsError) -> TlsError {
        self.failed = Some(error.clone());
        error
    }

    /// Lets OpenSSL process everything received so far: the handshake,
    /// then records (application data, alerts, renegotiation handshakes,
    /// which libssl runs inside `SSL_read`), then pending writes.
    fn drive(&mut self) -> Result<(), TlsError> {
        if !self.established {
            match self.stream.do_handshake() {
                Ok(()) => self.established = true,
                Err(e) if wants_io(e.code()) => return Ok(()),
                Err(e) => return Err(TlsError::Handshake(e.to_string())),
            }
        }
        self.read_records()?;
        self.flush_unsent()
    }

    fn read_records(&mut self) -> Result<(), TlsError> {
        let mut buf = [0u8; MAX_PLAINTEXT_RECORD];
        while !self.peer_closed {
            match self.stream.ssl_read(&mut buf) {
                Ok(n) => match buf.get(..n) {
                    Some(data) if n > 0 => self.plaintext.extend_from_slice(data),
                    _ => break,
                },
                Err(e) if wants_io(e.code()) => break,
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => self.peer_closed = true,
                Err(e) => return Err(TlsError::Protocol(e.to_string())),
            }
        }
        Ok(())
    }

    fn flush_unsent(&mut self) -> Result<(), TlsError> {
        while !self.unsent.is_empty() {
            match self.stream.ssl_write(&self.unsent) {
                Ok(n) if n > 0 => {
                    self.unsent.drain(..n.min(self.unsent.len()));
                }
                Ok(_) => break,
                Err(e) if wants_io(e.code()) => break,
                Err(e) => return Err(TlsError::Protocol(e.to_string())),
            }
        }
        Ok(())
    }
}

impl TlsSession for OpensslSession {
    fn handle_ciphertext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        self.stream.get_mut().push_incoming(data);
        // OpenSSL has written any alert into the transport already.
        self.drive().map_err(|error| self.fail(error))
    }

    fn read_plaintext(&mut self, out: &mut Vec<u8>) -> Result<usize, TlsError> {
        let n = self.plaintext.len();
        out.append(&mut self.plaintext);
        Ok(n)
    }

    fn write_plaintext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        self.unsent.extend_from_slice(data);
        if self.established {
            self.flush_unsent().map_err(|error| self.fail(error))?;
        }
        Ok(())
    }

    fn poll_ciphertext(&mut self, out: &mut Vec<u8>) -> usize {
        self.stream.get_mut().take_outgoing(out)
    }

    fn is_handshaking(&self) -> bool {
        // SSL_is_init_finished is false before the initial handshake and
        // again from the moment libssl accepts a renegotiation ClientHello
        // until that handshake's Finished.
        !self.stream.ssl().is_init_finished()
    }

    fn info(&self) -> Option<TlsInfo> {
        if !self.established {
            return None;
        }
        let ssl = self.stream.ssl();
        let version = match ssl.version2()? {
            v if v == SslVersion::TLS1_3 => TlsVersion::Tls13,
            v if v == SslVersion::TLS1_2 => TlsVersion::Tls12,
            v if v == SslVersion::TLS1_1 => TlsVersion::Tls11,
            v if v == SslVersion::TLS1 => TlsVersion::Tls10,
            _ => return None,
        };
        let cipher = ssl.current_cipher()?;
        Some(TlsInfo {
            version,
            // IANA names, as the rustls engine reports them.
            cipher: cipher.standard_name().unwrap_or(cipher.name()).to_owned(),
            peer_certificate: ssl.peer_certificate().and_then(|cert| cert.to_der().ok()),
            server_name: ssl.servername(NameType::HOST_NAME).map(str::to_owned),
        })
    }

    fn close(&mut self) {
        // Before the handshake completes there is no session to close:
        // libssl refuses, and the caller simply drops the connection.
        let _ = self.stream.shutdown();
    }

    fn peer_closed(&self) -> bool {
        self.peer_closed
    }
}
