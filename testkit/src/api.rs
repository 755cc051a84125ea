//! A small HTTPS client for the HTTP API and health endpoints of a stack.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

pub struct Api {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    key: Option<String>,
}

#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl ApiResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `error` code of an error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Api {
    pub fn new(addr: SocketAddr, ca_pem: &[u8], key: Option<String>) -> Api {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots
                .add(cert.expect("CA PEM parses"))
                .expect("CA is a certificate");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Api {
            addr,
            tls: Arc::new(tls),
            key,
        }
    }

    /// The same client with another API key (or none).
    pub fn with_key(mut self, key: Option<&str>) -> Api {
        self.key = key.map(str::to_owned);
        self
    }

    pub async fn get(&self, path: &str) -> ApiResponse {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> ApiResponse {
        self.request(
            Method::POST,
            path,
            Some(serde_json::to_vec(body).expect("json")),
        )
        .await
    }

    /// Publishes `data` to `room` through `/api/v1/publish`, expecting 200; its seq.
    pub async fn publish(&self, room: &str, data: serde_json::Value) -> u64 {
        let res = self
            .post(
                "/api/v1/publish",
                &serde_json::json!({"room": room, "data": data}),
            )
            .await;
        assert_eq!(
            res.status,
            200,
            "publish to {room} refused: {}",
            String::from_utf8_lossy(&res.body)
        );
        res.json()["seq"].as_u64().expect("an ack carries a seq")
    }

    pub async fn post_raw(&self, path: &str, body: &[u8]) -> ApiResponse {
        self.request(Method::POST, path, Some(body.to_vec())).await
    }

    /// A bare TLS connection to the stack, for tests that speak below HTTP.
    pub async fn raw_tls(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("tcp connect");
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let name = ServerName::try_from("localhost").expect("valid name");
        connector.connect(name, tcp).await.expect("tls handshake")
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> ApiResponse {
        let tls = self.raw_tls().await;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("http handshake");
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if let Some(key) = &self.key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request builds");
        let res = sender.send_request(req).await.expect("response");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        ApiResponse {
            status,
            headers,
            body,
        }
    }
}
