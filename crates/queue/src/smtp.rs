//! [`Deliver`] over postline's SMTP client: messages that share a route share connections,
//! deep-pipelined, a few connections per destination.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use postline::delivery::{Delivery, DeliveryStatus};
use postline::{Client, Config, Envelope, Error};

use crate::route::Route;
use crate::runner::{Deliver, Flow, Job, Record};

/// Where a route leads, as the caller's configuration resolves it at attempt time.
pub enum Destination {
    /// One relay, with its credentials.
    Relay(Config),
    /// Each recipient domain's exchangers.
    Direct(postline::Mailer),
}

/// Turns a stored route into a destination. An `Err` defers the route's messages with that
/// reason (a local fault: the message is not to blame).
pub type Resolve = dyn Fn(&Route) -> Result<Destination, String> + Send + Sync;

/// A limit on connections to one destination shared by every sender node: before a
/// connection opens, its slot is taken; the slot is given back when the guard drops (the
/// connection closed), and a dead node's slots come back by themselves (a lease).
pub trait Limiter: Send + Sync {
    /// A slot for one more connection to `destination`, or `None` when `limit` are open
    /// (on any node).
    fn acquire(&self, destination: &str, limit: usize) -> std::io::Result<Option<SlotGuard>>;

    /// Reserves `n` messages to `destination` at `per_second` shared by every node (a
    /// schedule every node writes to: each reservation starts where the last one ended);
    /// how long to wait before sending them.
    fn reserve(
        &self,
        destination: &str,
        n: usize,
        per_second: f64,
    ) -> std::io::Result<std::time::Duration>;
}

/// A held connection slot of a [`Limiter`]; released when dropped.
pub struct SlotGuard(pub Box<dyn Send + Sync>);

/// A connection and the slot it holds, if the limit is shared.
struct Conn {
    client: Client,
    _slot: Option<SlotGuard>,
}

/// SMTP delivery for the queue runner.
pub struct Smtp {
    resolve: Box<Resolve>,
    /// Connections kept open between groups of one pass, by route.
    idle: Mutex<Vec<(Route, Conn)>>,
    connections: usize,
    round: usize,
    max_recipients: usize,
    shared: Option<(Box<dyn Limiter>, usize)>,
    /// Messages per second to one relay across every node (with `shared`).
    rate: Option<f64>,
}

impl Smtp {
    /// Delivery along routes as `resolve` reads them.
    pub fn new(
        resolve: impl Fn(&Route) -> Result<Destination, String> + Send + Sync + 'static,
    ) -> Self {
        Smtp {
            resolve: Box::new(resolve),
            idle: Mutex::new(Vec::new()),
            connections: 2,
            round: 100,
            max_recipients: 100,
            shared: None,
            rate: None,
        }
    }

    /// At most `limit` connections to one relay across every node that shares `limiter`
    /// (a [`PgStore`](crate::PgStore) shares its database's): a connection that finds
    /// every slot taken is not opened, and the messages no connection could take stay
    /// queued, not attempted, for a later pass.
    pub fn shared_limit(mut self, limiter: impl Limiter + 'static, limit: usize) -> Self {
        self.shared = Some((Box::new(limiter), limit.max(1)));
        self
    }

    /// At most `per_second` messages to one relay across every node sharing the
    /// [`Smtp::shared_limit`] limiter (without one, this has no effect). Rounds are cut to a
    /// second's worth, each reserved on the shared schedule and sent when its time comes, so
    /// no node bursts past the rate for more than a second's worth.
    pub fn shared_rate(mut self, per_second: f64) -> Self {
        self.rate = (per_second > 0.0).then_some(per_second);
        self
    }

    /// Connections opened at once to one relay (default 2).
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n.max(1);
        self
    }

    /// Messages taken per round by a connection (default 100): the unit connections share
    /// work in. Results are recorded as they arrive, not per round.
    pub fn round(mut self, n: usize) -> Self {
        self.round = n.max(1);
        self
    }

    /// Recipients per transaction (default 100, as RFC 5321 4.5.3.1.8 requires servers to
    /// take); a message with more is sent in several transactions. A server's 452 (too many
    /// recipients) also splits: the rest go in a new transaction at once.
    pub fn max_recipients(mut self, n: usize) -> Self {
        self.max_recipients = n.max(1);
        self
    }
}

