//! `switchyard`: parse flags and config, install tracing, run a role.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use switchyard::admin::Admin;
use switchyard::config_file::RoleFile;
use switchyard::dev::{DevOptions, DevStack, DEFAULT_LISTEN, DEFAULT_STATE_DIR};
use switchyard::dev_state::{self, DevState};
use switchyard::local_nats::LocalNats;
use switchyard::roles::WorkerRoleConfig;
use switchyard::telemetry::{LogFormat, OtlpProtocol, TelemetryConfig};
use switchyard::token::{mint_hs256, parse_ttl, TokenRequest};
use switchyard::usage;
use switchyard::wiring::GatewayVerifier;
use switchyard_broker::memory::MemoryConfig;
use switchyard_broker::nats::NatsConfig;
use switchyard_gateway::{Gateway, GatewayConfig, GatewayDeps, GatewaySettings, Verifier};
use switchyard_worker::Worker;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// `EX_USAGE`: a configuration or flag problem the user must fix.
const EXIT_USAGE: u8 = 64;

/// jemalloc rather than glibc's malloc: glibc keeps what a burst of connects freed (a
/// gateway's in-flight upgrades, presence events queued while rooms fill) for the life
/// of the process, and jemalloc gives it back after a second unused, from a thread of
/// its own (`.cargo/config.toml`). Idle memory per connection: BENCHMARKS.md, change 22.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "WebSocket platform: gateways, workers and rooms with nothing lost"
)]
struct Cli {
    /// Log filter, e.g. `info` or `switchyard_worker=debug` (also SWITCHYARD_LOG).
    #[arg(long, global = true, env = "SWITCHYARD_LOG", default_value = "info")]
    log: String,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    trace: TraceArgs,
    #[command(subcommand)]
    command: Command,
}

/// Traces over OTLP: off unless an endpoint is given (here or as `[telemetry]` in a
/// role's file; flags win).
#[derive(Args)]
struct TraceArgs {
    /// Export traces over OTLP to this endpoint, e.g. http://127.0.0.1:4317 (gRPC) or
    /// http://127.0.0.1:4318 (HTTP). Without it traces are off.
    #[arg(long, global = true, env = "SWITCHYARD_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// OTLP transport [default: grpc].
    #[arg(long, global = true, value_enum)]
    otlp_protocol: Option<OtlpProtocol>,
    /// Share of new traces sampled, 0.0 to 1.0 [default: 1.0].
    #[arg(long, global = true)]
    trace_sample_ratio: Option<f64>,
    /// Follow an incoming traceparent's sampling decision [default: true].
    #[arg(long, global = true)]
    trace_parent_based: Option<bool>,
}

impl TraceArgs {
    /// The flags over the file's `[telemetry]`.
    fn over(&self, mut config: TelemetryConfig) -> TelemetryConfig {
        if let Some(endpoint) = &self.otlp_endpoint {
            config.otlp_endpoint = Some(endpoint.clone());
        }
        if let Some(protocol) = self.otlp_protocol {
            config.otlp_protocol = protocol;
        }
        if let Some(ratio) = self.trace_sample_ratio {
            config.sample_ratio = ratio;
        }
        if let Some(parent_based) = self.trace_parent_based {
            config.parent_based = parent_based;
        }
        config
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a gateway and workers in one process (memory engine, or NATS), with a dev CA,
    /// JWT secret and API key kept in --state-dir.
    Dev(DevArgs),
    /// Run a gateway alone (TLS, tokens, routing to the workers of its config).
    Gateway(RoleArgs),
    /// Run a worker alone, taking connections that gateways hand over.
    Worker(RoleArgs),
    /// Print a signed HS256 token.
    Token(TokenArgs),
    /// Chat in a room from the terminal: prints its messages, publishes each line typed.
    Chat(ChatArgs),
    /// Load-test a running server: idle, broadcast, rooms, storm, churn.
    Bench(switchyard::bench::cli::BenchArgs),
    /// A bench's child process (started by `switchyard bench`).
    #[command(hide = true)]
    BenchAgent,
}

#[derive(Args)]
struct ChatArgs {
    /// The room to join.
    room: String,
    /// WebSocket URL of a gateway.
    #[arg(
        long,
        default_value = "wss://localhost:8443/ws",
        env = "SWITCHYARD_URL"
    )]
    url: String,
    /// Dev state dir: its CA is trusted and its jwt.secret signs your token.
    #[arg(long, default_value = DEFAULT_STATE_DIR, env = "SWITCHYARD_STATE_DIR")]
    state_dir: PathBuf,
    /// Your user id.
    #[arg(long, default_value = "guest")]
    user: String,
    /// Replay the room's retained messages after this seq first (0 for all of them).
    #[arg(long)]
    since: Option<u64>,
}

