//! petrel-tokio as the shared suite's [`TestRuntime`]: every call blocks
//! on one multi-threaded tokio runtime shared by the tests of a binary.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use petrel_core::client::ClientConfig;
use petrel_runtime_common::client::unattempted;
use petrel_runtime_common::testing::TestRuntime;
use petrel_tokio::{DeliverOptions, DeliveryReport, Handler, Outbound, ServeConfig, Server};

fn runtime() -> io::Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Should another test have built one meanwhile, this one is dropped.
    Ok(RUNTIME.get_or_init(|| runtime))
}

pub struct Tokio;

impl TestRuntime for Tokio {
    type Server = Server;

    fn serve(config: ServeConfig, handler: Arc<dyn Handler>) -> io::Result<Server> {
        runtime()?.block_on(petrel_tokio::serve(config, handler))
    }

    fn local_addrs(server: &Server) -> Vec<SocketAddr> {
        server.local_addrs()
    }

    fn shutdown(server: Server, grace: Duration) {
        // A server was served, so the runtime exists.
        if let Ok(runtime) = runtime() {
            runtime.block_on(server.shutdown(grace));
        }
    }

    fn deliver(
        addr: SocketAddr,
        server_name: &str,
        config: Arc<ClientConfig>,
        messages: Vec<Outbound>,
        options: &DeliverOptions,
    ) -> DeliveryReport {
        match runtime() {
            Ok(runtime) => runtime.block_on(petrel_tokio::deliver(
                addr,
                server_name,
                config,
                messages,
                options,
            )),
            Err(error) => DeliveryReport {
                finished: unattempted(messages, &format!("no tokio runtime: {error}")),
                reconnected_plaintext: false,
                tls_failures: Vec::new(),
            },
        }
    }
}
