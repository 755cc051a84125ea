//! Traces end to end: an in-process OTLP/gRPC receiver (opentelemetry-proto's tonic
//! service), two workers on a real nats-server and a gateway, subscribers on both
//! workers, one message published through the gateway's HTTP API. One trace must hold
//! the gateway's `accept`, `publish`, the JetStream `store` and one `fanout` per worker,
//! each a child of the one before, with their attributes; the subscribers' connections
//! have their own traces, `accept` → `authenticate`, `route`, `handoff` → `session`.
//!
//! Its own test binary: the tracing subscriber is global to a process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use switchyard::telemetry::{LogFormat, OtlpProtocol, TelemetryConfig};
use switchyard_protocol::frame::ServerFrame;
use switchyard_testkit::{expect, NatsServer, Stack, WAIT};

/// Every span the receiver was sent.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Serves the OTLP trace service over HTTP/2 on a free loopback port.
async fn receiver() -> (SocketAddr, Received) {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(received.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, received)
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_str(span: &Span, key: &str) -> Option<String> {
    match attr(span, key)? {
        Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn attr_int(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key)? {
        Value::IntValue(n) => Some(*n),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_holds_a_message_from_the_gateway_to_every_worker() {
    let (addr, received) = receiver().await;
    let telemetry = switchyard::telemetry::install(
        "warn",
        LogFormat::Text,
        &TelemetryConfig {
            otlp_endpoint: Some(format!("http://{addr}")),
            otlp_protocol: OtlpProtocol::Grpc,
            ..TelemetryConfig::default()
        },
        "test",
    )
    .expect("telemetry installs");

    let nats = NatsServer::start().await;
    let stack = Stack::start_nats(&nats.url(), "t", |o| o.workers = 2).await;
    let token = stack.token("alice", &["traced"], &[]);
    let (mut one, w1) = stack.connect_path("/ws/t1/a", &token).await;
    let (mut two, w2) = stack.connect_path("/ws/t2/b", &token).await;
    assert_eq!((w1.worker.as_str(), w2.worker.as_str()), ("t1", "t2"));
    for conn in [&mut one, &mut two] {
        conn.send_text(br#"{"op":"sub","room":"traced","ref":"s"}"#)
            .await
            .unwrap();
        expect::until(conn, |f| {
            matches!(f, ServerFrame::Subscribed { .. }).then_some(())
        })
        .await;
    }
    let answer = stack
        .api()
        .post(
            "/api/v1/publish",
            &serde_json::json!({"room": "traced", "data": {"hello": 1}}),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let seq = answer.json()["seq"].as_u64().unwrap();
    for conn in [&mut one, &mut two] {
        expect::until(conn, |f| matches!(f, ServerFrame::Msg { .. }).then_some(())).await;
    }

    // Every span of the message's trace, once exported.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (trace, spans) = loop {
        telemetry.force_flush().await;
        let spans = received.0.lock().unwrap().clone();
        let publish = spans
            .iter()
            .find(|s| s.name == "publish" && attr(s, "api").is_some());
        if let Some(publish) = publish {
            let trace = publish.trace_id.clone();
            let in_trace: Vec<Span> = spans
                .iter()
                .filter(|s| s.trace_id == trace)
                .cloned()
                .collect();
            if in_trace.iter().filter(|s| s.name == "fanout").count() == 2
                && in_trace.iter().any(|s| s.name == "accept")
            {
                break (trace, in_trace);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the message's trace never arrived whole: {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let one_named = |name: &str| -> &Span {
        let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} span in the trace");
        found[0]
    };
    let accept = one_named("accept");
    let publish = one_named("publish");
    let store = one_named("store");
    assert!(accept.parent_span_id.is_empty(), "accept is the root");
    assert_eq!(publish.parent_span_id, accept.span_id);
    assert_eq!(store.parent_span_id, publish.span_id);
    assert_eq!(attr_str(publish, "room").as_deref(), Some("traced"));
    assert_eq!(
        attr_int(publish, "seq"),
        Some(seq as i64),
        "{:?}",
        publish.attributes
    );
    assert_eq!(attr_str(store, "engine").as_deref(), Some("nats"));
    assert_eq!(attr_int(store, "seq"), Some(seq as i64));
    let mut workers = Vec::new();
    for fanout in spans.iter().filter(|s| s.name == "fanout") {
        assert_eq!(fanout.trace_id, trace);
        assert_eq!(
            fanout.parent_span_id, store.span_id,
            "fanout is the store's child"
        );
        assert_eq!(attr_str(fanout, "room").as_deref(), Some("traced"));
        assert_eq!(attr_int(fanout, "seq"), Some(seq as i64));
        assert_eq!(
            attr_int(fanout, "deliveries"),
            Some(1),
            "one local subscriber"
        );
        assert!(attr_int(fanout, "queue_ms").is_some_and(|ms| (0..10_000).contains(&ms)));
        workers.push(attr_str(fanout, "worker.id").unwrap());
    }
    workers.sort();
    assert_eq!(workers, ["t1", "t2"]);

    // A subscriber's connection: accept → authenticate, route, handoff → session.
    let all = received.0.lock().unwrap().clone();
    let by_id: HashMap<&[u8], &Span> = all.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    let handoff = all
        .iter()
        .find(|s| s.name == "handoff" && attr_str(s, "worker.id").as_deref() == Some("t1"))
        .expect("a handoff span to t1");
    let conn_accept = by_id[handoff.parent_span_id.as_slice()];
    assert_eq!(conn_accept.name, "accept");
    for name in ["authenticate", "route"] {
        assert!(
            all.iter()
                .any(|s| s.name == name && s.parent_span_id == conn_accept.span_id),
            "{name} under accept"
        );
    }
    drop((one, two));
    stack.dev.drain(Duration::from_secs(2)).await;
    telemetry.force_flush().await;
    let all = received.0.lock().unwrap().clone();
    assert!(
        all.iter()
            .any(|s| s.name == "session" && s.parent_span_id == handoff.span_id),
        "the worker's session is the handoff's child"
    );
    telemetry.shutdown().await;
}
