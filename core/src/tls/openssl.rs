//! The openssl engine: libssl 3 driven through `SslStream` over a
//! [`MemoryTransport`], on either side.
//!
//! OpenSSL is stream-oriented, so it is given an in-memory transport instead
//! of a socket: received ciphertext is pushed into it before OpenSSL is
//! driven, and whatever OpenSSL wrote is handed out by `poll_ciphertext`.
//! An empty transport reads as `WouldBlock`, which OpenSSL reports as
//! `WANT_READ`: "feed me more", never an error.
//!
//! This is the only engine that can renegotiate (TLS 1.2). Whether it may
//! is fixed per listener when the context is built (see
//! [`OpensslServer::new`]); each attempt is judged by
//! [`crate::renegotiation`], and the count libssl keeps here is the
//! backstop described there under
//! [who counts](crate::renegotiation#who-counts). As a client it never
//! renegotiates.

use ::openssl::error::ErrorStack;
use ::openssl::ex_data::Index;
use ::openssl::pkey::PKey;
use ::openssl::ssl::{
    ClientHelloResponse, ErrorCode, NameType, Ssl, SslAcceptor, SslAlert, SslContext,
    SslContextBuilder, SslMethod, SslMode, SslOptions, SslStream, SslVerifyMode, SslVersion,
};
use ::openssl::x509::verify::{X509CheckFlags, X509VerifyFlags};
use ::openssl::x509::{X509StoreContextRef, X509};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::client::{CertificateCheck, PeerName, Role};
use super::{
    CertificateProblem, CertificateProblemKind, ClientTlsConfig, MemoryTransport, ServerTlsConfig,
    TlsError, TlsFailure, TlsFailureKind, TlsInfo, TlsSession, TlsVerify, TlsVersion,
};

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

/// The client's cipher list for TLS 1.2 (TLS 1.3 suites are all fine):
/// OpenSSL's defaults without the unauthenticated, export-era and broken
/// ones, as the `openssl` crate's `SslConnector` (and Python) use. Broader
/// than the listener's Mozilla "intermediate" list on purpose: outbound,
/// the alternative to a weaker cipher is usually plaintext.
const CLIENT_CIPHERS: &str =
    "DEFAULT:!aNULL:!eNULL:!MD5:!3DES:!DES:!RC4:!IDEA:!SEED:!aDSS:!SRP:!PSK";

/// A listener's OpenSSL context.
#[derive(Clone, Debug)]
pub(super) struct OpensslServer {
    context: SslContext,
    /// Where each connection's renegotiation count lives, when allowed.
    hellos: Option<HelloIndex>,
}

fn config_error(what: &str, e: ErrorStack) -> TlsError {
    TlsError::Config(format!("{what}: {e}"))
}

/// Every certificate in `pem` (`what` names it in errors); at least one.
fn parse_certificates(pem: &[u8], what: &str) -> Result<Vec<X509>, TlsError> {
    let certificates = X509::stack_from_pem(pem)
        .map_err(|e| config_error(&format!("cannot parse the {what} PEM"), e))?;
    if certificates.is_empty() {
        return Err(TlsError::Config(format!(
            "no certificate found in the {what} PEM"
        )));
    }
    Ok(certificates)
}

/// Installs a certificate chain (end-entity first) and its private key,
/// both PEM, checking that they belong together (`what` names the
/// certificate in errors).
fn set_identity(
    builder: &mut SslContextBuilder,
    chain_pem: &[u8],
    key_pem: &[u8],
    what: &str,
) -> Result<(), TlsError> {
    let mut chain = parse_certificates(chain_pem, what)?.into_iter();
    let Some(leaf) = chain.next() else {
        return Err(TlsError::Config(format!(
            "no certificate found in the {what} PEM"
        )));
    };
    let key = PKey::private_key_from_pem(key_pem).map_err(|e| {
        config_error(
            &format!("cannot parse the private key PEM of the {what}"),
            e,
        )
    })?;
    builder
        .set_certificate(&leaf)
        .map_err(|e| config_error(&format!("unusable {what}"), e))?;
    for intermediate in chain {
        builder
            .add_extra_chain_cert(intermediate)
            .map_err(|e| config_error(&format!("unusable {what} chain certificate"), e))?;
    }
    builder
        .set_private_key(&key)
        .map_err(|e| config_error(&format!("unusable private key of the {what}"), e))?;
    builder
        .check_private_key()
        .map_err(|e| config_error(&format!("the private key does not match the {what}"), e))
}

