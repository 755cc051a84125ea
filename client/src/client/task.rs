//! The client task: connect, run a session until it ends, wait, reconnect.
//!
//! Commands are handled in every phase: while connecting or waiting they only change
//! state (a `sub` to send later, a request queued); once `welcome` arrives the task
//! brings the server up to date (subscriptions, then queued requests in `ref` order).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use switchyard_protocol::{ClientFrame, CloseCode, ServerFrame};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tracing::debug;

use super::backoff::{jitter, Backoff};
use super::presence::Change;
use super::resume::resume_url;
use super::{
    ClientError, ClientOptions, Command, Event, Reply, RequestKind, Shared, TokenProvider,
};
use crate::connection::{
    tls_config, ConnectError, ConnectOptions, Connection, Incoming, Phase, RecvError, Target,
    TlsTrust,
};
use frames::request_frame;

mod frames;

/// The shortest liveness window, whatever `heartbeat_ms` says.
const MIN_HEARTBEAT: Duration = Duration::from_secs(1);

pub(crate) async fn run(
    opts: ClientOptions,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    shared: Arc<Shared>,
) {
    let mut task = Task {
        backoff: Backoff::new(opts.backoff_min, opts.backoff_max),
        resubscribe: Backoff::new(opts.backoff_min, opts.backoff_max),
        resubscribe_at: None,
        token: opts.connect.token.clone(),
        provider: opts.token_provider.clone(),
        opts,
        commands,
        events,
        shared,
        rng: rand::make_rng(),
        resume: None,
        requests: BTreeMap::new(),
        next_ref: 1,
        close_done: None,
        welcomed: false,
        tls: None,
    };
    let code = task.run().await;
    for (_, pending) in std::mem::take(&mut task.requests) {
        if let Some(reply) = pending.reply {
            let _ = reply.send(Err(ClientError::Closed));
        }
    }
    debug!(close.code = ?code, "client closed");
    match task.events.try_send(Event::Closed { code }) {
        Err(mpsc::error::TrySendError::Full(event)) => {
            if let Some(done) = task.close_done.take() {
                let _ = done.send(());
            }
            let _ = task.events.send(event).await;
        }
        _ => {
            if let Some(done) = task.close_done.take() {
                let _ = done.send(());
            }
        }
    }
}

/// The `resume` path and token of the last `welcome`.
struct Resume {
    path: String,
    token: String,
}

/// A request waiting for its answer. `reply` is `None` for the task's own (a refresh
/// answering `refresh_required`).
struct Pending {
    kind: RequestKind,
    reply: Option<oneshot::Sender<Result<Reply, ClientError>>>,
    sent: bool,
    /// For a sent `presence`: the room's joins and leaves seen since, applied over its
    /// answer ([`super::presence`]).
    passed: Vec<Change>,
}

/// How a session or an attempt ended.
enum After {
    Reconnect(Duration),
    Stop(Option<u16>),
}

/// What handling a command asks of the session.
enum Flow {
    Continue,
    Close,
    Lost,
}

enum Wake {
    Command(Option<Command>),
    Incoming(Result<Incoming, RecvError>),
    Idle,
    Resubscribe,
}