impl Deliver for Smtp {
    fn deliver(&mut self, route: &Route, jobs: &[Job<'_>], record: &Record<'_>) {
        match (self.resolve)(route) {
            Ok(Destination::Relay(config)) => self.relay(route, &config, jobs, record),
            Ok(Destination::Direct(mailer)) => direct(&mailer, jobs, record),
            Err(why) => {
                let why = format!("route {}: {why}", route.describe());
                record(
                    jobs.iter()
                        .enumerate()
                        .map(|(i, j)| (i, all(j, DeliveryStatus::Deferred, &why)))
                        .collect(),
                );
            }
        }
    }

    /// Says QUIT on the connections kept for the pass.
    fn finish(&mut self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, c) in idle {
            let _ = c.client.quit();
        }
    }
}

fn all(job: &Job<'_>, status: DeliveryStatus, why: &str) -> Vec<Delivery> {
    job.recipients
        .iter()
        .map(|a| Delivery::new(*a, status, None, why))
        .collect()
}

/// What the connection workers of one relay share.
struct Shared<'a> {
    next: &'a AtomicUsize,
    stop: &'a AtomicBool,
    /// The relay could not be reached by anyone: the rest are deferred without more tries.
    down: &'a Mutex<Option<Error>>,
    /// Workers that have not given up connecting: the last one to fail defers the rest.
    alive: &'a AtomicUsize,
}

/// One transaction of a job: a slice of its recipients.
struct Tx {
    job: usize,
    envelope: Envelope,
}

/// Results ready to record, shared by the connection workers and the recorder.
#[derive(Default)]
struct Inbox {
    ready: Vec<(usize, Vec<Delivery>)>,
    working: usize,
    /// The recorder is gone (it panicked): workers must stop.
    closed: bool,
}

/// The most results waiting for the recorder before workers wait for it: bounds what a
/// crash can send twice when recording is slow (a stalled disk or observer).
const MAX_UNRECORDED: usize = 64;

/// Hands finished jobs to the recorder.
struct Outbox<'a> {
    inbox: &'a Mutex<Inbox>,
    wake: &'a Condvar,
}

impl Outbox<'_> {
    fn send(&self, job: usize, list: Vec<Delivery>) {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        while inbox.ready.len() >= MAX_UNRECORDED && !inbox.closed {
            inbox = self.wake.wait(inbox).unwrap_or_else(|p| p.into_inner());
        }
        inbox.ready.push((job, list));
        self.wake.notify_all();
    }

    fn closed(&self) -> bool {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner()).closed
    }
}

/// Marks a worker done even when it panics, so the recorder never waits for it forever.
struct Working<'a>(&'a Outbox<'a>);

impl Drop for Working<'_> {
    fn drop(&mut self) {
        let mut inbox = self.0.inbox.lock().unwrap_or_else(|p| p.into_inner());
        inbox.working -= 1;
        self.0.wake.notify_all();
    }
}

/// Stops the workers when the recorder leaves, a panic included (a panicking observer must
/// not leave connections sending what can no longer be recorded).
struct Recording<'a> {
    out: &'a Outbox<'a>,
    stop: &'a AtomicBool,
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let mut inbox = self.out.inbox.lock().unwrap_or_else(|p| p.into_inner());
        inbox.closed = true;
        self.out.wake.notify_all();
    }
}