/// The modes the session's buffering relies on: `write_plaintext` keeps
/// what OpenSSL could not take yet in a growing `Vec` and retries with it,
/// so a retried write may come from a moved buffer and be taken in part.
fn set_session_modes(builder: &mut SslContextBuilder) {
    builder.set_mode(SslMode::ACCEPT_MOVING_WRITE_BUFFER | SslMode::ENABLE_PARTIAL_WRITE);
}

impl OpensslServer {
    /// Builds an `SslAcceptor` (Mozilla intermediate v5: TLS 1.2 and 1.3,
    /// AEAD suites only) with the chain, key and renegotiation setting.
    pub(super) fn new(config: &ServerTlsConfig) -> Result<Self, TlsError> {
        let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
            .map_err(|e| config_error("cannot create an OpenSSL context", e))?;
        builder
            .set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(|e| config_error("cannot set the minimum TLS version", e))?;
        set_session_modes(&mut builder);
        set_identity(
            &mut builder,
            &config.cert_chain_pem,
            &config.key_pem,
            "certificate",
        )?;

        // Security decision: which renegotiations libssl itself accepts.
        // - Insecure (pre-RFC 5746) renegotiation is never accepted:
        //   ALLOW_UNSAFE_LEGACY_RENEGOTIATION stays cleared, so a client
        //   that did not offer secure renegotiation gets no_renegotiation.
        // - Refused (TLS_Allow_Renegotiation = false): NO_RENEGOTIATION
        //   makes libssl answer a ClientHello on an established connection
        //   with a no_renegotiation warning at once.
        // - Allowed: OpenSSL 3 also requires ALLOW_CLIENT_RENEGOTIATION, and
        //   NO_RENEGOTIATION must be clear or it would still refuse.
        // - The client-hello callback is the backstop of
        //   crate::renegotiation's "Who counts": the same cap, on every
        //   ClientHello libssl processes, including one packed after a
        //   Finished where the session cannot see it.
        builder.clear_options(SslOptions::ALLOW_UNSAFE_LEGACY_RENEGOTIATION);
        let allow_client = allow_client_renegotiation();
        let mut hellos = None;
        if config.allow_renegotiation {
            builder.clear_options(SslOptions::NO_RENEGOTIATION);
            builder.set_options(allow_client);
            let index = Ssl::new_ex_index::<Renegotiations>()
                .map_err(|e| config_error("cannot set up renegotiation counting", e))?;
            let cap = config.max_renegotiations;
            builder.set_client_hello_callback(move |ssl, alert| {
                let Some(state) = ssl.ex_data(index) else {
                    return Ok(ClientHelloResponse::SUCCESS);
                };
                // Before the initial handshake completes, a second
                // ClientHello is TLS 1.3's answer to a HelloRetryRequest.
                if state.established.load(Ordering::SeqCst)
                    && state.count.fetch_add(1, Ordering::SeqCst) >= cap
                {
                    *alert = SslAlert::HANDSHAKE_FAILURE;
                    return Err(ErrorStack::get());
                }
                Ok(ClientHelloResponse::SUCCESS)
            });
            hellos = Some(HelloIndex(index));
        } else {
            builder.clear_options(allow_client);
            builder.set_options(SslOptions::NO_RENEGOTIATION);
        }

        Ok(OpensslServer {
            context: builder.build().into_context(),
            hellos,
        })
    }

    /// Starts one server connection.
    pub(super) fn new_session(&self) -> Result<OpensslSession, TlsError> {
        let mut ssl = Ssl::new(&self.context)
            .map_err(|e| config_error("cannot start an OpenSSL connection", e))?;
        ssl.set_accept_state();
        if let Some(HelloIndex(index)) = self.hellos {
            ssl.set_ex_data(index, Renegotiations::default());
        }
        let mut session = OpensslSession::new(ssl, Role::Server)
            .map_err(|e| config_error("cannot start an OpenSSL connection", e))?;
        session.hellos = self.hellos;
        Ok(session)
    }
}

/// The outbound OpenSSL context.
#[derive(Clone, Debug)]
pub(super) struct OpensslClient {
    context: SslContext,
}

