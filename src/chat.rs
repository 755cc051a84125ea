//! `switchyard chat ROOM`: a terminal chat over the reconnecting client, the quickest way
//! to watch a room, publish into it, and see a resume happen.

use std::path::Path;
use std::time::Duration;

use switchyard_client::{Client, ClientOptions, ConnectOptions, Event, TlsTrust, TokenVia};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::dev_state::DevState;
use crate::token::{mint_hs256, TokenRequest};

/// Joins `room` as `user`; with `since`, first replays what was retained after it.
pub async fn run(
    url: &str,
    state_dir: &Path,
    user: &str,
    room: &str,
    since: Option<u64>,
) -> anyhow::Result<()> {
    let state = DevState::load_or_create(state_dir)?;
    let token = mint_hs256(
        state.jwt_secret.as_bytes(),
        &TokenRequest {
            user: user.to_string(),
            sub: vec![room.to_string()],
            publish: vec![room.to_string()],
            ttl: Duration::from_secs(24 * 3600),
        },
    )?;
    let mut connect = ConnectOptions::new(url).token(token, TokenVia::Header);
    connect.tls = TlsTrust::CaPem(state.ca_pem.into_bytes());
    let (client, mut events) = Client::start(ClientOptions::new(connect));
    match since {
        Some(since) => client.subscribe_since(room, since, None).await?,
        None => client.subscribe(room).await?,
    }
    eprintln!(
        "chat: {user} in {room} at {url}; type a line and press enter to publish, Ctrl-D to leave"
    );
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) if !line.trim().is_empty() => {
                    let sent = client.clone();
                    let room = room.to_string();
                    tokio::spawn(async move {
                        if let Err(err) = sent.publish(&room, &serde_json::json!({ "text": line })).await {
                            eprintln!("chat: not sent: {err}");
                        }
                    });
                }
                Some(_) => {}
                None => break,
            },
            event = events.recv() => match event {
                Some(event) => show(&event),
                None => break,
            },
        }
    }
    let _ = client.close().await;
    Ok(())
}

fn show(event: &Event) {
    match event {
        Event::Connected {
            resumed,
            conn,
            worker,
            ..
        } => {
            let how = if *resumed {
                "resumed session"
            } else {
                "connected"
            };
            eprintln!("chat: {how} {conn} on worker {worker}");
        }
        Event::Disconnected { code, .. } => {
            eprintln!("chat: disconnected ({code:?}), reconnecting")
        }
        Event::ConnectFailed { error, retry_in } => {
            eprintln!("chat: cannot connect: {error}; retry in {retry_in:?}")
        }
        Event::Subscribed {
            room,
            seq,
            recovered,
            replayed,
            ..
        } => {
            eprintln!("chat: subscribed to {room} at seq {seq} (recovered {recovered}, replayed {replayed})")
        }
        Event::Message {
            seq, from, data, ..
        } => {
            let seq = seq.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
            println!("[{seq}] {from}: {}", data.get());
        }
        Event::Join { user, .. } => eprintln!("chat: {user} joined"),
        Event::Leave { user, .. } => eprintln!("chat: {user} left"),
        Event::Error { code, message, .. } => eprintln!("chat: error {code:?}: {message}"),
        Event::Closed { code } => eprintln!("chat: closed ({code:?})"),
        _ => {}
    }
}
