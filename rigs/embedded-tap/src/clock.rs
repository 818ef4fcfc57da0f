//! The rig's monotonic millisecond clock: embassy-time, as embassy-net itself counts.

use embassy_time::{Instant, Timer};

/// Milliseconds from embassy-time's driver (std's monotonic clock here), and a wait for one of
/// them. The same clock drives the stack's TCP timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock;

impl Clock {
    /// Milliseconds since the time driver started; never goes back.
    pub fn now_ms(&self) -> u64 {
        Instant::now().as_millis()
    }

    /// Completes at `deadline_ms` as [`Clock::now_ms`] counts, or at once when it has passed.
    pub async fn wait_until(&self, deadline_ms: u64) {
        Timer::at(Instant::from_millis(deadline_ms)).await
    }
}