impl OpensslClient {
    /// Builds a client `SslContext` (TLS 1.2 and 1.3) with the CA bundle as
    /// its only trust store and the client certificate, if any.
    ///
    /// Not `SslConnector::builder`: it loads the system's default CA
    /// locations, and the core reads no files (and trusts only `TLS_CA`).
    pub(super) fn new(config: &ClientTlsConfig) -> Result<Self, TlsError> {
        let mut builder = SslContextBuilder::new(SslMethod::tls_client())
            .map_err(|e| config_error("cannot create an OpenSSL context", e))?;
        builder
            .set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(|e| config_error("cannot set the minimum TLS version", e))?;
        builder
            .set_cipher_list(CLIENT_CIPHERS)
            .map_err(|e| config_error("cannot set the cipher list", e))?;
        set_session_modes(&mut builder);
        // Security decision: the client never renegotiates (as rustls): a
        // server's HelloRequest gets a no_renegotiation warning, so a
        // server cannot make a delivery spend CPU on handshakes. Legacy
        // insecure renegotiation stays off as well.
        builder.clear_options(SslOptions::ALLOW_UNSAFE_LEGACY_RENEGOTIATION);
        builder.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::NO_COMPRESSION);

        if let Some(pem) = &config.ca_pem {
            for certificate in parse_certificates(pem, "CA")? {
                builder
                    .cert_store_mut()
                    .add_cert(certificate)
                    .map_err(|e| config_error("unusable CA certificate", e))?;
            }
            // Every certificate in TLS_CA is a trust anchor, root or not,
            // as for rustls (webpki): without this OpenSSL would insist on
            // reaching a self-signed root.
            builder
                .verify_param_mut()
                .set_flags(X509VerifyFlags::PARTIAL_CHAIN)
                .map_err(|e| config_error("cannot set the verification flags", e))?;
        }
        if let Some((chain_pem, key_pem)) = &config.client_cert {
            set_identity(&mut builder, chain_pem, key_pem, "client certificate")?;
        }
        // Verification is set per connection (new_session): the callback
        // records that connection's verdict.
        builder.set_verify(SslVerifyMode::NONE);
        Ok(OpensslClient {
            context: builder.build(),
        })
    }

    /// Starts one client connection to `peer`; the ClientHello is ready to
    /// poll.
    pub(super) fn new_session(
        &self,
        peer: &PeerName,
        check: CertificateCheck,
    ) -> Result<OpensslSession, TlsError> {
        let start_error = |e| TlsError::Handshake(TlsFailure::new(TlsFailureKind::CannotStart, e));
        let mut ssl = Ssl::new(&self.context).map_err(start_error)?;
        ssl.set_connect_state();
        if let Some(name) = peer.sni() {
            ssl.set_hostname(name).map_err(start_error)?;
        }
        let verify = check.verify();
        if verify.checks_name() {
            let param = ssl.param_mut();
            // As browsers and SslConnector: "*" matches a whole label only.
            // Names come from subjectAltName only, as in webpki (rustls): a
            // subject CN is never taken for a host name, so both engines
            // agree.
            param.set_hostflags(
                X509CheckFlags::NO_PARTIAL_WILDCARDS | X509CheckFlags::NEVER_CHECK_SUBJECT,
            );
            match peer {
                PeerName::Dns(name) => param.set_host(name),
                PeerName::Ip(ip) => param.set_ip(*ip),
            }
            .map_err(start_error)?;
        }
        if verify == TlsVerify::No {
            // Security decision: `TLS_Verify = no` trusts any certificate
            // (opportunistic TLS, RFC 7435). libssl still verifies the
            // handshake signatures with the certificate's key.
            ssl.set_verify(SslVerifyMode::NONE);
        } else {
            // PEER makes libssl verify the chain (and the name set above)
            // and call back for every step; the callback decides whether a
            // failure ends the handshake (`ca`, `host`) or is only recorded
            // (`optional`).
            let verdict = check.clone();
            let expected = match peer {
                PeerName::Dns(name) => name.clone(),
                PeerName::Ip(ip) => ip.to_string(),
            };
            ssl.set_verify_callback(SslVerifyMode::PEER, move |preverified, context| {
                if preverified {
                    verdict.accept();
                    true
                } else {
                    verdict.reject(verify_failure(context, &expected))
                }
            });
        }
        let mut session =
            OpensslSession::new(ssl, Role::client(peer, check)).map_err(start_error)?;
        // Writes the ClientHello into the transport.
        session.drive()?;
        Ok(session)
    }
}

/// `X509_V_ERR_HOSTNAME_MISMATCH` and `X509_V_ERR_IP_ADDRESS_MISMATCH`
/// (stable since OpenSSL 1.0.2; the `openssl` crate has no constants).
const NAME_MISMATCH_ERRORS: [i32; 2] = [62, 64];

