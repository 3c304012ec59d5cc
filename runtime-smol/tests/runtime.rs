//! The smol runtime over real loopback sockets.
#![cfg(test)]
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use petrel_core::client::tls_policy::TlsMode;
use petrel_core::client::{ClientConfig, Delivery};
use petrel_core::server::ServerConfig;
use petrel_core::tls::{ClientTls, ClientTlsConfig, TlsEngine};
use petrel_runtime_common::cli::SinkHandler;
use petrel_runtime_common::testing;
use petrel_smol::{DeliverOptions, ListenerConfig, ServeConfig};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Plaintext, then STARTTLS under `ifavailable`, to a sink using `engine`.
fn delivers_in_plaintext_and_over_starttls(engine: TlsEngine) {
    smol::block_on(async {
        let handler = Arc::new(SinkHandler::new(None).unwrap());
        let listener = ListenerConfig::new(localhost(), testing::tls_server(engine).unwrap());
        let server = petrel_smol::serve(ServeConfig::single(listener), handler.clone())
            .await
            .unwrap();
        let addr = server.local_addrs()[0];
        for (mode, tls) in [(TlsMode::No, false), (TlsMode::IfAvailable, true)] {
            let messages = (0..5).map(testing::message).collect();
            let options = DeliverOptions {
                source: Some("127.0.0.1".parse().unwrap()),
                ..DeliverOptions::default()
            };
            let config = testing::client(mode, engine).unwrap();
            let report = petrel_smol::deliver(addr, "localhost", config, messages, &options).await;
            assert!(!report.reconnected_plaintext);
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
    });
}

#[test]
fn delivers_in_plaintext_and_over_starttls_with_rustls() {
    delivers_in_plaintext_and_over_starttls(TlsEngine::Rustls);
}

#[cfg(feature = "openssl")]
#[test]
fn delivers_in_plaintext_and_over_starttls_with_openssl() {
    delivers_in_plaintext_and_over_starttls(TlsEngine::Openssl);
}

#[test]
fn ifavailable_falls_back_to_a_fresh_plaintext_connection() {
    smol::block_on(async {
        // The handshake fails on our side: verify=host with no CA rejects
        // every certificate, and ifavailable with fallback then reconnects
        // in plaintext.
        let handler = Arc::new(SinkHandler::new(None).unwrap());
        let listener =
            ListenerConfig::new(localhost(), testing::tls_server(TlsEngine::Rustls).unwrap());
        let server = petrel_smol::serve(ServeConfig::single(listener), handler.clone())
            .await
            .unwrap();
        let mut tls = ClientTlsConfig::new(TlsEngine::Rustls);
        tls.verify = petrel_core::tls::TlsVerify::Host;
        let mut config = ClientConfig::new("client.test");
        config.tls = Some(ClientTls::new(&tls).unwrap());
        let report = petrel_smol::deliver(
            server.local_addrs()[0],
            "localhost",
            Arc::new(config),
            vec![testing::message(1), testing::message(2)],
            &DeliverOptions::default(),
        )
        .await;
        assert!(report.reconnected_plaintext);
        assert_eq!(report.finished.len(), 2);
        for finished in &report.finished {
            assert_eq!(finished.outcomes[0].delivery, Delivery::Delivered);
            assert!(finished.tls.is_none());
        }
        server.shutdown(Duration::from_secs(5)).await;
        assert_eq!(
            handler.summary(),
            "accepted=2 rejected=0 connections=2 recipients=2"
        );
    });
}

#[test]
fn connections_over_the_limit_get_421() {
    smol::block_on(async {
        let handler = Arc::new(SinkHandler::new(None).unwrap());
        let mut serve = ServeConfig::single(ListenerConfig::new(
            localhost(),
            ServerConfig::new("mx.test"),
        ));
        serve.max_connections = 1;
        let server = petrel_smol::serve(serve, handler.clone()).await.unwrap();
        let addr = server.local_addrs()[0];
        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut greeting = [0; 64];
        let n = first.read(&mut greeting).await.unwrap();
        assert!(greeting[..n].starts_with(b"220 "));
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut reply = Vec::new();
        second.read_to_end(&mut reply).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&reply),
            "421 4.3.2 mx.test Too many connections, try again later\r\n"
        );
        drop(second);
        first.write_all(b"QUIT\r\n").await.unwrap();
        let mut bye = Vec::new();
        first.read_to_end(&mut bye).await.unwrap();
        assert!(
            bye.starts_with(b"221 "),
            "{}",
            String::from_utf8_lossy(&bye)
        );
        drop(first);
        // The place is free again.
        let mut third = TcpStream::connect(addr).await.unwrap();
        let n = third.read(&mut greeting).await.unwrap();
        assert!(greeting[..n].starts_with(b"220 "));
        third.write_all(b"QUIT\r\n").await.unwrap();
        server.shutdown(Duration::from_secs(5)).await;
        // The refused connection was never a session.
        assert_eq!(
            handler.summary(),
            "accepted=0 rejected=0 connections=2 recipients=0"
        );
    });
}

