//! The rustls engine: `rustls::ServerConnection` driven over byte slices.
//!
//! rustls is already sans-IO (`read_tls`/`process_new_packets`/`write_tls`
//! over any `Read`/`Write`), so this module only adapts its shape to
//! [`TlsSession`]. rustls never renegotiates: a TLS 1.2 ClientHello on an
//! established connection is answered by rustls itself with a
//! `no_renegotiation` warning alert, and a second attempt on the same
//! connection is fatal (`PeerMisbehaved::TooManyRenegotiationRequests`).

use std::io::{self, Read, Write};
use std::sync::Arc;

use ::rustls::crypto::ring;
use ::rustls::{ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{ServerTlsConfig, TlsError, TlsInfo, TlsSession, TlsVersion};

/// A listener's rustls context.
#[derive(Clone, Debug)]
pub(super) struct RustlsServer {
    config: Arc<ServerConfig>,
}

impl RustlsServer {
    /// Parses the PEM chain and key and builds a TLS 1.2 + 1.3 config.
    pub(super) fn new(config: &ServerTlsConfig) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(&config.cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Config(format!("cannot parse the certificate PEM: {e}")))?;
        if chain.is_empty() {
            return Err(TlsError::Config(
                "no certificate found in the certificate PEM".to_owned(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&config.key_pem)
            .map_err(|e| TlsError::Config(format!("cannot parse the private key PEM: {e}")))?;
        // The provider is named explicitly rather than taken from a
        // process-wide default: two libraries in one process installing
        // different defaults would otherwise decide Petrel's cryptography.
        let server_config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_protocol_versions(&[&::rustls::version::TLS13, &::rustls::version::TLS12])
            .map_err(|e| TlsError::Config(format!("unusable TLS protocol versions: {e}")))?
            .with_no_client_auth()
            // Also checks that the key belongs to the end-entity certificate.
            .with_single_cert(chain, key)
            .map_err(|e| {
                TlsError::Config(format!("certificate and private key are unusable: {e}"))
            })?;
        Ok(RustlsServer {
            config: Arc::new(server_config),
        })
    }

    /// Starts one server connection.
    pub(super) fn new_session(&self) -> Result<RustlsSession, TlsError> {
        let mut conn = ServerConnection::new(Arc::clone(&self.config))
            .map_err(|e| TlsError::Config(format!("cannot start a rustls connection: {e}")))?;
        // rustls caps its outgoing buffers at 64 KiB by default and then
        // accepts only part of a write. The SMTP session bounds what it
        // writes (reply lines) and drains ciphertext after every input, so
        // the cap would only turn a large reply into a short write.
        conn.set_buffer_limit(None);
        Ok(RustlsSession {
            conn,
            plaintext: Vec::new(),
            failed: None,
            peer_closed: false,
        })
    }
}

/// One server connection of the rustls engine.
#[derive(Debug)]
pub(super) struct RustlsSession {
    conn: ServerConnection,
    /// Decrypted application data not yet taken by the session. Draining
    /// rustls into it after every record keeps rustls's own bounded
    /// plaintext buffer from refusing further input.
    plaintext: Vec<u8>,
    /// The first fatal error; every later input repeats it.
    failed: Option<TlsError>,
    peer_closed: bool,
}

impl RustlsSession {
    fn fail(&mut self, error: TlsError) -> TlsError {
        self.failed = Some(error.clone());
        error
    }

    fn error_from(&self, what: impl std::fmt::Display) -> TlsError {
        if self.conn.is_handshaking() {
            TlsError::Handshake(what.to_string())
        } else {
            TlsError::Protocol(what.to_string())
        }
    }

    /// Moves decrypted data out of rustls into `self.plaintext`.
    fn drain_plaintext(&mut self) -> Result<(), TlsError> {
        match self.conn.reader().read_to_end(&mut self.plaintext) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(self.error_from(e)),
        }
    }
}

impl TlsSession for RustlsSession {
    fn handle_ciphertext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let mut rest = data;
        // Never hand rustls an empty reader: it would take that as EOF.
        while !rest.is_empty() {
            let read = match self.conn.read_tls(&mut rest) {
                Ok(n) => n,
                Err(e) => {
                    let error = self.error_from(e);
                    return Err(self.fail(error));
                }
            };
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    // rustls has queued the alert for poll_ciphertext.
                    let error = self.error_from(e);
                    return Err(self.fail(error));
                }
            };
            if let Err(error) = self.drain_plaintext() {
                return Err(self.fail(error));
            }
            if state.peer_has_closed() {
                // Anything after close_notify is not part of the stream.
                self.peer_closed = true;
                break;
            }
            if read == 0 {
                break;
            }
        }
        Ok(())
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
        // Before the handshake completes rustls keeps this as plaintext and
        // encrypts it as soon as it can; the buffer is unbounded (above).
        match self.conn.writer().write_all(data) {
            Ok(()) => Ok(()),
            Err(e) => {
                let error = self.error_from(e);
                Err(self.fail(error))
            }
        }
    }

    fn poll_ciphertext(&mut self, out: &mut Vec<u8>) -> usize {
        let before = out.len();
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail; stop rather than spin if it
            // ever reports nothing written.
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        out.len().saturating_sub(before)
    }

    fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    fn info(&self) -> Option<TlsInfo> {
        if self.conn.is_handshaking() {
            return None;
        }
        let version = TlsVersion::from_wire(u16::from(self.conn.protocol_version()?))?;
        let suite = self.conn.negotiated_cipher_suite()?.suite();
        Some(TlsInfo {
            version,
            cipher: iana_cipher_name(suite),
            peer_certificate: self
                .conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| cert.as_ref().to_vec()),
            server_name: self.conn.server_name().map(str::to_owned),
        })
    }

    fn close(&mut self) {
        self.conn.send_close_notify();
    }

    fn peer_closed(&self) -> bool {
        self.peer_closed
    }
}

/// rustls names TLS 1.3 suites `TLS13_*` to keep them apart from TLS 1.2
/// ones; IANA (and OpenSSL's standard names) say `TLS_*`. Logs use IANA so
/// that both engines report the same suite the same way.
fn iana_cipher_name(suite: ::rustls::CipherSuite) -> String {
    let name = suite
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("0x{:04x}", u16::from(suite)));
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_names_are_iana() {
        assert_eq!(
            iana_cipher_name(::rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            iana_cipher_name(::rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(
            iana_cipher_name(::rustls::CipherSuite::Unknown(0x1234)),
            "0x1234"
        );
    }
}