/// Why libssl rejected a certificate of the chain, for logs and the policy.
/// A name mismatch says which name was expected, as rustls's does.
fn verify_failure(context: &X509StoreContextRef, expected_name: &str) -> CertificateProblem {
    use CertificateProblemKind as Kind;
    let error = context.error();
    let reason = error.error_string();
    // X509_V_ERR_* codes (x509_vfy.h).
    let kind = match error.as_raw() {
        10 => Kind::Expired,
        9 => Kind::NotYetValid,
        2 | 18 | 19 | 20 | 21 | 27 => Kind::UnknownIssuer,
        23 => Kind::Revoked,
        26 => Kind::WrongPurpose,
        7 => Kind::BadCertificate,
        code if NAME_MISMATCH_ERRORS.contains(&code) => {
            let detail = format!("{reason}: the certificate is not valid for {expected_name:?}");
            return CertificateProblem::new(Kind::NameMismatch, detail);
        }
        _ => Kind::Other,
    };
    match context.error_depth() {
        0 => CertificateProblem::new(kind, reason),
        depth => {
            CertificateProblem::new(kind, format!("{reason} (certificate {depth} of the chain)"))
        }
    }
}

/// One connection of the openssl engine, server or client side.
#[derive(Debug)]
pub(super) struct OpensslSession {
    stream: SslStream<MemoryTransport>,
    role: Role,
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
    /// Where libssl counts renegotiation ClientHellos, the backstop count
    /// (servers that allow renegotiation).
    hellos: Option<HelloIndex>,
}

/// What the ClientHello callback knows of one connection. Atomics, because
/// the session reaches it through a shared `&SslRef`.
#[derive(Debug, Default)]
struct Renegotiations {
    established: AtomicBool,
    count: AtomicU32,
}

/// The ex-data slot of [`Renegotiations`] (the crate's `Index` is not
/// `Debug`).
#[derive(Clone, Copy)]
struct HelloIndex(Index<Ssl, Renegotiations>);

impl std::fmt::Debug for HelloIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HelloIndex")
    }
}

/// Ciphertext held for libssl beyond what it can take at once: a little
/// more than one full record and a bit. Past it, the peer is sending what
/// nobody will read (after close_notify), and the connection fails.
const MAX_HELD_CIPHERTEXT: usize = 4 * (16 * 1024 + 2048);

/// Plaintext held while a renegotiation handshake is under way: a peer that
/// starts one and never finishes it cannot make replies pile up.
const MAX_UNSENT: usize = 256 * 1024;

/// What an OpenSSL error means, for [`TlsFailure`]: the first libssl
/// reason code on the error stack that names a kind (`sslerr.h`), the
/// whole stack as the detail.
fn failure(error: &::openssl::ssl::Error) -> TlsFailure {
    use TlsFailureKind as Kind;
    /// `ERR_LIB_SSL`.
    const LIB_SSL: i32 = 20;
    /// `SSL_AD_REASON_OFFSET`: libssl reports a received alert as this
    /// plus the alert's number.
    const ALERT_OFFSET: i32 = 1000;
    let reasons = error
        .ssl_error()
        .map(|stack| stack.errors())
        .unwrap_or_default()
        .iter()
        .filter(|e| e.library_code() == LIB_SSL)
        .map(|e| e.reason_code());
    let kind = reasons
        .filter_map(|reason| match reason {
            // NO_SHARED_CIPHER, NO_SHARED_GROUPS
            193 | 410 => Some(Kind::NoCommonCipher),
            // NO_SUITABLE_SIGNATURE_ALGORITHM, NO_SHARED_SIGNATURE_ALGORITHMS
            118 | 376 => Some(Kind::NoCommonSignatureScheme),
            // NO_PROTOCOLS_AVAILABLE, UNSUPPORTED_PROTOCOL,
            // UNSUPPORTED_SSL_VERSION, VERSION_TOO_HIGH, VERSION_TOO_LOW,
            // WRONG_VERSION_NUMBER
            191 | 258 | 259 | 166 | 396 | 267 => Some(Kind::NoCommonVersion),
            // DECRYPTION_FAILED_OR_BAD_RECORD_MAC
            281 => Some(Kind::BadRecord),
            // UNEXPECTED_MESSAGE, UNEXPECTED_RECORD, NO_RENEGOTIATION,
            // PACKET_LENGTH_TOO_LONG, RECORD_LENGTH_MISMATCH, BAD_RECORD_TYPE
            244 | 245 | 339 | 198 | 213 | 443 => Some(Kind::BadMessage),
            alert if (ALERT_OFFSET..ALERT_OFFSET + 256).contains(&alert) => {
                u8::try_from(alert - ALERT_OFFSET).ok().map(Kind::PeerAlert)
            }
            _ => None,
        })
        .next()
        .unwrap_or(Kind::Other);
    TlsFailure::new(kind, error)
}