#[test]
fn decisions_arrive_from_other_threads() {
    smol::block_on(async {
        let listener = ListenerConfig::new(localhost(), ServerConfig::new("localhost"));
        let server = petrel_smol::serve(
            ServeConfig::single(listener),
            Arc::new(testing::AcceptLater),
        )
        .await
        .unwrap();
        let messages = (0..3).map(testing::message).collect();
        let started = Instant::now();
        let report = petrel_smol::deliver(
            server.local_addrs()[0],
            "localhost",
            testing::client(TlsMode::No, TlsEngine::Rustls).unwrap(),
            messages,
            &DeliverOptions::default(),
        )
        .await;
        assert!(started.elapsed() >= Duration::from_millis(150));
        let delivered = report
            .finished
            .iter()
            .filter(|f| f.outcomes[0].delivery == Delivery::Delivered)
            .count();
        assert_eq!(delivered, 3);
        server.shutdown(Duration::from_secs(5)).await;
    });
}

#[test]
fn an_unreachable_server_makes_every_message_transient() {
    smol::block_on(async {
        // Bind and drop a listener to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let report = petrel_smol::deliver(
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
    });
}

#[test]
fn shutdown_drops_sessions_still_open_after_the_grace_period() {
    smol::block_on(async {
        let handler = Arc::new(SinkHandler::new(None).unwrap());
        let listener = ListenerConfig::new(localhost(), ServerConfig::new("localhost"));
        let server = petrel_smol::serve(ServeConfig::single(listener), handler.clone())
            .await
            .unwrap();
        let addr = server.local_addrs()[0];
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut greeting = [0; 64];
        let n = idle.read(&mut greeting).await.unwrap();
        assert!(greeting[..n].starts_with(b"220 "));
        let started = Instant::now();
        server.shutdown(Duration::from_millis(200)).await;
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        // The handler heard the end, the peer sees the close, and nobody
        // listens any more.
        assert_eq!(
            handler.summary(),
            "accepted=0 rejected=0 connections=1 recipients=0"
        );
        let mut rest = Vec::new();
        let _ = idle.read_to_end(&mut rest).await;
        assert!(TcpStream::connect(addr).await.is_err());
    });
}

/// One whole (possibly multi-line) reply.
async fn read_reply(stream: &mut TcpStream) -> String {
    let mut reply = Vec::new();
    let mut byte = [0; 1];
    loop {
        stream.read_exact(&mut byte).await.unwrap();
        reply.push(byte[0]);
        let text = String::from_utf8_lossy(&reply).into_owned();
        let last = text
            .trim_end_matches("\r\n")
            .rsplit("\r\n")
            .next()
            .unwrap_or("");
        if text.ends_with("\r\n") && last.as_bytes().get(3) == Some(&b' ') {
            return text;
        }
    }
}

#[test]
fn plaintext_injected_after_starttls_is_refused_and_the_reply_arrives() {
    smol::block_on(async {
        let listener =
            ListenerConfig::new(localhost(), testing::tls_server(TlsEngine::Rustls).unwrap());
        let server = petrel_smol::serve(
            ServeConfig::single(listener),
            Arc::new(SinkHandler::new(None).unwrap()),
        )
        .await
        .unwrap();
        let mut stream = TcpStream::connect(server.local_addrs()[0]).await.unwrap();
        read_reply(&mut stream).await;
        stream.write_all(b"EHLO x\r\n").await.unwrap();
        assert!(read_reply(&mut stream).await.contains("STARTTLS"));
        stream.write_all(b"STARTTLS\r\nEHLO x\r\n").await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        let reply = String::from_utf8_lossy(&reply);
        assert!(!reply.starts_with("220"), "{reply}");
        assert!(reply.starts_with('5') || reply.starts_with('4'), "{reply}");
        server.shutdown(Duration::from_secs(5)).await;
    });
}

#[test]
fn session_timeouts_fire_and_move_with_activity() {
    smol::block_on(async {
        let handler = Arc::new(SinkHandler::new(None).unwrap());
        let mut config = ServerConfig::new("localhost");
        config.timeouts.command = Duration::from_millis(300);
        let listener = ListenerConfig::new(localhost(), config);
        let server = petrel_smol::serve(ServeConfig::single(listener), handler.clone())
            .await
            .unwrap();
        let mut stream = TcpStream::connect(server.local_addrs()[0]).await.unwrap();
        let started = Instant::now();
        read_reply(&mut stream).await;
        // Each command moves the deadline later: the connection outlives
        // the first deadline while it is used.
        for _ in 0..4 {
            smol::Timer::after(Duration::from_millis(150)).await;
            stream.write_all(b"NOOP\r\n").await.unwrap();
            assert!(read_reply(&mut stream).await.starts_with("250"));
        }
        let last = Instant::now();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        let rest = String::from_utf8_lossy(&rest);
        assert!(rest.starts_with("421 "), "{rest}");
        assert!(last - started >= Duration::from_millis(600));
        let idle = last.elapsed();
        assert!(idle >= Duration::from_millis(250), "{idle:?}");
        server.shutdown(Duration::from_secs(5)).await;
        assert_eq!(
            handler.summary(),
            "accepted=0 rejected=0 connections=1 recipients=0"
        );
    });
}
