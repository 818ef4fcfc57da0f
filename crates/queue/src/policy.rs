//! The queue's rules: retry schedule, lifetime, bounces, what to do with mail in doubt, and
//! the bounds that keep one bad message or a full disk from hurting the rest.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the runner does with a recipient whose delivery is in doubt (the end of data was
/// sent and no final reply came).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InDoubt {
    /// Retry on the normal schedule: a possible duplicate rather than a possible loss, as
    /// RFC 5321 section 6.1 asks (and as Postfix does).
    #[default]
    Retry,
    /// Hold the recipient until someone releases it: never a duplicate, at the risk of
    /// never delivering.
    Hold,
}

/// Retry schedule, lifetime, bounces and bounds.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Wait after the first failure (default 1 min); doubles after each attempt.
    pub first_retry: Duration,
    /// Longest wait between attempts (default 1 h).
    pub max_retry: Duration,
    /// After this long in the queue a message fails (default 5 days, as MTAs use).
    pub max_lifetime: Duration,
    /// Queue a bounce report to the sender on permanent failure (default on).
    pub bounce: bool,
    /// The name bounce reports say they come from.
    pub reporting_host: String,
    /// Mail in doubt: retried (default) or held.
    pub in_doubt: InDoubt,
    /// No delivery starts while the spool's file system has less free space than this
    /// (default 16 MiB): results that cannot be recorded would be sent again.
    pub min_free_bytes: u64,
    /// Messages taken in hand (locked and read into memory) at once per route (default 256).
    pub batch_messages: usize,
    /// Octets of messages taken in hand at once (default 64 MiB; a larger message goes
    /// alone).
    pub batch_bytes: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            first_retry: Duration::from_secs(60),
            max_retry: Duration::from_secs(3600),
            max_lifetime: Duration::from_secs(5 * 24 * 3600),
            bounce: true,
            reporting_host: "localhost".into(),
            in_doubt: InDoubt::Retry,
            min_free_bytes: 16 << 20,
            batch_messages: 256,
            batch_bytes: 64 << 20,
        }
    }
}

impl Policy {
    /// The wait before attempt `attempts + 1`: exponential, capped, with ±10 % jitter so a
    /// queue of messages does not retry in lockstep.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let base =
            self.first_retry.as_secs_f64() * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
        let base = base.min(self.max_retry.as_secs_f64());
        let jitter = 0.9 + 0.2 * (random() as f64 / u64::MAX as f64);
        Duration::try_from_secs_f64(base * jitter).unwrap_or(self.max_retry)
    }
}

/// A random number for jitter and ids (no cryptographic need).
pub(crate) fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Unix seconds.
pub(crate) fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = Policy::default();
        let secs = |n| p.backoff(n).as_secs_f64();
        assert!((54.0..=66.0).contains(&secs(1)));
        assert!((108.0..=132.0).contains(&secs(2)));
        assert!((432.0..=528.0).contains(&secs(4)));
        assert!((3240.0..=3960.0).contains(&secs(20)));
        let absurd = Policy {
            first_retry: Duration::MAX,
            max_retry: Duration::MAX,
            ..Policy::default()
        };
        assert!(
            absurd.backoff(3) > Duration::from_secs(1 << 40),
            "no panic, no wrap"
        );
    }
}