/// Whether an OpenSSL result only means "needs more input" (or, never with
/// a memory transport, "needs to send").
fn wants_io(code: ErrorCode) -> bool {
    code == ErrorCode::WANT_READ || code == ErrorCode::WANT_WRITE
}

impl OpensslSession {
    /// Wraps a configured `Ssl` (accept or connect state already set).
    fn new(ssl: Ssl, role: Role) -> Result<Self, ErrorStack> {
        Ok(OpensslSession {
            stream: SslStream::new(ssl, MemoryTransport::new())?,
            role,
            established: false,
            plaintext: Vec::new(),
            unsent: Vec::new(),
            failed: None,
            peer_closed: false,
            hellos: None,
        })
    }

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
                Ok(()) => {
                    self.established = true;
                    if let Some(HelloIndex(index)) = self.hellos {
                        if let Some(state) = self.stream.ssl().ex_data(index) {
                            state.established.store(true, Ordering::SeqCst);
                        }
                    }
                }
                Err(e) if wants_io(e.code()) => return Ok(()),
                Err(e) => return Err(self.role.handshake_error(failure(&e))),
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
                Err(e) => return Err(TlsError::Protocol(failure(&e))),
            }
        }
        Ok(())
    }

    fn flush_unsent(&mut self) -> Result<(), TlsError> {
        let mut unsent = std::mem::take(&mut self.unsent);
        let result = self.write_records(&unsent);
        if let Ok(n) = result {
            unsent.drain(..n.min(unsent.len()));
        }
        self.unsent = unsent;
        result.map(drop)
    }

    /// Writes as much of `data` as libssl takes now; returns how much.
    fn write_records(&mut self, data: &[u8]) -> Result<usize, TlsError> {
        let mut taken = 0;
        while let Some(rest) = data.get(taken..).filter(|rest| !rest.is_empty()) {
            match self.stream.ssl_write(rest) {
                Ok(n) if n > 0 => taken += n,
                Ok(_) => break,
                Err(e) if wants_io(e.code()) => break,
                Err(e) => return Err(TlsError::Protocol(failure(&e))),
            }
        }
        Ok(taken)
    }
}

impl TlsSession for OpensslSession {
    fn handle_ciphertext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.peer_closed {
            // Nothing after close_notify is read; holding it would only
            // grow memory.
            return Ok(());
        }
        self.stream.get_mut().push_incoming(data);
        // OpenSSL has written any alert into the transport already.
        self.drive().map_err(|error| self.fail(error))?;
        if self.stream.get_ref().incoming_len() > MAX_HELD_CIPHERTEXT {
            let error = TlsError::Protocol(TlsFailure::new(TlsFailureKind::TooMuchInput, ""));
            return Err(self.fail(error));
        }
        Ok(())
    }

    fn read_plaintext(&mut self, out: &mut Vec<u8>) -> Result<usize, TlsError> {
        Ok(super::transport::hand_over(&mut self.plaintext, out))
    }

    fn write_plaintext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.unsent.is_empty() && super::transport::oversized(self.unsent.capacity(), data.len())
        {
            self.unsent = Vec::new();
        }
        if !self.established {
            self.unsent.extend_from_slice(data);
            return Ok(());
        }
        if self.unsent.is_empty() {
            // Straight from the caller's buffer when nothing waits before
            // it: only what libssl does not take now (mid-renegotiation)
            // is copied.
            let taken = self.write_records(data).map_err(|error| self.fail(error))?;
            self.unsent
                .extend_from_slice(data.get(taken..).unwrap_or_default());
        } else {
            self.unsent.extend_from_slice(data);
            self.flush_unsent().map_err(|error| self.fail(error))?;
        }
        if self.unsent.len() > MAX_UNSENT {
            let error =
                TlsError::Protocol(TlsFailure::new(TlsFailureKind::RenegotiationStalled, ""));
            return Err(self.fail(error));
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
            server_name: self
                .role
                .server_name(|| ssl.servername(NameType::HOST_NAME).map(str::to_owned)),
            certificate: self.role.certificate_status(),
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
