//! The clock a device gives the driver: what time it is, and a way to wait.

use core::future::Future;

/// Time for the driver's deadlines, from the device: a hardware timer, embassy-time, or a
/// test's virtual clock. Every wait for the server is bounded by it.
pub trait Clock {
    /// Milliseconds since any fixed point; never goes back.
    fn now_ms(&self) -> u64;

    /// Completes at `deadline_ms` (as [`Clock::now_ms`] counts), or at once when that has
    /// passed. The driver races it against each read and write.
    fn wait_until(&self, deadline_ms: u64) -> impl Future<Output = ()>;

    /// Seconds since 1970-01-01 UTC, for the `Date:` header of composed mail, when the device
    /// knows the time (from NTP, an RTC), and for its `Message-ID:`. `None` (the default)
    /// leaves both out; the submission server adds them (RFC 6409 8.3). A Message-ID from the
    /// time since boot could repeat after a restart, and a receiver that drops repeats would
    /// lose the mail.
    fn unix_time(&self) -> Option<i64> {
        None
    }
}
