//! The runtimes' own tests, written once: the [`suite`] of scenarios every
//! runtime must pass, run through [`TestRuntime`] and instantiated in each
//! runtime crate by [`runtime_suite!`](crate::runtime_suite); and fixtures
//! (a small message, a STARTTLS listener configuration, a client
//! configuration, a handler that decides from another thread).
//!
//! Behind the `testing` feature, which only the runtimes' dev-dependencies
//! turn on.

pub mod suite;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use petrel_core::client::tls_policy::TlsMode;
use petrel_core::client::{ClientConfig, Envelope, Recipient};
use petrel_core::server::{Event, ServerConfig};
use petrel_core::tls::{ClientTls, ClientTlsConfig, ServerTls, ServerTlsConfig, TlsEngine};
use petrel_core::wire::command::{ForwardPath, Host, Mailbox, ReversePath};

use crate::client::{BytesBody, DeliverOptions, DeliveryReport, Outbound};
use crate::listen::ServeConfig;
use crate::server::{ConnectionInfo, Decision, Handler};

/// A runtime under test, driven from the test's own (plain) thread: each
/// call blocks until its work is done, however the runtime waits inside.
pub trait TestRuntime {
    /// Its running server.
    type Server;

    /// Binds every listener and starts serving.
    fn serve(config: ServeConfig, handler: Arc<dyn Handler>) -> io::Result<Self::Server>;

    /// The addresses bound, in the order of the listeners.
    fn local_addrs(server: &Self::Server) -> Vec<SocketAddr>;

    /// Stops the server, giving its sessions `grace`.
    fn shutdown(server: Self::Server, grace: Duration);

    /// Delivers `messages` to `addr`.
    fn deliver(
        addr: SocketAddr,
        server_name: &str,
        config: Arc<ClientConfig>,
        messages: Vec<Outbound>,
        options: &DeliverOptions,
    ) -> DeliveryReport;
}

/// Instantiates every scenario of [`suite`] as a `#[test]` for the runtime
/// `$runtime` (a [`TestRuntime`]), except the one that exhausts the
/// process's descriptors, which needs a test binary of its own:
/// `runtime_suite!(descriptors: $runtime)`.
#[macro_export]
macro_rules! runtime_suite {
    (descriptors: $runtime:ty) => {
        $crate::runtime_suite!(@tests $runtime: the_backlog_is_accepted_once_descriptors_are_free_again);
    };
    ($runtime:ty) => {
        $crate::runtime_suite!(@tests $runtime:
            plaintext_delivery_reuses_one_connection,
            an_unreachable_server_makes_every_message_transient,
            decisions_from_other_threads_reach_their_connection,
            one_serving_thread_serves_sessions_side_by_side,
            over_the_connection_limit_is_told_421,
            a_refusal_over_the_limit_survives_pipelined_input,
            a_closed_session_holds_no_place_while_lingering,
            each_client_address_has_its_own_limit,
            a_peer_network_overrides_the_per_address_limit,
            the_listen_backlog_is_the_one_configured,
            an_idle_session_times_out_with_421,
            session_timeouts_move_with_activity,
            shutdown_cuts_sessions_after_the_grace,
            shutdown_returns_once_sessions_end_by_themselves,
            a_panicking_handler_ends_only_its_connection,
            a_peer_that_does_not_read_its_replies_is_not_read
        );
        #[cfg(feature = "rustls")]
        $crate::runtime_suite!(@tests $runtime:
            delivers_in_plaintext_and_over_starttls,
            a_large_body_is_streamed_both_ways,
            a_failed_starttls_reconnects_in_plaintext,
            an_injected_starttls_is_refused_without_a_reset
        );
        #[cfg(feature = "openssl")]
        $crate::runtime_suite!(@tests $runtime: delivers_over_starttls_with_openssl);
    };
    (@tests $runtime:ty: $($test:ident),+ $(,)?) => {
        $(
            #[test]
            fn $test() {
                $crate::testing::suite::$test::<$runtime>();
            }
        )+
    };
}

/// A handler that accepts MAIL and RCPT at once and each message 50 ms
/// later from another thread, as an MTA does after its spool fsync.
#[derive(Debug)]
pub struct AcceptLater;

impl Handler for AcceptLater {
    fn on_event(&self, _: &ConnectionInfo, event: &Event, decision: Option<Decision>) {
        match (event, decision) {
            (Event::MessageEnd { .. }, Some(decision)) => {
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    decision.accept();
                });
            }
            (_, Some(decision)) => decision.accept(),
            _ => {}
        }
    }
}

/// Message `n`: a bounce (null sender) to one recipient, with a body line
/// that needs dot-stuffing.
pub fn message(n: u32) -> Outbound {
    let body = format!("Subject: {n}\r\n\r\n.dot line\r\nbody\r\n");
    Outbound {
        tag: u64::from(n),
        envelope: Envelope {
            reverse_path: ReversePath::Null,
            recipients: vec![Recipient {
                path: ForwardPath::Mailbox(Mailbox {
                    local_part: "rcpt".into(),
                    domain: Host::Domain("example.test".into()),
                }),
                params: Default::default(),
            }],
            params: Default::default(),
        },
        body: Box::new(BytesBody::from(Bytes::from(body))),
    }
}

/// A listener configuration offering STARTTLS with a fresh self-signed
/// certificate for `localhost`.
pub fn tls_server(engine: TlsEngine) -> Result<ServerConfig, String> {
    let (cert, key) = crate::cli::self_signed("localhost")?;
    let mut config = ServerConfig::new("localhost");
    let tls =
        ServerTls::new(&ServerTlsConfig::new(engine, cert, key)).map_err(|e| e.to_string())?;
    config.tls = Some(tls);
    Ok(config)
}

/// A client configuration with `mode` and a non-verifying `engine`.
pub fn client(mode: TlsMode, engine: TlsEngine) -> Result<Arc<ClientConfig>, String> {
    let mut config = ClientConfig::new("client.test");
    config.tls_mode = mode;
    config.tls = Some(ClientTls::new(&ClientTlsConfig::new(engine)).map_err(|e| e.to_string())?);
    Ok(Arc::new(config))
}
