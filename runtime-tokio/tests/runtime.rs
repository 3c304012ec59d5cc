//! The tokio runtime over real loopback sockets.
#![cfg(test)]
use std::sync::Arc;
use std::time::Duration;

use petrel_core::client::tls_policy::TlsMode;
use petrel_core::client::{ClientConfig, Delivery};
use petrel_core::server::ServerConfig;
use petrel_core::tls::{ClientTls, ClientTlsConfig, TlsEngine};
use petrel_runtime_common::cli::SinkHandler;
use petrel_runtime_common::testing;
use petrel_tokio::{DeliverOptions, ListenerConfig, ServeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_in_plaintext_and_over_starttls() {
    let handler = Arc::new(SinkHandler::new(None).unwrap());
    let listener = ListenerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        testing::tls_server(TlsEngine::Rustls).unwrap(),
    );
    let server = petrel_tokio::serve(ServeConfig::single(listener), handler.clone())
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    for (mode, tls) in [(TlsMode::No, false), (TlsMode::Required, true)] {
        let messages = (0..5).map(testing::message).collect();
        let report = petrel_tokio::deliver(
            addr,
            "localhost",
            testing::client(mode, TlsEngine::Rustls).unwrap(),
            messages,
            &DeliverOptions::default(),
        )
        .await;
        assert_eq!(report.finished.len(), 5);
        for finished in &report.finished {
            assert_eq!(finished.outcomes[0].delivery, Delivery::Delivered, "{mode}");
            assert_eq!(finished.tls.is_some(), tls, "{mode}");
        }
    }
    server.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        handler.summary(),
        "accepted=10 rejected=0 connections=2 recipients=10"
    );
}

#[tokio::test]
async fn ifavailable_falls_back_to_a_fresh_plaintext_connection() {
    // The handshake fails on our side: verify=host with no CA rejects every
    // certificate, and ifavailable with fallback then reconnects in
    // plaintext.
    let handler = Arc::new(SinkHandler::new(None).unwrap());
    let listener = ListenerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        testing::tls_server(TlsEngine::Rustls).unwrap(),
    );
    let server = petrel_tokio::serve(ServeConfig::single(listener), handler.clone())
        .await
        .unwrap();
    let mut tls = ClientTlsConfig::new(TlsEngine::Rustls);
    tls.verify = petrel_core::tls::TlsVerify::Host;
    let mut config = ClientConfig::new("client.test");
    config.tls = Some(ClientTls::new(&tls).unwrap());
    let report = petrel_tokio::deliver(
        server.local_addrs()[0],
        "localhost",
        Arc::new(config),
        vec![testing::message(1)],
        &DeliverOptions::default(),
    )
    .await;
    assert!(report.reconnected_plaintext);
    assert_eq!(report.finished.len(), 1);
    assert_eq!(report.finished[0].outcomes[0].delivery, Delivery::Delivered);
    assert!(report.finished[0].tls.is_none());
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn connections_over_the_limit_get_421() {
    let handler = Arc::new(SinkHandler::new(None).unwrap());
    let mut serve = ServeConfig::single(ListenerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::new("localhost"),
    ));
    serve.max_connections = 1;
    let server = petrel_tokio::serve(serve, handler).await.unwrap();
    let addr = server.local_addrs()[0];
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut greeting = [0; 64];
    let n = first.read(&mut greeting).await.unwrap();
    assert!(greeting[..n].starts_with(b"220 "));
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut reply = Vec::new();
    second.read_to_end(&mut reply).await.unwrap();
    assert!(
        reply.starts_with(b"421 4.3.2"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    first.write_all(b"QUIT\r\n").await.unwrap();
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn decisions_arrive_from_other_threads() {
    let listener = ListenerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::new("localhost"),
    );
    let server = petrel_tokio::serve(
        ServeConfig::single(listener),
        Arc::new(testing::AcceptLater),
    )
    .await
    .unwrap();
    let messages = (0..3).map(testing::message).collect();
    let report = petrel_tokio::deliver(
        server.local_addrs()[0],
        "localhost",
        testing::client(TlsMode::No, TlsEngine::Rustls).unwrap(),
        messages,
        &DeliverOptions::default(),
    )
    .await;
    let delivered = report
        .finished
        .iter()
        .filter(|f| f.outcomes[0].delivery == Delivery::Delivered)
        .count();
    assert_eq!(delivered, 3);
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_unreachable_server_makes_every_message_transient() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let report = petrel_tokio::deliver(
        port,
        "localhost",
        testing::client(TlsMode::No, TlsEngine::Rustls).unwrap(),
        vec![testing::message(1), testing::message(2)],
        &DeliverOptions::default(),
    )
    .await;
    assert_eq!(report.finished.len(), 2);
    assert!(report
        .finished
        .iter()
        .all(|f| f.outcomes[0].delivery == Delivery::Transient));
}

#[tokio::test]
async fn an_idle_session_times_out_with_421() {
    let mut config = ServerConfig::new("localhost");
    config.timeouts.command = Duration::from_millis(200);
    let handler = Arc::new(SinkHandler::new(None).unwrap());
    let listener = ListenerConfig::new("127.0.0.1:0".parse().unwrap(), config);
    let server = petrel_tokio::serve(ServeConfig::single(listener), handler)
        .await
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(server.local_addrs()[0])
        .await
        .unwrap();
    let mut transcript = Vec::new();
    // Bounded: the server closes after its timeout; the outer bound only
    // turns a hang into a failure.
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut transcript))
        .await
        .expect("the server closes the idle connection")
        .unwrap();
    let transcript = String::from_utf8_lossy(&transcript);
    assert!(transcript.starts_with("220 "), "{transcript}");
    assert!(transcript.contains("\r\n421 4.4.2 "), "{transcript}");
    server.shutdown(Duration::from_secs(5)).await;
}
