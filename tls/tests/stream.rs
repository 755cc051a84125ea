//! The TLS stream against `tokio-rustls` over real loopback sockets (and, client side,
//! against itself): both TLS
//! versions, records split and joined every way a 256-byte reader and large writes
//! make them, key updates, a socket that pushes back, closes clean and abrupt, and
//! refused peers.

use std::io::IoSlice;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Pki {
        server_chain: vec![cert.der().clone()],
        server_key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        ca,
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(pki: &Pki) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    Arc::new(roots)
}

fn server_config(pki: &Pki, client_auth: bool) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap();
    let builder = if client_auth {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots(pki), provider())
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .unwrap();
    Arc::new(config)
}

fn connector(
    pki: &Pki,
    version: &'static SupportedProtocolVersion,
    client_cert: bool,
) -> TlsConnector {
    TlsConnector::from(client_config(pki, version, client_cert))
}

fn client_config(
    pki: &Pki,
    version: &'static SupportedProtocolVersion,
    client_cert: bool,
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots(pki));
    let config = if client_cert {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["gateway".to_string()])
            .unwrap()
            .signed_by(&key, &pki.ca)
            .unwrap();
        builder
            .with_client_auth_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(config)
}

async fn listen() -> (TcpListener, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Takes one connection from `listener` and runs the server side of its handshake.
async fn accept_one(
    listener: &TcpListener,
    config: Arc<ServerConfig>,
) -> std::io::Result<switchyard_tls::TlsStream<TcpStream>> {
    let (tcp, _) = listener.accept().await.unwrap();
    switchyard_tls::accept(config, tcp).await
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// A pattern that shows where a byte came from, so a lost or repeated span shows.
fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8)
        .collect()
}

/// Serves one connection: echoes what it reads through a 256-byte buffer (a WebSocket
/// reader's size) in two-part vectored writes (a frame's header and payload), and once
/// the client has closed, reports what it still holds.
async fn echo_server(listener: TcpListener, config: Arc<ServerConfig>) -> usize {
    let mut tls = accept_one(&listener, config).await.unwrap();
    let mut buf = [0u8; 256];
    loop {
        let n = tls.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        let mut at = 0;
        while at < n {
            let split = (at + 3).min(n);
            let parts = [IoSlice::new(&buf[at..split]), IoSlice::new(&buf[split..n])];
            at += tls.write_vectored(&parts).await.unwrap();
        }
        tls.flush().await.unwrap();
    }
    let held = tls.buffered();
    tls.shutdown().await.unwrap();
    held
}

async fn echo_round_trips(version: &'static SupportedProtocolVersion) {
    let pki = pki();
    let (listener, addr) = listen().await;
    let server = tokio::spawn(echo_server(listener, server_config(&pki, false)));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut client = connector(&pki, version, false)
        .connect(localhost(), tcp)
        .await
        .unwrap();
    for (i, len) in [1, 255, 256, 300, 4096, 16_384, 16_385, 70_000, 1]
        .into_iter()
        .enumerate()
    {
        let sent = pattern(len, i as u8);
        let (mut read, mut write) = tokio::io::split(&mut client);
        let writing = async {
            write.write_all(&sent).await.unwrap();
            write.flush().await.unwrap();
        };
        let mut echoed = vec![0u8; len];
        let reading = read.read_exact(&mut echoed);
        let ((), got) = tokio::join!(writing, reading);
        got.unwrap();
        assert!(echoed == sent, "echo of {len} bytes differs");
    }
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    let held = server.await.unwrap();
    assert_eq!(held, 0, "an idle connection holds no buffer of its own");
}

#[tokio::test]
async fn echoes_every_size_over_tls13() {
    echo_round_trips(&rustls::version::TLS13).await;
}

#[tokio::test]
async fn echoes_every_size_over_tls12() {
    echo_round_trips(&rustls::version::TLS12).await;
}

