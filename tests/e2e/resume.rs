//! Both resume paths of PROTOCOL §5: a detached session taken back with its
//! resume token, and a fresh session replaying from `since`.

use std::collections::BTreeSet;

use switchyard_protocol::frame::ServerFrame;
use switchyard_testkit::{expect, Stack};

use crate::{next_msg, publish, send, subscribe, subscribed};

/// Collects `n` distinct seqs of a room, dropping repeats as a client must (PROTOCOL §3).
async fn collect(
    conn: &mut switchyard_client::Connection,
    room: &str,
    after: u64,
    n: usize,
) -> Vec<u64> {
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    while order.len() < n {
        let (seq, ..) = next_msg(conn, room).await;
        let seq = seq.expect("stored messages have a seq");
        if seq > after && seen.insert(seq) {
            assert!(
                order.last().is_none_or(|last| *last < seq),
                "out of order: {order:?} then {seq}"
            );
            order.push(seq);
        }
    }
    order
}

#[tokio::test]
async fn a_detached_session_resumes_with_its_subscriptions_and_everything_missed() {
    let stack = Stack::start().await;
    let token = stack.token("alice", &["lobby"], &[]);
    let (mut alice, welcome) = stack.connect(&token).await;
    subscribe(&mut alice, "lobby").await;
    let (mut bob, _) = stack.connect(&stack.token("bob", &[], &["lobby"])).await;
    let first = publish(&mut bob, "lobby", "1", "a").await;
    assert_eq!(next_msg(&mut alice, "lobby").await.0, Some(first));
    drop(alice); // the socket goes away without a close frame
    let mut missed = Vec::new();
    for i in 0..5 {
        missed.push(publish(&mut bob, "lobby", &i.to_string(), &format!("m{i}")).await);
    }
    let (mut again, resumed) = stack.connect_path(&welcome.resume_path(), &token).await;
    assert!(resumed.resumed);
    assert_eq!(resumed.conn, welcome.conn);
    assert_eq!(collect(&mut again, "lobby", first, 5).await, missed);
    // Still subscribed: live messages keep coming without a new sub.
    let live = publish(&mut bob, "lobby", "9", "live").await;
    assert_eq!(
        collect(&mut again, "lobby", *missed.last().unwrap(), 1).await,
        vec![live]
    );
    send(&again, r#"{"op":"sub","room":"lobby","ref":"x"}"#).await;
    let code = expect::until(&mut again, |f| match f {
        ServerFrame::Error { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code.as_str(), "already_subscribed");
}

#[tokio::test]
async fn a_resume_takes_over_a_socket_the_server_still_thinks_alive() {
    let stack = Stack::start().await;
    let token = stack.token("alice", &["r"], &["r"]);
    let (mut old, welcome) = stack.connect(&token).await;
    subscribe(&mut old, "r").await;
    let (mut new, resumed) = stack.connect_path(&welcome.resume_path(), &token).await;
    assert!(resumed.resumed);
    let seq = publish(&mut new, "r", "1", "p").await;
    assert_eq!(collect(&mut new, "r", 0, 1).await, vec![seq]);
    // The old socket was let go of.
    match old.recv_timeout(switchyard_testkit::WAIT).await {
        Err(_) | Ok(switchyard_client::Incoming::Closed { .. }) => {}
        Ok(other) => {
            // Frames sent before the takeover may still be read; the socket must end after.
            let _ = other;
            assert!(expect_end(&mut old).await);
        }
    }
}

/// Resumes that race for a session held by a live socket all wait for whoever holds it
/// to let go, and each takes it in turn: none waits out the takeover timeout and gets a
/// fresh session instead.
#[tokio::test]
async fn resumes_racing_for_a_held_session_each_take_it_over() {
    let stack = Stack::start().await;
    let token = stack.token("alice", &["r"], &["r"]);
    let (mut old, welcome) = stack.connect(&token).await;
    subscribe(&mut old, "r").await;
    let path = welcome.resume_path();
    let started = std::time::Instant::now();
    let (a, b, c, d) = tokio::join!(
        stack.connect_path(&path, &token),
        stack.connect_path(&path, &token),
        stack.connect_path(&path, &token),
        stack.connect_path(&path, &token),
    );
    for (_conn, welcome) in [a, b, c, d] {
        assert!(welcome.resumed, "a racing resume got a fresh session");
    }
    // The takeover timeout is 5 s: a resume that missed its wake-up would wait it out.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "resumes took {:?}",
        started.elapsed()
    );
}

async fn expect_end(conn: &mut switchyard_client::Connection) -> bool {
    loop {
        match conn.recv_timeout(switchyard_testkit::WAIT).await {
            Ok(switchyard_client::Incoming::Frame(_)) => continue,
            Ok(switchyard_client::Incoming::Closed { .. }) | Err(_) => return true,
        }
    }
}

#[tokio::test]
async fn a_fresh_session_replays_from_since_with_no_gap_and_no_duplicate() {
    let stack = Stack::start().await;
    let (mut bob, _) = stack.connect(&stack.token("bob", &[], &["lobby"])).await;
    let mut seqs = Vec::new();
    for i in 0..10 {
        seqs.push(publish(&mut bob, "lobby", &i.to_string(), &i.to_string()).await);
    }
    let (mut alice, _) = stack.connect(&stack.token("alice", &["lobby"], &[])).await;
    let epoch = stack.dev.epoch().await.unwrap();
    send(
        &alice,
        &format!(
            r#"{{"op":"sub","room":"lobby","since":{},"epoch":"{epoch}"}}"#,
            seqs[3]
        ),
    )
    .await;
    assert_eq!(
        subscribed(&mut alice, "lobby").await,
        (seqs[9], epoch, true, 6)
    );
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(next_msg(&mut alice, "lobby").await.0.unwrap());
    }
    let live = publish(&mut bob, "lobby", "10", "10").await;
    got.push(next_msg(&mut alice, "lobby").await.0.unwrap());
    let mut want = seqs[4..].to_vec();
    want.push(live);
    assert_eq!(got, want);
}

#[tokio::test]
async fn since_zero_replays_all_retained_history() {
    let stack = Stack::start().await;
    let (mut bob, _) = stack.connect(&stack.token("bob", &[], &["r"])).await;
    let a = publish(&mut bob, "r", "1", "1").await;
    let b = publish(&mut bob, "r", "2", "2").await;
    let (mut alice, _) = stack.connect(&stack.token("alice", &["r"], &[])).await;
    send(&alice, r#"{"op":"sub","room":"r","since":0}"#).await;
    let (_, _, recovered, replayed) = subscribed(&mut alice, "r").await;
    assert!(recovered);
    assert_eq!(replayed, 2);
    assert_eq!(collect(&mut alice, "r", 0, 2).await, vec![a, b]);
}

#[tokio::test]
async fn recovered_is_false_when_history_is_gone_or_the_epoch_or_seq_is_foreign() {
    let stack = Stack::start_with(|o| o.memory.history_size = 3).await;
    let (mut bob, _) = stack.connect(&stack.token("bob", &[], &["r"])).await;
    let mut seqs = Vec::new();
    for i in 0..6 {
        seqs.push(publish(&mut bob, "r", &i.to_string(), &i.to_string()).await);
    }
    let epoch = stack.dev.epoch().await.unwrap();
    let token = stack.token("alice", &["r"], &[]);
    // History after seqs[0] was partly dropped: what is retained is replayed.
    let (mut a, _) = stack.connect(&token).await;
    send(
        &a,
        &format!(
            r#"{{"op":"sub","room":"r","since":{},"epoch":"{epoch}"}}"#,
            seqs[0]
        ),
    )
    .await;
    assert_eq!(
        subscribed(&mut a, "r").await,
        (seqs[5], epoch.clone(), false, 3)
    );
    assert_eq!(collect(&mut a, "r", 0, 3).await, seqs[3..].to_vec());
    // Another epoch: nothing of that history is known here.
    let (mut b, _) = stack.connect(&token).await;
    send(
        &b,
        &format!(
            r#"{{"op":"sub","room":"r","since":{},"epoch":"other"}}"#,
            seqs[4]
        ),
    )
    .await;
    let (_, _, recovered, replayed) = subscribed(&mut b, "r").await;
    assert_eq!((recovered, replayed), (false, 3));
    // A seq past the head is from another history too.
    let (mut c, _) = stack.connect(&token).await;
    send(
        &c,
        &format!(r#"{{"op":"sub","room":"r","since":{}}}"#, seqs[5] + 100),
    )
    .await;
    assert!(!subscribed(&mut c, "r").await.2);
    // Within what is retained, all is well.
    let (mut d, _) = stack.connect(&token).await;
    send(
        &d,
        &format!(
            r#"{{"op":"sub","room":"r","since":{},"epoch":"{epoch}"}}"#,
            seqs[3]
        ),
    )
    .await;
    assert_eq!(subscribed(&mut d, "r").await, (seqs[5], epoch, true, 2));
}

#[tokio::test]
async fn another_users_token_or_a_forged_resume_token_gets_a_fresh_session() {
    let stack = Stack::start().await;
    let alice_token = stack.token("alice", &["secret"], &[]);
    let (mut alice, welcome) = stack.connect(&alice_token).await;
    subscribe(&mut alice, "secret").await;
    drop(alice);
    // Mallory knows the path and even the resume token, but has her own token.
    let mallory = stack.token("mallory", &[], &[]);
    let (_m, fresh) = stack.connect_path(&welcome.resume_path(), &mallory).await;
    assert!(!fresh.resumed);
    assert_ne!(fresh.conn, welcome.conn);
    assert_eq!(fresh.user, "mallory");
    // Alice's own token with a forged resume token is no better.
    let forged = format!(
        "{}?resume_token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        welcome.resume
    );
    let (_f, fresh) = stack.connect_path(&forged, &alice_token).await;
    assert!(!fresh.resumed);
    assert_ne!(fresh.conn, welcome.conn);
    // The real owner still gets the session back.
    let (_a, resumed) = stack
        .connect_path(&welcome.resume_path(), &alice_token)
        .await;
    assert!(resumed.resumed);
    assert_eq!(resumed.conn, welcome.conn);
}

#[tokio::test]
async fn a_resume_path_without_resume_token_is_a_fresh_connection_on_that_worker() {
    let stack = Stack::start_with(|o| o.workers = 2).await;
    let token = stack.token("alice", &[], &[]);
    let (_a, on_w2) = stack.connect_path("/ws/w2/c_whatever", &token).await;
    assert_eq!((on_w2.worker.as_str(), on_w2.resumed), ("w2", false));
    let (_b, again) = stack.connect_path("/ws/w1/c_whatever", &token).await;
    assert_eq!(again.worker, "w1");
}

/// A reconnect storm: every client of a room comes back at once and resubscribes from
/// the same `since`. The worker reads the store once for all of them (the room's window,
/// backfilled by whichever client came first), not once per client.
#[tokio::test]
async fn a_crowd_resuming_one_room_reads_the_store_a_few_times_not_once_per_client() {
    use std::sync::atomic::Ordering;
    const CLIENTS: usize = 50;
    let stack = Stack::start().await;
    let token = stack.token("crowd", &["hall"], &[]);
    let (mut publisher, _) = stack.connect(&stack.token("pub", &[], &["hall"])).await;
    let since = publish(&mut publisher, "hall", "0", "first").await;
    let mut missed = Vec::new();
    for i in 1..=100 {
        missed.push(publish(&mut publisher, "hall", &i.to_string(), &i.to_string()).await);
    }
    let epoch = stack.dev.epoch().await.unwrap();
    let stats = stack.dev.workers[0].stats();
    let reads_before = stats.store_reads.load(Ordering::Relaxed);
    let resume = |_: usize| {
        let (stack, token, epoch) = (&stack, &token, &epoch);
        async move {
            let (mut conn, _) = stack.connect(token).await;
            let sub = format!(r#"{{"op":"sub","room":"hall","since":{since},"epoch":"{epoch}"}}"#);
            send(&conn, &sub).await;
            let (_, _, recovered, replayed) = subscribed(&mut conn, "hall").await;
            assert!(recovered);
            assert_eq!(replayed, 100);
            collect(&mut conn, "hall", since, 100).await
        }
    };
    let results = futures_util::future::join_all((0..CLIENTS).map(resume)).await;
    for got in results {
        assert_eq!(got, missed);
    }
    let reads = stats.store_reads.load(Ordering::Relaxed) - reads_before;
    // One read for the room's head at the feed's start, one or two for the backfill,
    // and the room's own head checks: a handful, where each client alone needs two.
    eprintln!("{reads} store reads for {CLIENTS} resuming clients");
    assert!(
        reads <= 10,
        "{reads} store reads for {CLIENTS} resuming clients"
    );
}
