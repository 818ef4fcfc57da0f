//! The queue runner: takes due messages in hand, groups them by route, hands each group to a
//! [`Deliver`] implementation, and records every result as soon as it arrives.
//!
//! Recording is a group commit: each call of the deliverer's `record` writes the results it
//! is given (entries removed or rewritten) and fsyncs the spool directory once for them,
//! before it returns. [`crate::Smtp`] hands the recorder whatever replies came in while it
//! was writing the previous group, without holding up the wire (and makes its connections
//! wait when more than a bounded number of results are waiting). A crash can therefore send
//! again only what was on the wire or waiting to be written, never lose a message.
//!
//! When a result cannot be recorded (the disk is full, the spool unwritable), the runner
//! stops delivering: it keeps the result in memory with the message still locked, retries
//! the record before any later delivery, and reports the problem. It also refuses to start
//! delivering while the spool has less free space than [`Policy::min_free_bytes`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use postline::delivery::{Delivery, DeliveryStatus};

use crate::bounce;
use crate::entry::{Entry, RecipientStatus};
use crate::policy::{secs, InDoubt, Policy};
use crate::route::Route;
use crate::spool::{LoadError, Spool};
use crate::store::{is_lease_lost, Store};

/// One message handed to a deliverer.
#[derive(Debug)]
pub struct Job<'a> {
    /// Its queue entry.
    pub entry: &'a Entry,
    /// Its bytes.
    pub message: &'a [u8],
    /// The recipients to try: the pending ones, in entry order.
    pub recipients: Vec<&'a str>,
}

/// What the runner answers a deliverer after recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Start nothing more: the runner is stopping, or could not record what it was given.
    /// Finish what is on the wire, report it, and return.
    Stop,
}

/// The runner's side of a delivery: `record(results)` takes reported jobs (by their index in
/// the slice given to [`Deliver::deliver`]), each with [`Delivery`] values for some or all
/// of its recipients. A job may be reported in parts (one per recipient domain, say); each
/// recipient counts once. Call it as soon as results are known, a group at a time: each
/// call writes its group durably before it returns.
pub type Record<'r> = dyn Fn(Vec<(usize, Vec<Delivery>)>) -> Flow + Sync + 'r;

/// Sends queued messages. An implementation reports each recipient of a job at most once
/// (later reports of it are ignored); recipients it never reports stay queued as they were
/// (not attempted).
pub trait Deliver {
    /// Delivers `jobs`, which all travel by `route`.
    fn deliver(&mut self, route: &Route, jobs: &[Job<'_>], record: &Record<'_>);

    /// The pass is over: close what was kept open between its groups.
    fn finish(&mut self) {}
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Messages handed to the deliverer.
    pub attempted: usize,
    /// Messages that left the queue fully delivered.
    pub completed: usize,
    /// Messages still queued after this pass.
    pub deferred: usize,
    /// Messages that left the queue with failed recipients (recorded in `failed/`).
    pub failed: usize,
    /// Bounce reports queued.
    pub bounces: usize,
    /// Messages skipped because another runner holds them.
    pub busy: usize,
    /// Messages whose results are known but could not be written yet (kept in memory,
    /// locked, and written before anything else is delivered).
    pub unrecorded: usize,
    /// Messages whose results were not recorded because they were no longer this runner's
    /// (a shared store's lease ran out while it worked; another node has them now).
    pub lost: usize,
    /// True when the pass stopped delivering because it could not record or the disk is
    /// (nearly) full.
    pub blocked: bool,
    /// One line per problem (corrupt entries moved aside, unreadable ones skipped, write
    /// failures).
    pub problems: Vec<String>,
}

/// A message in hand: its lock and its entry as updated in memory.
struct Held<L> {
    entry: Entry,
    message: Vec<u8>,
    _lock: L,
    /// Results applied to `entry` but not yet written, so not yet told to the observer.
    untold: Vec<Delivery>,
}

/// Runs a queue (a [`Spool`] unless told otherwise) through a deliverer.
pub struct Runner<D, S: Store = Spool> {
    spool: S,
    policy: Policy,
    deliver: D,
    /// Results that could not be written yet.
    unrecorded: Vec<Held<S::Lock>>,
}

/// Called once per recipient result after it is durable: the queue id and the result.
pub type Observer<'o> = dyn FnMut(&str, &Delivery) + Send + 'o;

impl<D: Deliver, S: Store> Runner<D, S> {
    /// A runner over `spool` (any [`Store`]) with `policy`, sending through `deliver`.
    pub fn new(spool: S, policy: Policy, deliver: D) -> Self {
        Runner {
            spool,
            policy,
            deliver,
            unrecorded: Vec::new(),
        }
    }