#[tokio::test]
async fn a_large_write_to_a_slow_reader_arrives_whole() {
    let pki = pki();
    let (listener, addr) = listen().await;
    let config = server_config(&pki, false);
    let sent = pattern(4 * 1024 * 1024, 7);
    let expected = sent.clone();
    let server = tokio::spawn(async move {
        let mut tls = accept_one(&listener, config).await.unwrap();
        tls.write_all(&sent).await.unwrap();
        tls.flush().await.unwrap();
        let held = tls.buffered();
        tls.shutdown().await.unwrap();
        held
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut client = connector(&pki, &rustls::version::TLS13, false)
        .connect(localhost(), tcp)
        .await
        .unwrap();
    // Slow enough that the server's socket buffer fills and its writes wait.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = client.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the stream arrived altered");
    assert_eq!(
        server.await.unwrap(),
        0,
        "nothing left waiting once flushed"
    );
}

#[tokio::test]
async fn a_key_update_the_client_asks_for_is_answered() {
    let pki = pki();
    let (listener, addr) = listen().await;
    let server = tokio::spawn(echo_server(listener, server_config(&pki, false)));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut client = connector(&pki, &rustls::version::TLS13, false)
        .connect(localhost(), tcp)
        .await
        .unwrap();
    for round in 0..3u8 {
        // Asks the server to update its keys too: what it echoes after this is under
        // its new keys, which the client can read only if the server sent its update.
        client.get_mut().1.refresh_traffic_keys().unwrap();
        let sent = pattern(1000, round);
        client.write_all(&sent).await.unwrap();
        client.flush().await.unwrap();
        let mut echoed = vec![0u8; sent.len()];
        client.read_exact(&mut echoed).await.unwrap();
        assert!(echoed == sent, "echo after key update {round} differs");
    }
    client.shutdown().await.unwrap();
    assert_eq!(server.await.unwrap(), 0);
}

#[tokio::test]
async fn a_socket_closed_without_close_notify_is_an_unexpected_eof() {
    let pki = pki();
    let (listener, addr) = listen().await;
    let config = server_config(&pki, false);
    let server = tokio::spawn(async move {
        let mut tls = accept_one(&listener, config).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tls.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        tls.read(&mut buf).await
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut client = connector(&pki, &rustls::version::TLS13, false)
        .connect(localhost(), tcp)
        .await
        .unwrap();
    client.write_all(b"hello").await.unwrap();
    client.flush().await.unwrap();
    // Drops the TCP socket under the TLS session: no close_notify.
    let (mut tcp, _) = client.into_inner();
    tcp.shutdown().await.unwrap();
    drop(tcp);
    let err = server.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn a_peer_that_does_not_speak_tls_is_refused_with_rustls_error() {
    let pki = pki();
    let (listener, addr) = listen().await;
    let config = server_config(&pki, false);
    let server = tokio::spawn(async move { accept_one(&listener, config).await.err().unwrap() });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let err = server.await.unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(
        err.get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .is_some(),
        "the rustls error is inside: {err}"
    );
    // The refusal is said with an alert before the socket closes.
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer.first(), Some(&21), "a TLS alert record: {answer:?}");
}

#[tokio::test]
async fn client_certificates_are_required_when_configured() {
    let pki = pki();
    for (version, with_cert) in [
        (&rustls::version::TLS13, true),
        (&rustls::version::TLS12, true),
        (&rustls::version::TLS13, false),
    ] {
        let (listener, addr) = listen().await;
        let config = server_config(&pki, true);
        let server = tokio::spawn(async move {
            let mut tls = accept_one(&listener, config).await?;
            let mut buf = [0u8; 16];
            let n = tls.read(&mut buf).await?;
            tls.write_all(&buf[..n]).await?;
            tls.flush().await?;
            Ok::<_, std::io::Error>(())
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let connected = connector(&pki, version, with_cert)
            .connect(localhost(), tcp)
            .await;
        if with_cert {
            let mut client = connected.unwrap();
            client.write_all(b"ping").await.unwrap();
            client.flush().await.unwrap();
            let mut buf = [0u8; 4];
            client.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            server.await.unwrap().unwrap();
        } else {
            // TLS 1.3: the client learns of the refusal on its first read.
            if let Ok(mut client) = connected {
                let _ = client.write_all(b"ping").await;
                let _ = client.flush().await;
                let mut buf = [0u8; 4];
                assert!(client.read_exact(&mut buf).await.is_err());
            }
            let err = server.await.unwrap().unwrap_err();
            let inner = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .cloned();
            assert_eq!(inner, Some(rustls::Error::NoCertificatesPresented));
        }
    }
}

/// Echoes through the lean client: what it sends in pieces of every size comes back
/// whole, and once idle it holds no buffer of its own.
async fn client_round_trips<IO>(
    client: &mut switchyard_tls::TlsStream<IO, rustls::client::UnbufferedClientConnection>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for (i, len) in [1, 300, 16_385, 70_000, 5].into_iter().enumerate() {
        let sent = pattern(len, i as u8);
        let (mut read, mut write) = tokio::io::split(&mut *client);
        let writing = async {
            write.write_all(&sent).await.unwrap();
            write.flush().await.unwrap();
        };
        let mut echoed = vec![0u8; len];
        let ((), got) = tokio::join!(writing, read.read_exact(&mut echoed));
        got.unwrap();
        assert!(echoed == sent, "echo of {len} bytes differs");
    }
    assert_eq!(client.buffered(), 0);
    client.shutdown().await.unwrap();
}

/// Echoes what one connection sends until it closes.
async fn copy_back<S>(tls: S) -> std::io::Result<u64>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    let (mut read, mut write) = tokio::io::split(tls);
    tokio::io::copy(&mut read, &mut write).await
}

#[tokio::test]
async fn the_client_side_talks_to_rustls_and_to_itself_with_client_certificates() {
    let pki = pki();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        // Against tokio-rustls' server, then against its own server side.
        for own_server in [false, true] {
            let (listener, addr) = listen().await;
            let config = server_config(&pki, true);
            let server = tokio::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                if own_server {
                    copy_back(switchyard_tls::accept(config, tcp).await.unwrap()).await
                } else {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    copy_back(acceptor.accept(tcp).await.unwrap()).await
                }
            });
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut client =
                switchyard_tls::connect(client_config(&pki, version, true), localhost(), tcp)
                    .await
                    .unwrap();
            client_round_trips(&mut client).await;
            server.await.unwrap().unwrap();
        }
    }
}

#[tokio::test]
async fn the_client_side_refuses_a_server_of_another_name() {
    let pki = pki();
    let (listener, addr) = listen().await;
    let config = server_config(&pki, false);
    tokio::spawn(async move {
        let _ = accept_one(&listener, config).await;
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("worker-9.internal").unwrap();
    let err = switchyard_tls::connect(
        client_config(&pki, &rustls::version::TLS13, false),
        name,
        tcp,
    )
    .await
    .err()
    .unwrap();
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(inner, Some(rustls::Error::InvalidCertificate(_))),
        "{err}"
    );
}
