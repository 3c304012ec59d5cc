//! The fixed certificate of the TLS targets and the TLS contexts built from
//! it, once per process.
//!
//! The certificate (`fixtures/cert.pem`, an ECDSA P-256 key for
//! "localhost", valid until 2126) was made once with
//! `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1
//! -nodes -days 36500 -subj /CN=localhost -addext
//! subjectAltName=DNS:localhost` and is checked in, so that every run
//! fuzzes the same handshakes. P-256 keeps handshakes cheap.

use std::sync::{Once, OnceLock};

use petrel_core::tls::{ClientTls, ClientTlsConfig, ServerTls, ServerTlsConfig, TlsEngine};

/// The certificate, PEM.
pub const CERT_PEM: &[u8] = include_bytes!("../fixtures/cert.pem");
/// Its private key, PEM (PKCS#8).
pub const KEY_PEM: &[u8] = include_bytes!("../fixtures/key.pem");

/// A listener's TLS context: engine, whether renegotiation is allowed, and
/// the renegotiation cap (0 to 3). Built once per combination.
pub fn server_tls(engine: TlsEngine, allow_renegotiation: bool, cap: u32) -> ServerTls {
    static CONTEXTS: OnceLock<Vec<ServerTls>> = OnceLock::new();
    let contexts = CONTEXTS.get_or_init(|| {
        let mut all = Vec::new();
        for engine in TlsEngine::ALL {
            for allow in [false, true] {
                for cap in 0..4 {
                    let mut config =
                        ServerTlsConfig::new(engine, CERT_PEM.to_vec(), KEY_PEM.to_vec());
                    config.allow_renegotiation = allow;
                    config.max_renegotiations = cap;
                    all.push(ServerTls::new(&config).expect("the fixed certificate is usable"));
                }
            }
        }
        all
    });
    let index = usize::from(engine == TlsEngine::Openssl) * 8
        + usize::from(allow_renegotiation) * 4
        + (cap % 4) as usize;
    contexts[index].clone()
}

/// An outbound TLS context that encrypts without verifying
/// (`TLS_Verify = no`), for the engine given.
pub fn client_tls(engine: TlsEngine) -> ClientTls {
    static CONTEXTS: OnceLock<Vec<ClientTls>> = OnceLock::new();
    let contexts = CONTEXTS.get_or_init(|| {
        TlsEngine::ALL
            .into_iter()
            .map(|engine| {
                ClientTls::new(&ClientTlsConfig::new(engine)).expect("a client context builds")
            })
            .collect()
    });
    contexts[usize::from(engine == TlsEngine::Openssl)].clone()
}

/// Keeps OpenSSL from loading the system's trusted CAs. core's test
/// support builds its OpenSSL clients with `SslConnector`, which loads them
/// for every client: most of a second per fuzz input, for certificates
/// these clients never check (they verify nothing). OpenSSL reads its
/// default paths from the environment each time, so pointing them at
/// nothing makes that free.
pub fn without_system_roots() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("SSL_CERT_FILE", "/nonexistent");
        std::env::set_var("SSL_CERT_DIR", "/nonexistent");
    });
}