struct Task {
    opts: ClientOptions,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    shared: Arc<Shared>,
    backoff: Backoff,
    /// Subs refused as `unavailable` are sent again after this backoff.
    resubscribe: Backoff,
    resubscribe_at: Option<Instant>,
    rng: StdRng,
    resume: Option<Resume>,
    requests: BTreeMap<u64, Pending>,
    next_ref: u64,
    /// Used when no provider is set; replaced by each `refresh`.
    token: Option<String>,
    provider: Option<TokenProvider>,
    close_done: Option<oneshot::Sender<()>>,
    welcomed: bool,
    /// The TLS config every attempt uses, built at the first ([`Task::tls_trust`]).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Task {
    async fn run(&mut self) -> Option<u16> {
        loop {
            let connect = ConnectOptions {
                url: self.url(),
                token: self.current_token(),
                tls: self.tls_trust(),
                ..self.opts.connect.clone()
            };
            debug!(url = %redact(&connect.url), "connecting");
            let attempt = Connection::connect(&connect);
            tokio::pin!(attempt);
            let result = loop {
                tokio::select! {
                    result = &mut attempt => break result,
                    command = self.commands.recv() => {
                        if let Flow::Close = self.command(command, None).await {
                            return Some(CloseCode::Normal.code());
                        }
                    }
                }
            };
            let after = match result {
                Ok(conn) => self.session(conn).await,
                Err(error) => self.connect_failed(error).await,
            };
            match after {
                After::Stop(code) => return code,
                After::Reconnect(delay) => {
                    debug!(delay_ms = delay.as_millis() as u64, "reconnecting");
                    let until = Instant::now() + delay;
                    loop {
                        tokio::select! {
                            _ = sleep_until(until) => break,
                            command = self.commands.recv() => {
                                if let Flow::Close = self.command(command, None).await {
                                    return Some(CloseCode::Normal.code());
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn url(&self) -> String {
        let base = &self.opts.connect.url;
        match &self.resume {
            Some(r) => resume_url(base, &r.path, &r.token).unwrap_or_else(|_| base.clone()),
            None => base.clone(),
        }
    }

    /// One TLS config for every attempt: its session cache lets a reconnect resume the
    /// last session, so neither side checks or signs a certificate again (and a CA file
    /// is not read per attempt). After a failed TLS handshake it is built anew, so a CA
    /// replaced on disk is read. A trust that cannot be built is passed on as it is, for
    /// the attempt to report.
    fn tls_trust(&mut self) -> TlsTrust {
        let trust = &self.opts.connect.tls;
        let wss = Target::parse(&self.opts.connect.url).is_ok_and(|t| t.tls);
        if matches!(trust, TlsTrust::Config(_)) || !wss {
            return trust.clone();
        }
        if self.tls.is_none() {
            self.tls = tls_config(trust).ok();
        }
        match &self.tls {
            Some(config) => TlsTrust::Config(config.clone()),
            None => trust.clone(),
        }
    }

    fn current_token(&self) -> Option<String> {
        match &self.provider {
            Some(provider) => Some(provider()),
            None => self.token.clone(),
        }
    }

    async fn emit(&self, event: Event) {
        // A dropped receiver only means nobody listens; the client keeps working.
        let _ = self.events.send(event).await;
    }

    async fn connect_failed(&mut self, error: ConnectError) -> After {
        let delay = error
            .retry_after()
            .unwrap_or_else(|| self.backoff.next_delay(&mut self.rng));
        let status = match &error {
            ConnectError::Http { status, .. } => Some(*status),
            _ => None,
        };
        let retry = match (&error, status) {
            // The resume path is refused: start over on the first URL.
            (_, Some(400 | 404)) if self.resume.take().is_some() => true,
            (_, Some(400 | 404)) => false,
            // A new token may come from the provider; a fixed one will not heal.
            (_, Some(401 | 403)) => self.provider.is_some(),
            (ConnectError::BadUrl(_) | ConnectError::BadHeader(_), _) => false,
            (ConnectError::TlsConfig(_), _) => false,
            _ => true,
        };
        if let ConnectError::Io {
            phase: Phase::Tls, ..
        } = error
        {
            self.tls = None;
        }
        debug!(%error, retry, "connection attempt failed");
        self.emit(Event::ConnectFailed {
            error,
            retry_in: retry.then_some(delay),
        })
        .await;
        if retry {
            After::Reconnect(delay)
        } else {
            After::Stop(None)
        }
    }

    async fn session(&mut self, mut conn: Connection) -> After {
        let mut online = false;
        let mut drain_after: Option<Duration> = None;
        let mut heartbeat = self.opts.welcome_timeout;
        let mut deadline = Instant::now() + heartbeat;
        let mut probing = false;
        loop {
            let wake = tokio::select! {
                command = self.commands.recv() => Wake::Command(command),
                incoming = conn.recv() => Wake::Incoming(incoming),
                _ = sleep_until(deadline) => Wake::Idle,
                _ = sleep_until(self.resubscribe_at.unwrap_or(deadline)), if self.resubscribe_at.is_some() => Wake::Resubscribe,
            };
            // What was read already was heard before the silence: the server holds it
            // delivered (its pings were answered), so it must reach the user first.
            let wake = match wake {
                Wake::Idle => conn.try_recv().map_or(Wake::Idle, Wake::Incoming),
                other => other,
            };
            match wake {
                Wake::Command(command) => {
                    match self.command(command, online.then_some(&conn)).await {
                        Flow::Continue => {}
                        Flow::Close => {
                            let _ = conn.close(CloseCode::Normal.code()).await;
                            return After::Stop(Some(CloseCode::Normal.code()));
                        }
                        Flow::Lost => {
                            self.salvage(&mut conn).await;
                            return self.ended(None, String::new(), None).await;
                        }
                    }
                }
                Wake::Incoming(incoming) => {
                    deadline = Instant::now() + heartbeat;
                    probing = false;
                    match incoming {
                        Ok(Incoming::Frame(ServerFrame::Welcome {
                            conn: id,
                            worker,
                            resume,
                            resume_token,
                            heartbeat_ms,
                            resumed,
                            user,
                        })) => {
                            online = true;
                            heartbeat = Duration::from_millis(heartbeat_ms).max(MIN_HEARTBEAT);
                            deadline = Instant::now() + heartbeat;
                            self.resume = Some(Resume {
                                path: resume.into_owned(),
                                token: resume_token.into_owned(),
                            });
                            self.backoff.reset();
                            if self.welcomed {
                                self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                            }
                            self.welcomed = true;
                            debug!(resumed, worker = %worker, "connected");
                            self.emit(Event::Connected {
                                resumed,
                                conn: id.into_owned(),
                                worker: worker.into_owned(),
                                user: user.into_owned(),
                            })
                            .await;
                            if self.catch_up(&conn, resumed).await.is_err() {
                                self.salvage(&mut conn).await;
                                return self.ended(None, String::new(), None).await;
                            }
                        }
                        Ok(Incoming::Frame(ServerFrame::Reconnect { after_ms, reason })) => {
                            debug!(after_ms, reason = %reason, "server asks to reconnect");
                            drain_after = Some(Duration::from_millis(after_ms));
                        }
                        Ok(Incoming::Frame(frame)) => {
                            if self.on_frame(frame, &conn).await.is_err() {
                                self.salvage(&mut conn).await;
                                return self.ended(None, String::new(), None).await;
                            }
                        }
                        Ok(Incoming::Closed { code, reason }) => {
                            return self.ended(code, reason, drain_after).await;
                        }
                        Err(RecvError::BadPiece { error, .. }) => {
                            debug!(%error, "server piece is not a frame");
                        }
                        Err(RecvError::UnexpectedBinary(_)) => {
                            debug!("server sent a binary frame");
                        }
                        Err(error) => {
                            return self.ended(None, error.to_string(), None).await;
                        }
                    }
                }
                Wake::Resubscribe => {
                    self.resubscribe_at = None;
                    let frames = self.shared.rooms().unsent();
                    for frame in &frames {
                        if conn.send_frame(frame).await.is_err() {
                            self.salvage(&mut conn).await;
                            return self.ended(None, String::new(), None).await;
                        }
                    }
                }
                Wake::Idle => {
                    if !online || probing {
                        debug!(online, "server is silent: connection is dead");
                        return self.ended(None, "no answer".into(), None).await;
                    }
                    // Server pings are answered inside fastwebsockets, unseen: ask for
                    // an answer we can see.
                    if conn
                        .send_frame(&ClientFrame::Ping { reference: None })
                        .await
                        .is_err()
                    {
                        self.salvage(&mut conn).await;
                        return self.ended(None, String::new(), None).await;
                    }
                    probing = true;
                    deadline = Instant::now() + heartbeat;
                }
            }
        }
    }

    /// A connection given up while frames it read wait unhandled: the server counts
    /// them delivered (their pings were answered) and a resume starts after them, so
    /// they go to the user before the reconnect. Their answers cannot be sent any more.
    async fn salvage(&mut self, conn: &mut Connection) {
        while let Some(incoming) = conn.try_recv() {
            if let Ok(Incoming::Frame(frame)) = incoming {
                if matches!(
                    frame,
                    ServerFrame::Msg { .. } | ServerFrame::Subscribed { .. }
                ) {
                    let _ = self.on_frame(frame, conn).await;
                }
            }
        }
    }

    /// After a `welcome`: subscriptions first, then every request not yet sent.
    async fn catch_up(&mut self, conn: &Connection, resumed: bool) -> Result<(), ()> {
        // The new session sends every sub not held: no separate retry is due.
        self.resubscribe_at = None;
        let frames = {
            let mut rooms = self.shared.rooms();
            if resumed {
                rooms.on_resumed_session()
            } else {
                rooms.on_fresh_session()
            }
        };
        for frame in &frames {
            conn.send_frame(frame).await.map_err(|_| ())?;
        }
        for (id, pending) in self.requests.iter_mut().filter(|(_, p)| !p.sent) {
            conn.send_frame(&request_frame(*id, &pending.kind))
                .await
                .map_err(|_| ())?;
            pending.sent = true;
        }
        Ok(())
    }

    /// The connection ended (a close frame, or lost with `code: None`).
    async fn ended(
        &mut self,
        code: Option<u16>,
        reason: String,
        drain_after: Option<Duration>,
    ) -> After {
        debug!(close.code = ?code, "disconnected");
        // Stored publishes are sent again with the same ref; the rest cannot be.
        let requests = std::mem::take(&mut self.requests);
        for (id, mut pending) in requests {
            let retried = !pending.sent
                || matches!(
                    pending.kind,
                    RequestKind::Publish {
                        ephemeral: false,
                        ..
                    }
                );
            if retried {
                pending.sent = false;
                self.requests.insert(id, pending);
            } else if let Some(reply) = pending.reply {
                let _ = reply.send(Err(ClientError::Disconnected));
            }
        }
        self.emit(Event::Disconnected { code, reason }).await;
        let stop = code
            .and_then(CloseCode::from_code)
            .is_some_and(|c| !c.should_reconnect());
        if stop {
            return After::Stop(code);
        }
        if code == Some(CloseCode::Drained.code()) {
            let delay =
                drain_after.unwrap_or_else(|| jitter(self.backoff.ceiling(), &mut self.rng));
            return After::Reconnect(delay);
        }
        After::Reconnect(self.backoff.next_delay(&mut self.rng))
    }

    /// Handles a command; `conn` is `Some` once the session had its `welcome`.
    async fn command(&mut self, command: Option<Command>, conn: Option<&Connection>) -> Flow {
        let online = conn.is_some();
        let frame = match command {
            None => return Flow::Close,
            Some(Command::Close { done }) => {
                self.close_done = Some(done);
                return Flow::Close;
            }
            Some(Command::SetToken(provider)) => {
                self.provider = Some(provider);
                return Flow::Continue;
            }
            Some(Command::Subscribe { room, since, epoch }) => {
                self.shared.rooms().want(room, since, epoch, online)
            }
            Some(Command::Unsubscribe { room }) => self.shared.rooms().unwant(&room, online),
            Some(Command::Request { kind, reply }) => {
                if let (RequestKind::Refresh { token }, None) = (&kind, &self.provider) {
                    self.token = Some(token.clone());
                }
                self.queue(kind, Some(reply), conn).await
            }
        };
        match (frame, conn) {
            (Some(frame), Some(conn)) => match conn.send_frame(&frame).await {
                Ok(()) => Flow::Continue,
                Err(_) => Flow::Lost,
            },
            _ => Flow::Continue,
        }
    }
}

/// The URL without its query, for logs (it may carry a resume token).
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}
