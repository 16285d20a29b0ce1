//! The node's counters and latency histograms, rendered in Prometheus text format at `/metrics`.
//! It owns the numbers only; the store and datasources are asked for their figures at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the request latency histogram.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Everything the node counts.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    deliveries: Mutex<BTreeMap<&'static str, u64>>,
    signature_failures: Mutex<BTreeMap<&'static str, u64>>,
    pub mapping_reload_failures: AtomicU64,
}

/// Figures read from elsewhere at scrape time.
#[derive(Default)]
pub struct Snapshot {
    pub queue_by_status: Vec<(String, i64)>,
    pub overdue: i64,
    /// (datasource, open connections, idle connections, max)
    pub pools: Vec<(String, usize, usize, usize)>,
}

impl Metrics {
    /// One SOAP call: its operation, outcome (`ok`, `duplicate` or the fault's name) and duration.
    pub fn request(&self, operation: &'static str, outcome: &'static str, took: Duration) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((operation, outcome)).or_default() += 1;
        }
        let secs = took.as_secs_f64();
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(operation).or_default();
            for (i, le) in BUCKETS.iter().enumerate() {
                if secs <= *le {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
    }

    /// One push delivery attempt: `delivered`, `retry` or `failed`.
    pub fn delivery(&self, outcome: &'static str) {
        if let Ok(mut d) = self.deliveries.lock() {
            *d.entry(outcome).or_default() += 1;
        }
    }

    /// A refused signature, by SMEV reason.
    pub fn signature_failure(&self, reason: &'static str) {
        if let Ok(mut s) = self.signature_failures.lock() {
            *s.entry(reason).or_default() += 1;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::with_capacity(4096);
        let _ = self.render_into(&mut out, snapshot);
        out
    }

    fn render_into(&self, out: &mut String, s: &Snapshot) -> std::fmt::Result {
        writeln!(
            out,
            "# HELP smev_requests_total SOAP calls by operation and outcome."
        )?;
        writeln!(out, "# TYPE smev_requests_total counter")?;
        if let Ok(r) = self.requests.lock() {
            for ((op, outcome), n) in r.iter() {
                writeln!(
                    out,
                    "smev_requests_total{{operation=\"{op}\",outcome=\"{outcome}\"}} {n}"
                )?;
            }
        }
        writeln!(
            out,
            "# HELP smev_request_duration_seconds Time from a complete request body to the answer."
        )?;
        writeln!(out, "# TYPE smev_request_duration_seconds histogram")?;
        if let Ok(l) = self.latency.lock() {
            for (op, h) in l.iter() {
                for (i, le) in BUCKETS.iter().enumerate() {
                    writeln!(
                        out,
                        "smev_request_duration_seconds_bucket{{operation=\"{op}\",le=\"{le}\"}} {}",
                        h.counts[i]
                    )?;
                }
                writeln!(
                    out,
                    "smev_request_duration_seconds_bucket{{operation=\"{op}\",le=\"+Inf\"}} {}",
                    h.count
                )?;
                writeln!(
                    out,
                    "smev_request_duration_seconds_sum{{operation=\"{op}\"}} {}",
                    h.sum
                )?;
                writeln!(
                    out,
                    "smev_request_duration_seconds_count{{operation=\"{op}\"}} {}",
                    h.count
                )?;
            }
        }
        writeln!(
            out,
            "# HELP smev_queue_messages Messages in the store by status."
        )?;
        writeln!(out, "# TYPE smev_queue_messages gauge")?;
        for (status, n) in &s.queue_by_status {
            writeln!(out, "smev_queue_messages{{status=\"{status}\"}} {n}")?;
        }
        writeln!(
            out,
            "# HELP smev_overdue_messages Unfinished messages past their mapping's deadline."
        )?;
        writeln!(out, "# TYPE smev_overdue_messages gauge")?;
        writeln!(out, "smev_overdue_messages {}", s.overdue)?;
        writeln!(
            out,
            "# HELP smev_delivery_attempts_total Push delivery attempts by outcome (retry = will be tried again)."
        )?;
        writeln!(out, "# TYPE smev_delivery_attempts_total counter")?;
        if let Ok(d) = self.deliveries.lock() {
            for (outcome, n) in d.iter() {
                writeln!(
                    out,
                    "smev_delivery_attempts_total{{outcome=\"{outcome}\"}} {n}"
                )?;
            }
        }
        writeln!(
            out,
            "# HELP smev_signature_failures_total Refused signatures by reason."
        )?;
        writeln!(out, "# TYPE smev_signature_failures_total counter")?;
        if let Ok(f) = self.signature_failures.lock() {
            for (reason, n) in f.iter() {
                writeln!(
                    out,
                    "smev_signature_failures_total{{reason=\"{reason}\"}} {n}"
                )?;
            }
        }
        writeln!(
            out,
            "# HELP smev_mapping_reload_failures_total Mapping changes refused (the previous set kept serving)."
        )?;
        writeln!(out, "# TYPE smev_mapping_reload_failures_total counter")?;
        writeln!(
            out,
            "smev_mapping_reload_failures_total {}",
            self.mapping_reload_failures.load(Ordering::Relaxed)
        )?;
        writeln!(
            out,
            "# HELP smev_datasource_connections Datasource pool connections."
        )?;
        writeln!(out, "# TYPE smev_datasource_connections gauge")?;
        for (name, open, idle, max) in &s.pools {
            writeln!(
                out,
                "smev_datasource_connections{{datasource=\"{name}\",state=\"open\"}} {open}"
            )?;
            writeln!(
                out,
                "smev_datasource_connections{{datasource=\"{name}\",state=\"idle\"}} {idle}"
            )?;
            writeln!(
                out,
                "smev_datasource_connections{{datasource=\"{name}\",state=\"max\"}} {max}"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.request("SendRequest", "ok", Duration::from_millis(3));
        m.request("SendRequest", "ok", Duration::from_millis(30));
        let text = m.render(&Snapshot::default());
        assert!(
            text.contains("smev_requests_total{operation=\"SendRequest\",outcome=\"ok\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "smev_request_duration_seconds_bucket{operation=\"SendRequest\",le=\"0.0025\"} 0"
        ));
        assert!(text.contains(
            "smev_request_duration_seconds_bucket{operation=\"SendRequest\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "smev_request_duration_seconds_bucket{operation=\"SendRequest\",le=\"0.05\"} 2"
        ));
        assert!(text.contains(
            "smev_request_duration_seconds_bucket{operation=\"SendRequest\",le=\"+Inf\"} 2"
        ));
    }
}
