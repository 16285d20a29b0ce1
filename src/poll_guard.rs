//! Owns the freshness and replay check of signed GetResponse polls: the signed Timestamp must lie within
//! `trust.poll_max_age` of the node's clock, and each poll signature is accepted once.
//! Must not verify signatures (the provider does that first) nor judge unsigned polls.
//!
//! Whoever holds a copy of a signed GetResponse could otherwise send it again and take the next answer in
//! the outbox: TLS keeps copies from being read on the wire, but not every node runs it, and a copy may
//! leak from a log. So a poll expires, and within its life it works once.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use openssl::sha::sha256;

/// How many accepted polls are remembered; past it the oldest are forgotten first. Each costs about
/// 40 bytes (a 16-byte key in the set and the queue), so at most about 3 MB with the collections' slack.
const MAX_REMEMBERED: usize = 50_000;

/// The first 16 bytes of SHA-256 over a SignatureValue: a collision between two signatures of this
/// node's polls is as likely as guessing a 128-bit key.
type Key = [u8; 16];

/// Why a signed poll was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollRefusal {
    #[error("the poll's Timestamp `{0}` is not an xs:dateTime")]
    BadTimestamp(String),
    #[error(
        "the poll's Timestamp {timestamp} is {age_s} s away from the node's clock; at most {max_s} s is accepted (trust.poll_max_age): a replayed poll, or clocks out of step"
    )]
    Stale {
        timestamp: String,
        age_s: i64,
        max_s: i64,
    },
    #[error("this signed poll was already answered (a replay?); sign a new one")]
    Replayed,
}

/// The check, with what it remembers.
pub struct PollGuard {
    max_age_ms: i64,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    keys: HashSet<Key>,
    /// (when the poll's Timestamp stops being accepted, key), oldest first.
    order: VecDeque<(i64, Key)>,
}

impl PollGuard {
    /// `max_age` zero turns the check off.
    pub fn new(max_age: Duration) -> PollGuard {
        PollGuard {
            max_age_ms: i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Checks a verified poll signed with `signature_value` (the SignatureValue text) whose signed
    /// Timestamp is `timestamp`, at `now_ms` (milliseconds since the epoch). A timestamp without a time
    /// zone cannot be placed on the node's clock: only the replay check applies to it.
    pub fn check(
        &self,
        timestamp: &str,
        signature_value: &str,
        now_ms: i64,
    ) -> Result<(), PollRefusal> {
        if self.max_age_ms == 0 {
            return Ok(());
        }
        let at = parse_datetime(timestamp)
            .ok_or_else(|| PollRefusal::BadTimestamp(timestamp.to_owned()))?;
        let expires = match at {
            Some(at) => {
                let age = now_ms.saturating_sub(at);
                if age.abs() > self.max_age_ms {
                    return Err(PollRefusal::Stale {
                        timestamp: timestamp.to_owned(),
                        age_s: age / 1000,
                        max_s: self.max_age_ms / 1000,
                    });
                }
                at.saturating_add(self.max_age_ms)
            }
            None => now_ms.saturating_add(self.max_age_ms),
        };
        let compact: Vec<u8> = signature_value
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let mut key: Key = [0; 16];
        key.copy_from_slice(&sha256(&compact)[..16]);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(&(until, old)) = seen.order.front() {
            if until > now_ms && seen.order.len() < MAX_REMEMBERED {
                break;
            }
            seen.order.pop_front();
            seen.keys.remove(&old);
        }
        if !seen.keys.insert(key) {
            return Err(PollRefusal::Replayed);
        }
        seen.order.push_back((expires, key));
        Ok(())
    }
}

/// An xs:dateTime (`2026-12-04T16:45:00.123+03:00`, `...Z`, or without a zone) as milliseconds since the
/// epoch: `Some(Some(ms))`, or `Some(None)` when it names no time zone; `None` when it is not a dateTime.
pub fn parse_datetime(text: &str) -> Option<Option<i64>> {
    let text = text.trim();
    let (date, rest) = text.split_once('T')?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = digits(date_parts.next()?, 4)?;
    let month: i64 = digits(date_parts.next()?, 2)?;
    let day: i64 = digits(date_parts.next()?, 2)?;
    let zone_at = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(zone_at);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut time_parts = hms.splitn(3, ':');
    let hour: i64 = digits(time_parts.next()?, 2)?;
    let minute: i64 = digits(time_parts.next()?, 2)?;
    let second: i64 = digits(time_parts.next()?, 2)?;
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 24
        || minute > 59
        || second > 59
        || (hour == 24 && (minute, second) != (0, 0))
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || (time.contains('.') && fraction.is_empty())
    {
        return None;
    }
    let millis = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'));
    let offset_minutes = match zone {
        "" => None,
        "Z" => Some(0),
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone.get(1..)?.split_once(':')?;
            let (h, m): (i64, i64) = (digits(h, 2)?, digits(m, 2)?);
            if h > 14 || m > 59 {
                return None;
            }
            Some(sign * (h * 60 + m))
        }
    };
    let days = days_from_civil(year, month, day);
    let local = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis;
    Some(offset_minutes.map(|o| local - o * 60_000))
}

/// `text` as a number of exactly `width` ASCII digits.
fn digits(text: &str, width: usize) -> Option<i64> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn at(text: &str) -> i64 {
        parse_datetime(text).flatten().expect(text)
    }