#[derive(Args)]
struct DevArgs {
    /// Address of the public listener.
    #[arg(long, default_value = DEFAULT_LISTEN, env = "SWITCHYARD_LISTEN")]
    listen: std::net::SocketAddr,
    /// Connections the kernel may queue for accept on the public listener (it takes at
    /// most `net.core.somaxconn`; docs/TUNING.md).
    #[arg(long, default_value_t = switchyard::listen::DEFAULT_BACKLOG, env = "SWITCHYARD_LISTEN_BACKLOG", value_parser = clap::value_parser!(u32).range(1..=65535))]
    listen_backlog: u32,
    /// Number of workers in the process [default: 1, or 2 with --cluster].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: Option<u16>,
    /// Where the dev CA (ca.pem), JWT secret (jwt.secret) and API key (api.key) live.
    #[arg(long, default_value = DEFAULT_STATE_DIR, env = "SWITCHYARD_STATE_DIR")]
    state_dir: PathBuf,
    /// Serve plain ws:// without TLS (only behind a TLS-terminating proxy).
    #[arg(long)]
    plain: bool,
    /// Retained messages per room.
    #[arg(long, default_value_t = switchyard_broker::memory::DEFAULT_HISTORY_SIZE)]
    history_size: usize,
    /// Run on NATS JetStream at this URL instead of the memory engine.
    #[arg(long, env = "SWITCHYARD_NATS", conflicts_with = "cluster")]
    nats: Option<String>,
    /// Start a local nats-server (needs it installed) and run 2 workers on it, to watch
    /// a cross-worker fan-out.
    #[arg(long)]
    cluster: bool,
    /// Serve /metrics, /healthz and /readyz here (never on the public port).
    #[arg(long, default_value = switchyard::admin::DEFAULT_DEV_ADMIN_LISTEN, env = "SWITCHYARD_ADMIN_LISTEN")]
    admin_listen: std::net::SocketAddr,
}

#[derive(Args)]
struct RoleArgs {
    /// TOML configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// Validate the configuration, print what is wrong, and exit.
    #[arg(long)]
    check_config: bool,
    /// Serve /metrics, /healthz and /readyz here (also `admin_listen` in the file);
    /// none unless given.
    #[arg(long)]
    admin_listen: Option<std::net::SocketAddr>,
}

#[derive(Args)]
struct TokenArgs {
    /// User id (the `sub` claim).
    #[arg(long)]
    user: String,
    /// Room patterns the user may subscribe to (repeat or comma-separate).
    #[arg(long = "sub", value_delimiter = ',')]
    sub: Vec<String>,
    /// Room patterns the user may publish to (repeat or comma-separate).
    #[arg(long = "pub", value_delimiter = ',')]
    publish: Vec<String>,
    /// Lifetime: 90s, 15m, 1h, 2d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
    /// Dev state dir whose jwt.secret signs the token.
    #[arg(long, conflicts_with = "secret_file")]
    state_dir: Option<PathBuf>,
    /// File whose first line is the HS256 secret.
    #[arg(long)]
    secret_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            if is_usage(&err) {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Every socket is a file: raise the soft limit on open files to the hard limit, as
/// nats-server does, since many systems start services at a soft limit of 1024
/// (docs/TUNING.md).
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < 16_384 => tracing::warn!(
            limit,
            "open files are limited to {limit}: each connection takes one (two on a gateway); raise the hard limit (LimitNOFILE, ulimit -Hn) for more"
        ),
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(err) => tracing::warn!(error = %err, "cannot read or raise the open files limit"),
    }
}

