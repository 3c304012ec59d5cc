//! petrel-smol as the shared suite's [`TestRuntime`]: the server runs on
//! its own executor; the test's thread blocks on each call.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use petrel_core::client::ClientConfig;
use petrel_runtime_common::testing::TestRuntime;
use petrel_smol::{DeliverOptions, DeliveryReport, Handler, Outbound, ServeConfig, Server};

pub struct Smol;

impl TestRuntime for Smol {
    type Server = Server;

    fn serve(config: ServeConfig, handler: Arc<dyn Handler>) -> io::Result<Server> {
        smol::block_on(petrel_smol::serve(config, handler))
    }

    fn local_addrs(server: &Server) -> Vec<SocketAddr> {
        server.local_addrs()
    }

    fn shutdown(server: Server, grace: Duration) {
        smol::block_on(server.shutdown(grace));
    }

    fn deliver(
        addr: SocketAddr,
        server_name: &str,
        config: Arc<ClientConfig>,
        messages: Vec<Outbound>,
        options: &DeliverOptions,
    ) -> DeliveryReport {
        smol::block_on(petrel_smol::deliver(
            addr,
            server_name,
            config,
            messages,
            options,
        ))
    }
}