    /// The store.
    pub fn spool(&self) -> &S {
        &self.spool
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Results known but not yet written (see [`RunReport::unrecorded`]): queue ids.
    pub fn unrecorded(&self) -> Vec<&str> {
        self.unrecorded
            .iter()
            .map(|h| h.entry.id.as_str())
            .collect()
    }

    /// One pass: every due message (every message, with `force`) is delivered to its
    /// pending recipients and its results recorded. `stop` is asked between groups and by
    /// every record: once it says yes, what is on the wire is finished and recorded, and
    /// the rest stays queued.
    pub fn pass(
        &mut self,
        now: SystemTime,
        force: bool,
        stop: &(dyn Fn() -> bool + Sync),
        observe: &mut Observer<'_>,
    ) -> RunReport {
        self.pass_over(now, force, None, stop, observe)
    }

    /// [`Runner::pass`] over these messages only, due or not.
    pub fn pass_only(
        &mut self,
        now: SystemTime,
        ids: &[String],
        stop: &(dyn Fn() -> bool + Sync),
        observe: &mut Observer<'_>,
    ) -> RunReport {
        self.pass_over(now, true, Some(ids), stop, observe)
    }

    fn pass_over(
        &mut self,
        now: SystemTime,
        force: bool,
        only: Option<&[String]>,
        stop: &(dyn Fn() -> bool + Sync),
        observe: &mut Observer<'_>,
    ) -> RunReport {
        let mut report = RunReport::default();
        if !self.write_unrecorded(now, &mut report, observe) {
            return report;
        }
        self.spool.sweep_orphans(Duration::from_secs(3600), now);
        let t = secs(now);
        let (ids, odd) = match self.spool.ids() {
            Ok(x) => x,
            Err(e) => {
                report
                    .problems
                    .push(format!("cannot read {}: {e}", self.spool.describe()));
                return report;
            }
        };
        report.problems.extend(odd);
        let ids: Vec<String> = match only {
            Some(only) => ids.into_iter().filter(|id| only.contains(id)).collect(),
            None => ids,
        };
        // Due entries (id and size), grouped by route in queue order.
        let mut groups: Vec<(Route, Vec<(String, u64)>)> = Vec::new();
        let mut index: HashMap<Route, usize> = HashMap::new();
        let loaded = self.spool.load_many(&ids);
        for (id, result) in ids.into_iter().zip(loaded) {
            let entry = match self.loaded(&id, result, &mut report) {
                Some(e) => e,
                None => continue,
            };
            if entry.pending().next().is_none() && !entry.is_finished() {
                report.deferred += 1; // held in doubt: nothing to do until released
                continue;
            }
            if !force && entry.next_attempt > t {
                report.deferred += 1;
                continue;
            }
            let slot = *index.entry(entry.route.clone()).or_insert_with(|| {
                groups.push((entry.route.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[slot].1.push((id, entry.size));
        }
        let mut remaining: usize = groups.iter().map(|(_, ids)| ids.len()).sum();
        'groups: for (route, ids) in groups {
            for chunk in chunks(&ids, self.policy.batch_messages, self.policy.batch_bytes) {
                if stop() || report.blocked {
                    break 'groups;
                }
                match self.spool.free_bytes() {
                    Ok(free) if free < self.policy.min_free_bytes => {
                        report.blocked = true;
                        report.problems.push(format!(
                            "not delivering: the spool's file system has {free} bytes free, \
                             below the minimum of {} (results could not be recorded)",
                            self.policy.min_free_bytes
                        ));
                        break 'groups;
                    }
                    _ => {}
                }
                remaining -= chunk.len();
                self.deliver_chunk(&route, &chunk, now, force, stop, observe, &mut report);
            }
        }
        self.deliver.finish();
        report.deferred += remaining;
        report.unrecorded = self.unrecorded.len();
        report
    }

    /// Loads an entry for a pass; corrupt ones go to `corrupt/` (under their lock), others
    /// that cannot be read now are reported and skipped.
    fn load(&self, id: &str, report: &mut RunReport) -> Option<Entry> {
        self.loaded(id, self.spool.load(id), report)
    }

    /// [`Runner::load`] of an entry already read.
    fn loaded(
        &self,
        id: &str,
        result: Result<Entry, LoadError>,
        report: &mut RunReport,
    ) -> Option<Entry> {
        match result {
            Ok(e) => Some(e),
            Err(LoadError::Gone) => None,
            Err(LoadError::Corrupt(why)) => {
                if let Ok(Some(_lock)) = self.spool.try_lock(id) {
                    if let Err(LoadError::Corrupt(_)) = self.spool.load(id) {
                        report
                            .problems
                            .push(format!("moved to {}: {why}", self.spool.quarantine_place()));
                        self.spool.quarantine(id);
                    }
                }
                None
            }
            Err(e) => {
                report.problems.push(format!("{id}: skipped: {e}"));
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver_chunk(
        &mut self,
        route: &Route,
        ids: &[String],
        now: SystemTime,
        force: bool,
        stop: &(dyn Fn() -> bool + Sync),
        observe: &mut Observer<'_>,
        report: &mut RunReport,
    ) {
        let t = secs(now);
        let mut held: Vec<Held<S::Lock>> = Vec::with_capacity(ids.len());
        for id in ids {
            let lock = match self.spool.try_lock(id) {
                Ok(Some(l)) => l,
                Ok(None) => {
                    report.busy += 1;
                    continue;
                }
                Err(e) => {
                    report.problems.push(format!("{id}: cannot lock: {e}"));
                    continue;
                }
            };
            // Reload under the lock: another runner may have sent it meanwhile.
            let Some(mut entry) = self.load(id, report) else {
                continue;
            };
            // Recipients in doubt (a node that held the message died, or an earlier policy
            // retried): under the hold policy they are held, never sent again unasked.
            if self.policy.in_doubt == InDoubt::Hold && hold_in_doubt(&mut entry, t) {
                if let Err(e) = self.spool.save(&entry) {
                    report
                        .problems
                        .push(format!("{id}: cannot hold its recipients in doubt: {e}"));
                    continue;
                }
            }
            if entry.pending().next().is_none() && !entry.is_finished() {
                report.deferred += 1; // all held: nothing to send until released
                continue;
            }
            if !force && entry.next_attempt > t {
                report.deferred += 1;
                continue;
            }
            let message = match self.spool.message(id) {
                Ok(m) => m,
                Err(e) => {
                    report
                        .problems
                        .push(format!("{id}: skipped: cannot read its message: {e}"));
                    continue;
                }
            };
            held.push(Held {
                entry,
                message,
                _lock: lock,
                untold: Vec::new(),
            });
        }
        // Entries left finished by an interrupted run: only their ending is left to do.
        let (finished, held): (Vec<_>, Vec<_>) =
            held.into_iter().partition(|h| h.entry.is_finished());
        if !finished.is_empty() {
            self.commit_held(finished, now, report, observe);
        }
        if held.is_empty() {
            return;
        }
        report.attempted += held.len();
        let jobs: Vec<Job<'_>> = held
            .iter()
            .map(|h| Job {
                entry: &h.entry,
                message: &h.message,
                recipients: h.entry.pending().map(|r| r.address.as_str()).collect(),
            })
            .collect();
        let state = Mutex::new(Commit {
            slots: held
                .iter()
                .map(|h| {
                    Some(Slot {
                        entry: h.entry.clone(),
                        left: h.entry.pending().map(|r| r.address.clone()).collect(),
                        counted: false,
                        reported: false,
                        unwritten: false,
                        untold: Vec::new(),
                    })
                })
                .collect(),
            report: std::mem::take(report),
            observe,
        });
        let stopping = AtomicBool::new(false);
        let (spool, policy, held_ref) = (&self.spool, &self.policy, &held);
        let record = |results: Vec<(usize, Vec<Delivery>)>| -> Flow {
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            let ok = state.record(spool, policy, held_ref, results, now);
            if !ok || stop() {
                stopping.store(true, Ordering::SeqCst);
            }
            if stopping.load(Ordering::SeqCst) {
                Flow::Stop
            } else {
                Flow::Continue
            }
        };
        self.deliver.deliver(route, &jobs, &record);
        drop(jobs);
        let state = state.into_inner().unwrap_or_else(|p| p.into_inner());
        *report = state.report;
        // Never reported, or reported in part (each part written): still queued, unlocked
        // when `held` drops. Those whose last write failed stay in hand, locked.
        let mut held: Vec<Option<Held<S::Lock>>> = held.into_iter().map(Some).collect();
        for (i, slot) in state.slots.into_iter().enumerate() {
            let Some(slot) = slot else { continue };
            if slot.unwritten {
                if let Some(mut h) = held[i].take() {
                    h.entry = slot.entry;
                    h.untold = slot.untold;
                    self.unrecorded.push(h);
                }
            } else {
                report.deferred += 1;
            }
        }
        if !self.unrecorded.is_empty() {
            report.blocked = true;
        }
    }

    /// Writes entries already updated in memory; those that cannot be written stay in hand
    /// (locked) for later.
    fn commit_held(
        &mut self,
        group: Vec<Held<S::Lock>>,
        now: SystemTime,
        report: &mut RunReport,
        observe: &mut Observer<'_>,
    ) {
        let items: Vec<(&Entry, &[u8])> = group
            .iter()
            .map(|h| (&h.entry, h.message.as_slice()))
            .collect();
        let written = commit(&self.spool, &self.policy, &items, now, report);
        drop(items);
        for (h, result) in group.into_iter().zip(written) {
            match result {
                Ok(ending) => {
                    // Results known since an earlier write failed: told now they are on disk.
                    for d in &h.untold {
                        observe(&h.entry.id, &as_recorded(d, &h.entry));
                    }
                    report.count(ending)
                }
                // Another node holds it now: what was learnt here is not this runner's to
                // record (the problem line says so), and retrying would never succeed.
                Err(Unwritten::Lost) => report.lost += 1,
                Err(Unwritten::Retry) => {
                    report.blocked = true;
                    self.unrecorded.push(h);
                }
            }
        }
    }

    /// Retries writing what could not be written before. False while some still cannot.
    fn write_unrecorded(
        &mut self,
        now: SystemTime,
        report: &mut RunReport,
        observe: &mut Observer<'_>,
    ) -> bool {
        if self.unrecorded.is_empty() {
            return true;
        }
        let pending = std::mem::take(&mut self.unrecorded);
        self.commit_held(pending, now, report, observe);
        report.unrecorded = self.unrecorded.len();
        if self.unrecorded.is_empty() {
            return true;
        }
        report.blocked = true;
        report.problems.push(format!(
            "not delivering: {} result(s) still cannot be recorded",
            self.unrecorded.len()
        ));
        false
    }

    /// Passes until `stop`: after each, waits until the next message is due (at least 1 s,
    /// at most `max_sleep`; 30 s while results cannot be recorded). Returns the last
    /// pass's report.
    pub fn daemon(
        &mut self,
        stop: &AtomicBool,
        max_sleep: Duration,
        observe: &mut Observer<'_>,
        on_pass: &mut dyn FnMut(&RunReport),
    ) -> RunReport {
        let stopping = || stop.load(Ordering::SeqCst);
        let mut last = RunReport::default();
        while !stopping() {
            let report = self.pass(SystemTime::now(), false, &stopping, observe);
            on_pass(&report);
            let wait = if report.blocked {
                Duration::from_secs(30)
            } else {
                self.next_due()
                    .map_or(max_sleep, |at| {
                        Duration::from_secs(at.saturating_sub(secs(SystemTime::now())))
                    })
                    .clamp(
                        Duration::from_secs(1),
                        max_sleep.max(Duration::from_secs(1)),
                    )
            };
            last = report;
            let until = Instant::now() + wait;
            while !stopping() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // What is known must be written before leaving.
        if !self.unrecorded.is_empty() {
            self.write_unrecorded(SystemTime::now(), &mut last, observe);
            last.unrecorded = self.unrecorded.len();
        }
        last
    }

    /// When the earliest queued message with pending recipients is due (Unix seconds).
    pub fn next_due(&self) -> Option<u64> {
        let (ids, _) = self.spool.ids().ok()?;
        ids.iter()
            .filter_map(|id| self.spool.load(id).ok())
            .filter(|e| e.pending().next().is_some())
            .map(|e| e.next_attempt)
            .min()
    }
}

impl<D, S: Store> Drop for Runner<D, S> {
    /// Results known and never written: their messages are let go so that whoever takes
    /// them next knows they may have been sent (a lease is left to run out).
    fn drop(&mut self) {
        for held in self.unrecorded.drain(..) {
            self.spool.abandon(held._lock);
        }
    }
}

/// Groups of ids of at most `count` messages and `bytes` octets (a message larger than that
/// goes alone), so a pass holds a bounded amount of mail in memory.
fn chunks(ids: &[(String, u64)], count: usize, bytes: u64) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut size = 0u64;
    for (id, len) in ids {
        let start_new = match out.last() {
            None => true,
            Some(c) => c.len() >= count.max(1) || size.saturating_add(*len) > bytes,
        };
        if start_new {
            out.push(Vec::new());
            size = 0;
        }
        size = size.saturating_add(*len);
        if let Some(c) = out.last_mut() {
            c.push(id.clone());
        }
    }
    out
}

/// One job's entry as its results come in.
struct Slot {
    entry: Entry,
    /// Recipients not reported yet.
    left: Vec<String>,
    /// This pass's attempt is counted in `entry.attempts`.
    counted: bool,
    /// Some result was applied.
    reported: bool,
    /// The last write of this entry failed: it goes to the runner's unrecorded results
    /// unless a later part's write succeeds.
    unwritten: bool,
    /// Results applied but not written yet (told once they are).
    untold: Vec<Delivery>,
}

/// The record side of one deliverer call.
struct Commit<'o, 'p> {
    /// Each job's entry, updated as its results come in (a job may be reported in parts,
    /// such as one part per recipient domain); cleared once fully reported and written.
    slots: Vec<Option<Slot>>,
    report: RunReport,
    observe: &'o mut Observer<'p>,
}

impl Commit<'_, '_> {
    /// Applies and writes a group of results; false when some could not be written.
    fn record<S: Store>(
        &mut self,
        spool: &S,
        policy: &Policy,
        held: &[Held<S::Lock>],
        results: Vec<(usize, Vec<Delivery>)>,
        now: SystemTime,
    ) -> bool {
        let t = secs(now);
        // Parts of one job given in one call are one part.
        let mut parts: Vec<(usize, Vec<Delivery>)> = Vec::with_capacity(results.len());
        for (i, list) in results {
            match parts.iter_mut().find(|(j, _)| *j == i) {
                Some((_, l)) => l.extend(list),
                None => parts.push((i, list)),
            }
        }
        let mut group: Vec<(usize, Vec<Delivery>)> = Vec::with_capacity(parts.len());
        for (i, mut deliveries) in parts {
            let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else {
                continue; // out of range, or done: the first report stands
            };
            // Each recipient once: a repeated or unknown address is ignored.
            deliveries.retain(|d| match slot.left.iter().position(|a| *a == d.address) {
                Some(p) => {
                    slot.left.swap_remove(p);
                    true
                }
                None => false,
            });
            if deliveries.is_empty() {
                continue;
            }
            let attempted = apply(&mut slot.entry, &deliveries, policy, t, !slot.counted);
            slot.counted |= attempted;
            slot.reported = true;
            // Expiry only once every part is in: another domain may still deliver. Earlier
            // parts' recipients it fails are told again, as recorded.
            if slot.left.is_empty() {
                let before: Vec<bool> = slot
                    .entry
                    .recipients
                    .iter()
                    .map(|r| matches!(r.status, RecipientStatus::Pending { .. }))
                    .collect();
                expire(&mut slot.entry, policy, t);
                for (r, was_pending) in slot.entry.recipients.iter().zip(before) {
                    let told = deliveries.iter().any(|d| d.address == r.address);
                    if let (true, false, RecipientStatus::Failed { reason, .. }) =
                        (was_pending, told, &r.status)
                    {
                        deliveries.push(Delivery::new(
                            r.address.clone(),
                            DeliveryStatus::Failed,
                            None,
                            reason.clone(),
                        ));
                    }
                }
            }
            group.push((i, deliveries));
        }
        let items: Vec<(&Entry, &[u8])> = group
            .iter()
            .filter_map(|(i, _)| {
                let slot = self.slots[*i].as_ref()?;
                Some((&slot.entry, held[*i].message.as_slice()))
            })
            .collect();
        let written = commit(spool, policy, &items, now, &mut self.report);
        drop(items);
        let mut ok = true;
        for ((i, deliveries), result) in group.into_iter().zip(written) {
            let Some(slot) = self.slots[i].as_mut() else {
                continue;
            };
            let ending = match result {
                Ok(ending) => ending,
                Err(Unwritten::Lost) => {
                    self.report.lost += 1;
                    self.slots[i] = None;
                    continue;
                }
                Err(Unwritten::Retry) => {
                    slot.unwritten = true;
                    slot.untold.extend(deliveries);
                    ok = false;
                    continue;
                }
            };
            slot.unwritten = false;
            for d in slot.untold.drain(..).chain(deliveries) {
                (self.observe)(&slot.entry.id, &as_recorded(&d, &slot.entry));
            }
            if slot.left.is_empty() {
                self.report.count(ending);
                self.slots[i] = None;
            }
        }
        ok
    }
}

/// `d` as the entry recorded it: expiry turns a deferral into a failure, the in-doubt
/// policy may hold it.
fn as_recorded(d: &Delivery, entry: &Entry) -> Delivery {
    let recorded = entry
        .recipients
        .iter()
        .find(|r| r.address == d.address)
        .map(|r| &r.status);
    match recorded {
        Some(RecipientStatus::Failed { reason, .. }) if d.status != DeliveryStatus::Failed => {
            let mut shown = Delivery::new(
                d.address.clone(),
                DeliveryStatus::Failed,
                d.reply.as_ref(),
                reason.clone(),
            );
            shown.host = d.host.clone();
            shown
        }
        _ => d.clone(),
    }
}

impl RunReport {
    fn count(&mut self, ending: Ending) {
        match ending {
            Ending::Kept => self.deferred += 1,
            Ending::Completed => self.completed += 1,
            Ending::Failed => self.failed += 1,
        }
    }
}

/// Applies (part of) one attempt's results to an entry (in memory); counts the attempt when
/// `count` and something was attempted. Returns whether something was. Nothing attempted
/// (the connection ended before these messages) costs no attempt but waits
/// [`Policy::first_retry`], so a server that keeps dropping the connection is not hammered.
fn apply(entry: &mut Entry, deliveries: &[Delivery], policy: &Policy, t: u64, count: bool) -> bool {
    let mut attempted = false;
    let mut last_error = None;
    for d in deliveries {
        let Some(r) = entry.recipients.iter_mut().find(|r| {
            r.address == d.address && matches!(r.status, RecipientStatus::Pending { .. })
        }) else {
            continue;
        };
        let was_in_doubt = matches!(r.status, RecipientStatus::Pending { in_doubt: true, .. });
        let detail = d.detail();
        attempted |= d.status != DeliveryStatus::NotAttempted;
        r.status = match d.status {
            DeliveryStatus::Delivered => RecipientStatus::Delivered {
                at: t,
                reply: detail,
            },
            DeliveryStatus::Failed => RecipientStatus::Failed {
                at: t,
                reason: detail,
            },
            DeliveryStatus::InDoubt if policy.in_doubt == InDoubt::Hold => RecipientStatus::Held {
                at: t,
                reason: detail,
            },
            DeliveryStatus::InDoubt => {
                last_error = Some(detail.clone());
                RecipientStatus::Pending {
                    last_error: Some(detail),
                    in_doubt: true,
                }
            }
            DeliveryStatus::Deferred | DeliveryStatus::NotAttempted => {
                last_error = Some(detail.clone());
                RecipientStatus::Pending {
                    last_error: Some(detail),
                    // A possible earlier delivery stays possible.
                    in_doubt: was_in_doubt,
                }
            }
        };
    }
    if last_error.is_some() {
        entry.last_error = last_error;
    }
    if !attempted {
        // Never earlier than an attempted part of this pass asked for.
        let soon = t.saturating_add(policy.first_retry.as_secs().max(1));
        entry.next_attempt = entry.next_attempt.max(soon);
        return false;
    }
    if count {
        entry.attempts = entry.attempts.saturating_add(1);
    }
    entry.next_attempt = t.saturating_add(policy.backoff(entry.attempts).as_secs().max(1));
    true
}

/// Turns pending recipients marked in doubt into held ones; whether any was.
fn hold_in_doubt(entry: &mut Entry, t: u64) -> bool {
    let mut any = false;
    for r in entry.recipients.iter_mut() {
        if let RecipientStatus::Pending {
            in_doubt: true,
            last_error,
        } = &r.status
        {
            let reason = last_error
                .clone()
                .unwrap_or_else(|| "an earlier delivery may have reached the server".into());
            r.status = RecipientStatus::Held { at: t, reason };
            any = true;
        }
    }
    any
}

/// Past its lifetime, what is still pending fails.
fn expire(entry: &mut Entry, policy: &Policy, t: u64) {
    if t.saturating_sub(entry.created) < policy.max_lifetime.as_secs() {
        return;
    }
    for r in entry.recipients.iter_mut() {
        if let RecipientStatus::Pending { last_error, .. } = &r.status {
            let reason = format!(
                "gave up after {} attempts over {} hours{}",
                entry.attempts,
                policy.max_lifetime.as_secs() / 3600,
                last_error
                    .as_ref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            );
            r.status = RecipientStatus::Failed { at: t, reason };
        }
    }
}

/// Writes a group: finished entries end (bounce and `failed/` record first when some
/// recipient failed), the others are rewritten; then one directory fsync makes the group
/// durable. Returns, for each, how it ended or that it could not be written.
fn commit<S: Store>(
    spool: &S,
    policy: &Policy,
    group: &[(&Entry, &[u8])],
    now: SystemTime,
    report: &mut RunReport,
) -> Vec<Result<Ending, Unwritten>> {
    let mut out = Vec::with_capacity(group.len());
    for (entry, message) in group {
        let result = if entry.is_finished() {
            finish(spool, policy, entry, message, now, report)
        } else {
            spool.save_unsynced(entry).map(|()| Ending::Kept)
        };
        out.push(result.map_err(|e| {
            if is_lease_lost(&e) {
                report
                    .problems
                    .push(format!("{e}; its results here were not recorded"));
                Unwritten::Lost
            } else {
                report
                    .problems
                    .push(format!("{}: cannot record its results: {e}", entry.id));
                Unwritten::Retry
            }
        }));
    }
    if let Err(e) = spool.sync() {
        report
            .problems
            .push(format!("cannot sync {}: {e}", spool.describe()));
        return out
            .into_iter()
            .map(|r| match r {
                Err(Unwritten::Lost) => Err(Unwritten::Lost),
                _ => Err(Unwritten::Retry),
            })
            .collect();
    }
    out
}

/// Why a result was not written.
enum Unwritten {
    /// The store failed (a full disk, a lost connection): kept in hand and tried again.
    Retry,
    /// The message is no longer this runner's (its lease ran out): let go.
    Lost,
}

enum Ending {
    Kept,
    Completed,
    Failed,
}

/// Ends a finished entry: with failures, the bounce (once: its id is derived from the
/// entry's) and the `failed/` record are durable before the entry goes.
fn finish<S: Store>(
    spool: &S,
    policy: &Policy,
    entry: &Entry,
    message: &[u8],
    now: SystemTime,
    report: &mut RunReport,
) -> std::io::Result<Ending> {
    // Still this runner's to end: a bounce cannot be taken back.
    spool.confirm(&entry.id)?;
    let any_failed = entry.failed().next().is_some();
    if any_failed {
        // A sender who gave NOTIFY without FAILURE (NEVER, or SUCCESS/DELAY only) asked
        // not to hear of failures (RFC 3461 4.1): no bounce, the failed/ record stays.
        let wanted = entry.dsn.as_ref().is_none_or(|d| d.wants_failure_report());
        if policy.bounce && wanted && !entry.is_bounce && !entry.from.is_empty() {
            let bounce_id = bounce_id(&entry.id);
            if !spool.contains(&bounce_id) {
                let text = bounce::report(entry, message, &policy.reporting_host, now);
                let mut b = Entry::fresh(
                    "",
                    std::slice::from_ref(&entry.from),
                    &entry.route,
                    &text,
                    now,
                );
                b.id = bounce_id;
                b.is_bounce = true;
                spool.enqueue_entry(b, &text)?;
                report.bounces += 1;
            }
        }
        spool.record_failed(entry)?;
    }
    match spool.remove_unsynced(&entry.id) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(if any_failed {
        Ending::Failed
    } else {
        Ending::Completed
    })
}

/// The id of an entry's bounce: derived from it, so a retried ending queues it once; within
/// the id length limit whatever the entry's id.
fn bounce_id(id: &str) -> String {
    format!("{}-b", &id[..id.len().min(62)])
}