    #[test]
    fn reads_xs_datetimes() {
        assert_eq!(at("1970-01-01T00:00:00Z"), 0);
        assert_eq!(at("2026-12-04T10:00:00Z"), 1_796_378_400_000);
        assert_eq!(at("2026-12-04T13:00:00.5+03:00"), 1_796_378_400_500);
        assert_eq!(at("2026-12-04T06:30:00.123-03:30"), 1_796_378_400_123);
        assert_eq!(
            at("2024-02-29T00:00:00Z") - at("2024-02-28T00:00:00Z"),
            1440 * MIN
        );
        assert_eq!(parse_datetime("2026-12-04T10:00:00"), Some(None));
        for bad in [
            "",
            "2026-12-04",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-12-04T10:60:00Z",
            "2026-12-04T10:00:00.Z",
            "2026-12-04T10:00:00+3:00",
            "2026-12-04T10:00:00+15:00",
            "26-12-04T10:00:00Z",
            "2026-12-04T10:00:00ZZ",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_fresh_poll_passes_once() {
        let guard = PollGuard::new(Duration::from_secs(300));
        let now = at("2026-12-04T10:01:00Z");
        assert_eq!(
            guard.check("2026-12-04T10:00:00Z", "c2ln\nbmVk", now),
            Ok(())
        );
        assert_eq!(
            guard.check("2026-12-04T10:00:00Z", "c2ln bmVk", now + 1000),
            Err(PollRefusal::Replayed)
        );
        assert_eq!(guard.check("2026-12-04T10:00:00Z", "b3RoZXI=", now), Ok(()));
    }

    #[test]
    fn stale_and_future_polls_are_refused() {
        let guard = PollGuard::new(Duration::from_secs(300));
        let now = at("2026-12-04T10:00:00Z");
        for ts in ["2026-12-04T09:54:59Z", "2026-12-04T13:05:01+03:00"] {
            assert!(
                matches!(guard.check(ts, "sig", now), Err(PollRefusal::Stale { .. })),
                "{ts}"
            );
        }
        assert!(matches!(
            guard.check("yesterday", "sig", now),
            Err(PollRefusal::BadTimestamp(_))
        ));
        // Without a zone only the replay check applies.
        assert_eq!(guard.check("2001-01-01T00:00:00", "sig", now), Ok(()));
        assert_eq!(
            guard.check("2001-01-01T00:00:00", "sig", now),
            Err(PollRefusal::Replayed)
        );
    }

    #[test]
    fn forgets_polls_once_they_could_not_pass_anyway() {
        let guard = PollGuard::new(Duration::from_secs(60));
        let t0 = at("2026-12-04T10:00:00Z");
        assert_eq!(guard.check("2026-12-04T10:00:00Z", "a", t0), Ok(()));
        assert_eq!(
            guard.check("2026-12-04T10:00:30Z", "b", t0 + 30_000),
            Ok(())
        );
        // At 10:01:01 the first has expired and is forgotten; the second is still remembered.
        assert_eq!(
            guard.check("2026-12-04T10:01:01Z", "c", t0 + 61_000),
            Ok(())
        );
        let seen = guard.seen.lock().expect("lock");
        assert_eq!(seen.order.len(), 2);
        assert_eq!(seen.keys.len(), 2);
    }

    #[test]
    fn zero_max_age_turns_it_off() {
        let guard = PollGuard::new(Duration::ZERO);
        assert_eq!(guard.check("garbage", "sig", 0), Ok(()));
        assert_eq!(guard.check("garbage", "sig", 0), Ok(()));
    }
}
