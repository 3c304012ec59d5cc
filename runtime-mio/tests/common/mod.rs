//! petrel-mio as the shared suite's [`TestRuntime`]: its API blocks
//! already.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use petrel_core::client::ClientConfig;
use petrel_mio::{DeliverOptions, DeliveryReport, Handler, Outbound, ServeConfig, Server};
use petrel_runtime_common::testing::TestRuntime;

pub struct Mio;

impl TestRuntime for Mio {
    type Server = Server;

    fn serve(config: ServeConfig, handler: Arc<dyn Handler>) -> io::Result<Server> {
        petrel_mio::serve(config, handler)
    }

    fn local_addrs(server: &Server) -> Vec<SocketAddr> {
        server.local_addrs()
    }

    fn shutdown(server: Server, grace: Duration) {
        server.shutdown(grace);
    }

    fn deliver(
        addr: SocketAddr,
        server_name: &str,
        config: Arc<ClientConfig>,
        messages: Vec<Outbound>,
        options: &DeliverOptions,
    ) -> DeliveryReport {
        petrel_mio::deliver(addr, server_name, config, messages, options)
    }
}
