//! The coordinator's side of the agents: spawn them (`switchyard bench-agent`), send
//! them commands, read their event lines and fold the per-second ticks together.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::agent::{Command, Event, Job};
use super::progress::Progress;
use super::stats::Histogram;

/// Event lines buffered from all agents.
const EVENTS_CAPACITY: usize = 4096;

/// What the ticks add up to.
#[derive(Default)]
pub struct Aggregate {
    /// Second since the epoch → (deliveries, latency from send time).
    pub per_sec: BTreeMap<u64, (u64, Histogram)>,
    pub connected: Vec<u64>,
    pub failed: Vec<u64>,
    pub deliveries: u64,
    pub dups: u64,
}

impl Aggregate {
    pub fn connected(&self) -> u64 {
        self.connected.iter().sum()
    }

    pub fn failed(&self) -> u64 {
        self.failed.iter().sum()
    }

    /// Deliveries and p99 of the newest complete second.
    pub fn last_second(&self) -> Option<(u64, u64)> {
        let mut it = self.per_sec.iter().rev();
        // The newest second may still miss some agents' ticks: show the one before.
        let (_, (n, h)) = if self.per_sec.len() > 1 {
            it.nth(1)?
        } else {
            it.next()?
        };
        Some((*n, h.quantile(0.99)))
    }
}

pub struct Fleet {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    events: mpsc::Receiver<(usize, Event)>,
    pub pids: Vec<u32>,
    pub agg: Aggregate,
}

impl Fleet {
    /// Starts one agent per job.
    pub async fn spawn(jobs: Vec<Job>) -> anyhow::Result<Fleet> {
        let exe = std::env::current_exe().context("cannot find the switchyard binary")?;
        let (tx, events) = mpsc::channel(EVENTS_CAPACITY);
        let mut fleet = Fleet {
            children: Vec::new(),
            stdins: Vec::new(),
            events,
            pids: Vec::new(),
            agg: Aggregate {
                connected: vec![0; jobs.len()],
                failed: vec![0; jobs.len()],
                ..Aggregate::default()
            },
        };
        for (i, job) in jobs.iter().enumerate() {
            let mut child = tokio::process::Command::new(&exe)
                .args(["--log", "warn", "bench-agent"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a bench agent")?;
            let mut stdin = child.stdin.take().context("agent stdin")?;
            let stdout = child.stdout.take().context("agent stdout")?;
            let mut line = serde_json::to_vec(job)?;
            line.push(b'\n');
            stdin.write_all(&line).await?;
            fleet.pids.extend(child.id());
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<Event>(&line) {
                        Ok(event) => {
                            if tx.send((i, event)).await.is_err() {
                                return;
                            }
                        }
                        Err(err) => eprintln!("bench: agent {i} wrote a bad line: {err}"),
                    }
                }
            });
            fleet.children.push(child);
            fleet.stdins.push(stdin);
        }
        Ok(fleet)
    }

    pub fn agents(&self) -> usize {
        self.children.len()
    }

    pub async fn send_all(&mut self, command: &Command) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(command)?;
        line.push(b'\n');
        for stdin in &mut self.stdins {
            stdin.write_all(&line).await?;
        }
        Ok(())
    }

    fn fold(&mut self, agent: usize, event: &Event) {
        if let Event::Tick {
            sec,
            connected,
            failed,
            deliveries,
            dups,
            lat,
        } = event
        {
            self.agg.connected[agent] = *connected;
            self.agg.failed[agent] = *failed;
            self.agg.deliveries += deliveries;
            self.agg.dups += dups;
            let entry = self.agg.per_sec.entry(*sec).or_default();
            entry.0 += deliveries;
            entry.1.merge_sparse(lat);
        }
    }

    /// Waits for one event matching `want` from every agent (ticks are folded in and
    /// progress printed meanwhile). Fails after `limit`.
    pub async fn gather(
        &mut self,
        want: fn(&Event) -> bool,
        limit: Duration,
        progress: &mut Progress,
    ) -> anyhow::Result<Vec<Event>> {
        let deadline = Instant::now() + limit;
        let mut got: Vec<Option<Event>> = vec![None; self.agents()];
        while got.iter().any(Option::is_none) {
            let next = tokio::time::timeout_at(deadline, self.next(progress))
                .await
                .context("the bench agents did not answer in time")?;
            let (agent, event) = next.context("a bench agent exited early")?;
            if want(&event) {
                got[agent] = Some(event);
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// Folds events in until `until`.
    pub async fn pump_until(&mut self, until: Instant, progress: &mut Progress) {
        while let Ok(Some(_)) = tokio::time::timeout_at(until, self.next(progress)).await {}
    }

    /// The next event, ticks folded in, progress printed when due.
    async fn next(&mut self, progress: &mut Progress) -> Option<(usize, Event)> {
        loop {
            let wait = progress.due_in();
            match tokio::time::timeout(wait, self.events.recv()).await {
                Ok(Some((agent, event))) => {
                    self.fold(agent, &event);
                    progress.maybe_print(&self.agg);
                    return Some((agent, event));
                }
                Ok(None) => return None,
                Err(_) => progress.maybe_print(&self.agg),
            }
        }
    }

    /// Tells every agent to stop and collects their `done` events.
    pub async fn stop(&mut self, progress: &mut Progress) -> anyhow::Result<Vec<Event>> {
        self.send_all(&Command::Stop).await?;
        let done = self
            .gather(
                |e| matches!(e, Event::Done { .. }),
                Duration::from_secs(30),
                progress,
            )
            .await;
        for child in &mut self.children {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
        done
    }
}
