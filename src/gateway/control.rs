//! Fault injection and counters of the gateway simulator: the knobs armed by gateway.toml or `POST /control`
//! and what `GET /control` shows. It decides which forward is dropped, delayed or duplicated; it sends nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Faults armed for the next N forwards (drop, duplicate, delay) or incoming calls (5xx).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct FaultPlan {
    /// Accept the next N messages but never forward them.
    pub drop: u32,
    /// Forward the next N messages twice.
    pub duplicate: u32,
    /// Answer the next N incoming SOAP calls with HTTP 503 and an SMEVFailure fault.
    pub status_5xx: u32,
    /// Hold each of the next `count` forwards this long before the first attempt.
    pub delay_ms: u64,
    /// How many forwards `delay_ms` applies to.
    pub count: u32,
}

/// The keys `POST /control` accepts (the same as the `[faults]` table).
const KNOBS: [&str; 5] = ["drop", "duplicate", "status_5xx", "delay_ms", "count"];

/// What happened so far; shown by `GET /control`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// SOAP calls POSTed to /ws.
    pub received: u64,
    /// Calls answered with a SOAP fault (including injected 5xx).
    pub faults: u64,
    /// Calls answered with an injected HTTP 503.
    pub injected_5xx: u64,
    /// Forwards queued (one per recipient, one per relayed answer).
    pub queued: u64,
    /// Deliveries a node acknowledged (a duplicated forward counts twice).
    pub forwarded: u64,
    /// Attempts that failed and were retried.
    pub retried: u64,
    /// Forwards dropped on purpose.
    pub dropped: u64,
    /// Forwards sent a second time on purpose.
    pub duplicated: u64,
    /// Forwards held back on purpose.
    pub delayed: u64,
    /// Forwards given up (attempts spent, or the node refused the message for good).
    pub failed: u64,
    /// Answers from synchronous providers, taken from their HTTP reply and relayed.
    pub sync_answers: u64,
    /// `requestIsRejectedBySmev` statuses sent to requesters whose request a recipient did not take.
    pub rejections_sent: u64,
    /// Deliveries acknowledged, by node mnemonic.
    pub forwarded_to: BTreeMap<String, u64>,
}

/// The injection decided for one forward when it is queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardFaults {
    pub drop: bool,
    pub duplicate: bool,
    pub delay: Option<Duration>,
}

/// Why a `POST /control` body was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the body must be a JSON object like {{\"drop\": 2}}: {0}")]
    NotJson(String),
    #[error("unknown knob `{0}`; known: drop, duplicate, status_5xx, delay_ms, count")]
    UnknownKnob(String),
    #[error("`{0}` must be a non-negative integer")]
    BadValue(String),
}

/// The armed plan and the counters, behind the gateway's lock.
#[derive(Debug, Default)]
pub struct Control {
    pub plan: FaultPlan,
    pub counters: Counters,
}

impl Control {
    pub fn new(plan: FaultPlan) -> Control {
        Control {
            plan,
            counters: Counters::default(),
        }
    }

    /// Consumes one armed 5xx, if any.
    pub fn take_5xx(&mut self) -> bool {
        if self.plan.status_5xx == 0 {
            return false;
        }
        self.plan.status_5xx -= 1;
        self.counters.injected_5xx += 1;
        true
    }

    /// Decides the injections for one forward being queued, consuming the knobs it uses.
    /// A dropped forward is neither duplicated nor delayed.
    pub fn take_forward(&mut self) -> ForwardFaults {
        if self.plan.drop > 0 {
            self.plan.drop -= 1;
            self.counters.dropped += 1;
            return ForwardFaults {
                drop: true,
                ..ForwardFaults::default()
            };
        }
        let mut faults = ForwardFaults::default();
        if self.plan.duplicate > 0 {
            self.plan.duplicate -= 1;
            self.counters.duplicated += 1;
            faults.duplicate = true;
        }
        if self.plan.count > 0 {
            self.plan.count -= 1;
            if self.plan.delay_ms > 0 {
                self.counters.delayed += 1;
                faults.delay = Some(Duration::from_millis(self.plan.delay_ms));
            }
        }
        self.counters.queued += 1;
        faults
    }

    /// Applies a `POST /control` body: each named knob is set to the given value, the others are kept.
    pub fn apply_json(&mut self, body: &[u8]) -> Result<(), ControlError> {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).map_err(|e| ControlError::NotJson(e.to_string()))?;
        let mut plan = self.plan.clone();
        for (key, value) in &map {
            if !KNOBS.contains(&key.as_str()) {
                return Err(ControlError::UnknownKnob(key.clone()));
            }
            let n = value
                .as_u64()
                .ok_or_else(|| ControlError::BadValue(key.clone()))?;
            let small = || u32::try_from(n).map_err(|_| ControlError::BadValue(key.clone()));
            match key.as_str() {
                "drop" => plan.drop = small()?,
                "duplicate" => plan.duplicate = small()?,
                "status_5xx" => plan.status_5xx = small()?,
                "count" => plan.count = small()?,
                _ => plan.delay_ms = n,
            }
        }
        self.plan = plan;
        Ok(())
    }

    /// The `GET /control` document.
    pub fn to_json(&self, pending: usize) -> String {
        serde_json::json!({
            "counters": self.counters,
            "armed": self.plan,
            "pending": pending,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_apply_to_the_next_n_forwards_and_are_consumed() {
        let mut c = Control::new(FaultPlan::default());
        c.apply_json(br#"{"drop": 1, "duplicate": 1, "delay_ms": 5, "count": 2}"#)
            .expect("valid");
        assert!(c.take_forward().drop);
        let second = c.take_forward();
        assert!(!second.drop && second.duplicate);
        assert_eq!(second.delay, Some(Duration::from_millis(5)));
        let third = c.take_forward();
        assert!(!third.duplicate);
        assert_eq!(third.delay, Some(Duration::from_millis(5)));
        assert_eq!(c.take_forward(), ForwardFaults::default());
        assert_eq!(
            (
                c.counters.dropped,
                c.counters.duplicated,
                c.counters.delayed
            ),
            (1, 1, 2)
        );
        assert_eq!(c.counters.queued, 3);
    }

    #[test]
    fn unknown_knobs_and_bad_values_are_refused_without_changing_anything() {
        let mut c = Control::new(FaultPlan::default());
        assert!(matches!(
            c.apply_json(br#"{"drop": 1, "explode": 1}"#),
            Err(ControlError::UnknownKnob(k)) if k == "explode"
        ));
        assert!(matches!(
            c.apply_json(br#"{"drop": -1}"#),
            Err(ControlError::BadValue(_))
        ));
        assert!(matches!(
            c.apply_json(b"drop"),
            Err(ControlError::NotJson(_))
        ));
        assert_eq!(c.plan, FaultPlan::default());
        c.apply_json(br#"{"status_5xx": 1}"#).expect("valid");
        assert!(c.take_5xx());
        assert!(!c.take_5xx());
    }
}
