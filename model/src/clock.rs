//! Owl's time source: the system clock in production, a clock that only moves when told in tests
//! (token expiry, lockout windows, alert cooldowns and windows) so no test sleeps. The query API
//! and the alert engine share it: one manual clock moves both.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

/// Where "now" comes from.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands at `start_ms` (epoch milliseconds) until [`Clock::advance`] moves it.
    pub fn manual(start_ms: i64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(start_ms))),
        }
    }

    /// Moves a manual clock forward; the system clock cannot be moved and ignores the call.
    pub fn advance(&self, by: Duration) {
        if let Some(ms) = &self.manual {
            let by_ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
            ms.fetch_add(by_ms, Ordering::SeqCst);
        }
    }

    /// Now, in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(ms) => ms.load(Ordering::SeqCst),
            None => Utc::now().timestamp_millis(),
        }
    }

    /// Now, in epoch seconds.
    pub fn now_s(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Now, as a UTC time.
    pub fn now(&self) -> DateTime<Utc> {
        millis_to_utc(self.now_ms())
    }
}

/// Epoch milliseconds as a UTC time (the epoch itself for values chrono cannot represent).
pub fn millis_to_utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Epoch milliseconds as RFC 3339 with milliseconds and a `Z` (the log API's time format).
pub fn format_millis(ms: i64) -> String {
    crate::format_timestamp(&millis_to_utc(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = Clock::manual(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now_ms(), 3_000);
        assert_eq!(clock.now_s(), 3);
        let copy = clock.clone();
        copy.advance(Duration::from_millis(5));
        assert_eq!(clock.now_ms(), 3_005, "clones share one clock");
    }

    #[test]
    fn format_is_rfc3339_millis_utc() {
        assert_eq!(format_millis(1_733_567_400_123), "2024-12-07T10:30:00.123Z");
    }
}
