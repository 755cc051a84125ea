//! The testkit's nats-server processes, checked with a real client.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;
use switchyard_testkit::{NatsCluster, NatsOptions, NatsServer, WAIT};
use tokio::time::{sleep, timeout, Instant};

async fn connect(server: &NatsServer) -> async_nats::Client {
    async_nats::connect(server.url())
        .await
        .unwrap_or_else(|err| panic!("connect to {}: {err}\n{}", server.url(), server.log_tail()))
}

#[tokio::test]
async fn a_started_server_carries_messages_and_dies_on_drop() {
    let server = NatsServer::start().await;
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    assert!(server.log_tail().contains("Server is ready"));
    let client = connect(&server).await;

    let mut sub = client.subscribe("sy.test").await.unwrap();
    client.publish("sy.test", "hello".into()).await.unwrap();
    let msg = timeout(WAIT, sub.next()).await.unwrap().unwrap();
    assert_eq!(&msg.payload[..], b"hello");

    let pid = server.pid().unwrap();
    let store = server.store_dir().to_owned();
    assert!(store.join("jetstream").is_dir(), "JetStream uses the store");
    drop(server);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} is reaped"
    );
    assert!(!store.exists(), "the temporary store is removed");
}

#[tokio::test]
async fn jetstream_data_survives_restart_and_kill() {
    let mut server = NatsServer::start().await;
    let js = jetstream::new(connect(&server).await);
    js.create_stream(stream::Config {
        name: "KEEP".into(),
        subjects: vec!["keep.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    for body in ["one", "two", "three"] {
        js.publish("keep.a", body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let (port, pid) = (server.port(), server.pid());

    server.restart().await;
    assert_eq!(server.port(), port, "same port after restart");
    assert_ne!(server.pid(), pid, "a new process");
    assert_stream_holds(&server, 3, "three").await;

    server.kill();
    assert_eq!(server.pid(), None);
    assert!(async_nats::connect(server.url()).await.is_err());
    server.restart().await;
    assert_eq!(server.port(), port, "same port after kill and restart");
    assert_stream_holds(&server, 3, "three").await;
}

async fn assert_stream_holds(server: &NatsServer, messages: u64, last: &str) {
    let js = jetstream::new(connect(server).await);
    let mut stream = js.get_stream("KEEP").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, messages);
    let msg = stream
        .get_last_raw_message_by_subject("keep.a")
        .await
        .unwrap();
    assert_eq!(&msg.payload[..], last.as_bytes());
}

#[tokio::test]
async fn pause_stalls_requests_until_resume() {
    let mut server = NatsServer::start().await;
    let client = connect(&server).await;
    // The server itself answers `$JS.API.INFO`: no responder task needed.
    let info = || client.request("$JS.API.INFO", "".into());
    timeout(WAIT, info()).await.unwrap().unwrap();

    server.pause();
    assert!(
        timeout(Duration::from_millis(500), info()).await.is_err(),
        "a paused server answers nothing"
    );
    server.resume();
    timeout(WAIT, info()).await.unwrap().unwrap();
}

#[tokio::test]
async fn config_text_and_name_reach_the_server() {
    let server = NatsServer::start_with(NatsOptions {
        config: Some("authorization { token: \"s3cret\" }\n".into()),
        name: Some("guarded".into()),
        jetstream: false,
        store_dir: None,
    })
    .await;

    let refused = async_nats::connect(server.url()).await.unwrap_err();
    assert_eq!(
        refused.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation
    );
    let client = async_nats::ConnectOptions::with_token("s3cret".into())
        .connect(server.url())
        .await
        .unwrap();
    assert_eq!(client.server_info().server_name, "guarded");
    assert!(!client.server_info().jetstream);
}

#[tokio::test]
async fn a_cluster_survives_the_loss_of_a_stream_leader() {
    let mut cluster = NatsCluster::start().await;
    assert_eq!(cluster.url_list().split(',').count(), 3);
    let client = async_nats::connect(cluster.server_addrs()).await.unwrap();
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: "ROOMS".into(),
        subjects: vec!["sy.room.>".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("sy.room.a", "before".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let leader = cluster
        .stream_leader("ROOMS")
        .await
        .expect("the R3 stream has a leader");

    cluster.kill(leader);
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_leader = loop {
        match cluster.stream_leader("ROOMS").await {
            Some(i) if i != leader => break i,
            _ if Instant::now() < deadline => sleep(Duration::from_millis(100)).await,
            found => panic!("no new leader, found {found:?}; killed n{}", leader + 1),
        }
    };
    assert!(cluster.node(new_leader).is_running());
    // The client may have been on the killed node: publish until it has moved on.
    let ack = loop {
        let attempt = async { js.publish("sy.room.a", "after".into()).await?.await };
        match timeout(WAIT, attempt).await {
            Ok(Ok(ack)) => break ack,
            _ if Instant::now() < deadline => sleep(Duration::from_millis(100)).await,
            failed => panic!("no publish after failover: {failed:?}"),
        }
    };
    assert!(ack.sequence >= 2, "stored after the first message");

    // The old leader comes back on its port with its store and catches up.
    cluster.restart(leader).await;
    let name = cluster.node(leader).name().unwrap().to_owned();
    loop {
        let caught_up = match js.get_stream("ROOMS").await {
            Ok(mut stream) => stream.info().await.is_ok_and(|info| {
                let replicas = info.cluster.as_ref().map(|c| &c.replicas[..]);
                replicas
                    .unwrap_or_default()
                    .iter()
                    .any(|peer| peer.name == name && peer.current && !peer.offline)
            }),
            Err(_) => false,
        };
        match caught_up {
            true => break,
            false if Instant::now() < deadline => sleep(Duration::from_millis(100)).await,
            false => panic!(
                "{name} did not catch up:\n{}",
                cluster.node(leader).log_tail()
            ),
        }
    }
}