impl Smtp {
    /// A few connections to one relay, each taking rounds of messages; results go to the
    /// recorder as their replies arrive, and the recorder writes whatever has gathered while
    /// it was writing the previous group (a group commit), so recording never holds up the
    /// wire and a result is durable one write after its reply.
    fn relay(&self, route: &Route, config: &Config, jobs: &[Job<'_>], record: &Record<'_>) {
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let down: Mutex<Option<Error>> = Mutex::new(None);
        let workers = self.connections.min(jobs.len().div_ceil(self.round)).max(1);
        let inbox = Mutex::new(Inbox {
            ready: Vec::new(),
            working: workers,
            closed: false,
        });
        let wake = Condvar::new();
        let out = Outbox {
            inbox: &inbox,
            wake: &wake,
        };
        let alive = AtomicUsize::new(workers);
        let shared = Shared {
            next: &next,
            stop: &stop,
            down: &down,
            alive: &alive,
        };
        std::thread::scope(|s| {
            // First: whatever happens next (a spawn that fails included), workers stop.
            let _recording = Recording {
                out: &out,
                stop: &stop,
            };
            for _ in 0..workers {
                s.spawn(|| {
                    let _working = Working(&out);
                    self.worker(route, config, jobs, &shared, &out);
                });
            }
            loop {
                let (group, done) = {
                    let mut inbox = inbox.lock().unwrap_or_else(|p| p.into_inner());
                    while inbox.ready.is_empty() && inbox.working > 0 {
                        inbox = wake.wait(inbox).unwrap_or_else(|p| p.into_inner());
                    }
                    let group = std::mem::take(&mut inbox.ready);
                    wake.notify_all(); // room again for waiting workers
                    (group, inbox.working == 0)
                };
                if !group.is_empty() && record(group) == Flow::Stop {
                    stop.store(true, Ordering::SeqCst);
                }
                if done
                    && inbox
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .ready
                        .is_empty()
                {
                    break;
                }
            }
        });
    }

    /// One connection's share: rounds of messages until none are left or the runner stops.
    /// A worker connects before it takes a round. One that cannot leaves the rounds to the
    /// others; only the last one standing defers what is left (so a relay that takes one
    /// connection at a time still gets every message over the one it takes).
    fn worker(
        &self,
        route: &Route,
        config: &Config,
        jobs: &[Job<'_>],
        shared: &Shared<'_>,
        out: &Outbox<'_>,
    ) {
        let mut conn: Option<Conn> = self.take_idle(route);
        let mut gave_up = false;
        while !shared.stop.load(Ordering::SeqCst) && !out.closed() {
            let down = shared
                .down
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some();
            if conn.is_none() && !down {
                let slot = match &self.shared {
                    None => Ok(None),
                    Some((limiter, limit)) => match limiter.acquire(config.host(), *limit) {
                        Ok(Some(slot)) => Ok(Some(slot)),
                        // Every slot is another connection's: this one is not opened, and
                        // the rounds are the others' (or wait for a later pass).
                        Ok(None) => Err(None),
                        Err(e) => Err(Some(e)),
                    },
                };
                let slot = match slot {
                    Ok(slot) => slot,
                    Err(why) => {
                        gave_up = true;
                        if shared.alive.fetch_sub(1, Ordering::SeqCst) > 1 {
                            break;
                        }
                        // The last worker: what is left stays queued, not attempted.
                        let why = why.map_or_else(
                            || format!("{}: every shared connection slot is taken", config.host()),
                            |e| format!("{}: connection limit unavailable: {e}", config.host()),
                        );
                        not_attempted(jobs, shared, self.round_size(), &why, out);
                        break;
                    }
                };
                match Client::connect(config.clone()) {
                    Ok(c) => {
                        conn = Some(Conn {
                            client: c,
                            _slot: slot,
                        })
                    }
                    Err(e) => {
                        gave_up = true;
                        if shared.alive.fetch_sub(1, Ordering::SeqCst) > 1 {
                            break; // others are (or may be) sending: the rounds are theirs
                        }
                        *shared.down.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    }
                }
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
            }
            let start = shared.next.fetch_add(self.round_size(), Ordering::SeqCst);
            if start >= jobs.len() {
                break;
            }
            let range = start..(start + self.round_size()).min(jobs.len());
            if let (Some((limiter, _)), Some(rate)) = (&self.shared, self.rate) {
                match limiter.reserve(config.host(), range.len(), rate) {
                    Ok(wait) => pause(wait, shared.stop),
                    Err(e) => {
                        // Without the shared schedule the rate cannot be kept: these stay
                        // queued for a later pass.
                        let why = format!("{}: shared rate unavailable: {e}", config.host());
                        not_attempted_round(jobs, range, &why, out);
                        continue;
                    }
                }
                if shared.stop.load(Ordering::SeqCst) {
                    // Taken from the rounds but not sent: they stay queued as they were.
                    not_attempted_round(jobs, range, "stopping", out);
                    break;
                }
            }
            let Some(c) = conn.as_mut().map(|c| &mut c.client) else {
                let e = shared
                    .down
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                failed_round(jobs, range, &e.unwrap_or(Error::Closed), out);
                continue;
            };
            if !self.round_on(c, config, config.host(), jobs, range, shared.stop, out) {
                // Reconnect for the next round; this round's unsent messages stay queued
                // (not attempted) for a later pass.
                conn = None;
            }
        }
        if !gave_up {
            shared.alive.fetch_sub(1, Ordering::SeqCst);
        }
        // Kept for the next group of this pass; the runner's `finish` says QUIT.
        if let Some(c) = conn {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((route.clone(), c));
        }
    }

    /// Messages a connection takes at a time: a round, or a second's worth under a shared
    /// rate.
    fn round_size(&self) -> usize {
        match (self.shared.is_some(), self.rate) {
            (true, Some(rate)) => self.round.min((rate.floor() as usize).max(1)),
            _ => self.round,
        }
    }

    fn take_idle(&self, route: &Route) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let i = idle.iter().position(|(r, _)| r == route)?;
        Some(idle.swap_remove(i).1)
    }

    /// One pipelined round on `client`; each job goes to `out` once all its transactions
    /// are done. Returns whether the connection is still good for another round.
    #[allow(clippy::too_many_arguments)]
    fn round_on(
        &self,
        client: &mut Client,
        config: &Config,
        host: &str,
        jobs: &[Job<'_>],
        range: std::ops::Range<usize>,
        stop: &AtomicBool,
        out: &Outbox<'_>,
    ) -> bool {
        // Per job of the round: results so far and transactions still open.
        let first = range.start;
        let mut open: Vec<(Vec<Delivery>, usize)> = Vec::with_capacity(range.len());
        let mut txs = Vec::new();
        for i in range {
            let (tx, bad) = transactions(i, &jobs[i], self.max_recipients);
            let n = tx.len();
            txs.extend(tx);
            if n == 0 {
                out.send(i, bad);
                open.push((Vec::new(), 0));
            } else {
                open.push((bad, n));
            }
        }
        // Two kinds of transactions go again at once: the rest of a transaction a 452 cut
        // short (a new transaction on this connection), and those a connection that ended
        // never started (a new connection, for a server that limits messages per
        // connection, as long as each connection delivers something). Each round of either
        // makes progress, so this ends; the bound is a second guard.
        let mut rounds = 0;
        let bound = self.max_recipients + txs.len();
        // One connection found dead before its first transaction (closed by the server
        // while idle between rounds) is replaced once without having to deliver.
        let mut idle_close_forgiven = false;
        while !txs.is_empty() && rounds <= bound {
            rounds += 1;
            let mut again = Vec::new();
            let mut progressed = false;
            let mut finish = |k: usize, outcome: Result<postline::Outcome, Error>| {
                let tx: &Tx = &txs[k];
                // Any final answer from the server is progress.
                progressed |= !matches!(
                    &outcome,
                    Err(Error::NotSent { .. } | Error::DeliveryUnknown { .. })
                );
                // Never started on a connection that ended (not a refusal, nothing sent
                // of it): kept for a new connection rather than reported.
                let unstarted = matches!(&outcome, Err(Error::NotSent { cause }) if !matches!(**cause, Error::Cancelled));
                if unstarted {
                    again.push(Tx {
                        job: tx.job,
                        envelope: tx.envelope.clone(),
                    });
                    return go_on(stop);
                }
                // Not started because the runner is stopping: not reported, so untouched.
                let cancelled = matches!(&outcome, Err(Error::NotSent { cause }) if matches!(**cause, Error::Cancelled));
                let mut list = if cancelled {
                    Vec::new()
                } else {
                    Delivery::from_result(&outcome, &tx.envelope)
                };
                let slot = &mut open[tx.job - first];
                // (A transaction that delivered found the session in step.)
                if list.iter().any(|d| d.status == DeliveryStatus::Delivered) {
                    let (retry, keep): (Vec<Delivery>, Vec<Delivery>) =
                        list.into_iter().partition(too_many_recipients);
                    list = keep;
                    if !retry.is_empty() {
                        let to: Vec<&str> = retry.iter().map(|d| d.address.as_str()).collect();
                        match envelope(jobs[tx.job].entry, &to, jobs[tx.job].message) {
                            Ok(envelope) => {
                                again.push(Tx {
                                    job: tx.job,
                                    envelope,
                                });
                                slot.1 += 1;
                            }
                            Err(_) => list.extend(retry),
                        }
                    }
                }
                for d in &mut list {
                    d.host = Some(host.to_string());
                }
                slot.0.extend(list);
                slot.1 -= 1;
                if slot.1 == 0 && !slot.0.is_empty() {
                    out.send(tx.job, std::mem::take(&mut slot.0));
                }
                go_on(stop)
            };
            let pairs: Vec<(&Envelope, &[u8])> = txs
                .iter()
                .map(|t| (&t.envelope, jobs[t.job].message))
                .collect();
            let dead_on_arrival = client.send_many_each(pairs, &mut finish).err();
            if let Some(e) = &dead_on_arrival {
                // The connection was unusable before anything was sent (closed by the
                // server after the last round): each goes again on a new connection.
                for k in 0..txs.len() {
                    let _ = finish(
                        k,
                        Err(Error::NotSent {
                            cause: Box::new(e.clone()),
                        }),
                    );
                }
            }
            txs = again;
            if stop.load(Ordering::SeqCst) || txs.is_empty() {
                break;
            }
            if client.is_closed() {
                // A new connection only when this one delivered something: a server that
                // takes nothing is not asked again in this pass.
                let forgive = dead_on_arrival.is_some() && !idle_close_forgiven;
                idle_close_forgiven |= forgive;
                if !progressed && !forgive {
                    break;
                }
                match Client::connect(config.clone()) {
                    Ok(c) => *client = c,
                    Err(_) => break,
                }
            }
        }
        for tx in txs {
            // Left over when the connection broke between splits: not attempted.
            let slot = &mut open[tx.job - first];
            slot.0.extend(tx.envelope.to().map(|a| {
                Delivery::new(
                    a,
                    DeliveryStatus::NotAttempted,
                    None,
                    "the connection ended before it",
                )
            }));
            slot.1 -= 1;
            if slot.1 == 0 {
                out.send(tx.job, std::mem::take(&mut slot.0));
            }
        }
        !client.is_closed()
    }
}

/// Stopping: what is on the wire finishes, nothing more starts.
fn go_on(stop: &AtomicBool) -> std::ops::ControlFlow<()> {
    if stop.load(Ordering::SeqCst) {
        std::ops::ControlFlow::Break(())
    } else {
        std::ops::ControlFlow::Continue(())
    }
}

/// A 452 (or 4.5.3) to RCPT: too many recipients for this transaction, not a refusal. A
/// RCPT refusal is its reply alone (no reason); a 452 after the data (an LMTP mailbox over
/// quota) or to DATA is about the message, and waits its turn like any other deferral.
fn too_many_recipients(d: &Delivery) -> bool {
    d.status == DeliveryStatus::Deferred
        && d.reason.is_empty()
        && d.reply
            .as_ref()
            .is_some_and(|r| r.code == 452 || r.enhanced.is_some_and(|e| e.to_string() == "4.5.3"))
}

/// A round of jobs the relay could not take at all.
/// Sleeps `wait`, waking early when the runner stops.
fn pause(wait: std::time::Duration, stop: &AtomicBool) {
    let until = std::time::Instant::now() + wait;
    while !stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(std::time::Duration::from_millis(50)));
    }
}

