//! Time as a parameter: the server asks a `Clock` for "now", so tests can move time
//! forward instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix seconds, UTC: the unit of every stored time.
pub type UnixTime = i64;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time in Unix seconds.
    fn now(&self) -> UnixTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}

/// A clock that stands still until told to move; shared between a test and the server.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: UnixTime) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(start)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

/// The latest time RFC 3339 can write: the last second of year 9999.
pub const MAX_TIME: UnixTime = 253_402_300_799;

/// Formats Unix seconds as an RFC 3339 UTC string, e.g. `2026-11-30T10:00:00Z`. Times
/// outside years 1970–9999 are clamped to that range.
pub fn rfc3339(t: UnixTime) -> String {
    Rfc3339(t).to_string()
}

/// A time that displays and serializes as [`rfc3339`] does, without building a string
/// first: answers carry several times each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub UnixTime);

impl Rfc3339 {
    /// The 20 bytes of `YYYY-MM-DDTHH:MM:SSZ`, written directly: a general-purpose
    /// formatter took a noticeable share of an authenticated request's time.
    fn bytes(self) -> [u8; 20] {
        let t = self.0.clamp(0, MAX_TIME);
        let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        let mut out = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, value: i64, width: usize| {
            let mut v = value;
            for i in (at..at + width).rev() {
                out[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, year, 4);
        put(5, month, 2);
        put(8, day, 2);
        put(11, secs / 3600, 2);
        put(14, secs / 60 % 60, 2);
        put(17, secs % 60, 2);
        out
    }
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`), for days from 0 on.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.bytes();
        f.write_str(std::str::from_utf8(&bytes).expect("digits and separators are ASCII"))
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = self.bytes();
        serializer
            .serialize_str(std::str::from_utf8(&bytes).expect("digits and separators are ASCII"))
    }
}

/// Parses an RFC 3339 UTC time into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<UnixTime> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// A duration in whole seconds, as stored times count them.
pub fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_032_800), "2026-11-30T10:00:00Z");
        assert_eq!(parse_rfc3339("2026-11-30T10:00:00Z"), Some(1_796_032_800));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(
            serde_json::to_string(&Rfc3339(1_796_032_800)).unwrap(),
            "\"2026-11-30T10:00:00Z\""
        );
        assert_eq!(Rfc3339(-5).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn rfc3339_matches_a_reference_formatter_across_the_range() {
        let reference = |t: UnixTime| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t as u64))
                .to_string()
        };
        // Leap days, century years (1900 is not in range; 2000 and 2100 are), year ends,
        // and a spread of times of day across the whole range.
        let mut times = vec![
            0,
            951_782_400,   // 2000-02-29
            951_868_799,   // 2000-02-29T23:59:59
            4_107_542_400, // 2100-03-01
            4_107_542_399, // 2100-02-28T23:59:59
            1_798_761_599, // 2026-12-31T23:59:59
            MAX_TIME,
        ];
        times.extend((0..20_000).map(|i| i * (MAX_TIME / 20_000) + i % 86_400));
        for t in times {
            assert_eq!(Rfc3339(t).to_string(), reference(t), "at {t}");
        }
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(100);
        assert_eq!(clock.now(), 100);
        clock.advance(Duration::from_secs(60));
        assert_eq!(clock.now(), 160);
    }
}