/// Configuration problems exit with `EX_USAGE`.
fn is_usage(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<switchyard::Usage>())
}

/// Reads a role's file (its `[telemetry]` decides the tracing set-up), installs logs and
/// traces, runs the command, and flushes the traces left at the end.
async fn start(cli: Cli) -> anyhow::Result<ExitCode> {
    let (file, role) = match &cli.command {
        Command::Gateway(args) => (
            Some(switchyard::config_file::read_role(&args.config).map_err(usage)?),
            "gateway",
        ),
        Command::Worker(args) => (
            Some(switchyard::config_file::read_role(&args.config).map_err(usage)?),
            "worker",
        ),
        Command::Dev(_) => (None, "dev"),
        Command::Token(_) | Command::Chat(_) | Command::Bench(_) | Command::BenchAgent => {
            (None, "cli")
        }
    };
    let config = cli.trace.over(
        file.as_ref()
            .map(|f| f.telemetry.clone())
            .unwrap_or_default(),
    );
    let problems = config.problems("--");
    if !problems.is_empty() {
        return Err(usage(anyhow::anyhow!(problems.join("; "))));
    }
    let telemetry = switchyard::telemetry::install(&cli.log, cli.log_format, &config, role)?;
    if role != "cli" || matches!(cli.command, Command::Bench(_) | Command::BenchAgent) {
        raise_open_files_limit();
    }
    let result = run(cli.command, file).await;
    telemetry.shutdown().await;
    result
}

