//! What the embedded driver's tests over tokio share: a clock and a runtime.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postline_embedded::Clock;

/// Tokio's clock, with the wall clock for `Date:`.
pub struct TokioClock(pub tokio::time::Instant);

impl TokioClock {
    pub fn now() -> TokioClock {
        TokioClock(tokio::time::Instant::now())
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
    fn wait_until(&self, deadline_ms: u64) -> impl Future<Output = ()> {
        tokio::time::sleep_until(self.0 + Duration::from_millis(deadline_ms))
    }
    fn unix_time(&self) -> Option<i64> {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs() as i64)
    }
}

/// `f` on a current-thread runtime with time and I/O.
pub fn run<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
