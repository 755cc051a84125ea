//! Three [`NatsServer`]s forming the JetStream cluster `sy`: names `n1`..`n3`, each with
//! its own store, client port and route port on `127.0.0.1`, routes to the two others.

use std::net::TcpListener;
use std::time::Duration;

use async_nats::{Client, ServerAddr};
use tokio::time::{sleep, timeout, Instant};

use super::{NatsOptions, NatsServer};

/// The cluster's name (`cluster { name }`).
pub const CLUSTER_NAME: &str = "sy";
/// How long the cluster has to elect a JetStream meta leader and place an R3 stream.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

const NODES: usize = 3;
/// Each JetStream API request during the readiness poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Each node's connect and request in [`NatsCluster::stream_leader`]: short, as tests
/// poll it through elections, when requests go unanswered.
const LEADER_TIMEOUT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(100);
/// The stream created and deleted to prove that the cluster can place R3 streams.
const PROBE: &str = "TESTKIT_READY";
/// JetStream's `err_code` for "stream not found".
const STREAM_NOT_FOUND: u64 = 10059;

#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts the three nodes and waits until the cluster can create an R3 stream.
    pub async fn start() -> NatsCluster {
        NatsCluster::start_with("").await
    }

    /// Like [`start`](Self::start), with `extra` config text (TLS, accounts...) put at
    /// the top of every node's config file, before the kit's `cluster` block.
    pub async fn start_with(extra: &str) -> NatsCluster {
        let route_ports = free_ports(NODES);
        let options = |i: usize| NatsOptions {
            config: Some(node_config(i, &route_ports, extra)),
            name: Some(format!("n{}", i + 1)),
            jetstream: true,
            store_dir: None,
        };
        let (n1, n2, n3) = tokio::join!(
            NatsServer::start_with(options(0)),
            NatsServer::start_with(options(1)),
            NatsServer::start_with(options(2)),
        );
        let cluster = NatsCluster {
            nodes: vec![n1, n2, n3],
        };
        cluster.wait_for_jetstream().await;
        cluster
    }

    pub fn nodes(&self) -> &[NatsServer] {
        &self.nodes
    }

    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// For what the cluster has no shortcut for, such as [`NatsServer::pause`].
    pub fn node_mut(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// Every node's client URL, stopped ones included.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// The client URLs joined with commas, as a config value takes them.
    pub fn url_list(&self) -> String {
        self.urls().join(",")
    }

    /// The client URLs for `async_nats::connect`, which takes one URL per address.
    pub fn server_addrs(&self) -> Vec<ServerAddr> {
        self.urls()
            .iter()
            // Built by `NatsServer::url`, always a valid `nats://` URL.
            .map(|url| url.parse().expect("a nats:// url"))
            .collect()
    }

    /// SIGKILLs node `i` (see [`NatsServer::kill`]).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Stops node `i` if running and starts it again with its port and store.
    pub async fn restart(&mut self, i: usize) {
        self.nodes[i].restart().await;
    }

    /// The index of the node leading `stream`, asked of the running nodes in turn;
    /// `None` when the stream has no leader now (or does not exist).
    pub async fn stream_leader(&self, stream: &str) -> Option<usize> {
        let subject = format!("$JS.API.STREAM.INFO.{stream}");
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let Ok(client) = connect(node.url(), LEADER_TIMEOUT).await else {
                continue;
            };
            let Ok(info) = request(&client, &subject, "", LEADER_TIMEOUT).await else {
                continue;
            };
            let leader = info.get("cluster")?.get("leader")?.as_str()?;
            return self.nodes.iter().position(|n| n.name() == Some(leader));
        }
        None
    }

    /// Polls until an R3 probe stream can be created (a meta leader exists and knows
    /// all three peers), then deletes it.
    async fn wait_for_jetstream(&self) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        let client = connect(self.server_addrs(), REQUEST_TIMEOUT)
            .await
            .unwrap_or_else(|err| self.fail(&format!("no client connection: {err}")));
        let create = format!("$JS.API.STREAM.CREATE.{PROBE}");
        let config = serde_json::json!({
            "name": PROBE,
            "subjects": ["testkit.ready"],
            "num_replicas": NODES,
            "storage": "memory",
        })
        .to_string();
        let delete = format!("$JS.API.STREAM.DELETE.{PROBE}");
        let mut step = (&create, config.as_str());
        loop {
            match request(&client, step.0, step.1, REQUEST_TIMEOUT).await {
                // Not found: an earlier delete went through but its reply was lost.
                Ok(_)
                | Err(ApiError::Refused {
                    code: STREAM_NOT_FOUND,
                    ..
                }) if step.0 == &delete => return,
                Ok(_) => step = (&delete, ""),
                Err(err) if Instant::now() >= deadline => self.fail(&format!(
                    "no JetStream cluster within {CLUSTER_TIMEOUT:?}: {err}"
                )),
                Err(_) => sleep(POLL).await,
            }
        }
    }

    fn fail(&self, what: &str) -> ! {
        let logs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.name().unwrap_or(""), n.log_tail()))
            .collect();
        panic!("nats cluster: {what}; the logs:\n{}", logs.join("\n"))
    }
}

/// Node `i`'s config: the extra text, then the cluster block with routes to the others.
fn node_config(i: usize, route_ports: &[u16], extra: &str) -> String {
    let routes: Vec<String> = route_ports
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != i)
        .map(|(_, port)| format!("\"nats-route://127.0.0.1:{port}\""))
        .collect();
    format!(
        "{extra}\n\ncluster {{\n  name: {CLUSTER_NAME}\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
        route_ports[i],
        routes.join(", ")
    )
}

/// `n` distinct free ports: all bound at once on `127.0.0.1:0`, then released for the
/// servers to take (route ports must be known before any node starts).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("bound address").port())
        .collect()
}

async fn connect(
    addrs: impl async_nats::ToServerAddrs,
    wait: Duration,
) -> Result<Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .connection_timeout(wait)
        .request_timeout(Some(wait))
        .connect(addrs)
        .await
}

/// Why a JetStream API request gave no answer.
#[derive(Debug)]
enum ApiError {
    /// No reply (timeout, no responders, connection trouble) or an unreadable one.
    NoAnswer(String),
    /// The reply's `error`.
    Refused { code: u64, error: serde_json::Value },
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::NoAnswer(why) => f.write_str(why),
            ApiError::Refused { error, .. } => write!(f, "refused: {error}"),
        }
    }
}

/// A JetStream API request; its reply's `error` becomes [`ApiError::Refused`].
async fn request(
    client: &Client,
    subject: &str,
    body: &str,
    wait: Duration,
) -> Result<serde_json::Value, ApiError> {
    let no_answer = |why: String| ApiError::NoAnswer(format!("{subject}: {why}"));
    let reply = timeout(
        wait,
        client.request(subject.to_owned(), body.to_owned().into()),
    )
    .await
    .map_err(|_| no_answer(format!("no reply within {wait:?}")))?
    .map_err(|err| no_answer(err.to_string()))?;
    let mut value: serde_json::Value = serde_json::from_slice(&reply.payload)
        .map_err(|err| no_answer(format!("reply is not JSON: {err}")))?;
    match value.get_mut("error").map(serde_json::Value::take) {
        Some(error) => Err(ApiError::Refused {
            code: error["err_code"].as_u64().unwrap_or_default(),
            error,
        }),
        None => Ok(value),
    }
}