/// Every round no one has taken yet, reported not attempted: they stay queued as they were.
fn not_attempted(jobs: &[Job<'_>], shared: &Shared<'_>, round: usize, why: &str, out: &Outbox<'_>) {
    loop {
        let start = shared.next.fetch_add(round, Ordering::SeqCst);
        if start >= jobs.len() {
            return;
        }
        not_attempted_round(jobs, start..(start + round).min(jobs.len()), why, out);
    }
}

/// One round reported not attempted: it stays queued as it was.
fn not_attempted_round(
    jobs: &[Job<'_>],
    range: std::ops::Range<usize>,
    why: &str,
    out: &Outbox<'_>,
) {
    for (i, job) in jobs.iter().enumerate().take(range.end).skip(range.start) {
        out.send(i, all(job, DeliveryStatus::NotAttempted, why));
    }
}

fn failed_round(jobs: &[Job<'_>], range: std::ops::Range<usize>, e: &Error, out: &Outbox<'_>) {
    for i in range {
        let list = jobs[i]
            .recipients
            .iter()
            .map(|a| {
                Delivery::new(
                    *a,
                    postline::delivery::status_of(e),
                    e.reply(),
                    e.to_string(),
                )
            })
            .collect();
        out.send(i, list);
    }
}

/// A job's transactions (at most `max` recipients each), and the results of recipients that
/// cannot be sent to at all (an invalid address fails alone).
fn transactions(i: usize, job: &Job<'_>, max: usize) -> (Vec<Tx>, Vec<Delivery>) {
    let mut good = Vec::with_capacity(job.recipients.len());
    let mut bad = Vec::new();
    for a in &job.recipients {
        match postline::proto::Address::new(*a) {
            Ok(_) => good.push(*a),
            Err(e) => bad.push(Delivery::new(
                *a,
                DeliveryStatus::Failed,
                None,
                format!("invalid address: {e}"),
            )),
        }
    }
    let mut txs = Vec::new();
    for part in good.chunks(max) {
        match envelope(job.entry, part, job.message) {
            Ok(envelope) => txs.push(Tx { job: i, envelope }),
            // The sender itself cannot be sent: a fault of the message, for everyone.
            Err(e) => bad.extend(part.iter().map(|a| {
                Delivery::new(*a, postline::delivery::status_of(&e), None, e.to_string())
            })),
        }
    }
    (txs, bad)
}

fn envelope(entry: &crate::entry::Entry, to: &[&str], message: &[u8]) -> Result<Envelope, Error> {
    let envelope = Envelope::new(&entry.from, to.iter().copied())?.size(message.len() as u64);
    Ok(crate::entry::Dsn::apply_to(entry.dsn.as_ref(), envelope))
}

/// Direct delivery, one message after another (each one's domains in parallel); each
/// domain's results are recorded as soon as that domain is done.
fn direct(mailer: &postline::Mailer, jobs: &[Job<'_>], record: &Record<'_>) {
    for (i, job) in jobs.iter().enumerate() {
        let mut stop = false;
        let list = match envelope(job.entry, &job.recipients, job.message) {
            Ok(env) => {
                let mut each = |part: &[Delivery]| {
                    stop |= record(vec![(i, part.to_vec())]) == Flow::Stop;
                };
                match mailer.send_blocking_each(&env, job.message, &mut each) {
                    // Every part was recorded as it came.
                    Ok(_) => Vec::new(),
                    Err(e) => Delivery::from_result(&Err(e), &env),
                }
            }
            Err(e) => all(job, postline::delivery::status_of(&e), &e.to_string()),
        };
        if !list.is_empty() && record(vec![(i, list)]) == Flow::Stop {
            return;
        }
        if stop {
            return;
        }
    }
}