async fn run(
    command: Command,
    file: Option<switchyard::config_file::RoleFile>,
) -> anyhow::Result<ExitCode> {
    match (command, file) {
        (Command::Dev(args), _) => dev(args).await,
        (Command::Gateway(args), Some(file)) => gateway(args, file).await,
        (Command::Worker(args), Some(file)) => worker(args, file).await,
        (Command::Gateway(_) | Command::Worker(_), None) => {
            unreachable!("start reads the file of every role")
        }
        (Command::Token(args), _) => token(args),
        (Command::Bench(args), _) => switchyard::bench::run(args.scenario).await,
        (Command::BenchAgent, _) => {
            switchyard::bench::agent::run().await?;
            Ok(ExitCode::SUCCESS)
        }
        (Command::Chat(args), _) => {
            switchyard::chat::run(
                &args.url,
                &args.state_dir,
                &args.user,
                &args.room,
                args.since,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    let mut options = DevOptions::new(args.state_dir.clone());
    options.listen = args.listen;
    options.listen_backlog = args.listen_backlog;
    options.workers = usize::from(args.workers.unwrap_or(if args.cluster { 2 } else { 1 }));
    options.plain = args.plain;
    options.admin_listen = Some(args.admin_listen);
    options.memory = MemoryConfig {
        history_size: args.history_size,
        ..MemoryConfig::default()
    };
    if args.plain {
        warn!("serving plain WebSocket without TLS: only behind a TLS-terminating proxy on a private network");
    }
    // Kept alive until the end: dropping it stops the server.
    let mut local_nats = None;
    if args.cluster {
        let nats = LocalNats::start(&args.state_dir).await?;
        info!(url = %nats.url, "started a local nats-server with JetStream");
        options.nats = Some(NatsConfig {
            url: nats.url.clone(),
            ..NatsConfig::default()
        });
        local_nats = Some(nats);
    } else if let Some(url) = &args.nats {
        options.nats = Some(NatsConfig {
            url: url.clone(),
            ..NatsConfig::default()
        });
    }
    let stack = DevStack::start(options).await?;
    print_banner(&stack, &args)?;
    wait_for_signal().await;
    info!("draining: clients are told to reconnect");
    stack.drain(Duration::from_secs(10)).await;
    drop(local_nats);
    Ok(ExitCode::SUCCESS)
}

fn print_banner(stack: &DevStack, args: &DevArgs) -> anyhow::Result<()> {
    let state = &stack.state;
    let token = mint_hs256(
        state.jwt_secret.as_bytes(),
        &TokenRequest {
            user: "dev".into(),
            sub: vec![">".into()],
            publish: vec![">".into(), "@*".into()],
            ttl: Duration::from_secs(24 * 3600),
        },
    )?;
    let dir = args.state_dir.display();
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "switchyard".into());
    let mut chat = format!("{exe} chat lobby --url {}", stack.url());
    if args.state_dir != std::path::Path::new(DEFAULT_STATE_DIR) {
        chat.push_str(&format!(" --state-dir {dir}"));
    }
    let https = stack
        .url()
        .replacen("wss://", "https://", 1)
        .replacen("ws://", "http://", 1)
        .replace("/ws", "");
    let ca = if stack.plain {
        String::new()
    } else {
        format!("--cacert {dir}/{} ", dev_state::CA_FILE)
    };
    let demo = stack
        .demo_url()
        .map(|url| format!("  demo     {url}  (open it in two browser tabs)\n"))
        .unwrap_or_default();
    println!(
        "Switchyard dev: gateway + {} worker(s) on the {} engine\n\
         \n  url      {}\n{demo}  ca       {dir}/{}\n  api key  {dir}/{}\n  token    {token}\n\
         \n(the token is for user \"dev\": it may subscribe to every room and publish anywhere, for 24h)\n\
         \nTry it: run this in two terminals, type a line in one, see it in both:\n\
         \n  {chat} --user alice\n\
         \nPublish from a backend through the HTTP API:\n\
         \n  curl -s {ca}-H \"Authorization: Bearer $(cat {dir}/{})\" -d '{{\"room\":\"lobby\",\"data\":{{\"text\":\"hello from curl\"}}}}' {https}/api/v1/publish\n",
        stack.workers.len(),
        stack.broker.engine(),
        stack.url(),
        dev_state::CA_FILE,
        dev_state::API_KEY_FILE,
        dev_state::API_KEY_FILE,
    );
    Ok(())
}

async fn gateway(args: RoleArgs, file: RoleFile) -> anyhow::Result<ExitCode> {
    let RoleFile {
        text,
        nats,
        admin_listen,
        listen_backlog,
        ..
    } = file;
    let config = GatewayConfig::from_toml_str(&text)
        .with_context(|| {
            format!(
                "{} is not a valid gateway configuration",
                args.config.display()
            )
        })
        .map_err(usage)?;
    // Validates every key and reads every file the config names.
    GatewaySettings::from_config(&config).map_err(usage)?;
    if args.check_config {
        println!("{}: ok", args.config.display());
        return Ok(ExitCode::SUCCESS);
    }
    if config.plain {
        warn!("serving plain WebSocket without TLS: only behind a TLS-terminating proxy on a private network");
    }
    let broker = match nats {
        Some(nats) => Some(switchyard::roles::broker(Some(nats), "switchyard-gateway").await?),
        None => {
            warn!("no [nats] table: the HTTP API answers 503 and only [[workers]] from the file are routed to");
            None
        }
    };
    let listener = switchyard::listen::bind(config.listen, listen_backlog)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    info!(addr = %listener.local_addr()?, "gateway listening");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.cancel();
    });
    let deps = GatewayDeps {
        broker: broker.clone(),
        local_workers: Vec::new(),
    };
    let gateway = Gateway::new(GatewaySettings::from_config(&config)?, deps)?;
    let admin = match args.admin_listen.or(admin_listen) {
        Some(addr) => {
            let admin = Admin {
                gateway: Some(gateway.telemetry()),
                workers: Vec::new(),
                broker,
            };
            let listener = switchyard::admin::bind(addr).await?;
            Some(tokio::spawn(switchyard::admin::serve(
                listener,
                admin,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    gateway.serve(listener, shutdown).await?;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn worker(args: RoleArgs, file: RoleFile) -> anyhow::Result<ExitCode> {
    let config = WorkerRoleConfig::from_role_file(&file, &args.config).map_err(usage)?;
    let RoleFile {
        nats,
        admin_listen,
        listen_backlog,
        ..
    } = file;
    let drain_grace = config.worker.drain_grace;
    let verifier = Arc::new(Verifier::from_config(&config.auth).map_err(usage)?);
    let listen = config
        .worker
        .listen
        .context("worker.listen: required to run a worker alone")
        .map_err(usage)?;
    let secret_file = config
        .worker
        .identity_secret_file
        .clone()
        .context("worker.identity_secret_file: required to run a worker alone")
        .map_err(usage)?;
    let secret: Arc<[u8]> = Arc::from(
        dev_state::read_line(&secret_file)
            .map_err(usage)?
            .into_bytes(),
    );
    // `[worker.tls]`: the internal listener takes only gateways' client certificates.
    let tls = match &config.worker.tls {
        Some(tls) => Some(switchyard_worker::listener::tls_config(tls).map_err(usage)?),
        None => None,
    };
    if args.check_config {
        println!("{}: ok", args.config.display());
        return Ok(ExitCode::SUCCESS);
    }
    if nats.is_none() {
        warn!("no [nats] table: this worker runs on its own memory broker, sharing nothing with other processes");
    }
    let broker =
        switchyard::roles::broker(nats, &format!("switchyard-{}", config.worker.id)).await?;
    let worker = Worker::start(
        config.worker,
        broker.clone(),
        Some(Arc::new(GatewayVerifier(verifier))),
    )?;
    let admin_stop = CancellationToken::new();
    let admin = match args.admin_listen.or(admin_listen) {
        Some(addr) => {
            let admin = Admin {
                gateway: None,
                workers: vec![worker.clone()],
                broker: Some(broker),
            };
            let listener = switchyard::admin::bind(addr).await?;
            Some(tokio::spawn(switchyard::admin::serve(
                listener,
                admin,
                admin_stop.clone(),
            )))
        }
        None => None,
    };
    let listener = switchyard::listen::bind(listen, listen_backlog)
        .with_context(|| format!("cannot listen on {listen}"))?;
    info!(addr = %listener.local_addr()?, worker.id = worker.id(), mtls = tls.is_some(), "worker listening for hand-offs");
    let stop = CancellationToken::new();
    let serving = match tls {
        Some(tls) => tokio::spawn(switchyard_worker::listener::run_tls(
            worker.clone(),
            listener,
            secret,
            tls,
            stop.clone(),
        )),
        None => tokio::spawn(switchyard_worker::listener::run(
            worker.clone(),
            listener,
            secret,
            stop.clone(),
        )),
    };
    wait_for_signal().await;
    info!("draining");
    worker.drain(drain_grace).await;
    stop.cancel();
    let _ = serving.await;
    admin_stop.cancel();
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    Ok(ExitCode::SUCCESS)
}

fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let secret = match (&args.secret_file, &args.state_dir) {
        (Some(file), _) => dev_state::read_line(file)?,
        (None, Some(dir)) => DevState::load_or_create(dir)?.jwt_secret,
        (None, None) => DevState::load_or_create(std::path::Path::new(DEFAULT_STATE_DIR))
            .context("no --secret-file or --state-dir given, and the default dev state dir cannot be used")?
            .jwt_secret,
    };
    let token = mint_hs256(
        secret.as_bytes(),
        &TokenRequest {
            user: args.user,
            sub: args.sub,
            publish: args.publish,
            ttl: args.ttl,
        },
    )?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
